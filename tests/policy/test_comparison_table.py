"""The baseline comparison value: JSON round trip and the table every surface prints."""

from aigw_lab.policy.evaluate.comparison_table import (
    BaselineComparison,
    BaselineRow,
    format_baseline_table,
)


def _comparison(significant: bool = True) -> BaselineComparison:
    rows = (
        BaselineRow("knn", "router", 0.71, 0.66, 0.76, 0.69, 0.73, 0.21, 0.15, 0.27),
        BaselineRow("random", "random", 0.50, 0.46, 0.54, 0.49, 0.51),
        BaselineRow("prompt length", "trivial", 0.60, 0.55, 0.65, 0.58, 0.62, 0.1, 0.04, 0.16),
    )
    return BaselineComparison(
        metric="apgr",
        router="knn",
        rows=rows,
        seeds=5,
        folds=5,
        items=1000,
        significant=significant,
        verdict="knn beats random and every trivial baseline.",
        notes=("MMLU subjects encoded in-fold.",),
    )


def test_round_trip_through_json_form():
    comparison = _comparison()
    assert BaselineComparison.from_dict(comparison.to_dict()) == comparison
    assert comparison.row("random").gain_vs_random is None
    assert comparison.row("knn").kind == "router"


def test_table_shows_every_row_interval_spread_and_verdict():
    text = format_baseline_table(_comparison())
    lines = text.splitlines()
    assert lines[0].split()[0] == "APGR"
    assert "knn (router)" in lines[1] and "[0.660, 0.760]" in lines[1]
    assert "0.690-0.730" in lines[1] and "+0.210 [0.150, 0.270]" in lines[1]
    assert "random (random)" in lines[2] and "+" not in lines[2]
    assert "1000 items, 5-fold cross-fitting over 5 fold seeds." in text
    assert lines[-1] == "knn beats random and every trivial baseline."
