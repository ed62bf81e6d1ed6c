"""How the suite puts its call logs on the shared `LogEngine` (``log_engine`` in
tests/conftest.py): for the suite-wide fixture and tests/store's ``log_backend``."""

from __future__ import annotations

from typing import Any

import pytest


def open_logs_on(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every `CallLog` this test opens without ``engine=`` or ``config=`` (a config is
    an own instance's) attach to ``engine``: the logs the test opens itself and those a
    Gateway, a CLI command or an analysis opens for it. Nothing else about the test
    changes."""
    from aigw_lab.store.calllog import CallLog

    opened = CallLog.__init__

    def on_engine(self: CallLog, path: Any, **options: Any) -> None:
        if options.get("engine") is None and options.get("config") is None:
            options["engine"] = engine
        opened(self, path, **options)

    monkeypatch.setattr(CallLog, "__init__", on_engine)
