"""What the report says (issue 10 §5): what was run, per-category quality with intervals,
every pair of targets, costs for people, charts that fit the run, the item browser and its
caps, the file's size, and markup from the log kept as text."""

from __future__ import annotations

import json
import math
import re

import pytest

from aigw_lab.analysis import (
    category_quality,
    item_quality,
    paired_comparison,
    pairwise_comparisons,
    target_summary,
    wilson_interval,
)
from aigw_lab.report import browser as browser_module
from aigw_lab.report import write_report
from aigw_lab.report.format import script_json, usd

from .conftest import (
    HOSTILE_ANSWER,
    HOSTILE_CATEGORY,
    HOSTILE_PROMPT,
    HOSTILE_TARGET,
    write_experiment_log,
)


def _json_block(page: str, element_id: str):
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page)
    assert found, element_id
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def run_page(run_db, tmp_path_factory):
    out = write_report(run_db, tmp_path_factory.mktemp("page") / "report.html")
    return out, out.read_text(encoding="utf-8")


# --- what was run ------------------------------------------------------------------------


def test_title_and_description_say_what_was_run(run_page):
    _, page = run_page
    assert "<h1>four targets, forty items</h1>" in page  # the name, not the id
    facts = page[page.index('id="experiment-facts"') :]
    facts = facts[: facts.index("</table>")]
    assert "<td>mixed_v1, from bundled:mixed_v1</td>" in facts
    assert "40 in the log, 40 in the definition" in facts
    assert "a sample of 40 items, seed 3" in facts
    assert "auto; quality in this report: auto" in facts
    assert "the simulated fleet, seed 7, time_scale 0.01" in facts
    targets = page[page.index('id="targets-table"') :]
    targets = targets[: targets.index("</table>")]
    assert targets.count("<tr>") == 5  # header + four targets
    assert "llama-8b-hot" in targets and "sim-workers/sim-llamaish-8b" in targets
    assert "&quot;temperature&quot;: 1.0" in targets  # the target's own params
    assert 'id="runs-table"' in page and "completed" in page


def test_the_run_records_sample_seed_and_gateway(run_db):
    # Not recorded before: the dataset keeps only the items drawn, not how.
    import duckdb

    with duckdb.connect(str(run_db), read_only=True) as conn:
        (config,) = conn.execute("SELECT config_json FROM experiments").fetchone()
    provenance = json.loads(config)["provenance"]
    assert provenance["dataset"] == "bundled:mixed_v1"
    assert (provenance["sample"], provenance["seed"]) == (40, 3)
    assert provenance["gateway_in_file"] == {"simulated": {"seed": 7, "time_scale": 0.01}}
    assert "sim-openai" in provenance["providers"]


def test_provenance_is_a_mapping_and_absent_when_empty():
    from aigw_lab.datasets import bundled_dataset
    from aigw_lab.errors import ConfigError
    from aigw_lab.experiments import Experiment

    dataset = bundled_dataset().head(2)
    plain = Experiment("p", dataset, ["sim-openai/sim-nano"])
    assert "provenance" not in plain.config()  # definitions recorded before stay the same
    told = Experiment("p", dataset, ["sim-openai/sim-nano"], provenance={"seed": 5})
    assert told.config()["provenance"] == {"seed": 5}
    with pytest.raises(ConfigError, match="provenance must be a mapping"):
        Experiment("p", dataset, ["sim-openai/sim-nano"], provenance=[("seed", 5)])


def test_a_log_without_provenance_says_not_recorded(report_db, tmp_path):
    page = write_report(report_db, tmp_path / "r.html").read_text()
    assert "sample size, seed and categories not recorded" in page


# --- per category ------------------------------------------------------------------------


def test_wilson_interval_matches_the_textbook_values():
    # Wilson 95 % for 3/10 and 0/10 (Newcombe 1998, table I; Brown, Cai, DasGupta 2001).
    low, high = wilson_interval(3, 10)
    assert (round(low, 4), round(high, 4)) == (0.1078, 0.6032)
    assert wilson_interval(0, 10)[0] == 0.0 and round(wilson_interval(0, 10)[1], 4) == 0.2775
    assert wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))  # no data, no interval


def test_category_quality_per_target_with_intervals(run_db, run_page):
    frame = category_quality(run_db)
    per_item = item_quality(run_db)
    categories = sorted(per_item["category"].unique())
    assert len(categories) >= 4 and "(none)" not in categories
    assert len(frame) == len(categories) * 4
    # Every cell is the mean of its items, inside its own interval; 0/1 scores -> Wilson.
    for row in frame.itertuples():
        values = per_item[(per_item.category == row.category) & (per_item.target == row.target)]
        assert row.items == len(values)
        assert row.quality_mean == pytest.approx(values["quality"].mean())
        assert row.ci_low <= row.quality_mean <= row.ci_high
        assert row.interval == "wilson"
        assert (row.ci_low, row.ci_high) == wilson_interval(
            int(values["quality"].sum()), len(values)
        )
    _, page = run_page
    table = page[page.index('id="category-table"') :]
    table = table[: table.index("</table>")]
    for category in categories:
        assert f"<td>{category}</td>" in table
    assert 'id="chart-quality-by-category"' in page
    assert "Wilson score intervals" in page


def test_category_quality_bootstraps_non_binary_scores(tmp_path):
    db = write_experiment_log(
        tmp_path / "graded.duckdb",
        items=12,
        targets=("a", "b"),
        answer=lambda i, t: "x",
        prompt=lambda i: f"q{i}",
        category=lambda i: "even" if i % 2 else "odd",
    )
    from aigw_lab.store import CallLog

    with CallLog(db) as log:  # graded scores: 0.25 and 0.75 instead of 0 and 1
        log.execute("UPDATE scores SET value = 0.25 + value / 2")
    frame = category_quality(db)
    assert set(frame["interval"]) == {"bootstrap"}
    assert (frame["ci_low"] <= frame["quality_mean"]).all()


# --- every pair --------------------------------------------------------------------------


def test_every_pair_is_compared_and_agrees_with_paired_comparison(run_db, run_page):
    summary = target_summary(run_db)
    ranked = summary.sort_values(
        ["quality_mean", "cost_per_call", "target"], ascending=[False, True, True]
    )["target"].tolist()
    pairs = pairwise_comparisons(run_db, targets=ranked)
    assert len(pairs) == 6 * 3  # 4 targets: 6 pairs x 3 metrics
    # The report passes the per-item frame it already read: the same result.
    again = pairwise_comparisons(run_db, targets=ranked, per_item=item_quality(run_db))
    assert again.equals(pairs)
    one = pairs[(pairs.target_a == ranked[1]) & (pairs.target_b == ranked[3])]
    alone = paired_comparison(run_db, ranked[1], ranked[3])
    for metric in ("quality", "latency_ms", "cost_usd"):
        mine = one[one.metric == metric].iloc[0]
        theirs = alone[alone.metric == metric].iloc[0]
        assert mine.n_items == theirs.n_items
        assert mine["diff"] == pytest.approx(theirs["diff"])
        assert (mine.wins, mine.ties, mine.losses) == (theirs.wins, theirs.ties, theirs.losses)
    _, page = run_page
    data = _json_block(page, "pairs-data")
    assert data["targets"] == ranked
    assert {(p["a"], p["b"]) for p in data["pairs"]} == {
        (ranked[i], ranked[j]) for i in range(4) for j in range(i + 1, 4)
    }


# --- money and charts --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (0.00005, "$0.00005"),
        (0.0000523, "$0.000052"),
        (0.00123, "$0.0012"),
        (0.5, "$0.50"),
        (0.99996, "$1.00"),
        (12.345, "$12.35"),
        (1234.5, "$1,234.50"),
        (0, "$0"),
        (-0.00002, "-$0.00002"),
        (float("nan"), ""),
        (None, ""),
    ],
)
def test_usd_is_written_for_people(value, text):
    assert usd(value) == text


def test_cost_axes_are_log_scale_with_dollar_ticks(run_page):
    _, page = run_page
    assert "μ" not in page
    for chart_id, axis in (("chart-quality-vs-cost", "xaxis"), ("chart-cost", "xaxis")):
        figure = _json_block(page, f"{chart_id}-data")
        layout = figure["layout"][axis]
        assert layout["type"] == "log", chart_id
        assert layout["ticktext"] and all(t.startswith("$0.0") for t in layout["ticktext"])
        assert layout["ticktext"] == [usd(v) for v in layout["tickvals"]]


def test_no_cost_over_time_chart_for_a_seconds_long_run(run_page, report_db, tmp_path):
    _, page = run_page
    assert 'id="chart-cost-over-time"' not in page
    assert "No cost-over-time chart: the calls span" in page
    # The synthetic log's experiment spans about an hour: it gets the chart.
    long = write_report(report_db, tmp_path / "long.html").read_text()
    assert 'id="chart-cost-over-time"' in long


# --- the item browser --------------------------------------------------------------------


def test_item_browser_holds_every_item_with_each_targets_answer(run_db, run_page):
    import duckdb

    _, page = run_page
    data = _json_block(page, "items-data")
    assert data["total_items"] == len(data["items"]) == 40
    with duckdb.connect(str(run_db), read_only=True) as conn:
        logged = conn.execute(
            "SELECT c.item_id, c.target, c.response_text, s.value FROM calls c "
            "JOIN scores s USING (call_id)"
        ).fetchall()
    column = {t: i for i, t in enumerate(data["targets"])}
    items = {item["id"]: item for item in data["items"]}
    for item_id, target, text, value in logged:
        cell = items[item_id]["cells"][column[target]]
        assert cell["answer"] == text and cell["score_value"] == value
        assert cell["cost"].startswith("$")
    assert all(item["prompt"].startswith("user: ") for item in items.values())
    # Targets that disagree come first.
    spreads = [item["spread"] for item in data["items"]]
    assert spreads == sorted(spreads, reverse=True)


def test_a_ten_thousand_item_experiment_is_capped(tmp_path):
    db = write_experiment_log(
        tmp_path / "big.duckdb",
        items=10_000,
        targets=("a", "b"),
        answer=lambda i, t: f"answer {i}",
        prompt=lambda i: f"prompt {i}",
        category=lambda i: f"cat{i % 7}",
    )
    out = write_report(db, tmp_path / "big.html")
    page = out.read_text(encoding="utf-8")
    data = _json_block(page, "items-data")
    assert data["total_items"] == 10_000
    assert len(data["items"]) == browser_module.MAX_ITEMS
    assert "The 300 most instructive of 10,000 items" in page
    assert out.stat().st_size < 1_000_000


def test_long_texts_are_cut_to_the_budget(tmp_path):
    db = write_experiment_log(
        tmp_path / "long.duckdb",
        items=400,
        targets=("a", "b", "c", "d"),
        answer=lambda i, t: f"answer {i} " + "x" * 3000,
        prompt=lambda i: f"prompt {i} " + "y" * 3000,
        category=lambda i: f"cat{i % 7}",
    )
    out = write_report(db, tmp_path / "long.html")
    data = _json_block(out.read_text(encoding="utf-8"), "items-data")
    cut = data["text_chars"]
    # 300 items x 5 texts share the budget: each is cut to the same length.
    assert cut == browser_module.TEXT_BUDGET // (300 * 5)
    assert browser_module.MIN_TEXT_CHARS <= cut < 3000
    cell = data["items"][0]["cells"][0]
    assert cell["cut"] and len(cell["answer"]) == cut and cell["chars"] > 3000
    assert data["items"][0]["prompt_cut"] and len(data["items"][0]["prompt"]) == cut
    assert out.stat().st_size < 1_500_000


def test_report_of_the_four_target_experiment_is_under_1_5_mb(run_page):
    out, page = run_page
    assert out.stat().st_size < 1_500_000
    assert page.count('id="plotly-js"') == 1


# --- markup from the log -----------------------------------------------------------------


def test_markup_from_the_log_never_reaches_the_page_as_markup(hostile_db, tmp_path):
    page = write_report(hostile_db, tmp_path / "r.html").read_text()
    for text in (HOSTILE_PROMPT, HOSTILE_ANSWER, HOSTILE_TARGET, HOSTILE_CATEGORY):
        assert text not in page
    # Exactly the page's own script elements: JSON data, plotly, and its one script.
    opened = re.findall(r"<script[^>]*>", page)
    assert all(
        tag == "<script>" or 'type="application/json"' in tag or 'type="text/plain"' in tag
        for tag in opened
    ), opened
    assert page.count("<script>") == 1
    assert page.count("</script>") == len(opened)
    # The data still holds the texts, intact.
    data = _json_block(page, "items-data")
    assert HOSTILE_TARGET in data["targets"]
    first = next(i for i in data["items"] if i["prompt"] == f"user: {HOSTILE_PROMPT}")
    assert first["category"] == HOSTILE_CATEGORY
    assert HOSTILE_ANSWER in [c["answer"] for c in first["cells"]]


def test_script_json_escapes_what_could_close_a_script():
    text = script_json({"a": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}


# --- at a glance -------------------------------------------------------------------------


@pytest.mark.parametrize("experiment", ["older", "latest"])
def test_at_a_glance_names_the_best_and_the_cheapest_not_clearly_worse(
    report_db, tmp_path, experiment
):
    page = write_report(report_db, tmp_path / "r.html", experiment_id=experiment).read_text()
    glance = page[page.index('id="at-a-glance"') :]
    glance = glance[: glance.index("</ul>")]
    summary = target_summary(report_db, experiment_id=experiment).set_index("target")
    best = summary.sort_values(["quality_mean", "cost_per_call"], ascending=[False, True])
    best = best.index[0]
    assert f"Highest quality: <b>{best}</b>" in glance
    pairs = pairwise_comparisons(report_db, experiment_id=experiment)
    quality_rows = pairs[pairs.metric == "quality"]
    candidates = []
    for target in summary.index:
        if (
            target == best
            or summary.loc[target, "cost_per_call"] >= summary.loc[best, "cost_per_call"]
        ):
            continue
        row = quality_rows[
            ((quality_rows.target_a == best) & (quality_rows.target_b == target))
            | ((quality_rows.target_a == target) & (quality_rows.target_b == best))
        ].iloc[0]
        low = row.ci_low if row.target_a == best else -row.ci_high
        if low <= 0:
            candidates.append(target)
    if candidates:
        cheapest = min(candidates, key=lambda t: summary.loc[t, "cost_per_call"])
        assert f"Cheapest not clearly worse: <b>{cheapest}</b>" in glance
    else:
        assert "Every cheaper target is clearly worse" in glance
    assert "Units that ended in an error" in glance  # the synthetic log has failures


def test_box_statistics_cover_every_unit(report_db):
    # The cost and latency boxes are drawn from these, over all units (no sample).
    import numpy as np

    from aigw_lab.analysis import unit_frame, unit_spread

    spread = unit_spread(report_db, experiment_id="older").set_index(["target", "metric"])
    units = unit_frame(report_db, "older")
    for target, rows in units.groupby("target"):
        for metric, values in (
            ("latency_ms", rows.loc[rows.status == "ok", "latency_ms"]),
            ("cost_usd", rows.loc[rows.spent_usd > 0, "spent_usd"]),
        ):
            got = spread.loc[(target, metric)]
            assert got["n"] == len(values)
            expected = np.percentile(values.to_numpy(dtype=float), [5, 25, 50, 75, 95])
            stats = [got[k] for k in ("p05", "q1", "median", "q3", "p95")]
            assert stats == pytest.approx(expected)
            assert got["mean"] == pytest.approx(values.mean())


def test_every_pair_with_missing_items_matches_paired_comparison(report_db):
    # The synthetic log has failed units: some items lack a value for some target, so
    # each pair is compared on its common items, as paired_comparison does.
    pairs = pairwise_comparisons(report_db, experiment_id="latest")
    assert (pairs.n_items < 25).any()  # the incomplete case is exercised
    for (a, b), group in pairs.groupby(["target_a", "target_b"]):
        alone = paired_comparison(report_db, a, b, experiment_id="latest").set_index("metric")
        for row in group.itertuples():
            theirs = alone.loc[row.metric]
            assert row.n_items == theirs.n_items
            assert row.diff == pytest.approx(theirs["diff"])
            assert (row.wins, row.ties, row.losses) == (theirs.wins, theirs.ties, theirs.losses)
            assert row.ci_low <= row.diff <= row.ci_high


def test_adding_a_target_leaves_the_other_pairs_intervals_alone(run_db):
    names = sorted(target_summary(run_db)["target"])
    three = pairwise_comparisons(run_db, targets=names[:3])
    four = pairwise_comparisons(run_db, targets=names)
    kept = four[four.target_a.isin(names[:3]) & four.target_b.isin(names[:3])]
    assert kept.reset_index(drop=True).equals(three)


def test_repetitions_and_logs_without_experiments_are_said_so(report_db, tmp_path):
    # "older" has two repetitions per item: the browser says what its cells show.
    older = write_report(report_db, tmp_path / "o.html", experiment_id="older").read_text()
    assert _json_block(older, "items-data")["repetitions"] == 2
    assert "the answer shown is the first repetition" in older
    latest = write_report(report_db, tmp_path / "l.html", experiment_id="latest").read_text()
    assert "the answer shown is the first repetition" not in latest


def test_a_log_without_experiments_describes_itself(tmp_path):
    from datetime import UTC, datetime

    from aigw_lab.store import CallLog, CallRecord

    with CallLog(tmp_path / "plain.duckdb") as log:
        log.append_many(
            CallRecord(
                call_id=f"c{i}",
                trace_id=f"t{i}",
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                provider_name="sim-openai",
                request_model="sim-nano",
                latency_ms=100.0,
                cost_usd=0.001,
            )
            for i in range(3)
        )
    page = write_report(tmp_path / "plain.duckdb", tmp_path / "r.html").read_text()
    assert "No experiment: every call in the log, 3 of them" in page
    assert "(id None)" not in page


def test_hashed_bodies_show_as_not_logged(tmp_path):
    # A log kept with bodies = "hash" holds digests: the browser must not show them as text.
    import json as json_module
    from datetime import UTC, datetime

    from aigw_lab.store import CallLog, CallRecord
    from aigw_lab.store.redact import BodyPolicy

    with CallLog(tmp_path / "hashed.duckdb", bodies=BodyPolicy(mode="hash")) as log:
        log.append_many(
            CallRecord(
                call_id=f"c{t}",
                trace_id=f"t{t}",
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                provider_name="sim-openai",
                request_model="sim-nano",
                request_json=json_module.dumps(
                    {"messages": [{"role": "user", "content": "secret prompt"}]}
                ),
                response_text="secret answer",
                cost_usd=0.001,
                latency_ms=10.0,
                experiment_id="e",
                item_id="i1",
                target=target,
                repetition=0,
            )
            for t, target in enumerate(("a", "b"))
        )
    page = write_report(tmp_path / "hashed.duckdb", tmp_path / "r.html").read_text()
    assert "secret" not in page and "sha256:" not in page
    item = _json_block(page, "items-data")["items"][0]
    assert item["prompt"] is None and item["prompt_note"] == "(prompt not logged: bodies = hash)"
    assert [c["answer"] for c in item["cells"]] == ["(answer not logged: bodies = hash)"] * 2


def test_a_free_target_is_named_not_silently_dropped_from_the_log_axis(tmp_path):
    db = write_experiment_log(
        tmp_path / "free.duckdb",
        items=6,
        targets=("free-model", "paid-model"),
        answer=lambda i, t: "x",
        prompt=lambda i: f"q{i}",
        category=lambda i: "c",
        cost=lambda i, t: 0.0 if t == 0 else 0.00003,
    )
    page = write_report(db, tmp_path / "r.html").read_text()
    assert "Not drawn (they cost nothing, and a log axis has no zero): free-model." in page
    figure = _json_block(page, "chart-quality-vs-cost-data")
    assert [trace.get("name") for trace in figure["data"]] == ["paid-model (simulated)"]
    # One cost value still gets two dollar ticks around it.
    assert len(figure["layout"]["xaxis"]["ticktext"]) >= 2


def test_other_scorers_are_named_with_the_flag_that_picks_them(run_db, tmp_path):
    import shutil

    from aigw_lab.store import CallLog

    db = tmp_path / "two-scorers.duckdb"
    shutil.copyfile(run_db, db)
    with CallLog(db) as log:  # a second scorer over the same calls
        log.execute(
            "INSERT INTO scores SELECT * REPLACE ('length<ok>' AS scorer, 0.5 AS value) FROM scores"
        )
    page = write_report(db, tmp_path / "r.html", scorer="auto").read_text()
    note = page[page.index('id="other-scorers"') :]
    assert note.startswith('id="other-scorers">This experiment is also scored by ')
    assert "<code>length&lt;ok&gt;</code>" in note.split("</p>")[0]
    assert "aigw-lab report --scorer NAME" in note.split("</p>")[0]
    single = write_report(run_db, tmp_path / "one.html").read_text()
    assert 'id="other-scorers"' not in single
