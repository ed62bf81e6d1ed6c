"""The "Results on real data" report puts every learned router beside its baselines: one
table per benchmark with item intervals, seed range and paired gains, and a verdict per
router (MT-Bench's 72 prompts, the fast HashingEmbedder; skipped without the shared data)."""

from __future__ import annotations

import pytest

from aigw_lab.datasets.shared import shared_data_dir_or_none

pytestmark = [
    pytest.mark.skipif(
        shared_data_dir_or_none() is None, reason="the shared data folder is absent"
    ),
    pytest.mark.slow,  # cross-fits four routers over the recordings (seconds)
]


def test_the_learned_table_regenerates_with_baselines_and_verdicts(tmp_path):
    from aigw_lab.policy.evaluate.report import (
        ROUTERS,
        SECTION,
        learned_tables,
        replace_section,
    )

    lines = learned_tables(
        "hashing-64-3", str(tmp_path), folds=3, seeds=2, n_boot=50, benchmarks=("mt_bench",)
    )
    text = "\n".join(lines)
    assert lines[0].startswith("#### mt_bench (72 items; RouteLLM published APGR mf 0.802")
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    names = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert names[: len(ROUTERS)] == list(ROUTERS)
    assert {"prompt length", "category lookup", "random", "zero router", "oracle"} <= set(names)
    for row in rows:
        cells = row.strip("|").split("|")
        assert len(cells) == 6 and "-" in cells[4]  # a seed range on every row
    verdicts = [line for line in lines if line.startswith("- ")]
    assert len(verdicts) == len(ROUTERS)
    assert all("random routing" in v and "best trivial baseline" in v for v in verdicts)
    # MT-Bench's size and the published 0.802 are set side by side with what they mean.
    (note,) = [line for line in lines if line.startswith("How little 72 prompts can tell")]
    assert "random routing alone ranges over" in note and "0.802" in note
    document = f"# Routing\n\n{SECTION}\nold\n\n## Later\nkeep\n"
    updated = replace_section(document, f"{SECTION}\n\n{text}\n")
    assert "category lookup" in updated and "old" not in updated and "## Later\nkeep" in updated


def test_the_many_model_tables_put_knn_beside_the_zero_router(tmp_path):
    from aigw_lab.policy.evaluate.report import multi_model_tables

    lines = multi_model_tables("hashing-64-3", str(tmp_path), folds=3, seeds=2, n_boot=30)
    headers = [line for line in lines if line.startswith("#### ")]
    assert [h.split(":")[0] for h in headers] == ["#### arena_bench_v1", "#### alpaca_eval2"]
    names = {
        line.split(" | ")[0].removeprefix("| ")
        for line in lines
        if line.startswith("| ") and "---" not in line
    }
    assert {"knn", "prompt length", "random", "oracle", "category lookup"} <= names
    assert sum(line.startswith("- knn ") for line in lines) == 2  # one verdict per dataset
    assert sum(line.startswith("- Size of the gain: knn's AIQ is") for line in lines) == 2
