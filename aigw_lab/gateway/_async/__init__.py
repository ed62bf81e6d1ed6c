"""The pipeline code that awaits, written once for asyncio. `aigw_lab.gateway._sync` is
generated from it by ``.ci/unasync.py`` (a test checks that it is current): edit here,
then run ``python .ci/unasync.py``."""
