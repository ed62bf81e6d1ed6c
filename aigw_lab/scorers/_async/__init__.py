"""The scorer code that awaits (the LLM judge's calls), written once for asyncio.
`aigw_lab.scorers._sync` is generated from it by ``.ci/unasync.py`` (tests/test_unasync.py
checks that it is current): edit here, then run ``python .ci/unasync.py``."""
