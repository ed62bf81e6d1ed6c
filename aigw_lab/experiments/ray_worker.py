"""What runs inside a Ray worker for `aigw_lab.experiments.ray_executor.RayExecutor`: one
shard of an experiment's units (`run_shard`), and the run's board (`RunBoard`), the one Ray
actor through which workers report finished units and the driver says stop.

Nothing here imports Ray: the executor wraps `run_shard` as a Ray task and `RunBoard` as an
actor when a run starts, so a worker only imports what the shard needs.

A shard, in its worker process:

1. opens a `TeamLogSink` on the machine's spool directory and waits until PostgreSQL has
   what a killed process left there (`TeamLogSink.flush` sends leftovers first);
2. asks the team log which of its units are done (of the experiment when resuming, else of
   this run: a shard Ray retries after its worker died skips what the dead one finished), so
   only calls that were in flight at a kill are paid again;
3. builds its own `Gateway` from the recipe (`WorkerGateway`: a config file, inline tables,
   the simulated fleet), with no local log and the team log as its sink: each call's start
   is spooled before its request leaves and its row before ``achat`` returns, then copied to
   PostgreSQL (a worker killed mid-call leaves the start, which the next worker on the
   machine sends as an ``interrupted`` row: `aigw_lab.gateway.start_spools`);
4. sends its units, ``concurrency`` at a time, scores each answer, and writes the scores to
   the team log (`TeamRows`); reports each unit to the board and asks it before starting
   the next, stopping when it says so (budget spent, Ctrl-C) or is gone (the driver died);
5. waits until PostgreSQL has every row it appended, and returns its counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import ConfigError
from aigw_lab.experiments.runner import _describe_error, _safe_score, unit_request
from aigw_lab.store.scores import score_rows
from aigw_lab.store.team_log import TeamLogSink
from aigw_lab.store.team_rows import TeamRows

if TYPE_CHECKING:
    from aigw_lab.experiments.experiment import Experiment, Unit
    from aigw_lab.gateway import Gateway
    from aigw_lab.store.sink import CallSink

__all__ = [
    "RunBoard",
    "ShardJob",
    "ShardResult",
    "WorkerGateway",
    "run_shard",
    "send_node_leftovers",
    "send_spool_folder",
    "send_spool_root",
]

#: How often a shard writes its buffered scores to the team log.
POLL_S = 0.25


@dataclass(frozen=True, kw_only=True)
class WorkerGateway:
    """How a worker builds its gateway: from a gateway config file (``config``, a path each
    worker can read), from inline config tables (``inline``, resolved against ``base_dir``),
    or the simulated fleet with ``simulated``'s options (the default). ``factory`` (a
    picklable callable taking the sinks and returning a `Gateway`) overrides them all.
    The gateway has no local log: its rows go to the team log."""

    config: str | None = None
    inline: Mapping[str, Any] | None = None
    base_dir: str | None = None
    simulated: Mapping[str, Any] = field(default_factory=dict)
    factory: Callable[[Sequence[CallSink]], Gateway] | None = None

    def build(
        self,
        sinks: Sequence[CallSink] = (),
        *,
        team: TeamLogSink | None = None,
        team_url: str | None = None,
    ) -> Gateway:
        """The worker's gateway, logging only to ``sinks`` and ``team`` (the run's team-log
        sink, writing to ``team_url``). A config's every section applies as in
        `Gateway.from_config`, its team log being ``team``: a config naming another team log
        is a `ConfigError` (its rows would be missing from one of them)."""
        # lazy: the config and gateway layers load here, in the worker, not at import
        from aigw_lab.config import load_config, parse_config
        from aigw_lab.config_gateway import gateway_of
        from aigw_lab.gateway import Gateway

        every = [*sinks, *([team] if team is not None else [])]
        if self.factory is not None:
            return self.factory(every)
        if self.config is not None:
            config = load_config(self.config)
        elif self.inline is not None:
            config = parse_config(self.inline, base_dir=self.base_dir, source="[gateway]")
        else:
            return Gateway.simulated_fleet(log=None, sinks=every, **dict(self.simulated))
        if config.team_log is not None and team_url is not None and config.team_log.url != team_url:
            raise ConfigError(
                f'{config.source}: [log] backend = "postgres" (url_env = '
                f"{config.team_log.url_env}) names another team log than the Ray run's",
                hint="a Ray run's workers log to the team log of the executor's url_env: point "
                'both variables at the same URL, or leave backend = "postgres" out of the '
                "config the experiment uses",
            )
        # As ExperimentSpec.build_gateway builds it, but with no local log: the run's
        # team-log sink stands for the config's team log.
        return gateway_of(config, log=None, sinks=list(sinks), team_sink=team)


def send_spool_root(url: str, root: Path, timeout: float) -> int:
    """Send what dead shards left in every ``shard-*`` folder of one machine's team-log
    spool directory ``root`` (`send_spool_folder` each); returns the folders looked at."""
    root = root.expanduser()
    if not root.is_dir():
        return 0
    folders = [folder for folder in sorted(root.glob("shard-*")) if folder.is_dir()]
    for folder in folders:
        send_spool_folder(url, folder, timeout)
    return len(folders)


def send_node_leftovers(url_env: str, spool_dir: str, timeout: float) -> int:
    """`send_spool_root` on the machine it runs on, the team log's URL read from
    ``url_env`` there: the Ray task the driver pins to each node of the cluster
    (`aigw_lab.experiments.ray_executor.RayExecutor.send_cluster_leftovers`)."""
    return send_spool_root(_team_url(url_env), Path(spool_dir), timeout)


def send_spool_folder(url: str, folder: Path, timeout: float) -> None:
    """Send what dead processes left in one team-log spool folder (rows, and starts without
    a row as interrupted rows) to the team log at ``url``, waiting up to ``timeout``.
    Segments a live process holds are locked, so they are left alone."""
    leftovers = TeamLogSink(url, spool_dir=folder)
    try:
        leftovers.flush(timeout)
    finally:
        leftovers.close()


@dataclass(frozen=True, kw_only=True)
class ShardJob:
    """One shard's work, as the driver sends it to a Ray task (pickled).

    ``keys`` are the shard's units (``(item_id, target, repetition)``); ``scorer_specs``,
    when given, are built in the worker for its gateway (a judge needs one) instead of the
    experiment's own scorers. ``url_env`` names the variable holding the team log's URL on
    the worker (the URL itself never travels through Ray); ``spool_dir`` is the machine's
    spool directory for the team log."""

    shard: int
    experiment: Experiment
    keys: tuple[tuple[str, str, int], ...]
    run_id: str
    resume: bool
    gateway: WorkerGateway
    url_env: str
    spool_dir: str
    board: Any = None
    scorer_specs: tuple[Any, ...] | None = None
    flush_timeout: float = 60.0
    shards: int = 1


@dataclass(frozen=True, kw_only=True)
class ShardResult:
    """What a shard did: units done and failed, units it found done already, its first
    error, and what its units' calls cost."""

    shard: int
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    cost_usd: float = 0.0
    first_error: str | None = None
    pid: int = 0


class RunBoard:
    """The run's meeting point (a Ray actor): workers report finished units and ask before
    starting each unit whether they may; the driver drains the reports into its progress
    tracker and may set a stop reason. ``budget_usd``: what the run may still spend; once
    the units reported cost that much, no unit starts (those in flight finish), as in one
    process."""

    def __init__(self, budget_usd: float | None = None) -> None:
        self._events: list[tuple[str, bool, float | None]] = []
        self._stop: str | None = None
        self._pids: dict[int, int] = {}
        self._starts: dict[int, int] = {}
        self._budget = budget_usd
        self._spent = 0.0
        self._by_shard: dict[int, int] = {}

    def unit(self, target: str, ok: bool, cost_usd: float | None, shard: int = -1) -> None:
        """One unit of ``target`` finished (its call succeeded or failed for good)."""
        self._events.append((target, ok, cost_usd))
        self._by_shard[shard] = self._by_shard.get(shard, 0) + 1
        self._spent += cost_usd or 0.0
        if self._budget is not None and self._spent >= self._budget and self._stop is None:
            self._stop = "the budget is spent"

    def hello(self, shard: int, pid: int) -> None:
        """Shard ``shard`` started in process ``pid`` (a retried shard says so again)."""
        self._pids[shard] = pid
        self._starts[shard] = self._starts.get(shard, 0) + 1

    def restarted(self) -> list[int]:
        """Shards that started more than once: Ray ran them again after a worker died."""
        return sorted(shard for shard, count in self._starts.items() if count > 1)

    def pids(self) -> dict[int, int]:
        """The worker process of each started shard."""
        return dict(self._pids)

    def finished(self) -> dict[int, int]:
        """Units each shard has reported (a retried shard's count goes on)."""
        return dict(self._by_shard)

    def drain(self) -> list[tuple[str, bool, float | None]]:
        """The units reported since the last drain."""
        events, self._events = self._events, []
        return events

    def stop(self, reason: str) -> None:
        """Ask every shard to start no more units."""
        self._stop = self._stop or reason

    def stopped(self) -> str | None:
        """The stop reason, or None while units may start."""
        return self._stop


def run_shard(job: ShardJob) -> ShardResult:
    """Run one shard (see the module's docstring); called in a Ray worker."""
    return asyncio.run(_Shard(job).run())


class _Shard:
    def __init__(self, job: ShardJob) -> None:
        self.job = job
        self.completed = self.failed = self.skipped = 0
        self.cost = 0.0
        self.first_error: str | None = None
        self.scores: list[dict[str, Any]] = []
        self.stop: str | None = None
        self.writing = threading.Lock()

    async def run(self) -> ShardResult:
        job = self.job
        if job.board is not None:
            job.board.hello.remote(job.shard, os.getpid())
        url = _team_url(job.url_env)
        root = Path(job.spool_dir).expanduser()
        with contextlib.ExitStack() as stack:
            # One spool directory per shard index, so a retried or resumed shard of the same
            # index is the one that sends what its killed predecessor left (rows, and starts
            # of calls in flight as interrupted rows) before it asks which of its units are
            # done. In a shared directory another shard starting at the same moment could
            # take those leftovers first, and this one would pay for their units again.
            # (The per-shard folders once also avoided a segment-creation race, since fixed
            # in aigw_lab.store.spool.)
            sink = TeamLogSink(url, spool_dir=root / f"shard-{job.shard}")
            stack.callback(sink.close)
            # A killed worker's rows in this machine's spool reach PostgreSQL first, so the
            # done units below include every call that returned before the kill.
            await asyncio.to_thread(sink.flush, job.flush_timeout)
            await asyncio.to_thread(self._send_orphans, url, root)
            rows = TeamRows(url)
            stack.callback(rows.close)
            done = await asyncio.to_thread(
                rows.done_keys,
                **({"experiment_id": job.experiment.id} if job.resume else {"run_id": job.run_id}),
            )
            units = [u for u in _units(job.experiment, set(job.keys)) if u.key not in done]
            self.skipped = len(job.keys) - len(units)
            gateway = job.gateway.build(team=sink, team_url=url)
            stack.callback(gateway.close)
            scorers = self._scorers(gateway)
            watcher = asyncio.ensure_future(self._watch(rows))
            try:
                await self._send(gateway, units, scorers)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                await asyncio.to_thread(self._write_scores, rows)
                # Every row this shard appended is in PostgreSQL before it reports done.
                await asyncio.to_thread(sink.flush, job.flush_timeout)
        return ShardResult(
            shard=job.shard,
            completed=self.completed,
            failed=self.failed,
            skipped=self.skipped,
            cost_usd=self.cost,
            first_error=self.first_error,
            pid=os.getpid(),
        )

    def _send_orphans(self, url: str, root: Path) -> None:
        """Send what killed shards of higher indexes left (a run with more shards, before
        this one): shard i takes the directories ``shard-j``, j >= shards, j = i mod shards,
        so each has one reader."""
        job = self.job
        if not root.is_dir():
            return
        for folder in sorted(root.glob("shard-*")):
            index = folder.name.removeprefix("shard-")
            if not index.isdigit() or int(index) < job.shards:
                continue
            if int(index) % job.shards != job.shard:
                continue
            send_spool_folder(url, folder, job.flush_timeout)

    def _scorers(self, gateway: Gateway) -> Sequence[Any]:
        if self.job.scorer_specs is None:
            return self.job.experiment.scorers
        # lazy: the scorers' registry loads only when a worker builds them
        from aigw_lab.scorers import build_scorer

        return [build_scorer(spec, gateway=gateway) for spec in self.job.scorer_specs]

    async def _may_start(self) -> bool:
        """Whether a unit may start: the board has no stop reason (budget spent, Ctrl-C).
        A board gone means its driver is gone: stop too. One actor call per unit, after
        this worker's own reports (Ray runs one caller's actor calls in order), so the
        budget is overshot by no more than the calls in flight, as in one process."""
        board = self.job.board
        if self.stop is not None or board is None:
            return self.stop is None
        try:
            reason = await board.stopped.remote()
        except Exception as exc:  # noqa: BLE001 - the actor died with its driver
            reason = f"the run's driver is gone ({type(exc).__name__})"
        if reason:
            self.stop = reason
        return self.stop is None

    async def _watch(self, rows: TeamRows) -> None:
        """Every `POLL_S`: write the scores buffered so far."""
        while True:
            await asyncio.sleep(POLL_S)
            if self.scores:
                await asyncio.to_thread(self._write_scores, rows)

    def _write_scores(self, rows: TeamRows) -> None:
        # One writer at a time on the connection: a watcher's write still running in its
        # thread when the watcher is cancelled must not overlap the final one.
        with self.writing:
            batch, self.scores = self.scores, []
            if batch:
                rows.insert("scores", batch)

    async def _send(self, gateway: Gateway, units: list[Unit], scorers: Sequence[Any]) -> None:
        queue: Iterator[Unit] = iter(units)

        async def worker() -> None:
            for unit in queue:  # one shared iterator: each unit goes to exactly one worker
                if not await self._may_start():
                    return
                await self._run_unit(gateway, unit, scorers)
                await asyncio.sleep(0)

        count = min(self.job.experiment.concurrency, len(units))
        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(worker())

    async def _run_unit(self, gateway: Gateway, unit: Unit, scorers: Sequence[Any]) -> None:
        job = self.job
        label = unit.target.label
        try:
            response = await gateway.achat(unit_request(job.experiment, unit, job.run_id))
        except Exception as exc:
            # The gateway logged the failure; the unit stays not done, so a resume retries it.
            self.failed += 1
            if self.first_error is None:
                self.first_error = _describe_error(exc)
            self._report(label, False, None)
            return
        # The row is in the spool now (the sink spools before achat returns): a kill after
        # this cannot make a resume pay for this unit again.
        self.completed += 1
        cost = response.cost_usd or 0.0
        if scorers:
            scores = [await _safe_score(scorer, unit.item, response) for scorer in scorers]
            stated = [s.details.get("judge_cost_usd") for s in scores if s.details]
            cost += sum(c for c in stated if isinstance(c, (int, float)))
            self.scores.extend(
                score_rows(
                    scores,
                    call_id=response.call_id or "",
                    trace_id=response.trace_id,
                    experiment_id=job.experiment.id,
                    run_id=job.run_id,
                    item_id=unit.item.id,
                    target=label,
                )
            )
        self.cost += cost
        self._report(label, True, cost)

    def _report(self, target: str, ok: bool, cost: float | None) -> None:
        if self.job.board is not None:
            self.job.board.unit.remote(target, ok, cost, self.job.shard)


def _units(experiment: Experiment, keys: set[tuple[str, str, int]]) -> Iterator[Unit]:
    """The experiment's units with these keys, in the experiment's order."""
    return (u for u in experiment.units() if u.key in keys)


def _team_url(url_env: str) -> str:
    url = os.environ.get(url_env, "")
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"the Ray worker on {os.uname().nodename} has no team log URL in {url_env}",
            hint=f"export {url_env}=postgresql://user@host:5432/db on every node before "
            "starting Ray (the URL never travels through Ray's task arguments)",
        )
    return url
