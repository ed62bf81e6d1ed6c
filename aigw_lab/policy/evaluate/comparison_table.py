"""A router's result beside its baselines, as one value every surface shows the same way:
the CLI (`policy train`, `policy evaluate`), the policy file (its ``"baselines"`` entry, read
by `policy export` to refuse a router no better than random), notebooks and docs.

The numbers come from cross-fitted evaluation (`aigw_lab.policy.evaluate.crossfit`); this
module only holds them, turns them into and out of JSON, and formats them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["BaselineRow", "BaselineComparison", "format_baseline_table"]

#: What a row is: the router under test, or one of the references it must beat.
RowKind = Literal["router", "random", "zero", "oracle", "trivial"]


@dataclass(frozen=True, slots=True)
class BaselineRow:
    """One router's (or baseline's) metric, e.g. APGR, cross-fitted.

    ``value`` is the mean over fold seeds; ``ci_low``/``ci_high`` the 95% bootstrap interval
    over items (pooled over seeds); ``seed_min``/``seed_max`` the spread of the per-seed
    values. ``gain_vs_random`` and its interval are paired differences against random
    routing on the same items (None for the random row itself).
    """

    name: str
    kind: RowKind
    value: float
    ci_low: float
    ci_high: float
    seed_min: float
    seed_max: float
    gain_vs_random: float | None = None
    gain_ci_low: float | None = None
    gain_ci_high: float | None = None


@dataclass(frozen=True, slots=True)
class BaselineComparison:
    """A router beside random, the zero router, the oracle and trivial baselines.

    ``metric`` names the measure (``"apgr"``); ``seeds`` and ``folds`` say how it was
    cross-fitted; ``router`` is the name of the row under test. ``significant`` is True when
    the router's paired gain over random has a 95% interval above zero; ``verdict`` is one
    sentence for a person (which baseline it beats or does not).
    """

    metric: str
    router: str
    rows: tuple[BaselineRow, ...]
    seeds: int
    folds: int
    items: int
    significant: bool
    verdict: str
    notes: tuple[str, ...] = field(default=())

    def row(self, name: str) -> BaselineRow:
        """The row called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored under a policy file's ``"baselines"`` key."""
        data = asdict(self)
        data["rows"] = [asdict(row) for row in self.rows]
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaselineComparison:
        """The inverse of `to_dict`."""
        rows = tuple(BaselineRow(**dict(row)) for row in data["rows"])
        return cls(
            metric=str(data["metric"]),
            router=str(data["router"]),
            rows=rows,
            seeds=int(data["seeds"]),
            folds=int(data["folds"]),
            items=int(data["items"]),
            significant=bool(data["significant"]),
            verdict=str(data["verdict"]),
            notes=tuple(str(n) for n in data.get("notes", ())),
        )


def _num(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def format_baseline_table(comparison: BaselineComparison, *, digits: int = 3) -> str:
    """A plain-text table (one row per router and baseline) followed by the verdict."""
    metric = comparison.metric.upper()
    header = (metric, "95% CI (items)", "seed range", "gain vs random [95% CI]")
    lines: list[Sequence[str]] = [("", *header)]
    for row in comparison.rows:
        gain = ""
        if row.gain_vs_random is not None:
            gain = (
                f"{row.gain_vs_random:+.{digits}f} "
                f"[{_num(row.gain_ci_low, digits)}, {_num(row.gain_ci_high, digits)}]"
            )
        lines.append(
            (
                f"{row.name} ({row.kind})" if row.kind != "router" else f"{row.name} (router)",
                _num(row.value, digits),
                f"[{_num(row.ci_low, digits)}, {_num(row.ci_high, digits)}]",
                f"{_num(row.seed_min, digits)}-{_num(row.seed_max, digits)}",
                gain,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        ).rstrip()
        for line in lines
    ]
    out.append(
        f"{comparison.items} items, {comparison.folds}-fold cross-fitting over "
        f"{comparison.seeds} fold seeds."
    )
    out.extend(comparison.notes)
    out.append(comparison.verdict)
    return "\n".join(out)
