"""The simulation code that waits (the in-process transport), written once for asyncio.
`aigw_lab.sim._sync` is generated from it by ``.ci/unasync.py`` (tests/test_unasync.py
checks that it is current): edit here, then run ``python .ci/unasync.py``."""
