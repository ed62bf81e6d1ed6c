"""`build_scorer`: a scorer from its name or a dict, as experiment TOML files give them.

    build_scorer("numeric")
    build_scorer({"type": "regex", "pattern": "^[A-D]$", "name": "one_letter"})
    build_scorer({"type": "judge", "model": "sim-openai/sim-large"}, gateway=gw)

The dict's other keys are the scorer's keyword arguments; a ``Scorer`` instance passes
through unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aigw_lab.datasets.recordings import load_recording
from aigw_lab.errors import ConfigError
from aigw_lab.scorers.auto import AutoScorer
from aigw_lab.scorers.base import Scorer
from aigw_lab.scorers.custom import RecordedLabel
from aigw_lab.scorers.embedding import EmbeddingSimilarity
from aigw_lab.scorers.judge import JudgeScorer, PairwiseJudge
from aigw_lab.scorers.structured import JsonMatch
from aigw_lab.scorers.text import (
    ChoiceMatch,
    Contains,
    ExactMatch,
    KeyPoints,
    LabelMatch,
    NumericMatch,
    RegexMatch,
)

if TYPE_CHECKING:
    from aigw_lab.gateway import Gateway

__all__ = ["build_scorer", "SCORER_TYPES"]


def _classes() -> dict[str, Callable[..., Scorer]]:
    return {
        "exact": ExactMatch,
        "numeric": NumericMatch,
        "choice": ChoiceMatch,
        "label": LabelMatch,
        "regex": RegexMatch,
        "contains": Contains,
        "key_points": KeyPoints,
        "json": JsonMatch,
        "embedding": EmbeddingSimilarity,
        "judge": JudgeScorer,
        "pairwise_judge": PairwiseJudge,
        "recorded": recorded_label,
        "auto": AutoScorer,
    }


#: The names `build_scorer` knows.
SCORER_TYPES: tuple[str, ...] = (
    "exact",
    "numeric",
    "choice",
    "label",
    "regex",
    "contains",
    "key_points",
    "json",
    "embedding",
    "judge",
    "pairwise_judge",
    "recorded",
    "auto",
)


def recorded_label(recording: str, *, name: str = "recorded") -> Scorer:
    """`RecordedLabel` over a shared-data recording named as a ``kind = "replay"`` provider
    names it (``"routellm/gsm8k"``, ``"arena_bench"``, ...): the label a real judge or
    grader gave the recorded answer of the model that answered."""
    return RecordedLabel(load_recording(recording), name=name)


# Scorers that call models through a gateway take it as their first argument.
_NEEDS_GATEWAY = frozenset(("judge", "pairwise_judge"))


def build_scorer(
    spec: str | Mapping[str, Any] | Scorer, *, gateway: Gateway | None = None
) -> Scorer:
    """The scorer ``spec`` describes: a type name from `SCORER_TYPES`, or a dict with a
    ``"type"`` key and the scorer's keyword arguments. Judges need ``gateway``."""
    if isinstance(spec, Scorer):
        return spec
    if isinstance(spec, str):
        kind, options = spec, {}
    elif isinstance(spec, Mapping):
        options = dict(spec)
        kind = options.pop("type", None)
        if not isinstance(kind, str):
            raise ConfigError(
                f"scorer {dict(spec)!r} has no type",
                hint=f'add "type", one of: {", ".join(SCORER_TYPES)}',
            )
    else:
        raise ConfigError(
            f"a scorer spec is a {type(spec).__name__}",
            hint='give a name such as "exact" or a table such as {type = "regex", pattern = "..."}',
        )
    factory = _classes().get(kind)
    if factory is None:
        raise ConfigError(
            f"unknown scorer type {kind!r}", hint=f"use one of: {', '.join(SCORER_TYPES)}"
        )
    parameters = inspect.signature(factory).parameters
    accepted = [n for n in parameters if n not in ("self", "gateway")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"scorer {kind!r} has no option(s) {', '.join(unknown)}",
            hint=f"its options are: {', '.join(accepted)}",
        )
    missing = [
        n
        for n, p in parameters.items()
        if n not in ("self", "gateway")
        and p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and n not in options
    ]
    if missing:
        raise ConfigError(
            f"scorer {kind!r} needs {', '.join(missing)}",
            hint=f'e.g. {{type = "{kind}", {missing[0]} = ...}}',
        )
    if kind in _NEEDS_GATEWAY:
        if gateway is None:
            raise ConfigError(
                f"scorer {kind!r} calls a model and needs a gateway",
                hint="pass gateway=... to build_scorer (experiments pass theirs)",
            )
        return factory(gateway, **options)
    return factory(**options)
