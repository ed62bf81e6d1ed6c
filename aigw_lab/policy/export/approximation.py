"""The closest policy a production gateway can express, and what the difference costs.

LiteLLM, Portkey and Cloudflare AI Gateway route by static rules: conditions on request
metadata, weighted splits, fallback chains. None of them can run a learned router on prompt
embeddings, a cascade (answer, score, escalate) or an adaptive split that moves traffic on
feedback. `closest_expressible` rewrites such a policy into one they can express:

- learned router -> a conditional on the request's ``category`` metadata fitted on an
  evaluation set (``method="category"``: the router's most frequent choice per category;
  ``"best-category"``: the best-scoring target per category), or a weighted split at the
  router's measured share of calls per target (``method="split"``; for two-model routing,
  the strong-call share);
- cascade -> the category conditional when an evaluation set is given, else a fallback chain
  of its steps (cheap first; escalation on errors only, never on a rejected answer);
- adaptive split -> a fixed split (equal weights, or all traffic to a declared winner);
- rules whose conditions the target cannot test (regex, keywords, lengths, capabilities;
  anything but a single ``category`` on LiteLLM) are dropped, so their requests fall through
  to the next rule or the default.

`ApproximationReport.loss` measures, on recorded outcomes (a DataFrame ``item_id, category,
model, score, cost_usd``: `RecordedDataset.outcomes` joined with item categories) and the
original policy's per-item decisions, the mean quality and cost per item of the original and
of the approximation. A split is scored by its expected value over its weights, so the
measure is exact and deterministic rather than one random draw.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from aigw_lab.errors import ConfigError
from aigw_lab.policy.export._intervals import paired_intervals

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Evaluation",
    "ApproximationLoss",
    "ApproximationReport",
    "Approximation",
    "closest_expressible",
    "measure_loss",
    "NATIVE_KINDS",
]

#: How far above chance (``ApproximationLoss.chance_agreement``) an approximation's decision
#: agreement must be for it not to count as a random split in effect.
CHANCE_MARGIN = 0.05

#: Policy kinds every target expresses directly.
NATIVE_KINDS = frozenset(("rules", "split", "fallback"))
#: Condition keys each target can test on a request (see each exporter's docstring).
CONDITION_KEYS: Mapping[str, frozenset[str]] = {
    "litellm": frozenset(("category",)),
    "portkey": frozenset(("category", "tags", "metadata")),
    "cloudflare": frozenset(("category", "tags", "metadata")),
}
_TARGETS = tuple(CONDITION_KEYS)

#: A policy's per-item decision: the address that answered, or every address called in
#: order (a cascade's escalations; all are costed, the last one's answer is scored).
Decision = str | Sequence[str]


@dataclass(frozen=True)
class Evaluation:
    """Recorded outcomes plus the original policy's decisions on the same items.

    ``outcomes`` has columns ``item_id, category, model, score, cost_usd`` (one row per item
    and model); ``decisions`` maps item ids to a `Decision`.
    """

    outcomes: pd.DataFrame
    decisions: Mapping[str, Decision]


@dataclass(frozen=True, slots=True)
class ApproximationLoss:
    """Mean quality and cost per item, original vs approximation, on ``items`` items.

    ``quality_delta`` and ``cost_delta`` are approximation minus original: a negative
    ``quality_delta`` is quality lost. ``agreement`` is the (expected) share of items on
    which the approximation calls the model that answered under the original policy.
    ``chance_agreement`` is the agreement an approximation blind to the prompt would reach
    with the same call shares (the sum over targets of its share times the original's): an
    ``agreement`` near it means the approximation is a random split in effect. The ``*_ci``
    fields are 95% bootstrap intervals over the items (paired: one resample for all).
    """

    items: int
    original_quality: float
    approx_quality: float
    quality_delta: float
    original_cost_usd: float
    approx_cost_usd: float
    cost_delta_usd: float
    agreement: float
    chance_agreement: float = math.nan
    quality_delta_ci: tuple[float, float] | None = None
    cost_delta_ci: tuple[float, float] | None = None
    agreement_ci: tuple[float, float] | None = None

    @property
    def near_chance(self) -> bool:
        """True when the approximation agrees with the policy barely more than a random
        split at the same call shares would (within `CHANCE_MARGIN`)."""
        return not self.agreement > self.chance_agreement + CHANCE_MARGIN

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["near_chance"] = self.near_chance
        return out


@dataclass(frozen=True, kw_only=True)
class ApproximationReport:
    """What was exported in place of the policy, and why."""

    policy: str
    kind: str
    target: str
    exact: bool
    method: str
    notes: tuple[str, ...] = ()
    loss: ApproximationLoss | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "kind": self.kind,
            "target": self.target,
            "exact": self.exact,
            "method": self.method,
            "notes": list(self.notes),
            "loss": None if self.loss is None else self.loss.to_dict(),
        }

    def summary_lines(self) -> list[str]:
        """Plain lines for an exported file's header comment."""
        head = "exact export" if self.exact else f"APPROXIMATION ({self.method})"
        lines = [f"policy {self.policy!r} ({self.kind}) -> {self.target}: {head}"]
        lines += list(self.notes)
        if self.loss is not None:
            loss = self.loss
            lines.append(
                f"measured on {loss.items} items: quality {loss.original_quality:.4f} -> "
                f"{loss.approx_quality:.4f} ({loss.quality_delta:+.4f}"
                f"{_interval(loss.quality_delta_ci, 4)}), cost/item "
                f"${loss.original_cost_usd:.6f} -> ${loss.approx_cost_usd:.6f} "
                f"({loss.cost_delta_usd:+.6f}{_interval(loss.cost_delta_ci, 6)}), "
                f"decision agreement {loss.agreement:.3f}"
                f"{_interval(loss.agreement_ci, 3, signed=False)} "
                f"(a random split at the same shares: {loss.chance_agreement:.3f})"
            )
        lines += self.warnings()
        return lines

    def warnings(self) -> list[str]:
        """Loud lines when the export no longer routes by the prompt: the approximation
        of a learned router or cascade is a random split, or agrees with the policy about
        as often as one would."""
        if self.exact or self.kind not in ("learned", "cascade"):
            return []
        if self.loss is not None and self.loss.near_chance:
            return [
                f"WARNING: the exported {self.method} agrees with the policy on "
                f"{self.loss.agreement:.3f} of the items, about what a random split at the same "
                f"shares reaches ({self.loss.chance_agreement:.3f}): in production it routes "
                "like a weighted coin, not like the learned policy"
            ]
        if self.method.startswith("split"):
            return [
                "WARNING: exported as a weighted random split: the target cannot run the "
                "router, so requests are routed by chance at the policy's call shares"
            ]
        return []


def _interval(ci: tuple[float, float] | None, digits: int, *, signed: bool = True) -> str:
    sign = "+" if signed else ""
    return "" if ci is None else f" [{ci[0]:{sign}.{digits}f}, {ci[1]:{sign}.{digits}f}]"


class Approximation(NamedTuple):
    """`closest_expressible`'s answer: the spec to export, the report, and the measure."""

    spec: dict[str, Any]
    report: ApproximationReport
    measure: Callable[[pd.DataFrame, Mapping[str, Decision]], ApproximationLoss]


def closest_expressible(
    spec: Mapping[str, Any],
    target: str,
    evaluation: Evaluation | None = None,
    *,
    method: str = "auto",
    strong_share: float | None = None,
) -> Approximation:
    """The policy dict ``target`` can express that comes closest to ``spec``.

    ``method`` picks the approximation of a learned router or cascade: ``"category"`` (fit
    the original's most frequent decision per category on ``evaluation``),
    ``"best-category"`` (the target with the best mean score per category, whatever its
    cost), ``"split"``
    (weights = the original's decision shares on ``evaluation``, or ``strong_share`` for a
    two-model router), or ``"auto"`` (category when ``evaluation`` has two or more
    categories, else split). With ``evaluation`` the report carries the measured loss.
    """
    if target not in CONDITION_KEYS:
        raise ConfigError(
            f"unknown export target {target!r}", hint=f"use one of: {', '.join(_TARGETS)}"
        )
    kind = spec.get("kind")
    name = str(spec.get("name", ""))
    notes: list[str] = []
    if kind in NATIVE_KINDS:
        exported, exact, how = _native(dict(spec), target, notes)
    elif kind == "adaptive":
        exported, exact, how = _adaptive(spec, notes), False, "fixed split"
    elif kind in ("learned", "cascade"):
        exported, how = _fit(spec, evaluation, method, strong_share, notes)
        exact = False
    else:
        raise ConfigError(
            f"cannot export policy kind {kind!r}",
            hint="export a rules, split, adaptive, fallback, cascade or learned policy dict",
        )

    def measure(outcomes: pd.DataFrame, decisions: Mapping[str, Decision]) -> ApproximationLoss:
        return measure_loss(exported, outcomes, decisions)

    loss = None
    if evaluation is not None:
        loss = measure(evaluation.outcomes, evaluation.decisions)
    report = ApproximationReport(
        policy=name,
        kind=str(kind),
        target=target,
        exact=exact,
        method=how,
        notes=tuple(notes),
        loss=loss,
    )
    return Approximation(exported, report, measure)


# --- per kind -------------------------------------------------------------------------------


def _native(spec: dict[str, Any], target: str, notes: list[str]) -> tuple[dict, bool, str]:
    if spec["kind"] == "split" and spec.get("sticky"):
        notes.append(
            f"sticky assignment per {spec['sticky']} is not exported: each request draws "
            "its target independently (same shares, no per-user consistency)"
        )
    if spec["kind"] != "rules":
        return spec, True, "native"
    allowed = CONDITION_KEYS[target]
    kept: list[dict[str, Any]] = []
    seen_categories: set[str] = set()
    for number, rule in enumerate(spec["rules"], start=1):
        when = rule.get("when", {})
        unsupported = sorted(set(when) - allowed)
        if target == "litellm" and not unsupported:
            # Tag routing matches one tag list per deployment: a category already claimed by
            # an earlier rule can never reach a later one (first match wins in aigw_lab).
            categories = set(_as_list(when.get("category")))
            if categories <= seen_categories:
                notes.append(f"rule {number} dropped: its categories are claimed by earlier rules")
                continue
            seen_categories |= categories
        if unsupported:
            notes.append(
                f"rule {number} dropped: {target} cannot test {', '.join(unsupported)}; "
                "its requests fall through to later rules or the default"
            )
            continue
        kept.append(rule)
    exact = len(kept) == len(spec["rules"])
    return {**spec, "rules": kept}, exact, "native" if exact else "rules dropped"


def _adaptive(spec: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    targets = list(spec["targets"])
    winner = (spec.get("state") or {}).get("winner")
    if winner in targets:
        weights = {t: (1.0 if t == winner else 0.0) for t in targets}
        notes.append(f"adaptive split has stopped on winner {winner!r}: all traffic to it")
    else:
        weights = dict.fromkeys(targets, 1.0)
        notes.append(
            "the adaptive split's feedback loop cannot run in the target: exported a fixed "
            "equal split; re-export once the adaptive policy has declared a winner"
        )
    return _split(spec["name"], weights)


def _fit(
    spec: Mapping[str, Any],
    evaluation: Evaluation | None,
    method: str,
    strong_share: float | None,
    notes: list[str],
) -> tuple[dict[str, Any], str]:
    kind = spec["kind"]
    targets = (
        [step["target"] for step in spec["steps"]] if kind == "cascade" else list(spec["targets"])
    )
    what = "a cascade (answer, score, escalate)" if kind == "cascade" else "a learned router"
    notes.append(f"{what} cannot run in a static gateway config")
    if method == "auto":
        categories = 0 if evaluation is None else evaluation.outcomes["category"].nunique()
        method = "category" if categories >= 2 else "split"
    if method in ("category", "best-category"):
        if evaluation is None:
            raise ConfigError(
                "method='category' needs an evaluation set to fit on",
                hint="pass evaluation=Evaluation(outcomes, decisions)",
            )
        notes.append(
            "fitted per request category on the evaluation set: each category goes to "
            + (
                "the target with the best mean recorded score there"
                if method == "best-category"
                else "the target the original policy chose most often there"
            )
        )
        fitted = _category_rules(spec["name"], targets, evaluation, best=method == "best-category")
        return fitted, "category conditional"
    if method != "split":
        raise ConfigError(
            f"unknown method {method!r}",
            hint="use 'auto', 'category', 'best-category' or 'split'",
        )
    if kind == "cascade" and evaluation is None:
        notes.append(
            "exported as a fallback chain of the cascade's steps: the first answers, later "
            "steps are tried only on errors (never on a rejected answer)"
        )
        return {"kind": "fallback", "name": spec["name"], "targets": targets}, "fallback chain"
    weights = _decision_shares(spec, targets, evaluation, strong_share)
    share_text = ", ".join(f"{t} {w:.3f}" for t, w in weights.items())
    notes.append(f"exported as a random split at the original's call shares: {share_text}")
    return _split(spec["name"], weights), "split at call shares"


def _decision_shares(
    spec: Mapping[str, Any],
    targets: list[str],
    evaluation: Evaluation | None,
    strong_share: float | None,
) -> dict[str, float]:
    if evaluation is not None:
        counts = Counter(_answering(d) for d in evaluation.decisions.values())
        total = sum(counts.values())
        if total:
            return {t: counts.get(t, 0) / total for t in targets}
    strong, weak = spec.get("strong"), spec.get("weak")
    if strong_share is not None and strong and weak:
        if not 0.0 <= strong_share <= 1.0:
            raise ConfigError(f"strong_share={strong_share} is not in [0, 1]")
        return {strong: strong_share, weak: 1.0 - strong_share}
    raise ConfigError(
        f"cannot size a split for policy {spec.get('name')!r} without its call shares",
        hint="pass evaluation=Evaluation(outcomes, decisions), or strong_share=... for a "
        "two-model router",
    )


def _category_rules(
    name: str, targets: list[str], evaluation: Evaluation, *, best: bool
) -> dict[str, Any]:
    """Rules on ``category`` (a rule per non-default target, listing its categories)."""
    order = {t: i for i, t in enumerate(targets)}
    chosen, default = (_best_per_category if best else _mimic_per_category)(
        targets, evaluation, order
    )
    by_target: dict[str, list[str]] = {}
    for category in sorted(chosen):
        if chosen[category] != default:
            by_target.setdefault(chosen[category], []).append(category)
    rules = [
        {"when": {"category": cats[0] if len(cats) == 1 else cats}, "target": t}
        for t, cats in sorted(by_target.items(), key=lambda kv: order.get(kv[0], len(order)))
    ]
    return {"kind": "rules", "name": name, "rules": rules, "default": default}


def _mimic_per_category(
    targets: list[str], evaluation: Evaluation, order: Mapping[str, int]
) -> tuple[dict[str, str], str]:
    """Per category, the original policy's most frequent decision; overall for the default."""
    frame = evaluation.outcomes[["item_id", "category"]].drop_duplicates("item_id")
    category_of = dict(
        zip(frame["item_id"].astype(str), frame["category"].astype(str), strict=True)
    )
    per_category: dict[str, Counter[str]] = {}
    overall: Counter[str] = Counter()
    for item_id, decision in evaluation.decisions.items():
        answering = _answering(decision)
        overall[answering] += 1
        category = category_of.get(str(item_id))
        if category is not None:
            per_category.setdefault(category, Counter())[answering] += 1
    if not overall:
        raise ConfigError("the evaluation set has no decisions to fit on")

    def top(counter: Counter[str]) -> str:
        # Most frequent; ties go to the policy's earlier target, so the fit is deterministic.
        return min(counter, key=lambda t: (-counter[t], order.get(t, len(order)), t))

    return {c: top(counts) for c, counts in per_category.items()}, top(overall)


def _best_per_category(
    targets: list[str], evaluation: Evaluation, order: Mapping[str, int]
) -> tuple[dict[str, str], str]:
    """Per category, the target with the best mean recorded score (ties: cheaper, then the
    policy's earlier target); the best overall for the default. Ignores cost otherwise."""
    frame = evaluation.outcomes.assign(category=evaluation.outcomes["category"].astype(str))
    models = list(dict.fromkeys(frame["model"]))
    column = {t: _model_for(t, models) for t in targets}

    def best(rows: pd.DataFrame) -> str:
        means = rows.groupby("model")[["score", "cost_usd"]].mean()

        def key(t: str) -> tuple[float, float, int]:
            if column[t] not in means.index:
                return (float("inf"), float("inf"), order[t])
            score, cost = means.loc[column[t], "score"], means.loc[column[t], "cost_usd"]
            return (
                -score if not _missing(score) else float("inf"),
                cost if not _missing(cost) else float("inf"),
                order[t],
            )

        return min(targets, key=key)

    per_category = {c: best(rows) for c, rows in frame.groupby("category", sort=True)}
    return per_category, best(frame)


def _split(name: str, weights: Mapping[str, float]) -> dict[str, Any]:
    return {
        "kind": "split",
        "name": name,
        "targets": [{"target": t, "weight": round(float(w), 6)} for t, w in weights.items()],
        "sticky": None,
        "seed": 0,
    }


# --- measuring ------------------------------------------------------------------------------


def measure_loss(
    exported: Mapping[str, Any],
    outcomes: pd.DataFrame,
    decisions: Mapping[str, Decision],
) -> ApproximationLoss:
    """Mean quality and cost per item of the original decisions vs the ``exported`` policy
    (rules, split or fallback dict), on the items of ``decisions`` with recorded outcomes.

    Rules are evaluated on the ``category`` column only (other metadata is not recorded, so
    conditions on it count as not matching); a split counts at its expected value.
    """
    frame = outcomes.assign(item_id=outcomes["item_id"].astype(str)).drop_duplicates(
        ["item_id", "model"]
    )
    score = frame.pivot(index="item_id", columns="model", values="score")
    cost = frame.pivot(index="item_id", columns="model", values="cost_usd")
    category = frame.drop_duplicates("item_id").set_index("item_id")["category"].astype(str)
    models = list(score.columns)

    def column(address: str) -> str:
        return _model_for(address, models)

    original_q: list[float] = []
    approx_q: list[float] = []
    original_c: list[float] = []
    approx_c: list[float] = []
    agreement: list[float] = []
    answered: list[str] = []
    mixes: Counter[str] = Counter()  # the approximation's summed call probabilities
    for item_id, decision in decisions.items():
        key = str(item_id)
        if key not in score.index:
            continue
        called = [decision] if isinstance(decision, str) else list(decision)
        mix = _exported_mix(exported, category.get(key))
        q_orig = score.at[key, column(called[-1])]
        q_mix = [score.at[key, column(t)] for t in mix]
        if _missing(q_orig) or any(_missing(q) for q in q_mix):
            continue  # paired comparison: skip items without every needed label
        original_q.append(float(q_orig))
        approx_q.append(sum(w * float(q) for w, q in zip(mix.values(), q_mix, strict=True)))
        original_c.append(sum(_cost(cost, key, column(t)) for t in called))
        approx_c.append(sum(w * _cost(cost, key, column(t)) for t, w in mix.items()))
        agreement.append(mix.get(called[-1], 0.0))
        answered.append(called[-1])
        mixes.update(mix)
    if not original_q:
        raise ConfigError(
            "no evaluation item has recorded outcomes for the policy's targets",
            hint="check that outcomes' item_id/model match the decisions and policy targets",
        )

    def mean(values: list[float]) -> float:
        known = [v for v in values if not math.isnan(v)]
        return sum(known) / len(known) if known else math.nan

    oq, aq, oc, ac = mean(original_q), mean(approx_q), mean(original_c), mean(approx_c)
    policy_share = Counter(answered)
    chance = sum(
        share * policy_share.get(target, 0) / len(answered) for target, share in mixes.items()
    ) / len(answered)
    q_ci, c_ci, a_ci = paired_intervals(
        [
            [a - o for a, o in zip(approx_q, original_q, strict=True)],
            [a - o for a, o in zip(approx_c, original_c, strict=True)],
            agreement,
        ]
    )
    return ApproximationLoss(
        items=len(original_q),
        original_quality=oq,
        approx_quality=aq,
        quality_delta=aq - oq,
        original_cost_usd=oc,
        approx_cost_usd=ac,
        cost_delta_usd=ac - oc,
        agreement=mean(agreement),
        chance_agreement=chance,
        quality_delta_ci=q_ci,
        cost_delta_ci=c_ci,
        agreement_ci=a_ci,
    )


def _exported_mix(spec: Mapping[str, Any], category: str | None) -> dict[str, float]:
    """Target -> probability under an exported (native) policy, for one item."""
    kind = spec["kind"]
    if kind == "fallback":
        return {spec["targets"][0]: 1.0}
    if kind == "split":
        total = sum(float(t["weight"]) for t in spec["targets"])
        mix: dict[str, float] = {}
        for entry in spec["targets"]:
            mix[entry["target"]] = mix.get(entry["target"], 0.0) + float(entry["weight"]) / total
        return mix
    for rule in spec["rules"]:
        if _category_matches(rule.get("when", {}), category):
            return {rule["target"]: 1.0}
    return {spec["default"]: 1.0}


def _category_matches(when: Mapping[str, Any], category: str | None) -> bool:
    if set(when) != {"category"} or category is None:
        return False
    return category in _as_list(when["category"])


def _model_for(address: str, models: list[str]) -> str:
    if address in models:
        return address
    bare = address.partition("/")[2]
    if bare in models:
        return bare
    raise ConfigError(
        f"no recorded outcomes for target {address!r}",
        hint=f"outcomes' model column must name it or its model part; it has {models}",
    )


def _cost(cost: pd.DataFrame, item_id: str, model: str) -> float:
    value = cost.at[item_id, model]
    return float("nan") if _missing(value) else float(value)


def _missing(value: Any) -> bool:
    return value is None or value != value  # NaN is the only value unequal to itself


def _answering(decision: Decision) -> str:
    return decision if isinstance(decision, str) else list(decision)[-1]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
