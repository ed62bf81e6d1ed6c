"""The pipeline code that awaits, written once for asyncio. `aigw_lab.gateway._sync` is
generated from it by ``scripts/unasync.py`` (a test checks that it is current): edit here,
then run ``python scripts/unasync.py``."""
