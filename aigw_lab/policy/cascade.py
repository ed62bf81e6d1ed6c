"""Cascades (FrugalGPT / AutoMix style): ask a cheap target first, keep its answer when a
scorer says it is good enough, else escalate to the next step.

    cascade = Cascade("frugal", [
        CascadeStep("sim-workers/sim-llamaish-8b", SelfConsistency(k=3), threshold=0.67),
        CascadeStep("sim-openai/sim-small", {"type": "json"}, threshold=1.0),
        CascadeStep("sim-anthropic/sim-sonnetish"),            # the last step always answers
    ])

A step's ``accept`` is any `aigw_lab.scorers.Scorer` (or its spec, built with
`build_scorer`), a callable ``(request, response) -> float``, or `SelfConsistency`, which
samples the step's target ``k - 1`` more times and scores the share of answers that agree
with the first. A scorer sees a `DatasetItem` made from the request, with no reference, so
use scorers that judge an answer on its own (format, regex, JSON, a verifier, a trained
confidence model).

Every call (each step's answer and each extra sample) goes through the gateway's ``send``,
so each is a logged, costed attempt under the one trace. The response returned is the
accepted step's, with ``cost_usd`` set to what the *whole* cascade cost (None when any part
has no known price); through a gateway its ``attempts`` already counts every call of the
trace.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aigw_lab.datasets.items import DatasetItem
from aigw_lab.errors import ConfigError
from aigw_lab.policy._async.chains import cascade_acall
from aigw_lab.policy._sync.chains import cascade_call
from aigw_lab.policy.base import (
    Policy,
    RouteDecision,
    check_name,
    check_target,
)
from aigw_lab.policy.rules import last_user_text, request_category
from aigw_lab.scorers import text as text_scorers
from aigw_lab.scorers.base import Score, Scorer
from aigw_lab.scorers.registry import build_scorer
from aigw_lab.types import ChatRequest, ChatResponse

__all__ = ["Cascade", "CascadeStep", "SelfConsistency", "request_item"]

AcceptFunction = Callable[[ChatRequest, ChatResponse], float]


def request_item(request: ChatRequest) -> Any:
    """The `DatasetItem` a scorer sees for ``request``: its last user message as the prompt,
    earlier turns as history, no reference."""
    prompt = last_user_text(request) or "(no user message)"
    history: list[Any] = []
    for message in request.messages:
        if message.role != "system":
            history.append(message)
    # The last user message is the prompt; what follows it (rare) stays in history.
    for i in range(len(history) - 1, -1, -1):
        if history[i].role == "user":
            del history[i]
            break
    metadata = {k: v for k, v in request.metadata.items() if isinstance(k, str)}
    return DatasetItem(
        id="request",
        prompt=prompt,
        category=request_category(request),
        system=request.system_text,
        history=tuple(history),
        metadata=metadata,
    )


class SelfConsistency(Scorer):
    """Accept a cheap answer when repeated samples agree with it: the step's target is asked
    ``k - 1`` more times (at ``temperature``, so the samples can differ) and the score is the
    share of all ``k`` answers equal to the first, compared after ``answer`` extraction:
    ``"text"`` (normalised text), ``"number"`` (the final number, GSM8K style) or
    ``"choice"`` (the option letter). Only usable as a cascade step's ``accept``: it needs
    the gateway to draw its samples."""

    name = "self_consistency"

    def __init__(self, k: int = 3, *, answer: str = "text", temperature: float = 0.7) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ConfigError(f"self-consistency k={k!r} is invalid", hint="use an integer >= 2")
        if answer not in ("text", "number", "choice"):
            raise ConfigError(
                f"self-consistency answer={answer!r} is invalid",
                hint='use "text", "number" or "choice"',
            )
        self.k = k
        self.answer = answer
        self.temperature = float(temperature)

    def extract(self, text: str) -> Any:
        """The part of an answer samples are compared on."""
        if self.answer == "number":
            return text_scorers.extract_number(text)
        if self.answer == "choice":
            return text_scorers.extract_choice(text)
        return text_scorers.normalise_text(text)

    def sample_request(self, request: ChatRequest) -> ChatRequest:
        """The request for the extra samples: the same, at the sampling temperature (a
        request that already samples keeps its own)."""
        if request.temperature:
            return request
        return replace(request, temperature=self.temperature)

    def agreement(self, first: ChatResponse, others: Sequence[ChatResponse]) -> float:
        """The share of all answers that agree with ``first`` (an unreadable first answer
        agrees with nothing)."""
        anchor = self.extract(first.text)
        if anchor is None:
            return 0.0
        same = 1 + sum(1 for r in others if self.extract(r.text) == anchor)
        return same / (1 + len(others))

    def score(self, item: Any, response: ChatResponse) -> Score:
        raise ConfigError(
            "SelfConsistency samples the model again, so it only works as a cascade step's accept",
            hint="use CascadeStep(target, SelfConsistency(k=3), threshold=0.67)",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "self_consistency",
            "k": self.k,
            "answer": self.answer,
            "temperature": self.temperature,
        }


@dataclass(frozen=True)
class CascadeStep:
    """One step: ask ``target``; keep its answer when ``accept`` scores it at least
    ``threshold``. The last step of a cascade has no ``accept`` and always answers.

    ``accept``: a `Scorer`, a scorer spec (``"json"``, ``{"type": "regex", ...}``), a
    `SelfConsistency`, or a callable ``(request, response) -> float`` (not saveable).
    """

    target: str
    accept: Scorer | AcceptFunction | Mapping[str, Any] | str | None = None
    threshold: float | None = None
    # The spec the scorer was built from, kept so the step can be saved.
    _spec: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_target(self.target, "cascade step")
        spec: Mapping[str, Any] | str | None = None
        accept = self.accept
        if isinstance(accept, (str, Mapping)):
            spec = accept
            accept = _scorer_from_spec(accept)
            object.__setattr__(self, "accept", accept)
        object.__setattr__(self, "_spec", spec)
        if accept is not None and self.threshold is None:
            raise ConfigError(
                f"cascade step {self.target}: an accept scorer needs a threshold",
                hint="e.g. CascadeStep(target, scorer, threshold=0.5)",
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target}
        if self.accept is None:
            return out
        spec: Any = self._spec
        if spec is None:
            to_dict = getattr(self.accept, "to_dict", None)
            spec = to_dict() if callable(to_dict) else None
        if spec is None:
            raise ConfigError(
                f"cascade step {self.target}: its accept ({self.accept!r}) cannot be saved",
                hint="use a scorer spec such as {'type': 'regex', ...} or SelfConsistency; "
                "Python callables and scorer objects without a spec only live in memory",
            )
        out["accept"] = {"scorer": spec if isinstance(spec, str) else dict(spec)}
        out["accept"]["threshold"] = self.threshold
        return out


def _scorer_from_spec(spec: Mapping[str, Any] | str) -> Scorer:
    if isinstance(spec, Mapping) and spec.get("type") == "self_consistency":
        options = {k: v for k, v in spec.items() if k != "type"}
        return SelfConsistency(**options)
    return build_scorer(spec)


def _step(value: CascadeStep | Mapping[str, Any], index: int) -> CascadeStep:
    if isinstance(value, CascadeStep):
        return value
    if not isinstance(value, Mapping) or "target" not in value:
        raise ConfigError(
            f"cascade step {index + 1} is {value!r}",
            hint='write steps as {"target": ..., "accept": {"scorer": ..., "threshold": T}}',
        )
    accept = value.get("accept")
    if accept is None:
        return CascadeStep(value["target"])
    if not isinstance(accept, Mapping) or "scorer" not in accept:
        raise ConfigError(
            f"cascade step {index + 1}: accept must be {{'scorer': SPEC, 'threshold': T}}"
        )
    return CascadeStep(value["target"], accept["scorer"], accept.get("threshold"))


def _total_cost(responses: Sequence[ChatResponse]) -> float | None:
    total = 0.0
    for response in responses:
        if response.cost_usd is None:
            return None
        total += response.cost_usd
    return total


class Cascade(Policy):
    """Ask each step's target in turn until one's answer is accepted (see the module doc)."""

    kind = "cascade"
    single_decision = False

    def __init__(self, name: str, steps: Sequence[CascadeStep | Mapping[str, Any]]) -> None:
        self.name = check_name(name)
        self.steps = tuple(_step(s, i) for i, s in enumerate(steps))
        if len(self.steps) < 2:
            raise ConfigError(
                f"cascade {name!r} needs at least two steps",
                hint="a cheap step with an accept scorer, then a step that always answers",
            )
        for i, step in enumerate(self.steps[:-1]):
            if step.accept is None:
                raise ConfigError(
                    f"cascade {name!r}: step {i + 1} ({step.target}) has no accept scorer, so "
                    "the steps after it could never run",
                    hint="give every step but the last an accept scorer and a threshold",
                )
        if self.steps[-1].accept is not None:
            raise ConfigError(
                f"cascade {name!r}: the last step ({self.steps[-1].target}) has an accept "
                "scorer, but there is nothing to escalate to",
                hint="drop its accept: the last step always answers",
            )

    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.target for s in self.steps))

    def decide(self, request: ChatRequest) -> RouteDecision:
        return RouteDecision(self.steps[0].target, "first cascade step")

    # --- scoring ------------------------------------------------------------------------

    def _score(self, step: CascadeStep, request: ChatRequest, response: ChatResponse) -> float:
        accept = step.accept
        if isinstance(accept, Scorer):
            value = accept.score(request_item(request), response).value
        else:
            value = accept(request, response)  # type: ignore[misc]
        return float("-inf") if value is None else float(value)

    async def _ascore(
        self, step: CascadeStep, request: ChatRequest, response: ChatResponse
    ) -> float:
        accept = step.accept
        if isinstance(accept, Scorer):
            value = (await accept.ascore(request_item(request), response)).value
        else:
            value = accept(request, response)  # type: ignore[misc]
            if inspect.isawaitable(value):
                value = await value
        return float("-inf") if value is None else float(value)

    # --- calling ------------------------------------------------------------------------

    # Written once (aigw_lab.policy._async.chains); the sync one is generated.
    call = cascade_call  # type: ignore[assignment]
    acall = cascade_acall  # type: ignore[assignment]

    @staticmethod
    def _self_consistency(step: CascadeStep) -> SelfConsistency | None:
        """The step's `SelfConsistency`, when it accepts by sampling again (else None)."""
        return step.accept if isinstance(step.accept, SelfConsistency) else None

    @staticmethod
    def _finish(response: ChatResponse, paid: list[ChatResponse]) -> ChatResponse:
        if len(paid) == 1:
            return response
        return replace(response, cost_usd=_total_cost(paid))

    # --- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None) -> Cascade:
        steps = spec.get("steps", ())
        if isinstance(steps, str) or not isinstance(steps, Sequence):
            raise ConfigError(f"cascade {spec.get('name')!r}: 'steps' must be a list")
        return cls(spec.get("name"), list(steps))  # type: ignore[arg-type]
