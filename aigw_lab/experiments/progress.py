"""Progress of a running experiment: `ProgressSnapshot`, the immutable state handed to
``on_progress`` callbacks (the notebook's live view draws it), and `ProgressTracker`, which
keeps the counters and drives a tqdm bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["ProgressSnapshot", "ProgressTracker", "TargetProgress"]


@dataclass(frozen=True, slots=True)
class TargetProgress:
    """One target's share of the run: units ``done`` of ``total`` (skipped ones included),
    ``errors`` among this run's units, and what its calls cost in this run."""

    done: int
    total: int
    errors: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Where a run stands.

    ``done`` counts finished units, including the ``skipped`` ones a resumed run found done
    already, so ``done / total`` is the experiment's completion; ``errors`` counts this run's
    units whose call failed; ``cost_usd`` what this run has spent (judge calls included);
    ``status`` is ``"running"`` until the run ends, then its final status.
    """

    experiment_id: str
    run_id: str
    done: int
    total: int
    skipped: int
    errors: int
    cost_usd: float
    elapsed_s: float
    per_target: Mapping[str, TargetProgress]
    status: str = "running"

    @property
    def fraction(self) -> float:
        """Completion from 0 to 1."""
        return self.done / self.total if self.total else 1.0


class ProgressTracker:
    """Counts units as they finish and reports them to a tqdm bar and a callback.

    ``bar``: show a ``tqdm.auto`` bar (a widget in notebooks, text in terminals); without
    tqdm installed there is simply no bar. ``on_progress`` gets a `ProgressSnapshot` after
    every unit and once more at the end.
    """

    def __init__(
        self,
        *,
        experiment_id: str,
        run_id: str,
        totals: Mapping[str, int],
        skipped: Mapping[str, int],
        bar: bool = True,
        on_progress: Callable[[ProgressSnapshot], Any] | None = None,
        description: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.experiment_id = experiment_id
        self.run_id = run_id
        self._totals = dict(totals)
        self._done = {t: skipped.get(t, 0) for t in totals}
        self._errors = dict.fromkeys(totals, 0)
        self._cost = dict.fromkeys(totals, 0.0)
        self.skipped = sum(skipped.values())
        self.extra_cost_usd = 0.0  # spent outside units' own calls (an LLM judge's calls)
        self._on_progress = on_progress
        self._clock = clock
        self._started = clock()
        self._bar = _make_bar(sum(totals.values()), self.skipped, description) if bar else None

    @property
    def done(self) -> int:
        return sum(self._done.values())

    @property
    def errors(self) -> int:
        return sum(self._errors.values())

    @property
    def cost_usd(self) -> float:
        return sum(self._cost.values()) + self.extra_cost_usd

    def unit_finished(self, target: str, *, ok: bool, cost_usd: float | None) -> None:
        """Count one unit of ``target`` as finished (its call succeeded or failed for good)."""
        self._done[target] += 1
        if not ok:
            self._errors[target] += 1
        if cost_usd:
            self._cost[target] += cost_usd
        self._report(1)

    def add_cost(self, target: str, cost_usd: float | None) -> None:
        """Count spending that is not a unit finishing (a judge's calls, a failed attempt)."""
        if cost_usd:
            self._cost[target] += cost_usd
            self._report(0)

    def snapshot(self, status: str = "running") -> ProgressSnapshot:
        per_target = MappingProxyType(
            {
                t: TargetProgress(self._done[t], total, self._errors[t], self._cost[t])
                for t, total in self._totals.items()
            }
        )
        return ProgressSnapshot(
            experiment_id=self.experiment_id,
            run_id=self.run_id,
            done=self.done,
            total=sum(self._totals.values()),
            skipped=self.skipped,
            errors=self.errors,
            cost_usd=self.cost_usd,
            elapsed_s=self._clock() - self._started,
            per_target=per_target,
            status=status,
        )

    def close(self, status: str) -> None:
        """Report the final state and close the bar."""
        if self._bar is not None:
            self._set_postfix()
            self._bar.close()
            self._bar = None
        if self._on_progress is not None:
            self._on_progress(self.snapshot(status))

    def _report(self, advanced: int) -> None:
        if self._bar is not None:
            if advanced:
                self._bar.update(advanced)
            self._set_postfix()
        if self._on_progress is not None:
            self._on_progress(self.snapshot())

    def _set_postfix(self) -> None:
        assert self._bar is not None
        self._bar.set_postfix_str(f"${self.cost_usd:.4f}, {self.errors} errors", refresh=False)


def _make_bar(total: int, initial: int, description: str | None) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar then, the run is the same
        return None
    return tqdm(total=total, initial=initial, desc=description, unit="unit", dynamic_ncols=True)


def counts_by_target(keys: Iterable[tuple[str, str, int]]) -> dict[str, int]:
    """How many of these unit keys each target has."""
    counts: dict[str, int] = {}
    for _, target, _ in keys:
        counts[target] = counts.get(target, 0) + 1
    return counts
