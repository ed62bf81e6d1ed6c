"""``aigw-lab serve`` freezes the garbage collector's objects once started (issue 14 §3):
the start-up objects leave the generations every full collection walks."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

import aigw_lab.server
from aigw_lab.cli.main import main
from aigw_lab.cli.serve import GC_FREEZE_ENV, gc_freezer
from aigw_lab.errors import ConfigError


class _RecordingGC:
    """Stands in for the `gc` module: records the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def collect(self) -> int:
        self.calls.append("collect")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")


def test_the_freezer_collects_then_freezes_unless_turned_off() -> None:
    fake = _RecordingGC()
    for environ in ({}, {GC_FREEZE_ENV: "1"}, {GC_FREEZE_ENV: " 1 "}):
        fake.calls.clear()
        freeze = gc_freezer(environ, fake)
        assert freeze is not None
        assert fake.calls == []  # nothing happens until serve has started
        freeze()
        assert fake.calls == ["collect", "freeze"]
    assert gc_freezer({GC_FREEZE_ENV: "0"}, fake) is None


@pytest.mark.parametrize("value", ["yes", "2", "0\x1b[31m", "-1"])
def test_a_bad_switch_is_a_one_line_error_naming_it(value: str, capsys, monkeypatch) -> None:
    with pytest.raises(ConfigError, match=GC_FREEZE_ENV):
        gc_freezer({GC_FREEZE_ENV: value})
    monkeypatch.setenv(GC_FREEZE_ENV, value)
    assert main(["serve", "--no-auth", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert GC_FREEZE_ENV in err and "Traceback" not in err and "\x1b" not in err


def _freeze_count_once_started(monkeypatch, tmp_path: Path) -> int:
    """Runs ``aigw-lab serve`` in this process up to the end of its app's lifespan startup
    (where uvicorn would start accepting) and returns `gc.get_freeze_count` there."""
    seen: list[int] = []

    def started_only(app: Any, host: str, port: int, **_: Any) -> None:
        async def lifespan() -> None:
            sent: list[dict[str, Any]] = []
            messages = iter([{"type": "lifespan.startup"}])

            async def receive() -> dict[str, Any]:
                return next(messages)

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)
                if message["type"] == "lifespan.startup.complete":
                    seen.append(gc.get_freeze_count())
                    raise asyncio.CancelledError  # stop there, as if serving

            with pytest.raises(asyncio.CancelledError):
                await app({"type": "lifespan"}, receive, send)

        asyncio.run(lifespan())

    monkeypatch.setattr(aigw_lab.server, "serve", started_only)
    try:
        db = str(tmp_path / "calls.duckdb")
        assert main(["serve", "--no-auth", "--port", "0", "--db", db]) == 0
    finally:
        gc.unfreeze()  # this process is pytest's: give its objects back to the collector
    assert len(seen) == 1
    return seen[0]


def test_serve_freezes_the_start_up_objects_before_accepting(monkeypatch, tmp_path) -> None:
    gc.unfreeze()
    monkeypatch.delenv(GC_FREEZE_ENV, raising=False)
    assert _freeze_count_once_started(monkeypatch, tmp_path) > 10_000


def test_the_switch_leaves_the_collector_alone(monkeypatch, tmp_path) -> None:
    gc.unfreeze()
    monkeypatch.setenv(GC_FREEZE_ENV, "0")
    assert _freeze_count_once_started(monkeypatch, tmp_path) == 0
