"""Running an experiment: every unit through the gateway, scored, recorded, resumable.

    result = run_experiment(gateway, experiment)     # a tqdm bar while it runs
    result.summary()                                 # per target: n, errors, scores, cost

Each unit is one `Gateway.achat` call (so the gateway's caching, rate limits, retries,
fallbacks and budgets all apply), at most ``experiment.concurrency`` at a time. The request
carries the experiment id and the unit's coordinates in ``metadata["aigw_experiment"]``, which
the gateway logs as the ``run_id``, ``item_id``, ``target`` and ``repetition`` columns.

Durability and resume: a unit is *done* when the log holds an ok outcome for it; a resumed
run (same experiment id) skips done units and scores, from the logged row, done units whose
scores are missing. A file log spools every row before queueing it (see
`aigw_lab.store.spool`), so a unit's row survives the process being killed the moment its
call returns: the next open writes it. The calls a resume pays again are those in flight at
the kill (at most ``concurrency``); the log shows them as ``interrupted``. Without a spool
(``durability = "none"``) the runner instead waits for the log to write each unit's row (a
flush) before counting it done.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from aigw_lab.errors import AigwError, BudgetExceededError
from aigw_lab.experiments.estimate import DEFAULT_OUTPUT_TOKENS, CostEstimate, estimate_units
from aigw_lab.experiments.progress import ProgressSnapshot, ProgressTracker, counts_by_target
from aigw_lab.experiments.records import (
    DoneUnit,
    RunRecord,
    close_abandoned_runs,
    code_version,
    done_units,
    logged_rows,
    record_experiment,
    response_from_row,
    run_counts,
    spent_usd,
    trace_cost_usd,
)
from aigw_lab.experiments.results import ExperimentResult
from aigw_lab.gateway.records import EXPERIMENT_KEY
from aigw_lab.scorers.base import Score
from aigw_lab.store.scores import score_rows
from aigw_lab.types import ChatRequest, ChatResponse

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.experiments.experiment import Experiment, Unit
    from aigw_lab.gateway import Gateway
    from aigw_lab.scorers.base import Scorer
    from aigw_lab.store import CallLog

__all__ = [
    "Executor",
    "arun_experiment",
    "check_budget",
    "new_run_id",
    "run_experiment",
    "unit_request",
]

ProgressCallback = Callable[[ProgressSnapshot], Any]


class Executor(Protocol):
    """Runs a whole experiment somewhere else than this process (`arun_experiment`'s
    ``executor``): it takes the runner's parameters and returns the same result."""

    async def arun(
        self,
        gateway: Gateway,
        experiment: Experiment,
        *,
        progress: bool,
        resume: bool,
        force: bool,
        on_progress: ProgressCallback | None,
        output_tokens: int,
    ) -> ExperimentResult: ...


P = ParamSpec("P")
R = TypeVar("R")


async def arun_experiment(
    gateway: Gateway,
    experiment: Experiment,
    *,
    progress: bool = True,
    resume: bool = True,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    executor: Executor | None = None,
) -> ExperimentResult:
    """Run ``experiment`` through ``gateway`` (which must have a call log).

    ``resume``: skip units already done under this experiment id (and score done units
    whose scores are missing); ``False`` sends every unit again. ``progress``: show a tqdm
    bar (plain lines when stderr is not a terminal); ``on_progress`` receives a
    `ProgressSnapshot` after every unit.

    Before sending anything, the cost of the units to send is estimated
    (`aigw_lab.experiments.estimate`); if the experiment's spend so far plus that estimate
    exceeds ``budget_usd``, `BudgetExceededError` is raised, unless ``force``. During the run,
    once the spend reaches ``budget_usd`` no new unit starts (those in flight finish) and the
    run ends with status ``"stopped_budget"``.

    A scorer that raises is recorded as a failed score (value None, the error in comment).
    The run ends ``"completed"``; ``"failed"`` when units were sent and every one failed
    (the result's message gives the first error); ``"stopped_budget"``. On Ctrl-C,
    ``SystemExit`` or cancellation it is recorded as ``"interrupted"`` with its counts so
    far and the exception propagates; on any other exception, as ``"failed"``.

    ``executor``: where the units run; None runs them here, in this process. An executor
    such as `aigw_lab.experiments.ray_executor.RayExecutor` (units sharded across a Ray
    cluster's workers, every row in the team log) takes over the whole run, with the same
    parameters and result; ``gateway`` then serves the estimate (and any judge rescoring).
    """
    if executor is not None:
        return await executor.arun(
            gateway,
            experiment,
            progress=progress,
            resume=resume,
            force=force,
            on_progress=on_progress,
            output_tokens=output_tokens,
        )
    log = gateway.log
    if log is None:
        raise AigwError(
            f"cannot run experiment {experiment.name!r}: the gateway has no call log",
            hint='create the gateway with log="experiments.duckdb": results, scores and '
            "resuming all live in the log",
        )
    runner = _Runner(gateway, log, experiment, output_tokens=output_tokens)
    return await runner.run(progress=progress, resume=resume, force=force, on_progress=on_progress)


def _blocking(run: Callable[P, Coroutine[Any, Any, R]], *, name: str, doc: str) -> Callable[P, R]:
    """A blocking function named ``name`` that runs the coroutine function ``run`` to its
    end and returns its result, taking exactly ``run``'s parameters (one signature, stated
    once: `inspect.signature` and type checkers read ``run``'s).

    It works in scripts and in notebooks: with no event loop running in the calling thread,
    on a new loop there; when one is running (Jupyter), on its own loop in a helper thread,
    this call blocking until it ends (a Ctrl-C cancels it, see `_run_in_thread`)."""

    @functools.wraps(run)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        coroutine = run(*args, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        return _run_in_thread(coroutine)  # type: ignore[no-any-return]

    call.__name__ = call.__qualname__ = name
    call.__doc__ = doc
    return call


# The blocking entry point takes arun_experiment's parameters by construction, rather than a
# second copy of its signature (and a call repeating every keyword) to keep in step.
run_experiment = _blocking(
    arun_experiment,
    name="run_experiment",
    doc="""Run ``experiment`` through ``gateway`` and return its result (see
    `arun_experiment`, whose parameters it takes).

    Works in scripts and in notebooks: when an event loop is already running in this thread
    (Jupyter), the run gets its own loop in a helper thread and this call blocks until it
    ends.""",
)


class _Runner:
    """The state of one execution of an experiment."""

    def __init__(
        self, gateway: Gateway, log: CallLog, experiment: Experiment, *, output_tokens: int
    ) -> None:
        self.gateway = gateway
        self.log = log
        self.experiment = experiment
        self.output_tokens = output_tokens
        self.version = code_version()
        self.run_id = new_run_id()
        self.stop_reason: str | None = None
        self.spent_before = 0.0
        self.tracker: ProgressTracker | None = None
        self.record: RunRecord | None = None
        #: The first failed unit's error, for the message of a run where every unit failed.
        self.first_error: str | None = None

    async def run(
        self,
        *,
        progress: bool,
        resume: bool,
        force: bool,
        on_progress: ProgressCallback | None,
    ) -> ExperimentResult:
        experiment, log = self.experiment, self.log
        units = list(experiment.units())
        done: dict[tuple[str, str, int], DoneUnit] = (
            await asyncio.to_thread(done_units, log, experiment.id) if resume else {}
        )
        pending = [u for u in units if u.key not in done]
        present = {u.key: u for u in units if u.key in done}
        estimate = estimate_units(
            self.gateway, experiment, pending, output_tokens=self.output_tokens
        )
        self.spent_before = await asyncio.to_thread(spent_usd, log, experiment.id)
        self._check_budget(estimate, force)
        message = await asyncio.to_thread(record_experiment, log, experiment, self.version)
        await asyncio.to_thread(close_abandoned_runs, log, experiment.id)

        self.record = RunRecord(
            run_id=self.run_id,
            experiment_id=experiment.id,
            started_at=datetime.now(UTC),
            planned=len(units),
            skipped=len(present),
            estimated_cost_usd=estimate.usd,
            code_version=self.version,
            message=message,
        )
        await asyncio.to_thread(self.record.insert, log)
        self.tracker = ProgressTracker(
            experiment_id=experiment.id,
            run_id=self.run_id,
            totals=counts_by_target(u.key for u in units),
            skipped=counts_by_target(present),
            bar=progress,
            on_progress=on_progress,
            description=experiment.name,
        )
        status, failure, stopped_by = "failed", None, None
        try:
            await self._score_missing(present, done)
            await self._send(pending)
            status, failure = self._outcome()
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError) as exc:
            # Ctrl-C, SIGTERM (the CLI turns it into a cancellation), sys.exit in a callback,
            # a cancelled task: the run stopped on request, with its counts so far (the
            # message is written once _finish has the final counts).
            status, stopped_by = "interrupted", type(exc).__name__
            raise
        except BaseException as exc:
            failure = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.record.cost_usd = self.tracker.cost_usd
            try:
                # Shielded from a second Ctrl-C: the run's row must not stay "running".
                await _finish(
                    self.record,
                    log,
                    status,
                    failure or self.stop_reason or message,
                    interrupted_by=stopped_by,
                )
            finally:
                self.tracker.close(status)
        return ExperimentResult(
            experiment_id=experiment.id,
            run_id=self.run_id,
            status=status,
            planned=self.record.planned,
            skipped=self.record.skipped,
            completed=self.record.completed,
            failed=self.record.failed,
            cost_usd=self.record.cost_usd,
            estimate=replace(estimate, spent_usd=self.spent_before, skipped_units=len(present)),
            log=log,
            message=failure or self.stop_reason or message,
        )

    def _outcome(self) -> tuple[str, str | None]:
        """The status of a run whose units all finished or were not started: ``failed``
        (with the first error) when units were sent and every one of them failed."""
        assert self.record is not None
        if self.stop_reason:
            return "stopped_budget", None
        if self.record.failed and not self.record.completed:
            return "failed", (
                f"every unit failed ({self.record.failed} of {self.record.failed}); the "
                f"first error: {self.first_error}"
            )
        return "completed", None

    # --- budget -------------------------------------------------------------------------

    def _check_budget(self, estimate: CostEstimate, force: bool) -> None:
        check_budget(self.experiment, estimate, spent_before=self.spent_before, force=force)

    def _budget_reached(self) -> bool:
        if self.stop_reason is not None:
            return True
        budget = self.experiment.budget_usd
        if budget is None:
            return False
        assert self.tracker is not None
        spent = self.spent_before + self.tracker.cost_usd
        if spent >= budget:
            self.stop_reason = (
                f"stopped at the budget: ${spent:.4f} spent of budget_usd ${budget:.4f}; "
                "raise it and run again to resume"
            )
            return True
        return False

    # --- units --------------------------------------------------------------------------

    async def _send(self, pending: list[Unit]) -> None:
        """Send the pending units with ``concurrency`` workers; each takes the next unit
        until none are left or the budget is spent. A worker holds its slot while the unit is
        scored too, so an LLM judge's calls stay within the same bound as the targets'."""
        queue: Iterator[Unit] = iter(pending)

        async def worker() -> None:
            for unit in queue:  # one shared iterator: each unit goes to exactly one worker
                if self._budget_reached():
                    return
                await self._run_unit(unit)
                # Yield to the loop after every unit, ok or failed: a provider that answers
                # (or fails) without suspending, like a function or a replay, must not make
                # the run deaf to cancellation (a notebook's interrupt).
                await asyncio.sleep(0)

        workers = min(self.experiment.concurrency, len(pending))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
        except BaseExceptionGroup as failures:
            # Units catch their own call's errors; what gets here is the log failing (a full
            # disk, say). Raise the first such error itself, not a group around it.
            raise failures.exceptions[0] from None

    async def _run_unit(self, unit: Unit) -> None:
        assert self.tracker is not None and self.record is not None
        name = unit.target.label
        request = self._request(unit)
        try:
            response = await self.gateway.achat(request)
        except Exception as exc:
            # The gateway logged the failure (error type, attempts); the unit stays not done,
            # so a resumed run tries it again.
            self.record.failed += 1
            if self.first_error is None:
                self.first_error = _describe_error(exc)
            self.tracker.unit_finished(name, ok=False, cost_usd=None)
            return
        # On file before the unit counts as done: after this, a crash cannot make a resume
        # pay for this unit again. A spooled row already is; otherwise wait for the insert.
        if getattr(self.log, "spool", None) is None:
            await asyncio.to_thread(self.log.flush)
        self.record.completed += 1
        self.tracker.unit_finished(name, ok=True, cost_usd=response.cost_usd)
        await self._score(unit.item, response, None, name, self.experiment.scorers)

    def _request(self, unit: Unit) -> ChatRequest:
        return unit_request(self.experiment, unit, self.run_id)

    async def _score_missing(
        self, present: dict[tuple[str, str, int], Unit], done: dict[tuple[str, str, int], DoneUnit]
    ) -> None:
        """Score done units that lack some scorer's score, from their logged rows (no call)."""
        wanted = {s.name for s in self.experiment.scorers}
        todo = [(key, done[key]) for key in present if not wanted <= done[key].scorers]
        if not todo:
            return
        rows = await asyncio.to_thread(logged_rows, self.log, [d.call_id for _, d in todo])
        for key, found in todo:
            row = rows.get(found.call_id)
            if row is None:
                continue
            unit = present[key]
            scorers = [s for s in self.experiment.scorers if s.name not in found.scorers]
            await self._score(
                unit.item, response_from_row(row), found.trace_id, unit.target.label, scorers
            )

    async def _score(
        self,
        item: DatasetItem,
        response: ChatResponse,
        trace_id: str | None,
        target: str,
        scorers: Any,
    ) -> None:
        if not scorers:
            return
        scores = [await _safe_score(scorer, item, response) for scorer in scorers]
        rows = score_rows(
            scores,
            call_id=response.call_id or "",
            trace_id=trace_id or response.trace_id,
            experiment_id=self.experiment.id,
            run_id=self.run_id,
            item_id=item.id,
            target=target,
        )
        await asyncio.to_thread(self.log.insert, "scores", rows)
        # What LLM judges spent on these scores: stated by the score when it knows
        # (details["judge_cost_usd"]), else looked up from the judge's logged calls.
        assert self.tracker is not None
        stated = [s.details.get("judge_cost_usd") for s in scores if s.details]
        cost = sum(c for c in stated if isinstance(c, (int, float)))
        unstated = [
            s.judge_trace_id
            for s in scores
            if s.judge_trace_id and not (s.details and "judge_cost_usd" in s.details)
        ]
        if unstated:
            cost += await asyncio.to_thread(trace_cost_usd, self.log, unstated)
        self.tracker.add_cost(target, cost)


async def _safe_score(scorer: Scorer, item: DatasetItem, response: ChatResponse) -> Score:
    """``scorer``'s score, or a failed score (value None) carrying the error: a scorer's bug
    must not lose the run's other work."""
    try:
        score = await scorer.ascore(item, response)
    except Exception as exc:
        return Score(
            scorer.name,
            None,
            label="scorer_error",
            comment=f"{type(exc).__name__}: {exc}"[:2000],
            kind=getattr(scorer, "kind", "scorer"),
        )
    if not isinstance(score, Score):
        return Score(
            scorer.name,
            None,
            label="scorer_error",
            comment=f"the scorer returned a {type(score).__name__}, not a Score",
            kind=getattr(scorer, "kind", "scorer"),
        )
    return score


def check_budget(
    experiment: Experiment, estimate: CostEstimate, *, spent_before: float, force: bool
) -> None:
    """Raise `BudgetExceededError` when what was spent plus the estimate exceeds the
    experiment's ``budget_usd`` (unless ``force``): before anything is sent."""
    budget = experiment.budget_usd
    if budget is None or force:
        return
    total = spent_before + estimate.usd
    if total > budget:
        raise BudgetExceededError(
            f"experiment {experiment.name!r} is estimated at ${estimate.usd:.4f} for "
            f"{estimate.units} units (+ ${spent_before:.4f} already spent), over its "
            f"budget_usd of ${budget:.4f}; nothing was sent",
            hint="raise budget_usd, lower max_tokens in params (it caps the expected "
            f"answers: {estimate.describe_sources()}), use fewer items, or start anyway "
            "with force=True (--yes): the run stops once the budget is spent",
        )


def unit_request(experiment: Experiment, unit: Unit, run_id: str) -> ChatRequest:
    """The request of ``unit``, carrying its coordinates (``run_id``, item, target,
    repetition) for the log: every executor sends a unit this way."""
    params = unit.target.request_params(experiment.params)
    item = unit.item
    coordinates = {
        "run_id": run_id,
        "item_id": item.id,
        "target": unit.target.label,
        "repetition": unit.repetition,
        # Not coordinates, but the frame groups by them without needing the dataset.
        "category": item.category,
        "difficulty": item.difficulty,
    }
    return ChatRequest.create(
        unit.target.model,
        item.messages(),
        metadata={EXPERIMENT_KEY: coordinates},
        experiment_id=experiment.id,
        **params,
    )


def new_run_id() -> str:
    """A new run id: the start time (UTC) and 12 random hex digits."""
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.urandom(6).hex()}"


def _describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters (for the run's message)."""
    text = getattr(exc, "message", None) or str(exc)
    line = " ".join(f"{type(exc).__name__}: {text}".split())
    return line if len(line) <= 300 else line[:297] + "..."


_STOPPED_BY = {
    "KeyboardInterrupt": "Ctrl-C",
    "SystemExit": "exit requested",
    "CancelledError": "Ctrl-C, SIGTERM or cancellation",
}


async def _finish(
    record: RunRecord,
    log: CallLog,
    status: str,
    message: str | None,
    *,
    interrupted_by: str | None = None,
) -> None:
    """Write the run's end to its row. ``interrupted_by``: the exception type's name that
    stopped the run, for its message."""

    def write() -> None:
        nonlocal message
        if status in ("interrupted", "failed"):
            # Stopped mid-unit: a call may have returned (and been logged, so a resume skips
            # it) without the runner counting it yet. The log is the record of what was done.
            try:
                log.flush()
                record.completed, record.failed, _, _ = run_counts(log, record.run_id)
            except Exception:  # the log itself failing: keep the counts we have
                pass
        if interrupted_by is not None:
            why = _STOPPED_BY.get(interrupted_by, interrupted_by)
            message = (
                f"interrupted ({why}) after {record.completed} units done and "
                f"{record.failed} failed; run again to resume"
            )
        record.finish(log, status, message)

    task = asyncio.ensure_future(asyncio.to_thread(write))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task  # cancelled while writing: still let the write end, then propagate
        raise


def _run_in_thread(coroutine: Any) -> Any:
    """Run ``coroutine`` on a new event loop in a helper thread and return its result.

    A Ctrl-C (a notebook's interrupt) lands in this, the calling thread: the run's task in
    the helper thread is then cancelled and waited for, so the run stops sending and is
    recorded as interrupted, instead of carrying on unseen and ending as completed."""
    outcome: dict[str, Any] = {}
    running: dict[str, Any] = {}

    async def main() -> Any:
        running["loop"], running["task"] = asyncio.get_running_loop(), asyncio.current_task()
        if running.get("stopped"):  # interrupted before this loop was up to be told
            coroutine.close()
            raise asyncio.CancelledError
        return await coroutine

    ended = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as exc:  # handed to the calling thread below
            outcome["error"] = exc
        finally:
            ended.set()

    thread = threading.Thread(target=target, name="aigw-experiment", daemon=True)
    thread.start()
    try:
        # An Event, not thread.join(): a join interrupted by Ctrl-C can afterwards report the
        # thread as finished while it still runs (CPython before 3.13).
        ended.wait()
    except KeyboardInterrupt:
        running["stopped"] = True
        loop, task = running.get("loop"), running.get("task")
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the loop already closed: the run has ended on its own
        ended.wait()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
