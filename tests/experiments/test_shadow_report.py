"""Scoring shadow traffic (`aigw_lab.experiments.shadow_report`) on the seeded simulated
fleet, where which model answers better is known (docs/simulated_fleet.md, "Quality"): a
candidate known better wins, one known worse loses, with intervals that say so."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from aigw_lab import Gateway, Price
from aigw_lab.cli.main import main
from aigw_lab.datasets import bundled_dataset
from aigw_lab.errors import ConfigError, ProviderServerError
from aigw_lab.experiments.shadow_report import shadow_pairs, shadow_report, summarise
from aigw_lab.gateway import Shadow
from aigw_lab.store import CallLog

ITEMS = 60
# The module's logs are built once (per worker) and shared by its tests.
pytestmark = pytest.mark.xdist_group("shadow_report")


def shadowed_log(path, live: str, candidate: str, *, faults=None) -> None:
    """Send ``ITEMS`` bundled prompts to ``live``, every one shadowed to ``candidate``."""
    shadow = Shadow(candidate, share=1.0, budget_usd=10.0, max_in_flight=256, rng=random.Random(0))
    fleet = Gateway.simulated_fleet(
        seed=0, time_scale=0.0, faults=faults, log=str(path), shadow=shadow
    )
    with fleet as gw:
        for item in bundled_dataset().head(ITEMS):
            try:
                gw.chat(live, item.prompt, system=item.system, max_tokens=300)
            except ProviderServerError:
                assert faults  # only the fault test asks for failures


@pytest.fixture(scope="module")
def better(tmp_path_factory):
    path = tmp_path_factory.mktemp("better") / "calls.duckdb"
    shadowed_log(path, "sim-openai/sim-nano", "sim-anthropic/sim-sonnetish")
    return path


@pytest.fixture(scope="module")
def worse(tmp_path_factory):
    path = tmp_path_factory.mktemp("worse") / "calls.duckdb"
    shadowed_log(path, "sim-openai/sim-large", "sim-openai/sim-nano")
    return path


def test_pairs_join_each_live_call_to_its_shadow(better):
    with CallLog(better) as log:
        pairs = shadow_pairs(log)
    assert len(pairs) == ITEMS and pairs["live_call_id"].is_unique
    assert set(pairs["live_target"]) == {"sim-openai/sim-nano"}
    assert set(pairs["shadow_target"]) == {"sim-anthropic/sim-sonnetish"}
    assert (pairs["live_status"] == "ok").all() and (pairs["shadow_status"] == "ok").all()


def test_a_better_candidate_wins_and_a_worse_one_loses(better, worse):
    with CallLog(better) as log:
        up = shadow_report(log, scorer="auto", dataset=bundled_dataset())
    with CallLog(worse) as log:
        down = shadow_report(log, scorer="auto", dataset=bundled_dataset())
    assert up.n_scored == down.n_scored == ITEMS
    # sim-sonnetish is right more often than sim-nano on every category; sim-nano less
    # often than sim-large: the net win rate's interval sits on the known side of 0.5.
    assert up.net.low > 0.5 and up.win.count > up.loss.count
    assert down.net.high < 0.5 and down.loss.count > down.win.count
    # sim-sonnetish costs more per call than sim-nano; sim-nano less than sim-large.
    assert up.cost_delta_usd.low > 0 and down.cost_delta_usd.high < 0
    assert up.simulated and "SIMULATED" in up.summary()
    for report in (up, down):
        assert report.win.count + report.tie.count + report.loss.count == report.n_scored
        assert report.win.low <= report.win.share <= report.win.high


def test_scores_are_written_linked_to_both_calls_and_reused(better):
    with CallLog(better) as log:
        first = shadow_report(log, scorer="auto", dataset=bundled_dataset())
        count = "SELECT count(*), count(DISTINCT call_id) FROM scores WHERE scorer = 'auto'"
        written = log.execute(count)[0]
        again = shadow_report(log, scorer="auto", dataset=bundled_dataset())
        assert log.execute(count)[0] == written  # reused, not scored again
    # One score per call, live and shadow (whichever test of this module scored first).
    assert written == (2 * ITEMS, 2 * ITEMS)
    assert again.pairs["outcome"].tolist() == first.pairs["outcome"].tolist()


def test_without_references_a_reference_scorer_leaves_pairs_unscored(better):
    with CallLog(better) as log:
        report = shadow_report(log, scorer="exact", write=False, reuse=False)
    assert report.n_scored == 0 and report.unscored == ITEMS


def test_a_pairwise_judge_prefers_the_better_candidate(better):
    with CallLog(better) as log:
        judge = Gateway.simulated_fleet(seed=1, time_scale=0.0, log=log)
        report = shadow_report(log, judge="sim-openai/sim-large", gateway=judge)
        judge.close()
        judged = log.execute(
            "SELECT count(*) FROM scores s JOIN calls c USING (call_id) "
            "WHERE s.scorer = 'shadow_judge' AND c.shadow_of IS NOT NULL"
        )[0][0]
    assert report.scorer == "shadow_judge" and judged == report.n_pairs == ITEMS
    assert report.win.count > report.loss.count and report.net.mean > 0.5


def test_failed_shadow_calls_are_counted_unscored(tmp_path):
    path = tmp_path / "calls.duckdb"
    shadowed_log(path, "sim-openai/sim-nano", "sim-openai/sim-large", faults={"server_error": 0.3})
    with CallLog(path) as log:
        pairs = shadow_pairs(log)
        report = shadow_report(log, scorer="auto", dataset=bundled_dataset(), write=False)
    failed = int((pairs["shadow_status"] != "ok").sum() + (pairs["live_status"] != "ok").sum())
    assert failed > 0 and report.unscored >= int((pairs["shadow_status"] != "ok").sum())
    assert report.n_scored + report.unscored == report.n_pairs


def test_wilson_intervals_and_counts_of_a_known_frame():
    outcomes = ["win"] * 7 + ["loss"] * 2 + ["tie"] + [None] * 2
    frame = pd.DataFrame(
        {
            "outcome": outcomes,
            "scorer": "s",
            "live_cost_usd": 1.0,
            "shadow_cost_usd": 3.0,
            "live_latency_ms": 10.0,
            "shadow_latency_ms": 4.0,
            "live_target": "a/x",
            "shadow_target": "b/y",
            "live_simulated": False,
            "shadow_simulated": False,
        }
    )
    report = summarise(frame)
    assert (report.n_pairs, report.n_scored, report.unscored) == (12, 10, 2)
    assert (report.win.count, report.tie.count, report.loss.count) == (7, 1, 2)
    assert report.win.low == pytest.approx(0.3968, abs=1e-4)
    assert report.win.high == pytest.approx(0.8922, abs=1e-4)
    assert report.net.mean == pytest.approx(0.75)
    assert report.cost_delta_usd.mean == 2.0 and report.latency_delta_ms.mean == -6.0
    tidy = report.frame()
    assert tidy.set_index("measure").loc["win_share", "value"] == pytest.approx(0.7)
    assert not report.simulated and "SIMULATED" not in report.summary()


def test_a_log_without_pairs_is_a_config_error(tmp_path):
    with CallLog(tmp_path / "empty.duckdb") as log, pytest.raises(ConfigError, match="no shadow"):
        shadow_report(log, scorer="auto")


def test_scorer_xor_judge():
    with CallLog(":memory:") as log, pytest.raises(ConfigError, match="a scorer or a judge"):
        from aigw_lab.experiments import score_shadow_pairs

        score_shadow_pairs(log, pd.DataFrame(), scorer="auto", judge="sim-openai/sim-large")


def test_cli_prints_the_report_and_json(better, capsys):
    code = main(["shadow", "report", "--db", str(better), "--dataset", "mixed_v1", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == ITEMS and out["net_win_rate"]["low"] > 0.5 and out["simulated"]
    assert main(["shadow", "report", "--db", str(better), "--judge", "sim-openai/sim-large"]) == 0
    text = capsys.readouterr().out
    assert "scorer shadow_judge" in text and "Wilson" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--db", "nowhere.duckdb"], "does not exist"),
        (["--dataset", "no-such-set"], "neither a bundled dataset"),
        (["--judge", "nowhere/m"], "not a model the gateway serves"),
    ],
)
def test_cli_mistakes_are_one_line(better, capsys, args, needle):
    if "--db" not in args:
        args = ["--db", str(better), *args]
    assert main(["shadow", "report", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and needle in err.splitlines()[0]


def test_references_match_by_the_live_calls_item_id(tmp_path):
    from aigw_lab.datasets import Dataset
    from aigw_lab.testing.fakes import FunctionProvider

    dataset = Dataset.from_records(
        "sums", [{"id": f"s{i}", "prompt": f"{i} + {i} = ?", "reference": 2 * i} for i in range(4)]
    )
    shadow = Shadow("cand/m", share=1.0, budget_usd=1.0, rng=random.Random(0))
    providers = [
        FunctionProvider(lambda r: str(2 * int(r.messages[-1].text.split()[-1])), "live"),
        FunctionProvider(lambda r: "7", "cand"),
    ]
    prices = {"cand/m": Price(1.0, 1.0), "live/m": Price(1.0, 1.0)}
    path = tmp_path / "calls.duckdb"
    with Gateway(providers, log=str(path), prices=prices, shadow=shadow) as gw:
        for i in range(4):
            # The prompt differs from the item's; the experiment coordinates name the item.
            metadata = {"aigw_experiment": {"item_id": f"s{i}", "target": "live/m"}}
            gw.chat("live/m", f"double {i}", metadata=metadata)
    with CallLog(path) as log:
        report = shadow_report(log, scorer="numeric", dataset=dataset)
    assert list(report.pairs["item_id"]) == ["s0", "s1", "s2", "s3"]
    assert list(report.pairs["live_score"]) == [1.0, 1.0, 1.0, 1.0]
    assert list(report.pairs["outcome"]) == ["loss"] * 4  # "7" is never 2 * i
    assert report.loss.count == 4 and report.net.mean == 0.0 and report.net.high <= 0.5


def _frame(outcomes):
    return pd.DataFrame(
        {
            "outcome": outcomes,
            "scorer": "s",
            "live_cost_usd": 1.0,
            "shadow_cost_usd": 1.0,
            "live_latency_ms": 1.0,
            "shadow_latency_ms": 1.0,
            "live_target": "a/x",
            "shadow_target": "b/y",
            "live_simulated": True,
            "shadow_simulated": True,
        }
    )


def test_a_few_ties_do_not_claim_certainty():
    # The plain percentile bootstrap of five ties is [0.5, 0.5]; one win and one loss added
    # to the resampled pairs give it the width the data cannot rule out.
    report = summarise(_frame(["tie"] * 5))
    assert report.net.mean == 0.5 and report.net.low < 0.4 and report.net.high > 0.6
    report = summarise(_frame(["win"] * 3))
    assert report.net.mean == 1.0 and report.net.low < 0.7 and report.net.high == 1.0
    nothing = summarise(_frame([None, None]))
    assert nothing.n_scored == 0 and nothing.net.n == 0 and nothing.net.mean != nothing.net.mean
