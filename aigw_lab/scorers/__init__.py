"""Quality scorers: pure checks (exact, numeric, choice, JSON, ...), embedding similarity, an
LLM judge that calls through the gateway, precomputed labels, and `build_scorer` to make any
of them from an experiment's configuration. See docs/scorers.md.

Names are imported lazily, so ``import aigw_lab.scorers`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Score": "aigw_lab.scorers.base",
    "Scorer": "aigw_lab.scorers.base",
    "ExactMatch": "aigw_lab.scorers.text",
    "NumericMatch": "aigw_lab.scorers.text",
    "ChoiceMatch": "aigw_lab.scorers.text",
    "LabelMatch": "aigw_lab.scorers.text",
    "RegexMatch": "aigw_lab.scorers.text",
    "Contains": "aigw_lab.scorers.text",
    "KeyPoints": "aigw_lab.scorers.text",
    "normalise_text": "aigw_lab.scorers.text",
    "extract_number": "aigw_lab.scorers.text",
    "extract_choice": "aigw_lab.scorers.text",
    "JsonMatch": "aigw_lab.scorers.structured",
    "extract_json": "aigw_lab.scorers.structured",
    "EmbeddingSimilarity": "aigw_lab.scorers.embedding",
    "FunctionScorer": "aigw_lab.scorers.custom",
    "RecordedLabel": "aigw_lab.scorers.custom",
    "JudgeScorer": "aigw_lab.scorers.judge",
    "PairwiseJudge": "aigw_lab.scorers.judge",
    "AutoScorer": "aigw_lab.scorers.auto",
    "auto_scorer": "aigw_lab.scorers.auto",
    "build_scorer": "aigw_lab.scorers.registry",
    "SCORER_TYPES": "aigw_lab.scorers.registry",
}

__all__ = [
    "Score",
    "Scorer",
    "ExactMatch",
    "NumericMatch",
    "ChoiceMatch",
    "LabelMatch",
    "RegexMatch",
    "Contains",
    "KeyPoints",
    "normalise_text",
    "extract_number",
    "extract_choice",
    "JsonMatch",
    "extract_json",
    "EmbeddingSimilarity",
    "FunctionScorer",
    "RecordedLabel",
    "JudgeScorer",
    "PairwiseJudge",
    "AutoScorer",
    "auto_scorer",
    "build_scorer",
    "SCORER_TYPES",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.scorers.auto import AutoScorer, auto_scorer
    from aigw_lab.scorers.base import Score, Scorer
    from aigw_lab.scorers.custom import FunctionScorer, RecordedLabel
    from aigw_lab.scorers.embedding import EmbeddingSimilarity
    from aigw_lab.scorers.judge import JudgeScorer, PairwiseJudge
    from aigw_lab.scorers.registry import SCORER_TYPES, build_scorer
    from aigw_lab.scorers.structured import JsonMatch, extract_json
    from aigw_lab.scorers.text import (
        ChoiceMatch,
        Contains,
        ExactMatch,
        KeyPoints,
        LabelMatch,
        NumericMatch,
        RegexMatch,
        extract_choice,
        extract_number,
        normalise_text,
    )
