"""Breaking an experiment's quality down: per dataset category (with an interval per cell)
and for every pair of targets on the items both answered.

Per-category intervals: a Wilson score interval when every item's quality is 0 or 1 (a 0/1
scorer, one repetition), which behaves at 0 % and 100 % and with a handful of items where
a bootstrap collapses to a point; otherwise a percentile bootstrap over items, as in
`target_summary`. The ``interval`` column says which one each row got.
"""

from __future__ import annotations

import math
import zlib
from itertools import combinations
from typing import TYPE_CHECKING

from aigw_lab.analysis._source import default_scorer, open_source, units_cte
from aigw_lab.analysis.comparison import _paired_row
from aigw_lab.analysis.stats import bootstrap_mean_ci

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from aigw_lab.analysis._source import LogSource, Reader

__all__ = ["wilson_interval", "item_quality", "category_quality", "pairwise_comparisons"]

#: The label of items whose calls carry no category.
NO_CATEGORY = "(none)"

# Per (target, item): its mean quality, latency and cost over repetitions, and the item's
# category from the experiment metadata the runner puts on every call.
_PER_ITEM_SQL = """
SELECT
    u.target, u.experiment_id, u.item_id,
    avg(u.quality) AS quality,
    count(u.quality) AS scored,
    avg(u.latency_ms) FILTER (WHERE u.status = 'ok') AS latency_ms,
    avg(u.spent_usd) AS cost_usd,
    any_value(json_extract_string(c.metadata_json, '$.aigw_experiment.category'))
        AS category
FROM units u
LEFT JOIN calls c ON c.call_id = u.call_id
GROUP BY u.target, u.experiment_id, u.item_id
"""


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` at ``confidence``
    ((nan, nan) when ``n`` is 0)."""
    from statistics import NormalDist

    if n <= 0:
        return (math.nan, math.nan)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Exact at the ends (rounding would leave 1e-17 above 0 for no successes).
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return (low, high)


def item_quality(
    source: LogSource, *, experiment_id: str | None = None, scorer: str | None = None
) -> pd.DataFrame:
    """One row per (target, item): mean ``quality`` over its repetitions (NaN when
    unscored), ``scored`` units, mean ``latency_ms`` of the ok units, mean ``cost_usd``
    spent, and the item's ``category`` (`NO_CATEGORY` when its calls carry none)."""
    frame, scorer = _read_per_item(source, experiment_id, scorer)
    frame.attrs.update({"experiment_id": experiment_id, "scorer": scorer})
    return frame


def _scorer(read: Reader, experiment_id: str | None, scorer: str | None) -> str | None:
    return default_scorer(read, experiment_id) if scorer is None else scorer


def _read_per_item(
    source: LogSource, experiment_id: str | None, scorer: str | None
) -> tuple[pd.DataFrame, str | None]:
    with open_source(source) as read:
        scorer = _scorer(read, experiment_id, scorer)
        return _per_item(read, experiment_id, scorer), scorer


def _per_item(read: Reader, experiment_id: str | None, scorer: str | None) -> pd.DataFrame:
    cte, params = units_cte(experiment_id, scorer)
    frame = read(cte + _PER_ITEM_SQL, params)
    frame["category"] = frame["category"].fillna(NO_CATEGORY).astype(str)
    # A fixed order, so seeded resampling sees the same items in the same order every time.
    return frame.sort_values(["target", "experiment_id", "item_id"]).reset_index(drop=True)


def category_quality(
    source: LogSource,
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    per_item: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (category, target) with scored items: ``items``, ``quality_mean``,
    ``ci_low`` / ``ci_high`` at ``confidence``, and ``interval`` (``"wilson"`` or
    ``"bootstrap"``, see the module docstring). Sorted by category, then target.

    ``per_item`` is an `item_quality` frame already read (the log is not read again)."""
    import numpy as np
    import pandas as pd

    if per_item is None:
        per_item, scorer = _read_per_item(source, experiment_id, scorer)
    else:
        scorer = per_item.attrs.get("scorer", scorer)
    scored = per_item[per_item["quality"].notna()]
    rng = np.random.default_rng(seed)
    rows = []
    for (category, target), group in scored.groupby(["category", "target"], sort=True):
        values = group["quality"].to_numpy(dtype=float)
        binary = bool(np.isin(values, (0.0, 1.0)).all())
        if binary:
            low, high = wilson_interval(int(values.sum()), len(values), confidence)
            mean = float(values.mean())
        else:
            ci = bootstrap_mean_ci(values, confidence=confidence, n_boot=n_boot, rng=rng)
            mean, low, high = ci.mean, ci.low, ci.high
        rows.append(
            {
                "category": str(category),
                "target": str(target),
                "items": len(values),
                "quality_mean": mean,
                "ci_low": low,
                "ci_high": high,
                "interval": "wilson" if binary else "bootstrap",
            }
        )
    columns = ["category", "target", "items", "quality_mean", "ci_low", "ci_high", "interval"]
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs.update({"experiment_id": experiment_id, "scorer": scorer, "confidence": confidence})
    return frame


def pairwise_comparisons(
    source: LogSource,
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    targets: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    per_item: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`paired_comparison` for every pair of ``targets`` (default: all the experiment's
    targets, sorted): for each pair (a before b in ``targets``' order), one row per metric
    (``quality``, ``latency_ms``, ``cost_usd``) with the same columns as
    `paired_comparison`. The log is read once (not at all given ``per_item``, an
    `item_quality` frame); each pair gets its own seeded bootstrap."""
    import numpy as np
    import pandas as pd

    if per_item is None:
        per_item, scorer = _read_per_item(source, experiment_id, scorer)
    else:
        scorer = per_item.attrs.get("scorer", scorer)
    names = list(targets) if targets is not None else sorted(per_item["target"].unique())
    key = ["experiment_id", "item_id"]
    by_target = {t: per_item[per_item["target"] == t] for t in names}
    rows = []
    for a, b in combinations(names, 2):
        joined = by_target[a].merge(by_target[b], on=key, suffixes=("_a", "_b")).sort_values(key)
        # Each pair seeded by its names: adding a target does not move other pairs' intervals.
        rng = np.random.default_rng([seed, zlib.crc32(f"{a}\x00{b}".encode())])
        for metric, higher_is_better in (
            ("quality", True),
            ("latency_ms", False),
            ("cost_usd", False),
        ):
            pair = joined[[f"{metric}_a", f"{metric}_b"]].astype(float).dropna().to_numpy()
            row = _paired_row(metric, pair, higher_is_better, confidence, n_boot, rng)
            rows.append({"target_a": a, "target_b": b, **row})
    columns = [
        "metric", "target_a", "target_b", "n_items", "mean_a", "mean_b", "diff",
        "ci_low", "ci_high", "wins", "ties", "losses",
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs.update({"experiment_id": experiment_id, "scorer": scorer, "confidence": confidence})
    return frame
