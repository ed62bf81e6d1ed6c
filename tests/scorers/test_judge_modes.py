"""The judge's scoring in both modes. It is written once for asyncio
(`aigw_lab/scorers/_async/judging.py`) and the blocking version is generated from it, so
each outcome here is checked through `score`/`compare` and `ascore`/`acompare` alike."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aigw_lab.datasets import bundled_dataset
from aigw_lab.errors import ProviderServerError
from aigw_lab.gateway import Gateway
from aigw_lab.providers.base import Price
from aigw_lab.scorers import JudgeScorer, PairwiseJudge
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from aigw_lab.types import ChatRequest

from .conftest import make_response

MODES = ("sync", "async")
PRICES = {"judge/j": Price(1.0, 2.0)}


def _score(judge: JudgeScorer, mode: str, item, answer: str):
    if mode == "sync":
        return judge.score(item, make_response(answer))
    return asyncio.run(judge.ascore(item, make_response(answer)))


def _compare(judge: JudgeScorer, mode: str, item, answer: str, baseline: str | None):
    if mode == "sync":
        return judge.compare(item, answer, baseline, judged_call_id="c-1")
    return asyncio.run(judge.acompare(item, answer, baseline, judged_call_id="c-1"))


@pytest.mark.parametrize("mode", MODES)
def test_a_single_grade_unparsed_and_failed_in_both_modes(tmp_path, mode):
    mock = MockProvider("judge", default="Rating: [[6]]")
    mock.enqueue("The answer looks fine to me.", ProviderServerError("boom", provider="judge"))
    item = bundled_dataset()["arith-001"]
    with Gateway([mock], log=tmp_path / "c.duckdb", prices=PRICES) as gateway:
        judge = JudgeScorer(gateway, "judge/j")
        unparsed = _score(judge, mode, item, "64")
        failed = _score(judge, mode, item, "64")
        graded = _score(judge, mode, item, "64")
        rows = gateway.query("SELECT count(*) AS n FROM calls WHERE tags_json LIKE '%judge%'")
    assert (unparsed.value, unparsed.label) == (None, "unparsed")
    assert unparsed.comment == "The answer looks fine to me."
    assert (failed.value, failed.label) == (None, "judge_error")
    assert failed.details["error_type"] == "server_error" and "boom" in failed.comment
    assert graded.value == 6 and graded.judge_trace_id is not None
    assert graded.details["judge_cost_usd"] > 0
    assert int(rows.n[0]) == 3  # each judge call logged once, the failed one included


def _prefers_good(request: ChatRequest) -> str:
    """A judge that prefers the answer reading GOOD, wherever it stands."""
    prompt = request.messages[-1].text
    return "[[A]]" if prompt.index("GOOD") < prompt.index("BAD") else "[[B]]"


@pytest.mark.parametrize("mode", MODES)
def test_a_pairwise_comparison_in_both_modes(tmp_path, mode):
    judge_provider = FunctionProvider(_prefers_good, "judge")
    item = bundled_dataset()["qa-001"]
    with Gateway([judge_provider], log=tmp_path / "c.duckdb", prices=PRICES) as gateway:
        judge = PairwiseJudge(gateway, "judge/j", baseline={item.id: "BAD"})
        win = _score(judge, mode, item, "GOOD")
        loss = _compare(judge, mode, item, "BAD", "GOOD")
        tie = _compare(judge, mode, item, "same", " same ")
        missing = _compare(judge, mode, item, "GOOD", None)
        calls = len(judge_provider.requests)
    assert (win.value, win.label, win.details["consistent"]) == (1.0, "win", True)
    assert win.details["verdicts"] == ["A", "B"]
    assert len(win.details["judge_trace_ids"]) == 2 and win.details["judge_cost_usd"] > 0
    assert (loss.value, loss.label) == (0.0, "loss")
    assert (tie.value, tie.label, tie.details) == (0.5, "tie", {"identical": True})
    assert (missing.value, missing.label) == (None, "no_baseline")
    assert calls == 4  # two per judged comparison; none for the tie or the missing baseline


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_pairwise_call_scores_a_judge_error_in_both_modes(tmp_path, mode):
    mock = MockProvider("judge", default="[[A]]")
    mock.enqueue(ProviderServerError("boom", provider="judge"))
    item = bundled_dataset()["qa-001"]
    with Gateway([mock], log=tmp_path / "c.duckdb", prices=PRICES) as gateway:
        judge = PairwiseJudge(gateway, "judge/j", baseline={item.id: "BAD"})
        failed = _score(judge, mode, item, "GOOD")
    assert (failed.value, failed.label) == (None, "judge_error")


def test_the_two_pairwise_calls_run_concurrently_only_when_awaited(tmp_path):
    # Each judge call waits until both have started (or a short while): awaited, both are in
    # flight together; blocking, the second starts only after the first returned.
    started: list[str] = []
    both_in = threading.Event()
    lock = threading.Lock()

    def judge_fn(request: ChatRequest) -> str:
        with lock:
            started.append("")
            if len(started) % 2 == 0:
                both_in.set()
        return "[[C]]"

    seen: list[bool] = []

    class Watching(FunctionProvider):
        async def achat(self, request: ChatRequest):  # type: ignore[override]
            answer = self._answer(request)
            judge_fn(request)
            for _ in range(2000):  # let the other call start, if it runs concurrently
                if both_in.is_set():
                    break
                await asyncio.sleep(0.001)
            seen.append(both_in.is_set())
            return answer

        def chat(self, request: ChatRequest):  # type: ignore[override]
            judge_fn(request)
            seen.append(both_in.is_set())
            return self._answer(request)

    provider = Watching(lambda r: "[[C]]", "judge")
    item = bundled_dataset()["qa-001"]
    with Gateway([provider], log=tmp_path / "c.duckdb", prices=PRICES) as gateway:
        judge = PairwiseJudge(gateway, "judge/j", baseline={item.id: "BAD"})
        assert judge.compare(item, "GOOD", "BAD").label == "tie"
        assert seen == [False, True]  # in turn: the first saw only itself
        seen.clear()
        started.clear()
        both_in.clear()
        assert asyncio.run(judge.acompare(item, "GOOD", "BAD")).label == "tie"
        assert seen == [True, True]  # together: each saw the other start


def test_the_judges_scoring_is_the_generated_functions():
    # A hand-written method shadowing one of them would escape the unasync check.
    from aigw_lab.scorers._async import judging as awaited
    from aigw_lab.scorers._sync import judging as blocking

    for cls in (JudgeScorer, PairwiseJudge):
        assert (cls.score, cls.compare, cls._ask) == (
            blocking.score,
            blocking.compare,
            blocking.ask,
        )
        assert (cls.ascore, cls.acompare, cls._aask) == (
            awaited.ascore,
            awaited.acompare,
            awaited.aask,
        )
