"""What every scorer is: `Scorer`, which grades one response to one dataset item, and `Score`,
what it returns.

A score's ``value`` is on the scorer's own scale, stated by its ``scale`` (``(0, 1)`` for the
pass/fail scorers, ``(1, 10)`` for a judge's grade): the analysis compares targets under one
scorer at a time, never mixes scales. ``None`` means the scorer could not score (the judge's
answer could not be parsed, say): it is stored, and left out of means, not counted as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.types import ChatResponse

__all__ = ["Score", "Scorer"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Score:
    """One scorer's verdict on one response.

    ``label`` is a short categorical verdict when there is one (``"correct"``, ``"A"``,
    ``"invalid_json"``); ``comment`` free text (a judge's rationale); ``details`` anything else
    worth keeping (JSON-serialisable). ``judge_trace_id`` links an LLM judge's own logged
    calls. ``kind`` is where the score came from: ``"scorer"``, ``"judge"``, ``"recorded"``
    or ``"feedback"``.
    """

    scorer: str
    value: float | None
    # The rest by name only: label, comment and judge_trace_id are all optional strings, so
    # a positional call that skipped one would shift the others silently.
    _: KW_ONLY
    label: str | None = None
    comment: str | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    judge_trace_id: str | None = None
    kind: str = "scorer"


class Scorer:
    """Base class of scorers: override `score` (pure, synchronous) or, for scorers that make
    calls of their own such as an LLM judge, `ascore`.

    ``name`` is the scorer's name in the ``scores`` table and in the analysis (unique within
    an experiment); ``scale`` is the range of its values.
    """

    name: str = "scorer"
    scale: ClassVar[tuple[float, float]] = (0.0, 1.0)
    kind: ClassVar[str] = "scorer"

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        """Grade ``response``, the answer a target gave to ``item``."""
        raise NotImplementedError(f"{type(self).__name__} implements neither score nor ascore")

    async def ascore(self, item: DatasetItem, response: ChatResponse) -> Score:
        """`score` for async callers (the experiment runner always calls this one)."""
        return self.score(item, response)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
