"""Off-policy evaluation: how a candidate routing policy would have done, estimated from
calls logged under another policy that explored (`aigw_lab.policy.explore.Exploring`),
without deploying the candidate. Numeric only, no I/O: `aigw_lab.policy.ope_log` reads the
logged calls from a call log.

    data = logged_bandit_from_log(gw.log, scorer="exact", group_by="category")
    probs = candidate_probabilities(candidate, data.requests, data.targets)
    result = evaluate_policy(data, probs, seed=0)
    print(result.table())

Item i was logged with target ``a_i`` chosen with probability ``mu_i`` (its propensity),
reward ``r_i`` and cost ``c_i``; ``pi_i(a)`` is the candidate's probability of target
``a`` for the same request, and ``w_i = pi_i(a_i) / mu_i`` the importance weight.

- **naive**: the mean reward of logged calls where the candidate agrees (weighted by
  ``pi_i(a_i)``). Biased whenever the logging policy's choices depend on the request:
  shown for contrast.
- **dm** (direct method): the mean over items of ``sum_a pi_i(a) q(x_i, a)``, with ``q`` a
  reward model. Biased as far as the model is wrong.
- **ips**: ``mean(w_i r_i)``. Unbiased when every target the candidate may pick had a
  logging probability above 0; high variance when weights are large.
- **snips** (self-normalised): ``sum(w_i r_i) / sum(w_i)``. Slightly biased, usually far
  less variable.
- **dr** (doubly robust): ``mean(sum_a pi_i(a) q(x_i, a) + w_i (r_i - q(x_i, a_i)))``:
  unbiased when the propensities are right, whatever the model; exact when the model is.
  The reward model is cross-fitted: each item's prediction comes from a model fitted on
  the other folds (per-(group, target) means shrunk to the target's mean, or per-target
  means without groups), so an item's own reward never predicts itself.

The same estimators with the cost in place of the reward estimate the candidate's cost per
call. Intervals are percentile bootstraps over calls; the default reward model is refitted
on each draw, so the dm and dr intervals include the model's own noise.

Diagnostics: effective sample size ``(sum w)^2 / sum w^2`` (how many logged calls the
estimate is worth), the largest weight, the share of the total weight held by the top 1%
of weights, and support violations: candidate mass on targets whose logging probability
was 0 (known where the logging propensity was 1, or from a full logging matrix). With
violations, ips/snips/dr are biased (they cannot see what was never tried) and the result
says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aigw_lab.errors import ConfigError

__all__ = [
    "LoggedBandit",
    "Estimate",
    "OPEDiagnostics",
    "OPEResult",
    "ESTIMATORS",
    "evaluate_policy",
    "candidate_probabilities",
    "crossfit_group_means",
    "weight_diagnostics",
]

#: The estimators `evaluate_policy` reports, in table order.
ESTIMATORS = ("naive", "dm", "ips", "snips", "dr")


@dataclass(frozen=True, kw_only=True)
class LoggedBandit:
    """Logged calls as a contextual bandit: one row per client call.

    ``targets``: the action space, the column order of every (n, K) matrix. ``actions``:
    the index of each call's logged target; ``propensities``: the probability with which
    the logging policy chose it; ``rewards``, ``costs``: what it got and cost. ``groups``:
    a label per call for the reward model (a category, a subject), or None.
    ``logging_probabilities``: the logging policy's whole distribution per call, when known
    (makes support checks exact). ``requests`` and ``call_ids``: what the log holds, for
    `candidate_probabilities` and for tracing a row back (None for synthetic data).
    """

    targets: tuple[str, ...]
    actions: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    costs: np.ndarray | None = None
    groups: np.ndarray | None = None
    logging_probabilities: np.ndarray | None = None
    requests: tuple[Any, ...] | None = None
    call_ids: tuple[str, ...] | None = None
    #: Calls left out by the loader, by reason (no propensity, no score, ...).
    dropped: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.actions)
        k = len(self.targets)
        if k == 0:
            raise ConfigError("a logged bandit needs at least one target")
        for name in ("propensities", "rewards", "costs", "groups"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ConfigError(f"{name} has {len(value)} rows, actions {n}")
        if n and (np.min(self.actions) < 0 or np.max(self.actions) >= k):
            raise ConfigError("an action index is outside the targets")
        p = np.asarray(self.propensities, dtype=float)
        if n and (not np.all(np.isfinite(p)) or np.any(p <= 0) or np.any(p > 1 + 1e-9)):
            raise ConfigError(
                "logging propensities must be in (0, 1]",
                hint="drop calls logged without a propensity (the loader does)",
            )
        if self.logging_probabilities is not None and self.logging_probabilities.shape != (n, k):
            raise ConfigError(f"logging_probabilities must be ({n}, {k})")

    def __len__(self) -> int:
        return len(self.actions)


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """One estimator's value with its bootstrap 95% interval."""

    value: float
    low: float
    high: float

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


@dataclass(frozen=True, kw_only=True)
class OPEDiagnostics:
    """How far the logged calls can be trusted for this candidate (see the module doc)."""

    n: int
    ess: float
    max_weight: float
    top1_weight_share: float
    support_violations: int
    violation_mass: float
    agree_share: float

    @property
    def ess_share(self) -> float:
        return self.ess / self.n if self.n else 0.0

    def warnings(self) -> list[str]:
        """Plain-language reasons to distrust the estimates (empty when none)."""
        out = []
        if self.support_violations:
            out.append(
                f"{self.support_violations} calls: the candidate puts "
                f"{self.violation_mass:.1%} of its mass on targets the logging policy never "
                "tried there; ips/snips/dr are biased (explore more, or add a floor)"
            )
        if self.n and self.ess < max(30.0, 0.05 * self.n):
            out.append(
                f"effective sample size {self.ess:.0f} of {self.n}: the estimate rests on few "
                "calls; intervals may be too narrow"
            )
        if self.top1_weight_share > 0.5:
            out.append(
                f"the top 1% of weights hold {self.top1_weight_share:.0%} of the weight: "
                "a few calls decide the estimate"
            )
        return out


@dataclass(frozen=True, kw_only=True)
class OPEResult:
    """`evaluate_policy`'s answer: per estimator, quality (and cost when logged), with
    diagnostics."""

    quality: Mapping[str, Estimate]
    cost: Mapping[str, Estimate] | None
    diagnostics: OPEDiagnostics
    n_boot: int

    def rows(self) -> list[dict[str, Any]]:
        """One dict per estimator (JSON-ready)."""
        out = []
        for name in ESTIMATORS:
            q = self.quality[name]
            row: dict[str, Any] = {
                "estimator": name,
                "quality": q.value,
                "quality_low": q.low,
                "quality_high": q.high,
            }
            if self.cost is not None:
                c = self.cost[name]
                row.update(cost=c.value, cost_low=c.low, cost_high=c.high)
            out.append(row)
        return out

    def table(self) -> str:
        """A plain-text table with the diagnostics and any warnings under it."""
        d = self.diagnostics
        head = f"{'estimator':<10}{'quality [95% CI]':>30}"
        if self.cost is not None:
            head += f"{'cost/call USD [95% CI]':>40}"
        lines = [head]
        for row in self.rows():
            line = (
                f"{row['estimator']:<10}{row['quality']:>10.4f} "
                f"[{row['quality_low']:.4f}, {row['quality_high']:.4f}]"
            )
            if self.cost is not None:
                line += f"{row['cost']:>14.6f} [{row['cost_low']:.6f}, {row['cost_high']:.6f}]"
            lines.append(line)
        lines.append(
            f"n={d.n} ESS={d.ess:.1f} ({d.ess_share:.1%}) max weight={d.max_weight:.2f} "
            f"top-1% weight share={d.top1_weight_share:.1%} support violations="
            f"{d.support_violations} agree={d.agree_share:.1%} bootstrap={self.n_boot}"
        )
        lines.extend(f"warning: {w}" for w in d.warnings())
        return "\n".join(lines)


def _check_candidate(data: LoggedBandit, candidate: Any) -> np.ndarray:
    pi = np.asarray(candidate, dtype=float)
    n, k = len(data), len(data.targets)
    if pi.shape != (n, k):
        raise ConfigError(
            f"candidate probabilities must be ({n}, {k}) (calls x targets), got {pi.shape}",
            hint="build them with candidate_probabilities(policy, data.requests, data.targets)",
        )
    if not np.all(np.isfinite(pi)) or np.any(pi < 0):
        raise ConfigError("candidate probabilities must be finite and >= 0")
    sums = pi.sum(axis=1)
    if n and np.max(np.abs(sums - 1.0)) > 1e-6:
        raise ConfigError(
            "each row of candidate probabilities must sum to 1",
            hint="a deterministic candidate is a one-hot row",
        )
    return pi


def weight_diagnostics(data: LoggedBandit, candidate: Any) -> OPEDiagnostics:
    """ESS, weights and support checks of ``candidate`` (n x K) on ``data``."""
    pi = _check_candidate(data, candidate)
    n = len(data)
    rows = np.arange(n)
    w = pi[rows, data.actions] / data.propensities
    if n == 0:
        return OPEDiagnostics(
            n=0,
            ess=0.0,
            max_weight=0.0,
            top1_weight_share=0.0,
            support_violations=0,
            violation_mass=0.0,
            agree_share=0.0,
        )
    total = float(w.sum())
    squares = float((w * w).sum())
    ess = total * total / squares if squares > 0 else 0.0
    top = max(1, math.ceil(0.01 * n))
    top_share = float(np.sort(w)[-top:].sum() / total) if total > 0 else 0.0
    if data.logging_probabilities is not None:
        unsupported = data.logging_probabilities <= 0
    else:
        # Only a propensity of 1 tells which other targets had probability 0 (all of them).
        unsupported = np.zeros_like(pi, dtype=bool)
        certain = data.propensities >= 1.0 - 1e-12
        unsupported[certain] = True
        unsupported[rows[certain], data.actions[certain]] = False
    mass = (pi * unsupported).sum(axis=1)
    return OPEDiagnostics(
        n=n,
        ess=ess,
        max_weight=float(w.max()),
        top1_weight_share=top_share,
        support_violations=int((mass > 1e-12).sum()),
        violation_mass=float(mass.mean()),
        agree_share=float(pi[rows, data.actions].mean()),
    )


def crossfit_group_means(
    data: LoggedBandit,
    values: np.ndarray | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    shrink: float = 2.0,
) -> np.ndarray:
    """A cross-fitted model of ``values`` (default: the rewards) per (group, target): an
    (n, K) matrix whose row i comes from the calls outside item i's fold. Each cell is the
    mean of the training calls of that group sent to that target, shrunk toward the
    target's mean by ``shrink`` pseudo-calls; a target never tried in training gets the
    training mean of all calls. Without groups it is per-target means."""
    y = np.asarray(data.rewards if values is None else values, dtype=float)
    n = len(data)
    if n == 0:
        return np.zeros((0, len(data.targets)))
    return _GroupMeans(data, folds=folds, seed=seed, shrink=shrink).fit(np.arange(n), y)


class _GroupMeans:
    """`crossfit_group_means` over any resample of the calls: a bootstrap draw refits it
    on its own calls (a duplicated call stays in its original fold, so no call ever
    predicts a copy of itself), so dm and dr intervals include the model's own noise."""

    def __init__(self, data: LoggedBandit, *, folds: int, seed: int, shrink: float) -> None:
        n = len(data)
        groups = data.groups if data.groups is not None else np.zeros(n, dtype=int)
        _, self.group = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        self.g = int(self.group.max()) + 1 if n else 1
        self.k = len(data.targets)
        self.folds = max(2, min(folds, n))
        self.fold = np.random.default_rng(seed).permutation(n) % self.folds
        self.actions = data.actions
        self.shrink = shrink

    def weighted_terms(
        self, counts: np.ndarray, y: np.ndarray, pi: np.ndarray, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For B resamples given as call counts (B x n), the sums over each resample of
        the dm terms ``sum_a pi(a) q(a)`` and of ``w q(a_logged)``, with ``q`` refitted
        (cross-fitted, shrunk group means) on each resample: (B,) and (B,). Matrix
        products instead of a loop over resamples."""
        k, g = self.k, self.g
        n = len(y)
        rows = np.arange(n)
        cell_hot = np.zeros((n, g * k))
        cell_hot[rows, self.group * k + self.actions] = 1.0
        action_hot = np.zeros((n, k))
        action_hot[rows, self.actions] = 1.0
        # [g_i = g] pi_i(a), laid out like the cells: what the dm terms weigh each cell by.
        group_pi = np.zeros((n, g, k))
        group_pi[rows, self.group, :] = pi
        group_pi = group_pi.reshape(n, g * k)
        dm = np.zeros(len(counts))
        correction = np.zeros(len(counts))
        for f in range(self.folds):
            in_fold = self.fold == f
            train = counts * ~in_fold  # B x n
            test = counts * in_fold
            ct = train.sum(axis=1)
            overall = np.where(ct > 0, (train @ y) / np.maximum(ct, 1e-300), 0.0)
            t_sum = train @ (action_hot * y[:, None])  # B x k
            t_cnt = train @ action_hot
            t_mean = np.where(t_cnt > 0, t_sum / np.maximum(t_cnt, 1e-300), overall[:, None])
            c_sum = train @ (cell_hot * y[:, None])  # B x gk
            c_cnt = train @ cell_hot
            prior = np.tile(t_mean, (1, g))  # each group's cells shrink to the target mean
            model = (c_sum + self.shrink * prior) / (c_cnt + self.shrink)
            dm += (model * (test @ group_pi)).sum(axis=1)
            correction += (model * (test @ (cell_hot * w[:, None]))).sum(axis=1)
        return dm, correction

    def fit(self, sel: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cross-fitted (len(sel), K) predictions for the calls ``sel`` (indices, repeats
        allowed) with values ``y`` (over all calls)."""
        k, g = self.k, self.g
        fold, actions, group, ys = self.fold[sel], self.actions[sel], self.group[sel], y[sel]
        out = np.zeros((len(sel), k))
        for f in range(self.folds):
            train = fold != f
            test = ~train
            if not test.any():
                continue
            if not train.any():
                out[test] = float(ys.mean())
                continue
            overall = float(ys[train].mean())
            t_sum = np.bincount(actions[train], weights=ys[train], minlength=k)
            t_cnt = np.bincount(actions[train], minlength=k).astype(float)
            t_mean = np.where(t_cnt > 0, t_sum / np.maximum(t_cnt, 1), overall)
            cell = group[train] * k + actions[train]
            c_sum = np.bincount(cell, weights=ys[train], minlength=g * k).reshape(g, k)
            c_cnt = np.bincount(cell, minlength=g * k).reshape(g, k).astype(float)
            model = (c_sum + self.shrink * t_mean) / (c_cnt + self.shrink)
            out[test] = model[group[test]]
        return out


def _percentile(samples: np.ndarray) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return (math.nan, math.nan)
    low, high = np.percentile(finite, [2.5, 97.5])
    return (float(low), float(high))


def _estimates(
    pi: np.ndarray,
    data: LoggedBandit,
    y: np.ndarray,
    model: np.ndarray | _GroupMeans,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, Estimate]:
    n = len(data)
    rows = np.arange(n)
    p_logged = pi[rows, data.actions]
    w = p_logged / data.propensities
    # Row 0: the sample itself; then one row of call counts per bootstrap draw (multinomial
    # resampling of the n calls), so every estimator is a few matrix products.
    counts = np.ones((1 + n_boot, n))
    if n_boot:
        counts[1:] = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    size = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sum_w = counts @ w
        sum_wy = counts @ (w * y)
        sum_agree = counts @ p_logged
        if isinstance(model, _GroupMeans):
            dm_sum, corr_sum = model.weighted_terms(counts, y, pi, w)
        else:
            dm_sum = counts @ (pi * model).sum(axis=1)
            corr_sum = counts @ (w * model[rows, data.actions])
        values = {
            "naive": (counts @ (p_logged * y)) / sum_agree,
            "dm": dm_sum / size,
            "ips": sum_wy / size,
            "snips": sum_wy / sum_w,
            "dr": (dm_sum + sum_wy - corr_sum) / size,
        }
    out = {}
    for name in ESTIMATORS:
        low, high = _percentile(values[name][1:]) if n_boot else (math.nan, math.nan)
        point = float(values[name][0])
        out[name] = Estimate(value=point if math.isfinite(point) else math.nan, low=low, high=high)
    return out


def evaluate_policy(
    data: LoggedBandit,
    candidate: Any,
    *,
    reward_model: np.ndarray | None = None,
    cost_model: np.ndarray | None = None,
    folds: int = 5,
    n_boot: int = 500,
    seed: int = 0,
) -> OPEResult:
    """Estimate the quality (and cost, when ``data.costs`` is set) per call of the policy
    whose action probabilities are ``candidate`` (n x K, rows summing to 1), with every
    estimator of `ESTIMATORS`, bootstrap 95% intervals (``n_boot`` draws over items,
    seeded) and the weight diagnostics.

    ``reward_model`` / ``cost_model``: (n x K) predictions for the dm and dr estimators
    (e.g. from your own model), held fixed in the bootstrap; by default
    `crossfit_group_means` over ``folds`` folds, refitted on every bootstrap draw."""
    if len(data) == 0:
        raise ConfigError(
            "no logged calls to evaluate",
            hint="log calls through a policy (route_policy and propensity set) and score them",
        )
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ConfigError(f"n_boot={n_boot!r} must be an integer >= 0")
    pi = _check_candidate(data, candidate)
    fitted = _GroupMeans(data, folds=folds, seed=seed, shrink=2.0)
    rewards = np.asarray(data.rewards, dtype=float)
    quality = _estimates(
        pi,
        data,
        rewards,
        fitted if reward_model is None else _given(reward_model, data, "reward_model"),
        n_boot,
        np.random.default_rng(seed),
    )
    cost = None
    if data.costs is not None:
        costs = np.asarray(data.costs, dtype=float)
        cost = _estimates(
            pi,
            data,
            costs,
            fitted if cost_model is None else _given(cost_model, data, "cost_model"),
            n_boot,
            np.random.default_rng(seed),
        )
    return OPEResult(
        quality=quality,
        cost=cost,
        diagnostics=weight_diagnostics(data, pi),
        n_boot=n_boot,
    )


def _given(model: Any, data: LoggedBandit, what: str) -> np.ndarray:
    values = np.asarray(model, dtype=float)
    if values.shape != (len(data), len(data.targets)):
        raise ConfigError(f"{what} must be ({len(data)}, {len(data.targets)}) (calls x targets)")
    return values


def candidate_probabilities(
    policy: Any, requests: Sequence[Any], targets: Sequence[str]
) -> np.ndarray:
    """The (n x K) action probabilities of ``policy`` (a `Policy`, or any callable from a
    request to ``{target: probability}``) on ``requests``, in the column order of
    ``targets``. Mass on a target outside ``targets`` cannot be evaluated from these logs:
    a `ConfigError` names it."""
    probabilities = getattr(policy, "probabilities", policy)
    index = {t: j for j, t in enumerate(targets)}
    out = np.zeros((len(requests), len(targets)))
    for i, request in enumerate(requests):
        dist = probabilities(request)
        if not isinstance(dist, Mapping):
            raise ConfigError("a candidate must give {target: probability} per request")
        for target, p in dist.items():
            if p <= 0:
                continue
            j = index.get(target)
            if j is None:
                raise ConfigError(
                    f"the candidate routes to {target!r}, which no logged call used",
                    hint="off-policy evaluation can only weigh targets the logging policy "
                    f"tried: {', '.join(targets)}",
                )
            out[i, j] = p
    return out
