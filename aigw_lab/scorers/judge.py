"""LLM-as-judge through the gateway itself: `JudgeScorer` grades one answer 1-10, and
`PairwiseJudge` compares an answer with a baseline's, asking twice with the answers swapped.

The judge's own calls go through the same `Gateway` as everything else, so they are logged,
priced and cached like any call, tagged ``{"aigw_role": "judge"}`` and carrying
``metadata["aigw_judge"]`` (the judged call's id, the item, the scorer). A score links them
by ``judge_trace_id`` and states the judge's cost in ``details["judge_cost_usd"]``.

    judge = JudgeScorer(gateway, "sim-openai/sim-large")
    score = judge.score(item, response)           # or: await judge.ascore(item, response)
    score.value, score.comment, score.judge_trace_id

An answer the judge's reply holds no grade for scores None (the reply is kept as the
comment): left out of means, never counted as a low grade. A judge call that fails scores
None too, with the error as the comment, so one failed judgement does not stop an
experiment. See docs/scorers.md for the prompts and the judges' known biases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from aigw_lab.errors import AigwError, ConfigError
from aigw_lab.scorers._async import judging as _async_judging
from aigw_lab.scorers._sync import judging as _sync_judging
from aigw_lab.scorers.base import Score, Scorer
from aigw_lab.scorers.judge_prompts import (
    pairwise_prompt,
    parse_rating,
    parse_verdict,
    single_prompt,
)
from aigw_lab.scorers.text import reference_text

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.gateway import Gateway
    from aigw_lab.store import CallLog
    from aigw_lab.types import ChatResponse

    #: What a pairwise judge compares with: item id -> answer text, or a function of the
    #: item returning the answer (None: no baseline answer for it), possibly async.
    Baseline = Mapping[str, str] | Callable[[DatasetItem], str | None | Awaitable[str | None]]
    #: A judge reply, its trace id and its logical cost.
    _Asked = tuple[ChatResponse, str | None, float | None]

__all__ = ["JudgeScorer", "PairwiseJudge", "JUDGE_TAG", "JUDGE_METADATA_KEY"]

#: Tags every judge call carries, so the log can tell judging from the work judged.
JUDGE_TAG: Mapping[str, str] = {"aigw_role": "judge"}
#: The request-metadata key linking a judge call to what it judged.
JUDGE_METADATA_KEY = "aigw_judge"


_VALUES = {"win": 1.0, "tie": 0.5, "loss": 0.0}
# A verdict in candidate-first order (candidate is A), and in swapped order (candidate is B).
_FIRST = {"A": "win", "B": "loss", "C": "tie"}
_SWAPPED = {"A": "loss", "B": "win", "C": "tie"}


class JudgeScorer(Scorer):
    """An LLM judge: ``model`` (a ``"provider/model"`` address on ``gateway``) grades
    answers.

    ``mode="single"`` grades one answer 1-10 (MT-Bench's single-answer grading);
    ``mode="pairwise"`` compares it with ``baseline``'s answer to the same item (see
    `PairwiseJudge`). ``reference``: show the judge the item's reference answer when it
    has one (reference-guided grading; far more reliable on maths and facts). ``rubric``
    adds criteria to the judge's instructions. The judge is asked at ``temperature`` 0 by
    default, so its grades repeat (and a gateway cache can serve them).
    """

    kind = "judge"

    def __init__(
        self,
        gateway: Gateway,
        model: str,
        *,
        mode: Literal["single", "pairwise"] = "single",
        rubric: str | None = None,
        reference: bool = True,
        baseline: Baseline | None = None,
        name: str = "judge",
        temperature: float = 0.0,
        max_tokens: int | None = 512,
    ) -> None:
        if mode not in ("single", "pairwise"):
            raise ConfigError(f"judge mode {mode!r} is unknown", hint='use "single" or "pairwise"')
        if mode == "pairwise" and baseline is None:
            raise ConfigError(
                "a pairwise judge needs a baseline to compare with",
                hint="pass baseline={item_id: answer} or a function, or build it with "
                "PairwiseJudge.from_log(...)",
            )
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(
                f"judge model {model!r} is not a model address",
                hint='address it as "provider/model", e.g. "sim-openai/sim-large"',
            )
        self.gateway = gateway
        self.model = model
        self.mode = mode
        self.rubric = rubric
        self.reference = reference
        self.baseline = baseline
        self.name = name
        self.temperature = temperature
        self.max_tokens = max_tokens
        # Per instance: a win rate (0-1) is not on the 1-10 scale of single grades.
        self.scale = (0.0, 1.0) if mode == "pairwise" else (1.0, 10.0)  # type: ignore[misc]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, model={self.model!r}, mode={self.mode!r})"
        )

    # --- scoring ---------------------------------------------------------------------

    # Written once for asyncio (`scorers/_async/judging.py`), the blocking twins generated
    # from it; taken as methods (their first parameter is the judge).
    score = _sync_judging.score
    ascore = _async_judging.ascore
    compare = _sync_judging.compare
    acompare = _async_judging.acompare

    # --- prompts and verdicts --------------------------------------------------------

    def _reference(self, item: DatasetItem) -> str | None:
        if not self.reference or item.reference is None:
            return None
        return reference_text(item.reference)

    def _single_prompt(self, item: DatasetItem, response: ChatResponse) -> tuple[str, str]:
        return single_prompt(
            item.prompt, response.text, reference=self._reference(item), rubric=self.rubric
        )

    def _pair_prompts(
        self, item: DatasetItem, answer: str, baseline: str
    ) -> tuple[tuple[str, str], tuple[str, str]]:
        reference = self._reference(item)
        return (
            pairwise_prompt(item.prompt, answer, baseline, reference=reference, rubric=self.rubric),
            pairwise_prompt(item.prompt, baseline, answer, reference=reference, rubric=self.rubric),
        )

    def _graded(self, reply: ChatResponse, trace_id: str | None, cost: float | None) -> Score:
        rating = parse_rating(reply.text)
        details = {
            "judge_model": self.model,
            "judge_cost_usd": cost,
            "judge_call_id": reply.call_id,
        }
        label = None if rating is not None else "unparsed"
        return Score(
            self.name,
            rating,
            label=label,
            comment=reply.text,
            details=details,
            judge_trace_id=trace_id,
            kind="judge",
        )

    def _settled(self, item: DatasetItem, answer: str, baseline: str | None) -> Score | None:
        """The score of a comparison that needs no judge, or None."""
        if baseline is None:
            comment = f"the baseline has no answer for item {item.id!r}"
            return Score(self.name, None, label="no_baseline", comment=comment, kind="judge")
        if answer.strip() == baseline.strip():
            return Score(
                self.name,
                0.5,
                label="tie",
                comment="identical answers",
                details={"identical": True},
                judge_trace_id=None,
                kind="judge",
            )
        return None

    def _compared(self, asked_1: _Asked, asked_2: _Asked) -> Score:
        (reply_1, trace_1, cost_1), (reply_2, trace_2, cost_2) = asked_1, asked_2
        verdict_1, verdict_2 = parse_verdict(reply_1.text), parse_verdict(reply_2.text)
        details: dict[str, Any] = {
            "judge_model": self.model,
            "judge_cost_usd": None if cost_1 is None or cost_2 is None else cost_1 + cost_2,
            "verdicts": [verdict_1, verdict_2],
            "judge_trace_ids": [trace_1, trace_2],
        }
        comment = f"[answer first]\n{reply_1.text}\n\n[baseline first]\n{reply_2.text}"
        if verdict_1 is None or verdict_2 is None:
            return Score(
                self.name,
                None,
                label="unparsed",
                comment=comment,
                details=details,
                judge_trace_id=trace_1,
                kind="judge",
            )
        outcome_1, outcome_2 = _FIRST[verdict_1], _SWAPPED[verdict_2]
        details["consistent"] = outcome_1 == outcome_2
        outcome = outcome_1 if outcome_1 == outcome_2 else "tie"
        return Score(
            self.name,
            _VALUES[outcome],
            label=outcome,
            comment=comment,
            details=details,
            judge_trace_id=trace_1,
            kind="judge",
        )

    def _failed(self, exc: AigwError) -> Score:
        details = {"judge_model": self.model, "error_type": exc.error_type}
        return Score(
            self.name,
            None,
            label="judge_error",
            comment=str(exc),
            details=details,
            judge_trace_id=None,
            kind="judge",
        )

    def _baseline_answer(self, item: DatasetItem) -> str | None | Awaitable[str | None]:
        baseline = self.baseline
        if isinstance(baseline, Mapping):
            return baseline.get(item.id)
        return baseline(item)  # type: ignore[misc]

    # --- the judge's calls -----------------------------------------------------------

    def _request(
        self,
        system: str,
        user: str,
        item: DatasetItem,
        judged_call_id: str | None,
        order: str | None,
    ) -> dict[str, Any]:
        link: dict[str, Any] = {
            "judged_call_id": judged_call_id,
            "item_id": item.id,
            "scorer": self.name,
            "mode": self.mode,
        }
        if order is not None:
            link["order"] = order
        return {
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "tags": JUDGE_TAG,
            "metadata": {JUDGE_METADATA_KEY: link},
        }

    _ask = _sync_judging.ask
    _aask = _async_judging.aask

    def _traced(self, reply: ChatResponse, cost: float | None) -> _Asked:
        # A trace id links the judge's logged rows: none without a log.
        trace_id = reply.trace_id if self.gateway.log is not None else None
        return reply, trace_id, cost


class PairwiseJudge(JudgeScorer):
    """A pairwise judge: each answer is compared with ``baseline``'s answer to the same item
    (an ``{item_id: answer}`` mapping, or a function of the item), twice, with the answers'
    positions swapped to cancel the judge's position bias. Scores are 1.0 win, 0.5 tie,
    0.0 loss from the judged answer's side; their mean is a win rate against the baseline.

    In an experiment, compare every target with one baseline target's answers: after the
    baseline's calls are in the log, build the judge with `from_log` and score the others.
    """

    def __init__(
        self,
        gateway: Gateway,
        model: str,
        *,
        baseline: Baseline,
        rubric: str | None = None,
        reference: bool = True,
        name: str = "pairwise_judge",
        temperature: float = 0.0,
        max_tokens: int | None = 512,
    ) -> None:
        super().__init__(
            gateway,
            model,
            mode="pairwise",
            rubric=rubric,
            reference=reference,
            baseline=baseline,
            name=name,
            temperature=temperature,
            max_tokens=max_tokens,
        )

    @classmethod
    def from_log(
        cls,
        gateway: Gateway,
        model: str,
        *,
        experiment_id: str,
        baseline_target: str,
        log: CallLog | None = None,
        **options: Any,
    ) -> PairwiseJudge:
        """A pairwise judge whose baseline is ``baseline_target``'s answers in experiment
        ``experiment_id``, read from ``log`` (default: the gateway's): per item, the
        latest successful answer of the lowest repetition."""
        log = log if log is not None else gateway.log
        if log is None:
            raise ConfigError(
                "PairwiseJudge.from_log needs a call log",
                hint="pass log=CallLog(...) or use a gateway that logs",
            )
        rows = log.execute(
            "SELECT item_id, response_text FROM calls "
            "WHERE experiment_id = ? AND target = ? AND status = 'ok' AND item_id IS NOT NULL "
            "QUALIFY row_number() OVER (PARTITION BY item_id "
            'ORDER BY repetition NULLS LAST, "timestamp" DESC, attempt DESC) = 1',
            [experiment_id, baseline_target],
        )
        if not rows:
            raise ConfigError(
                f"no successful answers of target {baseline_target!r} in experiment "
                f"{experiment_id!r}",
                hint="run the baseline target first, and check both names against the "
                "experiments table",
            )
        return cls(gateway, model, baseline={item: text or "" for item, text in rows}, **options)
