"""The setting for a false-hit budget: on a user's labelled pairs, the most
permissive semantic-cache setting whose false-hit rate stays within a budget with 95%
confidence.

    choice = setting_for_false_hit_budget(load_labelled_pairs("pairs.jsonl"), embedder,
                                          budget=0.05)
    choice.chosen        # a BudgetSetting, or None when no setting meets the budget
    print(choice.explain())

Every setting (threshold x verification on or off, when the installed cache has a
verification stage) is measured end to end through a real `SemanticCache`
(`aigw_lab.evaluation.cache_runs.served`). A setting *meets* the budget when the upper end of
the Wilson 95% interval of its false-hit rate is at most the budget, not merely its point
estimate: with few pairs that differ, no setting can, and the answer says so and how many
such pairs would be needed. Among those that meet it, the chosen one has the highest recall
(ties: the lower false-hit upper bound, then verification off, then the higher threshold).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

from aigw_lab.errors import ConfigError
from aigw_lab.evaluation.cache_runs import (
    GRID,
    CacheVariant,
    cache_variants,
    overall_rates,
    precomputed,
    rate_table,
    served,
)
from aigw_lab.evaluation.pairs import LabelledPair, Rate
from aigw_lab.gateway.semantic_cache import SemanticCache

if TYPE_CHECKING:
    from aigw_lab.embeddings import Embedder

__all__ = [
    "BudgetChoice",
    "BudgetSetting",
    "budget_variants",
    "pairs_needed",
    "setting_for_false_hit_budget",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetSetting:
    """One setting measured on the user's pairs: ``threshold``, ``variant`` (its name) and
    whether verification was on; ``false_hits`` (served among the pairs that differ) and
    ``recall`` (served among the pairs that are the same), each a `Rate` with its
    interval; ``by_category``: the served rate of each category of pairs (a false-hit rate
    for pairs that differ, a recall for the others); ``config``: the variant's
    ``[semantic_cache]`` lines beyond the threshold."""

    threshold: float
    variant: str
    verifier: bool
    false_hits: Rate
    recall: Rate
    by_category: tuple[tuple[str, bool, Rate], ...] = ()
    config: tuple[str, ...] = ()

    def meets(self, budget: float) -> bool:
        """Whether the false-hit rate's 95% upper bound is within ``budget``."""
        return self.false_hits.n > 0 and self.false_hits.high <= budget


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetChoice:
    """What `setting_for_false_hit_budget` found: the ``budget``, the ``chosen`` setting
    (None: none meets it), every setting measured (``settings``, in the order tried), and
    ``reason``: one plain sentence saying why."""

    budget: float
    chosen: BudgetSetting | None
    settings: tuple[BudgetSetting, ...]
    reason: str

    def toml(self, *, model: str | None = None) -> str:
        """The ``[semantic_cache]`` lines that apply the chosen setting (empty when none
        was chosen); ``model``: the embedding model measured with, when not the default."""
        if self.chosen is None:
            return ""
        lines = ["[semantic_cache]"]
        if model is not None:
            lines.append(f"model = {json.dumps(model)}")
        lines += [f"threshold = {self.chosen.threshold:g}", *self.chosen.config]
        return "\n".join(lines)

    def explain(self) -> str:
        """The table of settings and the decision, as plain text for a terminal."""
        lines = [
            f"{'threshold':>9}  {'variant':<9} {'false hits [95% CI] (n)':<34} "
            f"{'recall [95% CI] (n)':<34} budget"
        ]
        for s in self.settings:
            verdict = "meets" if s.meets(self.budget) else "-"
            if s is self.chosen:
                verdict += "  <- chosen"
            lines.append(
                f"{s.threshold:>9.2f}  {s.variant:<9} {str(s.false_hits):<34} "
                f"{str(s.recall):<34} {verdict}"
            )
        lines.append(self.reason)
        shown = self.chosen or min(self.settings, key=lambda s: s.false_hits.high, default=None)
        if shown is not None and len(shown.by_category) > 2:
            what = "chosen" if shown is self.chosen else "strictest"
            lines.append(
                f"\nBy category, the {what} setting (threshold {shown.threshold:g}, "
                f"{shown.variant}):"
            )
            for category, same, rate in shown.by_category:
                label = "recall" if same else "false hits"
                lines.append(f"  {category:<20} {label:<10} {rate}")
        return "\n".join(lines)


def pairs_needed(budget: float, confidence: float = 0.95) -> int:
    """The fewest pairs that differ whose Wilson upper bound, with no false hit at all,
    is within ``budget``: below it no setting can be shown to meet the budget."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    # With 0 successes the Wilson upper bound is z^2 / (n + z^2).
    return max(1, math.ceil(z * z * (1 - budget) / budget - 1e-9))


def budget_variants(cache_class: type = SemanticCache) -> list[CacheVariant]:
    """The variants a budget chooses between: the guards with verification off and, when
    the installed cache has a verification stage, on (cosine alone is never safer)."""
    return [v for v in cache_variants(cache_class) if v.name != "cosine"]


def setting_for_false_hit_budget(
    pairs: Sequence[LabelledPair],
    embedder: Embedder,
    *,
    budget: float = 0.05,
    thresholds: Sequence[float] = GRID,
    variants: Sequence[CacheVariant] | None = None,
    cache_class: Callable[..., SemanticCache] = SemanticCache,
) -> BudgetChoice:
    """The most permissive setting whose false-hit rate's Wilson 95% upper bound is within
    ``budget`` on ``pairs`` (see the module docstring); ``variants`` default to
    `budget_variants`. Pairs must include some that differ (``same=False``) and some that
    are the same; a `ConfigError` says which are missing."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < 1:
        raise ConfigError(
            f"false-hit budget {budget!r} is invalid",
            hint="give a rate between 0 and 1, e.g. 0.05 for 5%",
        )
    if not thresholds or any(
        isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1 for t in thresholds
    ):
        raise ConfigError(
            f"thresholds {list(thresholds)!r} are invalid",
            hint="give cosine similarities in (0, 1], e.g. 0.85 0.9 0.95",
        )
    different = sum(not p.same for p in pairs)
    same = len(pairs) - different
    if not different or not same:
        missing = (
            "same=false (pairs that need different answers)"
            if not different
            else ("same=true (pairs that may share an answer)")
        )
        raise ConfigError(
            f"the labelled pairs have none with {missing}: a false-hit rate and a recall need both",
            hint="add labelled pairs of both kinds",
        )
    variants = list(budget_variants(cache_class) if variants is None else variants)
    embedder = precomputed(embedder, [t for p in pairs for t in (p.a, p.b)])
    settings = []
    for variant in variants:
        for threshold in sorted(set(float(t) for t in thresholds)):
            hit = served(pairs, embedder, variant, threshold, cache_class=cache_class)
            rates = overall_rates(pairs, hit)
            settings.append(
                BudgetSetting(
                    threshold=threshold,
                    variant=variant.name,
                    verifier=variant.verifier,
                    false_hits=rates["false_hits"],
                    recall=rates["recall"],
                    config=variant.config,
                    by_category=tuple(
                        (str(row["group"]), bool(row["same"]), row["rate"])
                        for row in rate_table(pairs, hit)
                    ),
                )
            )
    return _choose(settings, budget, different)


def _choose(settings: list[BudgetSetting], budget: float, different: int) -> BudgetChoice:
    meeting = [s for s in settings if s.meets(budget)]
    if not meeting:
        needed = pairs_needed(budget)
        if different < needed:
            reason = (
                f"No setting meets a false-hit budget of {budget:g}: with {different} pairs "
                f"that differ, even zero false hits leave a 95% upper bound above it; "
                f"label at least {needed} such pairs."
            )
        else:
            best = min(settings, key=lambda s: s.false_hits.high)
            reason = (
                f"No setting meets a false-hit budget of {budget:g}: the lowest 95% upper "
                f"bound is {best.false_hits.high:.3f} (threshold {best.threshold:g}, "
                f"{best.variant}); raise the budget or use a stricter cache."
            )
        return BudgetChoice(budget=budget, chosen=None, settings=tuple(settings), reason=reason)
    chosen = max(
        meeting,
        key=lambda s: (s.recall.rate, -s.false_hits.high, not s.verifier, s.threshold),
    )
    reason = (
        f"Chosen: threshold {chosen.threshold:g}, {chosen.variant} "
        f"(verification {'on' if chosen.verifier else 'off'}): false hits {chosen.false_hits}, "
        f"95% upper bound within the budget {budget:g}; recall {chosen.recall}."
    )
    return BudgetChoice(budget=budget, chosen=chosen, settings=tuple(settings), reason=reason)
