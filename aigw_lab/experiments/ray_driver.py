"""One run of an experiment on Ray, seen from its driver (`RunDriver`, made by
`aigw_lab.experiments.ray_executor.RayExecutor.arun`): the experiment's and the run's rows
pushed to the team log, the pending units dealt into shards and sent as Ray tasks, progress
drained from the run's board into the tracker, the budget stop, done units rescored, and the
run's status when its shards return (or fail, or are interrupted)."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import AigwError
from aigw_lab.experiments.estimate import estimate_units
from aigw_lab.experiments.progress import ProgressTracker, counts_by_target
from aigw_lab.experiments.ray_worker import RunBoard, ShardJob, ShardResult, run_shard
from aigw_lab.experiments.records import (
    RunRecord,
    close_abandoned_runs,
    code_version,
    done_units,
    logged_rows,
    record_experiment,
    response_from_row,
    run_counts,
    spent_usd,
)
from aigw_lab.experiments.results import ExperimentResult
from aigw_lab.experiments.runner import _safe_score, check_budget, new_run_id
from aigw_lab.store.scores import score_rows

if TYPE_CHECKING:
    from aigw_lab.experiments.experiment import Experiment, Unit
    from aigw_lab.experiments.ray_executor import RayExecutor
    from aigw_lab.experiments.runner import ProgressCallback
    from aigw_lab.gateway import Gateway
    from aigw_lab.store import CallLog
    from aigw_lab.store.team_mirror import TeamLogMirror
    from aigw_lab.store.team_rows import TeamRows

__all__ = ["RunDriver", "shard_result"]

#: How often the driver collects finished shards and progress (seconds).
_POLL_S = 0.2


class RunDriver:
    """One execution of an experiment on Ray, seen from the driver."""

    def __init__(
        self,
        executor: RayExecutor,
        ray: ModuleType,
        gateway: Gateway,
        experiment: Experiment,
        shipped: Experiment,
        rows: TeamRows,
        mirror: TeamLogMirror,
        url: str,
    ) -> None:
        self.executor, self.ray, self.gateway = executor, ray, gateway
        self.experiment, self.shipped = experiment, shipped
        self.rows, self.mirror, self.url = rows, mirror, url
        self.log: CallLog = mirror.log
        self.run_id = new_run_id()
        self.version = code_version()
        self.stop_reason: str | None = None
        self.sent = False  # shards were sent to Ray
        self.restarted: list[int] = []  # shards Ray ran again after their worker died

    async def run(
        self,
        *,
        progress: bool,
        resume: bool,
        force: bool,
        on_progress: ProgressCallback | None,
        output_tokens: int,
    ) -> ExperimentResult:
        experiment, log = self.experiment, self.log
        units = list(experiment.units())
        done = await asyncio.to_thread(done_units, log, experiment.id) if resume else {}
        pending = [u for u in units if u.key not in done]
        present = {u.key: u for u in units if u.key in done}
        estimate = estimate_units(self.gateway, experiment, pending, output_tokens=output_tokens)
        spent_before = await asyncio.to_thread(spent_usd, log, experiment.id)
        check_budget(experiment, estimate, spent_before=spent_before, force=force)
        message = await asyncio.to_thread(record_experiment, log, experiment, self.version)
        await asyncio.to_thread(self._push, "experiments", "experiment_id", experiment.id)
        await asyncio.to_thread(close_abandoned_runs, log, experiment.id)
        await asyncio.to_thread(self._push, "experiment_runs", "experiment_id", experiment.id)
        record = RunRecord(
            run_id=self.run_id,
            experiment_id=experiment.id,
            started_at=datetime.now(UTC),
            planned=len(units),
            skipped=len(present),
            estimated_cost_usd=estimate.usd,
            code_version=self.version,
            message=message,
        )
        await asyncio.to_thread(record.insert, log)
        await asyncio.to_thread(self._push, "experiment_runs", "run_id", self.run_id)
        tracker = ProgressTracker(
            experiment_id=experiment.id,
            run_id=self.run_id,
            totals=counts_by_target(u.key for u in units),
            skipped=counts_by_target(present),
            bar=progress,
            on_progress=on_progress,
            description=experiment.name,
        )
        status, failure, stopped_by = "failed", None, None
        results: list[ShardResult] = []
        try:
            await self._score_missing(present, done, tracker)
            results = await self._send(pending, resume, tracker, spent_before)
            status, failure = self._outcome(record, results)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError) as exc:
            status, stopped_by = "interrupted", type(exc).__name__
            raise
        except BaseException as exc:
            failure = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record.cost_usd = tracker.cost_usd
            if self.sent and status != "interrupted" and (status == "failed" or self.restarted):
                # A worker died: its rows and calls in flight (as interrupted) are in its
                # machine's spool; sent now, not when a worker of its shard index next runs
                # there. (Ctrl-C: the driver is going down; a resume sends them.)
                await asyncio.to_thread(self._send_leftovers)
            try:
                await asyncio.shield(
                    asyncio.ensure_future(
                        asyncio.to_thread(
                            self._finish, record, status, failure or self.stop_reason or message,
                            stopped_by,
                        )
                    )
                )  # fmt: skip
            finally:
                tracker.close(status)
        return ExperimentResult(
            experiment_id=experiment.id,
            run_id=self.run_id,
            status=status,
            planned=record.planned,
            skipped=record.skipped,
            completed=record.completed,
            failed=record.failed,
            cost_usd=record.cost_usd,
            estimate=replace(estimate, spent_usd=spent_before, skipped_units=len(present)),
            log=log,
            message=failure or self.stop_reason or message,
        )

    # --- the team log -------------------------------------------------------------------

    def _push(self, table: str, column: str, value: str) -> None:
        """Copy the mirror's rows of ``table`` where ``column = value`` to the team log,
        replacing the team log's rows of the same keys."""
        frame = self.log.query(f'SELECT * FROM "{table}" WHERE "{column}" = ?', [value])
        records = [
            {k: (None if _missing(v) else _plain(v)) for k, v in row.items()}
            for row in frame.to_dict("records")
        ]
        self.rows.replace(table, records)

    def _finish(
        self, record: RunRecord, status: str, message: str | None, stopped_by: str | None
    ) -> None:
        try:
            self.mirror.sync()
            if status in ("interrupted", "failed"):
                # Shards cut short: the team log is the record of what was done.
                record.completed, record.failed, _, _ = run_counts(self.log, record.run_id)
        except Exception:  # noqa: BLE001 - the team log failing: keep the counts we have
            pass
        if stopped_by is not None:
            message = (
                f"interrupted ({stopped_by}) after {record.completed} units done and "
                f"{record.failed} failed; run again to resume"
            )
        record.finish(self.log, status, message)
        self._push("experiment_runs", "run_id", record.run_id)
        self.mirror.sync()

    # --- units --------------------------------------------------------------------------

    async def _send(
        self, pending: list[Unit], resume: bool, tracker: ProgressTracker, spent_before: float
    ) -> list[ShardResult]:
        """Shard the pending units, run the shards as Ray tasks, feed the tracker from the
        board until every shard has returned."""
        if not pending:
            return []
        ray, executor = self.ray, self.executor
        await asyncio.to_thread(executor.ensure_ray, ray)
        self.sent = True
        count = min(executor.workers, len(pending))
        # Round-robin: every shard gets every target's units in the experiment's order, so
        # a run stopped early leaves the targets about equally done.
        shards = [tuple(u.key for u in pending[i::count]) for i in range(count)]
        budget = self.experiment.budget_usd
        left = None if budget is None else budget - spent_before
        board = ray.remote(RunBoard).options(name=f"aigw-board-{self.run_id}").remote(left)
        task = ray.remote(run_shard).options(max_retries=executor.max_retries)
        refs = [
            task.remote(
                ShardJob(
                    shard=index,
                    experiment=self.shipped,
                    keys=keys,
                    run_id=self.run_id,
                    resume=resume,
                    gateway=executor.gateway,
                    url_env=executor.url_env,
                    spool_dir=executor.spool_for(self.url),
                    board=board,
                    scorer_specs=executor.scorer_specs,  # type: ignore[arg-type]
                    shards=count,
                )
            )
            for index, keys in enumerate(shards)
        ]
        results: list[ShardResult] = []
        waiting = list(refs)
        try:
            while waiting:
                ready, waiting = await asyncio.to_thread(
                    ray.wait, waiting, num_returns=len(waiting), timeout=_POLL_S
                )
                for ref in ready:
                    results.append(await asyncio.to_thread(shard_result, ray, ref))
                await self._drain(board, tracker, spent_before)
            await self._drain(board, tracker, spent_before)
        except BaseException:
            # Ctrl-C or a shard's failure: no unit starts anywhere any more; shards still
            # running are cancelled (their calls end as cancelled rows).
            try:
                board.stop.remote("the driver stopped the run")
                for ref in waiting:
                    ray.cancel(ref)
            except Exception:  # noqa: BLE001 - Ray itself going down: nothing left to stop
                pass
            raise
        finally:
            try:
                self.restarted = await board.restarted.remote()
            except Exception:  # noqa: BLE001 - the board died: then assume a worker did too
                self.restarted = [-1]
            try:
                ray.kill(board)
            except Exception:  # noqa: BLE001 - already gone
                pass
        return results

    def _send_leftovers(self) -> None:
        """`RayExecutor.send_cluster_leftovers`; its failure is a warning, never the run's
        error (the rows stay in the spool for the next worker or resume)."""
        try:
            self.executor.send_cluster_leftovers(self.ray, self.url)
        except Exception as exc:  # noqa: BLE001 - the run's own outcome comes first
            warnings.warn(
                f"a Ray worker died and its machine's spool could not be sent to the team log "
                f"now ({type(exc).__name__}: {exc}); its rows are sent when the run resumes",
                RuntimeWarning,
                stacklevel=2,
            )

    async def _drain(self, board: Any, tracker: ProgressTracker, spent_before: float) -> None:
        events = await board.drain.remote()
        for target, ok, cost in events:
            tracker.unit_finished(target, ok=ok, cost_usd=cost)
        budget = self.experiment.budget_usd
        if budget is not None and self.stop_reason is None:
            spent = spent_before + tracker.cost_usd
            if spent >= budget:
                self.stop_reason = (
                    f"stopped at the budget: ${spent:.4f} spent of budget_usd ${budget:.4f}; "
                    "raise it and run again to resume"
                )
                board.stop.remote(self.stop_reason)

    def _outcome(self, record: RunRecord, results: list[ShardResult]) -> tuple[str, str | None]:
        record.completed = sum(r.completed for r in results)
        record.failed = sum(r.failed for r in results)
        if self.stop_reason:
            return "stopped_budget", None
        if record.failed and not record.completed:
            first = next((r.first_error for r in results if r.first_error), None)
            return "failed", (
                f"every unit failed ({record.failed} of {record.failed}); the first error: {first}"
            )
        return "completed", None

    async def _score_missing(
        self,
        present: dict[tuple[str, str, int], Unit],
        done: Mapping[tuple[str, str, int], Any],
        tracker: ProgressTracker,
    ) -> None:
        """Score done units lacking some scorer's score, from their logged rows (no call),
        here in the driver; the scores go to the team log."""
        wanted = {s.name for s in self.experiment.scorers}
        todo = [(key, done[key]) for key in present if not wanted <= done[key].scorers]
        if not todo:
            return
        logged = await asyncio.to_thread(logged_rows, self.log, [d.call_id for _, d in todo])
        out: list[dict[str, Any]] = []
        for key, found in todo:
            row = logged.get(found.call_id)
            if row is None:
                continue
            unit = present[key]
            response = response_from_row(row)
            scorers = [s for s in self.experiment.scorers if s.name not in found.scorers]
            scores = [await _safe_score(s, unit.item, response) for s in scorers]
            out += score_rows(
                scores,
                call_id=response.call_id or "",
                trace_id=found.trace_id,
                experiment_id=self.experiment.id,
                run_id=self.run_id,
                item_id=unit.item.id,
                target=unit.target.label,
            )
            stated = [s.details.get("judge_cost_usd") for s in scores if s.details]
            tracker.add_cost(unit.target.label, sum(c for c in stated if isinstance(c, float)))
        await asyncio.to_thread(self.rows.insert, "scores", out)


def shard_result(ray: ModuleType, ref: Any) -> Any:
    """A finished Ray task's result (a shard's, a node's spool sweep's); its own typed error
    (no team log URL on a node, the team log unreachable) is raised as itself, not wrapped
    in Ray's task error, so the CLI shows its one line and fix."""
    try:
        return ray.get(ref)  # type: ignore[no-any-return]
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, AigwError):
            raise cause from None
        raise


def _missing(value: Any) -> bool:
    """NaN, NaT and None from a pandas record."""
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """A pandas value as psycopg takes it (a Timestamp as a datetime)."""
    to_pydatetime = getattr(value, "to_pydatetime", None)
    if callable(to_pydatetime):
        return to_pydatetime()
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value
