"""Bootstrap confidence intervals for means, vectorised in numpy and seeded.

Resampling is over *items* (rows of the input): for a target's quality the input is one mean
per dataset item, so repetitions of an item never count as independent evidence. For a paired
comparison the input holds both targets' values per item and one set of resampled indices
serves every column, which is what makes the interval paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MeanCI", "bootstrap_means", "bootstrap_mean_ci"]

# Cap on the resampled values held at once (n_boot x items x columns); beyond it the
# replicates are drawn in chunks, so a million-item input costs time, not gigabytes.
_MAX_VALUES_PER_CHUNK = 8_000_000


@dataclass(frozen=True, slots=True)
class MeanCI:
    """A sample mean with a percentile bootstrap interval at ``confidence``."""

    mean: float
    low: float
    high: float
    n: int


def bootstrap_means(
    values: np.ndarray, *, n_boot: int = 1000, rng: np.random.Generator
) -> np.ndarray:
    """The means of ``n_boot`` resamples (with replacement) of the rows of ``values``.

    ``values`` is 1-d (n,) or 2-d (n, k); the result is (n_boot,) or (n_boot, k), each
    replicate using the same row indices for every column.
    """
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    data = np.asarray(values, dtype=float)
    one_column = data.ndim == 1
    if one_column:
        data = data[:, None]
    n, k = data.shape
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    out = np.empty((n_boot, k))
    chunk = max(1, _MAX_VALUES_PER_CHUNK // max(1, n * k))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = data[idx].mean(axis=1)
    return out[:, 0] if one_column else out


def bootstrap_mean_ci(
    values: np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
    seed: int = 0,
) -> MeanCI:
    """Mean of the non-NaN ``values`` and its percentile bootstrap interval.

    An empty sample gives NaNs; a one-value sample an interval of width zero (there is no
    spread to resample). ``rng`` (else a generator seeded with ``seed``) makes it repeatable.
    """
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return MeanCI(float("nan"), float("nan"), float("nan"), 0)
    mean = float(data.mean())
    if data.size == 1:
        return MeanCI(mean, mean, mean, 1)
    generator = rng if rng is not None else np.random.default_rng(seed)
    replicates = bootstrap_means(data, n_boot=n_boot, rng=generator)
    low, high = percentile_interval(replicates, confidence)
    return MeanCI(mean, float(low), float(high), int(data.size))


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, ...]:
    """The (low, high) percentile interval of bootstrap replicates along axis 0."""
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail], axis=0)
    return low, high
