"""The LLM judge through a real Gateway over the simulated fleet, and its prompt parsers."""

from __future__ import annotations

import asyncio
import json

import pytest

from aigw_lab.datasets import bundled_dataset
from aigw_lab.errors import ConfigError, ProviderServerError
from aigw_lab.gateway import Gateway
from aigw_lab.providers.base import Price
from aigw_lab.scorers import JudgeScorer, PairwiseJudge
from aigw_lab.scorers.judge_prompts import (
    PAIRWISE_MARKER,
    SINGLE_MARKER,
    pairwise_prompt,
    parse_judge_prompt,
    parse_rating,
    parse_verdict,
    single_prompt,
)
from aigw_lab.testing.fakes import MockProvider

from .conftest import make_response

JUDGE = "sim-openai/sim-large"


def _text(value):
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@pytest.fixture
def gateway(tmp_path):
    with Gateway.simulated_fleet(time_scale=0, log=tmp_path / "calls.duckdb") as gw:
        yield gw


@pytest.fixture(scope="module")
def sample():
    return bundled_dataset().sample(24, seed=3)


def test_a_judge_call_is_logged_tagged_costed_and_linked(gateway):
    item = bundled_dataset()["arith-001"]
    answer = gateway.chat("sim-openai/sim-nano", item.prompt, temperature=0)
    score = JudgeScorer(gateway, JUDGE).score(item, answer)

    assert score.kind == "judge" and score.judge_trace_id is not None
    rows = gateway.query(
        "SELECT tags_json, metadata_json, cost_usd, simulated, request_model, response_text "
        "FROM calls WHERE trace_id = ?",
        [score.judge_trace_id],
    )
    assert len(rows) == 1
    row = rows.iloc[0]
    assert json.loads(row.tags_json) == {"aigw_role": "judge"}
    link = json.loads(row.metadata_json)["aigw_judge"]
    assert link == {
        "judged_call_id": answer.call_id,
        "item_id": "arith-001",
        "scorer": "judge",
        "mode": "single",
    }
    assert row.cost_usd > 0 and bool(row.simulated) and row.request_model == "sim-large"
    assert score.details["judge_cost_usd"] == pytest.approx(row.cost_usd)
    assert score.comment == row.response_text and "(simulated judge)" in score.comment
    assert score.value == parse_rating(row.response_text)


def test_the_judge_grades_right_answers_above_wrong_ones(gateway, sample):
    judge = JudgeScorer(gateway, JUDGE)
    right = [judge.score(i, make_response(_text(i.reference))).value for i in sample]
    wrong = [
        judge.score(i, make_response(_text(i.metadata["distractors"][0]))).value for i in sample
    ]
    assert None not in right and None not in wrong
    mean_right, mean_wrong = sum(right) / len(right), sum(wrong) / len(wrong)
    assert mean_right - mean_wrong > 4.0, (mean_right, mean_wrong)
    # Per item too, most of the time (a simulated judge errs like a real one sometimes).
    ordered = sum(r > w for r, w in zip(right, wrong, strict=True))
    assert ordered >= 0.8 * len(sample)


async def test_without_the_reference_in_the_prompt_grades_still_separate(gateway, sample):
    judge = JudgeScorer(gateway, JUDGE, reference=False, name="judge_noref")
    items = list(sample)[:10]
    right = await asyncio.gather(
        *(judge.ascore(i, make_response(_text(i.reference))) for i in items)
    )
    wrong = await asyncio.gather(
        *(judge.ascore(i, make_response(_text(i.metadata["distractors"][0]))) for i in items)
    )
    assert sum(s.value for s in right) > sum(s.value for s in wrong) + 3 * len(items)
    prompts = gateway.query(
        "SELECT request_json FROM calls WHERE json_extract_string(tags_json, '$.aigw_role') = 'judge'"
    )
    assert len(prompts) == 20
    assert not any("Reference Answer" in p for p in prompts.request_json)


def test_an_unparseable_judge_reply_scores_none_with_the_text(tmp_path):
    mock = MockProvider("mock", default="The answer looks fine to me.")
    prices = {"mock/judge": Price(1.0, 2.0)}
    with Gateway([mock], log=tmp_path / "c.duckdb", prices=prices) as gateway:
        item = bundled_dataset()["arith-001"]
        score = JudgeScorer(gateway, "mock/judge").score(item, make_response("64"))
        assert (score.value, score.label) == (None, "unparsed")
        assert score.comment == "The answer looks fine to me."
        assert score.judge_trace_id is not None
        # The prompt the judge saw: marker, question, reference, answer.
        sent = mock.requests[0].messages[-1].text
        assert sent.startswith(SINGLE_MARKER) and item.prompt in sent and "\n64\n" in sent

        mock.enqueue(ProviderServerError("boom", provider="mock"))
        failed = JudgeScorer(gateway, "mock/judge").score(item, make_response("64"))
        assert (failed.value, failed.label) == (None, "judge_error")
        assert "boom" in failed.comment and failed.details["error_type"] == "server_error"


def test_judge_configuration_errors(gateway):
    with pytest.raises(ConfigError, match="mode"):
        JudgeScorer(gateway, JUDGE, mode="triple")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="baseline"):
        JudgeScorer(gateway, JUDGE, mode="pairwise")
    with pytest.raises(ConfigError, match="provider/model"):
        JudgeScorer(gateway, "  ")


# --- pairwise ---------------------------------------------------------------------------


def test_pairwise_wins_loses_and_ties_with_swapped_positions(gateway, sample):
    items = list(sample)[:12]
    baseline = {i.id: _text(i.metadata["distractors"][0]) for i in items}
    judge = PairwiseJudge(gateway, JUDGE, baseline=baseline)
    wins = [judge.score(i, make_response(_text(i.reference))) for i in items]
    assert [s.label for s in wins].count("win") >= 10
    assert all(s.value in (0.0, 0.5, 1.0) for s in wins)
    assert judge.scale == (0.0, 1.0)
    first = wins[0]
    assert len(first.details["judge_trace_ids"]) == 2 and first.details["judge_cost_usd"] > 0
    orders = gateway.query(
        "SELECT json_extract_string(metadata_json, '$.aigw_judge.order') AS o FROM calls "
        "WHERE trace_id IN (?, ?)",
        first.details["judge_trace_ids"],
    )
    assert sorted(orders.o) == ["answer_first", "baseline_first"]

    losses = [judge.score(i, make_response(baseline[i.id] + " ")) for i in items[:1]]
    assert losses[0].label == "tie" and losses[0].details == {"identical": True}
    reverse = PairwiseJudge(gateway, JUDGE, baseline={i.id: _text(i.reference) for i in items})
    lost = [reverse.score(i, make_response(baseline[i.id])) for i in items]
    assert [s.label for s in lost].count("loss") >= 10
    missing = judge.score(bundled_dataset()["qa-001"], make_response("Au"))
    assert (missing.value, missing.label) == (None, "no_baseline")


def test_position_swap_cancels_a_weak_judges_position_bias(gateway, sample):
    """Two right answers in different words: a weak judge often prefers whichever comes
    first; asked in both orders, its verdicts disagree and the result is a tie."""
    items = [i for i in bundled_dataset() if i.category == "arithmetic"][:20]
    judge = PairwiseJudge(
        gateway,
        "sim-workers/sim-llamaish-8b",
        baseline={i.id: f"#### {i.reference}" for i in items},
    )
    scores = [judge.score(i, make_response(f"The answer is {i.reference}.")) for i in items]
    assert {s.label for s in scores} <= {"tie", "win", "loss"}
    biased = [s for s in scores if not s.details["consistent"]]
    assert biased, "the weak judge showed no position bias on this sample"
    assert all(s.label == "tie" for s in biased)
    # Only a preference for position A breaks the tie, never a judgement for B.
    assert all("A" in s.details["verdicts"] and "B" not in s.details["verdicts"] for s in biased)


async def test_pairwise_from_log_compares_with_a_baseline_target(gateway):
    items = [i for i in bundled_dataset() if i.category == "multiple_choice"][:6]
    for target in ("sim-openai/sim-nano", "sim-openai/sim-large"):
        for item in items:
            await gateway.achat(
                target,
                item.prompt,
                temperature=0,
                experiment_id="exp-1",
                metadata={
                    "aigw_experiment": {
                        "run_id": "r1",
                        "item_id": item.id,
                        "target": target,
                        "repetition": 0,
                    }
                },
            )
    judge = PairwiseJudge.from_log(
        gateway, JUDGE, experiment_id="exp-1", baseline_target="sim-openai/sim-nano"
    )
    nano_answers = gateway.query(
        "SELECT item_id, response_text FROM calls WHERE target = 'sim-openai/sim-nano'"
    )
    assert judge.baseline == dict(
        zip(nano_answers.item_id, nano_answers.response_text, strict=True)
    )
    score = await judge.ascore(items[0], make_response(judge.baseline[items[0].id]))
    assert score.label == "tie"
    with pytest.raises(ConfigError, match="no successful answers"):
        PairwiseJudge.from_log(gateway, JUDGE, experiment_id="exp-1", baseline_target="nobody")


async def test_an_async_baseline_function_is_awaited(gateway):
    item = bundled_dataset()["mc-001"]

    async def baseline(it):
        return "A"

    judge = PairwiseJudge(gateway, JUDGE, baseline=baseline)
    assert (await judge.ascore(item, make_response("B"))).label == "win"
    with pytest.raises(ConfigError, match="async"):
        judge.score(item, make_response("B"))


# --- prompts and parsers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ("Good answer. Rating: [[8]]", 8.0),
        ('Format: "[[rating]]". The answer is right. [[9]]', 9.0),
        ("[[ 7 ]]", 7.0),
        ("[[6/10]]", 6.0),
        ("Rating: 4", 4.0),
        ("I would give it 7/10.", 7.0),
        ("Score: 7.5", 7.5),
        ("Rating: [[11]]", None),
        ("Rating: [[0]]", None),
        ("Looks correct to me.", None),
    ],
)
def test_parse_rating(reply, rating):
    assert parse_rating(reply) == rating


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("[[A]]", "A"),
        ("Assistant B is more accurate. [[B]]", "B"),
        ("Both are equal: [[C]]", "C"),
        ("Final verdict: B", "B"),
        ("It is a tie.", "C"),
        ("Both have merits.", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_prompts_round_trip_through_the_parser():
    system, user = single_prompt("2+2?", "4", reference="4", rubric="Be strict.")
    assert "[[rating]]" in system and "Be strict." in system and "reference" in system
    parsed = parse_judge_prompt(user)
    assert (parsed.mode, parsed.question, parsed.reference, parsed.answers) == (
        "single",
        "2+2?",
        "4",
        ("4",),
    )
    _, user = pairwise_prompt("Q\nwith lines", "first", "second")
    parsed = parse_judge_prompt(user)
    assert user.startswith(PAIRWISE_MARKER)
    assert (parsed.mode, parsed.question, parsed.reference, parsed.answers) == (
        "pairwise",
        "Q\nwith lines",
        None,
        ("first", "second"),
    )
    assert parse_judge_prompt("What is 2+2?") is None


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_retried_judge_call_is_costed_over_its_whole_trace(tmp_path, mode):
    from aigw_lab.gateway import Retry

    mock = MockProvider("mock").enqueue(
        ProviderServerError("upstream hiccup", provider="mock", model="judge"), "Rating: [[7]]"
    )
    prices = {"mock/judge": Price(1.0, 2.0)}
    retry = Retry(max_attempts=2, base_delay=0.0)
    with Gateway([mock], log=tmp_path / "c.duckdb", prices=prices, middleware=[retry]) as gw:
        judge = JudgeScorer(gw, "mock/judge")
        item = bundled_dataset()["arith-001"]
        if mode == "sync":
            score = judge.score(item, make_response("64"))
        else:
            score = asyncio.run(judge.ascore(item, make_response("64")))
        rows = gw.query(
            "SELECT attempt, status, cost_usd FROM calls WHERE trace_id = ? ORDER BY attempt",
            [score.judge_trace_id],
        )
    assert score.value == 7
    assert rows.status.tolist() == ["error", "ok"]
    assert score.details["judge_cost_usd"] == pytest.approx(rows.cost_usd.sum())
