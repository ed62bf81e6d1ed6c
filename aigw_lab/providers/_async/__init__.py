"""The provider code that awaits (the HTTP exchanges), written once for asyncio.
`aigw_lab.providers._sync` is generated from it by ``.ci/unasync.py`` (tests/test_unasync.py
checks that it is current): edit here, then run ``python .ci/unasync.py``."""
