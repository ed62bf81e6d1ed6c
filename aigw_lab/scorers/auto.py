"""`AutoScorer`: the right scorer for each item, chosen by its answer type.

Mixed datasets need a different comparison per task: the final number for arithmetic, the
option letter for multiple choice, fields for extraction. The auto scorer reads each item's
``metadata["answer_type"]`` (the bundled datasets' field), else its category, and
delegates; its scores carry the name ``"auto"`` (or the one given) with the scorer actually
used in ``details["via"]``.

| answer type | category | scorer |
|---|---|---|
| ``number`` | ``arithmetic`` | `NumericMatch` |
| ``short_text`` / ``text`` | ``factual_qa`` | `Contains` (reference or an alias, whole words) |
| ``choice`` | ``multiple_choice`` | `ChoiceMatch` |
| ``label`` | ``classification`` | `LabelMatch` |
| ``json`` | ``extraction`` | `JsonMatch` |
| ``summary`` | ``summarisation`` | `KeyPoints` |
| anything else | | `ExactMatch` |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aigw_lab.scorers.base import Score, Scorer
from aigw_lab.scorers.structured import JsonMatch
from aigw_lab.scorers.text import (
    ChoiceMatch,
    Contains,
    ExactMatch,
    KeyPoints,
    LabelMatch,
    NumericMatch,
)

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.types import ChatResponse

__all__ = ["AutoScorer", "auto_scorer", "ANSWER_TYPES"]

# One instance of each, shared: they hold no per-item state.
_BY_TYPE: Mapping[str, Scorer] = {
    "number": NumericMatch(),
    "short_text": Contains(),
    "text": Contains(),
    "choice": ChoiceMatch(),
    "label": LabelMatch(),
    "json": JsonMatch(),
    "summary": KeyPoints(),
}
_TYPE_OF_CATEGORY: Mapping[str, str] = {
    "arithmetic": "number",
    "factual_qa": "short_text",
    "multiple_choice": "choice",
    "classification": "label",
    "extraction": "json",
    "summarisation": "summary",
}
_FALLBACK = ExactMatch()

#: The answer types `auto_scorer` knows.
ANSWER_TYPES: tuple[str, ...] = tuple(_BY_TYPE)


def auto_scorer(item: DatasetItem) -> Scorer:
    """The scorer for ``item``: by ``metadata["answer_type"]``, else by category, else
    `ExactMatch` (see the module doc's table)."""
    answer_type = item.metadata.get("answer_type")
    if answer_type is None and item.category is not None:
        answer_type = _TYPE_OF_CATEGORY.get(item.category)
    if answer_type is None and isinstance(item.reference, Mapping):
        answer_type = "json"
    return _BY_TYPE.get(str(answer_type), _FALLBACK)


class AutoScorer(Scorer):
    """Scores every item with `auto_scorer`'s pick; pass/fail, so the scale is 0-1."""

    def __init__(self, *, name: str = "auto") -> None:
        self.name = name

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        chosen = auto_scorer(item)
        inner = chosen.score(item, response)
        details = {**inner.details, "via": chosen.name}
        return Score(
            self.name,
            inner.value,
            label=inner.label,
            comment=inner.comment,
            details=details,
            judge_trace_id=None,
            kind="scorer",
        )
