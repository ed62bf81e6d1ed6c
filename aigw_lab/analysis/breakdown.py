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
from statistics import NormalDist
from typing import TYPE_CHECKING

from aigw_lab.analysis._source import default_scorer, open_source, units_cte
from aigw_lab.analysis.comparison import _paired_row
from aigw_lab.analysis.stats import bootstrap_mean_ci, percentile_interval

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import pandas as pd

    from aigw_lab.analysis._source import LogSource, Reader

__all__ = ["wilson_interval", "item_quality", "category_quality", "pairwise_comparisons"]

#: The label of items whose calls carry no category.
NO_CATEGORY = "(none)"

# Per (target, item): its mean quality, latency and cost over repetitions, units that did
# not end ok, and the item's category from the experiment metadata the runner puts on every
# call. The category is read from first-repetition rows only: parsing the JSON of every row
# of a big log costs more than the rest of the query.
_PER_ITEM_SQL = """
, categories AS (
    SELECT experiment_id, item_id,
           any_value(json_extract_string(metadata_json, '$.aigw_experiment.category'))
               AS category
    FROM calls
    WHERE item_id IS NOT NULL AND coalesce(repetition, 0) = 0 {experiment}
    GROUP BY experiment_id, item_id
),
per_item AS (
    SELECT
        target, experiment_id, item_id,
        avg(quality) AS quality,
        count(quality) AS scored,
        count(*) FILTER (WHERE status <> 'ok') AS failed,
        avg(latency_ms) FILTER (WHERE status = 'ok') AS latency_ms,
        avg(spent_usd) AS cost_usd
    FROM units
    GROUP BY target, experiment_id, item_id
)
SELECT p.*, c.category
FROM per_item p
LEFT JOIN categories c
    ON c.experiment_id IS NOT DISTINCT FROM p.experiment_id AND c.item_id = p.item_id
"""


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` at ``confidence``
    ((nan, nan) when ``n`` is 0)."""
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
    unscored), ``scored`` units, ``failed`` units (result not ok), mean ``latency_ms`` of
    the ok units, mean ``cost_usd`` spent, and the item's ``category`` (`NO_CATEGORY` when
    its calls carry none)."""
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
    if experiment_id is None:
        sql, extra = _PER_ITEM_SQL.format(experiment=""), []
    else:
        sql, extra = _PER_ITEM_SQL.format(experiment="AND experiment_id = ?"), [experiment_id]
    frame = read(cte + sql, [*params, *extra])
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
    # lazy: numpy and pandas load in ~0.4 s; only building a frame needs them
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
    `item_quality` frame).

    When every item has a value for every target (the usual case), one seeded resampling of
    the items per metric serves every pair, which is what makes all pairs cost about as much
    as one per target; otherwise each pair is bootstrapped on its common items."""
    # lazy: numpy and pandas load in ~0.4 s; only building a frame needs them
    import numpy as np
    import pandas as pd

    if per_item is None:
        per_item, scorer = _read_per_item(source, experiment_id, scorer)
    else:
        scorer = per_item.attrs.get("scorer", scorer)
    names = list(targets) if targets is not None else sorted(per_item["target"].unique())
    key = ["experiment_id", "item_id"]
    pairs = list(combinations(names, 2))
    rows: dict[tuple[str, str, str], dict[str, object]] = {}
    for metric, higher_is_better in _METRICS:
        wide = (
            per_item[per_item["target"].isin(names)]
            .set_index([*key, "target"])[metric]
            .unstack("target")
            .reindex(columns=names)
            .sort_index()
        )
        values = wide.to_numpy(dtype=float)
        if len(values) > 1 and not np.isnan(values).any():
            # Every item has a value for every target: one resampling of the items serves
            # every pair (a replicate's mean of a - b is its mean of a minus its mean of b).
            rng = np.random.default_rng([seed, zlib.crc32(metric.encode())])
            replicates = _column_means(values, n_boot, rng)
            for a, b in pairs:
                i, j = names.index(a), names.index(b)
                low, high = percentile_interval(replicates[:, i] - replicates[:, j], confidence)
                rows[(a, b, metric)] = _pair_row(
                    metric, values[:, [i, j]], higher_is_better, float(low), float(high)
                )
            continue
        for a, b in pairs:  # items missing for some target: each pair on its common items
            pair = wide[[a, b]].dropna().to_numpy(dtype=float)
            rng = np.random.default_rng([seed, zlib.crc32(f"{a}\x00{b}\x00{metric}".encode())])
            rows[(a, b, metric)] = _paired_row(
                metric, pair, higher_is_better, confidence, n_boot, rng
            )
    ordered = [
        {"target_a": a, "target_b": b, **rows[(a, b, metric)]}
        for a, b in pairs
        for metric, _ in _METRICS
    ]
    columns = [
        "metric", "target_a", "target_b", "n_items", "mean_a", "mean_b", "diff",
        "ci_low", "ci_high", "wins", "ties", "losses",
    ]  # fmt: skip
    frame = pd.DataFrame(ordered, columns=columns)
    frame.attrs.update({"experiment_id": experiment_id, "scorer": scorer, "confidence": confidence})
    return frame


_METRICS = (("quality", True), ("latency_ms", False), ("cost_usd", False))

# Resampled indices held at once (replicates x items); beyond it they are drawn in chunks.
_INDEX_CHUNK = 2_000_000


def _column_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, k) means of the columns of ``values`` (n, k) over ``n_boot`` resamples of its
    rows, each resample shared by every column. The draws depend on n, n_boot and ``rng``
    only, so adding a column (a target) leaves the other columns' replicates unchanged."""
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    n, k = values.shape
    out = np.empty((n_boot, k))
    chunk = max(1, _INDEX_CHUNK // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        for column in range(k):
            out[start:stop, column] = values[:, column][idx].mean(axis=1)
    return out


def _pair_row(
    metric: str, pair: np.ndarray, higher_is_better: bool, low: float, high: float
) -> dict[str, object]:
    """A `paired_comparison` row from the items' values (n, 2) and an interval."""
    diffs = pair[:, 0] - pair[:, 1]
    better = diffs > 0 if higher_is_better else diffs < 0
    worse = diffs < 0 if higher_is_better else diffs > 0
    return {
        "metric": metric,
        "n_items": len(pair),
        "mean_a": float(pair[:, 0].mean()),
        "mean_b": float(pair[:, 1].mean()),
        "diff": float(diffs.mean()),
        "ci_low": low,
        "ci_high": high,
        "wins": int(better.sum()),
        "ties": int((diffs == 0).sum()),
        "losses": int(worse.sum()),
    }
