"""An experiment's results, read back from the call log: `experiment_frame` (one tidy row per
unit) and `ExperimentResult` (what `run_experiment` returns).

`experiment_frame` needs nothing but the log, so results can be loaded in a later session
(or from a snapshot of a log another process is writing):

    frame = experiment_frame(CallLog("calls.duckdb"), "my-experiment-3fa2b1c0")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# The frame is a query over the call log alone, so it lives with the store (where the
# datasets layer can read it too); its public names stay importable from here.
from aigw_lab.store.experiment_frame import FRAME_COLUMNS, experiment_frame

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.experiments.estimate import CostEstimate
    from aigw_lab.store import CallLog

__all__ = ["ExperimentResult", "FRAME_COLUMNS", "experiment_frame", "summarise"]


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per target: units ``n``, ``errors``, the mean of each score (None values left out),
    mean latency of the ok units and total cost. The full analysis, with confidence
    intervals, is `aigw_lab.analysis`'s job; this is the at-a-glance table."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    score_columns = [c for c in frame.columns if c.startswith("score_")]
    rows = []
    for target, group in frame.groupby("target", sort=False):
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = {
            "target": target,
            "n": len(group),
            "errors": int((group["status"] != "ok").sum()),
        }
        for column in score_columns:
            row[f"mean_{column.removeprefix('score_')}"] = group[column].astype(float).mean()
        row["mean_latency_ms"] = ok["latency_ms"].mean() if len(ok) else float("nan")
        row["cost_usd"] = group["cost_usd"].astype(float).sum(min_count=0)
        rows.append(row)
    columns = ["target", "n", "errors"]
    columns += [f"mean_{c.removeprefix('score_')}" for c in score_columns]
    columns += ["mean_latency_ms", "cost_usd"]
    return pd.DataFrame(rows, columns=columns).set_index("target")


@dataclass
class ExperimentResult:
    """What `run_experiment` returns: the run's outcome and, lazily, the experiment's results.

    ``status`` is ``completed``, ``stopped_budget``, ``failed`` or ``interrupted``; the
    counts are this run's (``skipped`` units were done before it started). `frame` reads the
    whole experiment (all runs) from the log.
    """

    experiment_id: str
    run_id: str
    status: str
    planned: int
    skipped: int
    completed: int
    failed: int
    cost_usd: float
    estimate: CostEstimate | None
    log: CallLog = field(repr=False)
    message: str | None = None
    _frame: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def frame(self) -> pd.DataFrame:
        """One row per unit (see `experiment_frame`); read once, then cached."""
        if self._frame is None:
            self._frame = experiment_frame(self.log, self.experiment_id)
        return self._frame

    def refresh(self) -> pd.DataFrame:
        """Read the frame again (after feedback scores were added, say)."""
        self._frame = None
        return self.frame

    def summary(self) -> pd.DataFrame:
        """Per target: n, errors, mean of each score, mean latency, total cost."""
        return summarise(self.frame)

    @property
    def ok(self) -> bool:
        """True when the run completed and every unit has an ok result."""
        return self.status == "completed" and self.failed == 0
