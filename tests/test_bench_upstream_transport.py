"""bench/bench_upstream_transport.py compares three upstream transports against one loopback
fake: every side must get the fake's answer in every mode (threads, tasks, paced), and a run
must report each side with no failed call."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_upstream_transport.py"

pytest.importorskip("httptools", reason="the lean transport needs the fast-serve extra")


def test_every_side_answers_in_every_mode(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_upstream_transport", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        argv = ["--calls", "6", "--rounds", "2", "--modes", "sync3,async3,paced200", "--gateway"]
        assert module.main(argv) == 0
    finally:
        sys.modules.pop("bench_peers", None)
    out = capsys.readouterr().out
    for mode in ("sync3", "async3", "paced200"):
        assert f"## {mode}:" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "side" not in line]
    names = {row.split("|")[1].strip() for row in rows}
    assert names == {"httpx pool", "sharded x8", "lean", "gw httpx", "gw sharded8", "gw lean"}
    assert all(row.rstrip(" |").endswith("| 0") for row in rows)  # no failed call
