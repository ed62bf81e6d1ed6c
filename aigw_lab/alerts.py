"""Alerts over the call log: each rule compares the latest window with its own recent
baseline (the median of the previous windows) and fires on a spike or a drop.

The rules are pure functions of numbers (`evaluate`: `Window` values in, `AlertResult`s out),
so they are tested without a log; `aigw_lab.alerts_log` reads the windows from a log, and
`aigw_lab.alerts_webhook` posts what fired. ``aigw-lab alerts`` puts the three together.

Rules (names as in ``[alerts] rules``):

- ``cost_per_hour``: USD per hour fires above ``cost_factor`` x the baseline and at least
  ``cost_min_increase_usd`` per hour above it;
- ``error_rate``: failed rows / rows fires above ``error_rate_factor`` x the baseline and at
  least ``error_rate_min_increase`` above it;
- ``cache_hit_rate``: hits / cacheable calls fires below the baseline by at least
  ``cache_hit_min_drop``;
- ``p95_latency``: the 95th percentile of answered calls' latency fires above
  ``p95_factor`` x the baseline and at least ``p95_min_increase_ms`` above it.

A rule does not fire, and says why, when the window has fewer than ``min_calls`` calls or
fewer than ``min_baseline_windows`` earlier windows have a value.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aigw_lab.config_schema import NUMBER, Key, Table
from aigw_lab.errors import ConfigError

__all__ = [
    "ALERTS_TABLE",
    "RULES",
    "AlertResult",
    "AlertSettings",
    "Window",
    "evaluate",
    "format_table",
]

#: The rules, in the order they are reported.
RULES = ("cost_per_hour", "error_rate", "cache_hit_rate", "p95_latency")

#: Exit codes of ``aigw-lab alerts``.
EXIT_QUIET, EXIT_FIRED, EXIT_USAGE, EXIT_WEBHOOK_FAILED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """One window of the log: its start and end (ISO text), how many calls and rows it
    holds, and each rule's value (None: nothing to measure, e.g. no cacheable call)."""

    start: str
    end: str
    calls: int
    values: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSettings:
    """The thresholds of the rules (``[alerts]``; see the module docstring)."""

    window_minutes: float = 60.0
    baseline_windows: int = 24
    min_baseline_windows: int = 3
    min_calls: int = 20
    rules: tuple[str, ...] = RULES
    cost_factor: float = 3.0
    cost_min_increase_usd: float = 0.05
    error_rate_factor: float = 2.0
    error_rate_min_increase: float = 0.05
    cache_hit_min_drop: float = 0.15
    p95_factor: float = 2.0
    p95_min_increase_ms: float = 100.0
    webhook_url_env: str | None = None
    webhook_token_env: str | None = None

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None, where: str = "[alerts]") -> AlertSettings:
        """Settings from an ``[alerts]`` table already checked against `ALERTS_TABLE`."""
        table = dict(table or {})
        if "rules" in table:
            unknown = [r for r in table["rules"] if r not in RULES]
            if unknown or not table["rules"]:
                raise ConfigError(
                    f"{where} rules = {table['rules']!r} must name rules of {list(RULES)}",
                    hint=f"rules = {list(RULES)!r} (or a subset)",
                )
            table["rules"] = tuple(table["rules"])
        if table.get("min_baseline_windows", 3) > table.get("baseline_windows", 24):
            raise ConfigError(
                f"{where} min_baseline_windows is larger than baseline_windows",
                hint="min_baseline_windows <= baseline_windows",
            )
        return cls(**table)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertResult:
    """One rule's verdict on the latest window: ``state`` is ``firing``, ``ok`` or why it
    cannot say (``too few calls``, ``no baseline``, ``no data``)."""

    rule: str
    state: str
    current: float | None
    baseline: float | None
    threshold: float | None
    window_start: str
    window_end: str
    message: str

    @property
    def firing(self) -> bool:
        return self.state == "firing"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "state": self.state,
            "current": self.current,
            "baseline": self.baseline,
            "threshold": self.threshold,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "message": self.message,
        }


def _threshold(rule: str, baseline: float, s: AlertSettings) -> tuple[float, bool]:
    """``(threshold, above)``: the rule fires when the current value is above (True) or
    below (False) the threshold."""
    if rule == "cost_per_hour":
        return max(baseline * s.cost_factor, baseline + s.cost_min_increase_usd), True
    if rule == "error_rate":
        return max(baseline * s.error_rate_factor, baseline + s.error_rate_min_increase), True
    if rule == "cache_hit_rate":
        return baseline - s.cache_hit_min_drop, False
    if rule == "p95_latency":
        return max(baseline * s.p95_factor, baseline + s.p95_min_increase_ms), True
    raise ValueError(f"unknown rule {rule!r}")


def evaluate(
    current: Window, baseline: Sequence[Window], settings: AlertSettings
) -> list[AlertResult]:
    """Each rule of ``settings`` on ``current`` against the median of ``baseline`` (earlier
    windows, any order; those without a value for a rule are skipped for it)."""
    results = []
    for rule in settings.rules:
        value = current.values.get(rule)
        history = [w.values.get(rule) for w in baseline]
        known = [v for v in history if v is not None]
        base = statistics.median(known) if known else None
        common = {
            "rule": rule,
            "current": value,
            "baseline": base,
            "window_start": current.start,
            "window_end": current.end,
        }
        if current.calls < settings.min_calls:
            message = f"{current.calls} calls in the window, fewer than {settings.min_calls}"
            results.append(
                AlertResult(state="too few calls", threshold=None, message=message, **common)
            )
            continue
        if value is None:
            message = "nothing to measure in the window"
            results.append(AlertResult(state="no data", threshold=None, message=message, **common))
            continue
        if base is None or len(known) < settings.min_baseline_windows:
            message = (
                f"{len(known)} earlier windows with a value, fewer than "
                f"{settings.min_baseline_windows}"
            )
            results.append(
                AlertResult(state="no baseline", threshold=None, message=message, **common)
            )
            continue
        threshold, above = _threshold(rule, base, settings)
        fires = value > threshold if above else value < threshold
        relation = "above" if above else "below"
        message = (
            f"{rule} {_fmt(rule, value)} is {relation} its threshold {_fmt(rule, threshold)} "
            f"(baseline {_fmt(rule, base)}, median of {len(known)} windows)"
            if fires
            else f"{rule} {_fmt(rule, value)} within its threshold {_fmt(rule, threshold)}"
        )
        results.append(
            AlertResult(
                state="firing" if fires else "ok", threshold=threshold, message=message, **common
            )
        )
    return results


def _fmt(rule: str, value: float | None) -> str:
    if value is None:
        return "-"
    if rule == "cost_per_hour":
        return f"${value:.4f}/h"
    if rule == "p95_latency":
        return f"{value:.0f} ms"
    return f"{value:.1%}"


def format_table(results: Sequence[AlertResult]) -> str:
    """The results as a plain-text table, one rule a line."""
    header = ("rule", "state", "current", "baseline", "threshold")
    lines = [
        (r.rule, r.state.upper() if r.firing else r.state, _fmt(r.rule, r.current),
         _fmt(r.rule, r.baseline), _fmt(r.rule, r.threshold))
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in [header, *lines]
    ]
    return "\n".join(line.rstrip() for line in out)


def _positive(name: str, doc: str, *, integer: bool = False, high: float | None = None) -> Key:
    return Key(
        name=name,
        types=(int,) if integer else NUMBER,
        low=0,
        low_open=True,
        high=high,
        what="a positive integer" if integer else "a positive number",
        doc=doc,
    )


_ENV_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,127}"

#: ``[alerts]``: the rules of ``aigw-lab alerts`` (docs/deployment.md).
ALERTS_TABLE = Table(
    keys=(
        _positive("window_minutes", "minutes per window (default 60)", high=7 * 24 * 60),
        _positive(
            "baseline_windows",
            "earlier windows in the baseline (default 24)",
            integer=True,
            high=1000,
        ),
        _positive(
            "min_baseline_windows", "earlier windows needed to judge (default 3)", integer=True
        ),
        Key(
            name="min_calls",
            types=(int,),
            low=0,
            what="a non-negative integer",
            doc="calls a window needs to be judged (default 20)",
        ),
        Key(
            name="rules",
            types=(list,),
            items=(str,),
            what="a list of rule names",
            doc="the rules to evaluate (default all four)",
        ),
        _positive("cost_factor", "cost_per_hour fires above this x baseline (default 3)"),
        Key(
            name="cost_min_increase_usd",
            types=NUMBER,
            low=0,
            what="a non-negative number",
            doc="... and this many USD/h above it (default 0.05)",
        ),
        _positive("error_rate_factor", "error_rate fires above this x baseline (default 2)"),
        Key(
            name="error_rate_min_increase",
            types=NUMBER,
            low=0,
            high=1,
            what="a number from 0 to 1",
            doc="... and this much above it (default 0.05)",
        ),
        Key(
            name="cache_hit_min_drop",
            types=NUMBER,
            low=0,
            high=1,
            what="a number from 0 to 1",
            doc="cache_hit_rate fires this far below baseline (default 0.15)",
        ),
        _positive("p95_factor", "p95_latency fires above this x baseline (default 2)"),
        Key(
            name="p95_min_increase_ms",
            types=NUMBER,
            low=0,
            what="a non-negative number",
            doc="... and this many ms above it (default 100)",
        ),
        Key(
            name="webhook_url_env",
            types=(str,),
            pattern=_ENV_PATTERN,
            what="an environment variable name",
            hint="name the variable holding the webhook URL; the URL never goes in the file",
            doc="the variable holding the webhook URL (JSON POST of what fired)",
        ),
        Key(
            name="webhook_token_env",
            types=(str,),
            pattern=_ENV_PATTERN,
            what="an environment variable name",
            doc="the variable holding a bearer token for the webhook",
        ),
    )
)
