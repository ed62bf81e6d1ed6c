"""write_report's HTML and the ``aigw-lab report`` command."""

from __future__ import annotations

import base64
import gzip
import re

import pytest

from aigw_lab.analysis import target_summary
from aigw_lab.cli.main import main
from aigw_lab.errors import StoreError
from aigw_lab.report import CHART_IDS, write_report
from aigw_lab.report.format import usd
from aigw_lab.store import CallLog


def test_report_is_self_contained_with_every_chart(report_db, tmp_path):
    out = write_report(report_db, tmp_path / "sub" / "r.html")
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # plotly.js embedded exactly once (gzipped, base64); nothing loaded from elsewhere.
    assert page.count('id="plotly-js"') == 1
    packed = re.search(r'<script type="text/plain" id="plotly-js">([^<]*)</script>', page)
    assert gzip.decompress(base64.b64decode(packed.group(1))).startswith(b"/**\n* plotly.js")
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=\"?https?:", page)
    # The synthetic log has no categories; every other chart has something to draw.
    for chart_id in CHART_IDS:
        expected = 0 if chart_id == "chart-quality-by-category" else 1
        assert page.count(f'id="{chart_id}"') == expected, chart_id
    assert "<h1>synthetic latest</h1>" in page  # the latest experiment by default
    assert "Experiments in this log" in page and "older" in page
    assert "simulated" in page


def test_summary_and_paired_tables_show_the_analysis(report_db, tmp_path):
    page = write_report(report_db, tmp_path / "r.html", experiment_id="older").read_text()
    summary = target_summary(report_db, experiment_id="older")
    table = page[page.index('id="summary-table"') :]
    table = table[: table.index("</table>")]
    for row in summary.itertuples():
        assert f"<td>{row.target}</td>" in table
        assert f"{row.quality_mean:.3f}" in table
        assert f"<td>{usd(row.cost_per_call)}</td>" in table
    # Every pair is compared (was: only the best two), the better-ranked target as a.
    best = summary.sort_values("quality_mean", ascending=False)["target"].tolist()
    pairs = page[page.index('id="pairs-table"') :]
    pairs = pairs[: pairs.index("</table>")]
    assert pairs.count("<tr") == 1 + len(best) * (len(best) - 1) // 2
    assert f"<td>{best[0]}</td>\n      <td>{best[1]}</td>" in pairs


def test_title_and_scorer_without_scores(report_db, tmp_path):
    page = write_report(
        report_db, tmp_path / "r.html", scorer="nobody", title="Q3 <review>"
    ).read_text()
    assert "<h1>Q3 &lt;review&gt;</h1>" in page
    assert "No scores in this experiment" in page
    assert 'id="chart-quality-vs-cost"' not in page
    assert "Needs quality scores for at least two targets." in page


def test_report_from_a_live_calllog(tmp_path):
    from aigw_lab.analysis import synthetic_experiment_log

    with CallLog(tmp_path / "live.duckdb") as log:
        synthetic_experiment_log(log, n_items=5)
        out = write_report(log, tmp_path / "r.html")
    assert 'id="chart-cost"' in out.read_text()


def test_unknown_experiment_and_empty_log_are_store_errors(report_db, tmp_path):
    with pytest.raises(StoreError, match="no experiment 'nope'") as info:
        write_report(report_db, tmp_path / "r.html", experiment_id="nope")
    assert "latest" in info.value.hint and "older" in info.value.hint
    CallLog(tmp_path / "empty.duckdb").close()
    with pytest.raises(StoreError, match="has no calls"):
        write_report(tmp_path / "empty.duckdb", tmp_path / "r.html")


def test_cli_writes_the_report(report_db, tmp_path, capsys):
    out = tmp_path / "cli.html"
    code = main(
        [
            "report",
            "--db",
            str(report_db),
            "--out",
            str(out),
            "--experiment",
            "older",
            "--scorer",
            "exact_match",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert "<h1>synthetic older</h1>" in out.read_text()


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "no call log at"),
        ("empty", "has no calls"),
        ("not_duckdb", "cannot open a snapshot"),
        ("bad_experiment", "has no experiment 'x'"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(setup, message, report_db, tmp_path, capsys):
    db = tmp_path / "calls.duckdb"
    args = []
    if setup == "empty":
        CallLog(db).close()
    elif setup == "not_duckdb":
        db.write_text("not a database")
    elif setup == "bad_experiment":
        db, args = report_db, ["--experiment", "x"]
    code = main(["report", "--db", str(db), "--out", str(tmp_path / "r.html"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("aigw-lab: error: ") and message in err.splitlines()[0]
    assert "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_cli_reads_a_log_another_process_holds_open(report_db, tmp_path, capsys):
    # The gateway keeps its log open for writing; the report reads a snapshot meanwhile.
    import shutil

    db = tmp_path / "held.duckdb"
    shutil.copyfile(report_db, db)
    with CallLog(db):
        code = main(["report", "--db", str(db), "--out", str(tmp_path / "r.html")])
    assert code == 0, capsys.readouterr().err


def test_default_is_the_newest_experiment_that_has_calls(report_db, tmp_path):
    import shutil
    from datetime import UTC, datetime

    db = tmp_path / "planned.duckdb"
    shutil.copyfile(report_db, db)
    with CallLog(db) as log:
        log.insert(
            "experiments",
            [
                {
                    "experiment_id": "planned",
                    "name": "not run yet",
                    "created_at": datetime(2027, 1, 1, tzinfo=UTC),
                }
            ],
        )
    page = write_report(db, tmp_path / "r.html").read_text()
    assert "<h1>synthetic latest</h1>" in page and "planned" in page


def test_a_log_without_experiments_is_reported_whole(tmp_path):
    from datetime import UTC, datetime

    from aigw_lab.store import CallRecord

    with CallLog(tmp_path / "plain.duckdb") as log:
        log.append_many(
            CallRecord(
                call_id=f"c{i}",
                trace_id=f"t{i}",
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                provider_name="sim-openai",
                request_model="sim-small" if i % 2 else "sim-nano",
                latency_ms=100.0 + i,
                cost_usd=0.001,
                simulated=True,
            )
            for i in range(6)
        )
    page = write_report(tmp_path / "plain.duckdb", tmp_path / "r.html").read_text()
    assert "<h1>Call log report</h1>" in page and "all calls" in page
    assert "<td>sim-openai/sim-small</td>" in page and "<td>sim-openai/sim-nano</td>" in page
