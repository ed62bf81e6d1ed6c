"""bench/bench_peers_work.py counts what a call runs on the calling thread for two trees: the
same tree twice must count the same, and each side and mode must be counted."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_peers_work.py"


@pytest.mark.slow  # two worker processes, each calling the fake in three modes (~10 s loaded)
def test_the_same_tree_twice_counts_the_same(capsys):
    spec = importlib.util.spec_from_file_location("bench_peers_work", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        assert module.main(["--baseline-tree", str(ROOT), "--calls", "5", "--functions", "50"]) == 0
    finally:
        sys.modules.pop("bench_peers_work", None)
    out = capsys.readouterr().out
    rows = re.findall(r"^  (raw direct|aigw log off|aigw log on)\s+(\w+)\s+([\d ]+)$", out, re.M)
    assert len(rows) == 9  # three sides x three modes
    for _, _, cells in rows:
        counts = [int(c) for c in cells.split()]
        assert counts[:3] == counts[3:] and counts[0] > 0  # baseline == this tree
    deltas = re.findall(r"bytecodes ([+-]\d+) py_calls ([+-]\d+)", out)
    assert len(deltas) == 9 and {d for pair in deltas for d in pair} == {"+0"}
    assert "aigw log off, sync: bytecodes per call by area" in out
    assert "frozen values' __init__" in out


def test_a_baseline_without_aigw_lab_is_refused(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_peers_work", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.main(["--baseline-tree", str(tmp_path)])
    assert "holds no aigw_lab package" in capsys.readouterr().err
