"""Progress of a running experiment: `ProgressSnapshot`, the immutable state handed to
``on_progress`` callbacks (the notebook's live view draws it), and `ProgressTracker`, which
keeps the counters and shows them.

Where they are shown depends on where the output goes: a notebook gets tqdm's widget, a
terminal tqdm's text bar, and anything else (a pipe, a file, a CI log) a few plain lines -
a start line, a line each time another `LINE_EVERY_FRACTION` of the units is done (at most
one every `LINE_MIN_INTERVAL_S` seconds) or, in a slow run, every `LINE_HEARTBEAT_S` seconds,
and an end line - instead of tqdm redrawing its bar with carriage returns ten times a
second, which floods a log with one endless line.
"""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO, Any

from aigw_lab.extras import missing_modules

__all__ = [
    "LINE_EVERY_FRACTION",
    "LINE_HEARTBEAT_S",
    "LINE_MIN_INTERVAL_S",
    "ProgressSnapshot",
    "ProgressTracker",
    "TargetProgress",
]

#: Off a terminal, a progress line each time this much more of the run is done...
LINE_EVERY_FRACTION = 0.1
#: ... but not more often than this (seconds) ...
LINE_MIN_INTERVAL_S = 5.0
#: ... and, in a slow run, one at least this often (seconds) while units keep finishing.
LINE_HEARTBEAT_S = 60.0


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
    """Counts units as they finish and reports them to a display and a callback.

    ``bar``: show progress - tqdm's widget in a notebook, its text bar on a terminal, plain
    lines on any other ``stream`` (default: ``sys.stderr`` when the tracker is made); without
    tqdm installed, plain lines everywhere. ``on_progress`` gets a `ProgressSnapshot` after
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
        stream: IO[str] | None = None,
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
        self._bar: _Display | None = None
        if bar:
            self._bar = _make_display(
                total=sum(totals.values()),
                initial=self.skipped,
                description=_printable(description or experiment_id),
                stream=sys.stderr if stream is None else stream,
                clock=clock,
            )

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
        """Report the final state and close the display."""
        if self._bar is not None:
            self._bar.close(self.snapshot(status))
            self._bar = None
        if self._on_progress is not None:
            self._on_progress(self.snapshot(status))

    def _report(self, advanced: int) -> None:
        if self._bar is not None:
            self._bar.update(advanced, self)
        if self._on_progress is not None:
            self._on_progress(self.snapshot())


#: Longest experiment name shown in progress output (the rest is cut, with "...").
_MAX_DESCRIPTION = 60


def _printable(text: str) -> str:
    """``text`` safe for one line of a terminal or a log: control characters (an escape
    sequence or a newline in an experiment file's name) become "?", and it is cut to
    `_MAX_DESCRIPTION` characters."""
    cleaned = "".join("?" if unicodedata.category(ch).startswith("C") else ch for ch in str(text))
    if len(cleaned) > _MAX_DESCRIPTION:
        cleaned = cleaned[: _MAX_DESCRIPTION - 3] + "..."
    return cleaned


def _postfix(cost_usd: float, errors: int) -> str:
    return f"${cost_usd:.4f}, {errors} errors"


class _Display:
    """Where a tracker shows progress."""

    def update(self, advanced: int, tracker: ProgressTracker) -> None:
        raise NotImplementedError

    def close(self, final: ProgressSnapshot) -> None:
        raise NotImplementedError


class _TqdmDisplay(_Display):
    """A tqdm bar (the widget in a notebook, the text bar on a terminal)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, advanced: int, tracker: ProgressTracker) -> None:
        if advanced:
            self.bar.update(advanced)
        self.bar.set_postfix_str(_postfix(tracker.cost_usd, tracker.errors), refresh=False)

    def close(self, final: ProgressSnapshot) -> None:
        self.bar.set_postfix_str(_postfix(final.cost_usd, final.errors), refresh=False)
        self.bar.close()


class _LineDisplay(_Display):
    """Plain progress lines for output that is not a terminal (see the module docstring)."""

    def __init__(
        self,
        *,
        total: int,
        initial: int,
        description: str,
        stream: IO[str],
        clock: Callable[[], float],
    ) -> None:
        self.total = total
        self.description = description
        self.stream = stream
        self.clock = clock
        self.started = self.last_time = clock()
        self.done = self.last_done = initial
        before = f" ({initial} done before)" if initial else ""
        self._write(f"{description}: started, {total} units{before}")

    def update(self, advanced: int, tracker: ProgressTracker) -> None:
        if not advanced:
            return
        self.done += advanced
        now = self.clock()
        since = now - self.last_time
        step = max(1, round(self.total * LINE_EVERY_FRACTION))
        due = self.done - self.last_done >= step and since >= LINE_MIN_INTERVAL_S
        if not (due or since >= LINE_HEARTBEAT_S) or self.done >= self.total:
            return  # the end line reports a finished run
        self.last_time, self.last_done = now, self.done
        percent = 100 * self.done / self.total if self.total else 100.0
        self._write(
            f"{self.description}: {self.done}/{self.total} units ({percent:.0f}%), "
            f"{_postfix(tracker.cost_usd, tracker.errors)}, {now - self.started:.0f}s"
        )

    def close(self, final: ProgressSnapshot) -> None:
        self._write(
            f"{self.description}: {final.status}, {final.done}/{final.total} units, "
            f"{_postfix(final.cost_usd, final.errors)}, {final.elapsed_s:.1f}s"
        )

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is not the run
            pass


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):  # no isatty, or a closed stream
        return False


def _widgets_possible() -> bool:
    """Whether tqdm.auto could draw its notebook widget: in an IPython kernel, with ipywidgets
    (the ``notebook`` extra) installed. Without them tqdm.auto would be the text bar, and in a
    kernel without ipywidgets it would first warn "IProgress not found"; a core install in
    Jupyter gets the plain lines instead, without that warning."""
    in_kernel = "ipykernel" in sys.modules or "IPython" in sys.modules
    return in_kernel and not missing_modules(["ipywidgets"])


def _is_notebook_tqdm(auto_tqdm: Any) -> bool:
    """Whether tqdm.auto's class is its notebook widget (it always mixes in asyncio support,
    so it never is the plain text class itself)."""
    notebook = sys.modules.get("tqdm.notebook")
    return notebook is not None and issubclass(auto_tqdm, notebook.tqdm)


def _make_display(
    *,
    total: int,
    initial: int,
    description: str,
    stream: IO[str],
    clock: Callable[[], float],
) -> _Display:
    try:
        # lazy: optional: tqdm draws progress only when installed and asked for
        from tqdm.std import tqdm as text_tqdm
    except ImportError:  # tqdm is optional: plain lines then, the run is the same
        text_tqdm = None
    auto_tqdm = None
    if text_tqdm is not None and _widgets_possible():
        # lazy: tqdm.auto picks its notebook widget in a Jupyter kernel
        from tqdm.auto import tqdm as auto_tqdm
    if auto_tqdm is not None and _is_notebook_tqdm(auto_tqdm):
        # tqdm.auto picked its notebook widget (a Jupyter kernel, whose stderr is no TTY).
        return _TqdmDisplay(auto_tqdm(total=total, initial=initial, desc=description, unit="unit"))
    if text_tqdm is not None and _isatty(stream):
        bar = text_tqdm(
            total=total,
            initial=initial,
            desc=description,
            unit="unit",
            dynamic_ncols=True,
            file=stream,
        )
        return _TqdmDisplay(bar)
    return _LineDisplay(
        total=total, initial=initial, description=description, stream=stream, clock=clock
    )


def counts_by_target(keys: Iterable[tuple[str, str, int]]) -> dict[str, int]:
    """How many of these unit keys each target has."""
    counts: dict[str, int] = {}
    for _, target, _ in keys:
        counts[target] = counts.get(target, 0) + 1
    return counts
