"""What every scorer is: `Scorer`, which grades one response to one dataset item, and `Score`,
what it returns (defined in `aigw_lab.types`, so the store records scores without importing
the scorers; this module re-exports it).

A score's ``value`` is on the scorer's own scale, stated by its ``scale`` (``(0, 1)`` for the
pass/fail scorers, ``(1, 10)`` for a judge's grade): the analysis compares targets under one
scorer at a time, never mixes scales. ``None`` means the scorer could not score (the judge's
answer could not be parsed, say): it is stored, and left out of means, not counted as 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from aigw_lab.types import Score

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.types import ChatResponse

__all__ = ["Score", "Scorer"]


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
