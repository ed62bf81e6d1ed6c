"""Experiments bigger than one machine: `RayExecutor` runs an experiment's units on a Ray
cluster, every worker logging to the team log (PostgreSQL), and the driver reading it
through a local mirror.

    executor = RayExecutor(workers=4, url_env="AIGW_TEAM_LOG_URL", mirror="team.duckdb",
                           gateway=WorkerGateway(config="gateway.toml"))
    result = run_experiment(gateway, experiment, executor=executor)   # same result type
    result.summary()                                  # read from the mirror

Design (why tasks, not actors): the pending units are split into ``workers`` shards, each
one Ray *task* (`aigw_lab.experiments.ray_worker.run_shard`). A task builds its own gateway
and team-log sink, sends its units ``concurrency`` at a time and returns its counts; it
holds nothing between runs, so Ray may place it on any node and, when its worker process
dies, runs it again (``max_retries``): the retry asks the team log which of its units are
done and sends only the others. Long-lived actors would keep a warm gateway between runs,
but a dead actor's state is gone anyway, and the log is the only record that survives a
kill. One small actor (`RunBoard`) carries progress up and "stop" down; the driver's side of a
run is `aigw_lab.experiments.ray_driver.RunDriver`.

The driver's own rows (the ``experiments`` row, the run's ``experiment_runs`` row, scores it
computes when resuming) go to PostgreSQL too (`aigw_lab.store.team_rows`), so any mirror of
the team log answers `target_summary`, `paired_comparison` and the report as a single
process's file does. The driver holds an advisory lock on the experiment in PostgreSQL for
the run, so two drivers never run one experiment at once, and a killed driver's lock ends
with its connection.

Resume: as in one process, a unit is done when the team log holds an ok outcome for it.
Rows are spooled on the worker's machine before ``achat`` returns and reach PostgreSQL
within a fraction of a second; a worker started on that machine sends a killed worker's
spooled rows before asking what is done. So a rerun after a kill (driver or worker) pays
again only for calls that were in flight at the kill. A rerun started while a dead driver's
workers are still being torn down by Ray could pay for their in-flight calls too; each
worker stops starting units once the run's board (owned by the driver) is gone.

Ray is the optional ``ray`` extra; it is imported, and a cluster started or joined
(``ray.init``), only when a run starts. A local cluster starts on 127.0.0.1 only
(`aigw_lab.experiments.ray_start`), without its dashboard, and Ray's usage statistics stay
off unless ``RAY_USAGE_STATS_ENABLED`` says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.experiments.ray_driver import RunDriver, shard_result
from aigw_lab.experiments.ray_start import init_ray
from aigw_lab.experiments.ray_worker import WorkerGateway, send_node_leftovers, send_spool_root
from aigw_lab.experiments.results import ExperimentResult

if TYPE_CHECKING:
    from aigw_lab.experiments.experiment import Experiment
    from aigw_lab.experiments.runner import ProgressCallback
    from aigw_lab.experiments.spec import ExperimentSpec
    from aigw_lab.gateway import Gateway

__all__ = [
    "RAY_INSTALL",
    "RayExecutor",
    "WorkerGateway",
    "executor_for_spec",
    "import_ray",
]

#: The install command of the ``ray`` extra.
RAY_INSTALL = 'pip install "aigw-lab[ray]"'

#: The most shards one run may have.
MAX_WORKERS = 1024
_ENV_NAME = re.compile(r"\w+\Z")


def import_ray(feature: str) -> ModuleType:
    """ray, or a `MissingExtraError` naming ``feature`` and the install command."""
    try:
        # lazy: ray is the optional ray extra (and takes about a second to import)
        import ray
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the optional 'ray' extra, and ray cannot be imported ({exc})",
            hint=RAY_INSTALL,
        ) from exc
    return ray


@dataclass(frozen=True, kw_only=True)
class RayExecutor:
    """Run an experiment on Ray (`run_experiment`'s ``executor``).

    ``address``: an existing cluster (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``);
    None starts a local one with ``num_cpus`` CPUs (Ray's default: all of them). When this
    process has already joined a cluster (``ray.init`` was called), that one is used.
    ``workers``: shards the pending units are split into (one Ray task each, each sending
    up to the experiment's ``concurrency`` calls at a time: so at most ``workers x
    concurrency`` calls are in flight). ``url_env``: the environment variable holding the
    team log's ``postgresql://`` URL, on the driver and on every node (the URL never travels
    through Ray). ``mirror``: the driver's local DuckDB copy of the team log, which the
    result reads. ``spool_dir``: each node's spool for the team log (default
    ``~/.aigw-lab/team-spool/<hash of the URL>``). ``gateway``: how each worker builds its
    gateway. ``scorer_specs``: scorer names or tables (as in an experiment file), built in
    each worker for its gateway; None sends the experiment's own scorers (they must
    pickle; an LLM judge holding a gateway does not, so give its spec here).
    """

    address: str | None = None
    workers: int = 2
    num_cpus: int | None = None
    url_env: str = "AIGW_TEAM_LOG_URL"
    mirror: str | os.PathLike[str] = "team-mirror.duckdb"
    spool_dir: str | None = None
    gateway: WorkerGateway = field(default_factory=WorkerGateway)
    scorer_specs: Sequence[Any] | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        for name in ("workers", "max_retries"):
            value = getattr(self, name)
            low = 1 if name == "workers" else 0
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value:
                raise ConfigError(f"RayExecutor {name} = {value!r} must be an integer >= {low}")
        if self.workers > MAX_WORKERS:
            raise ConfigError(
                f"RayExecutor workers = {self.workers} is over {MAX_WORKERS}",
                hint="each worker is one shard of the units; a few per node is plenty",
            )
        if self.num_cpus is not None and (
            isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, int)
        ):
            raise ConfigError(f"RayExecutor num_cpus = {self.num_cpus!r} must be an integer")
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise ConfigError(
                f"RayExecutor address = {self.address!r} is not a cluster address",
                hint='e.g. "auto" or "ray://head:10001"; None starts a local cluster',
            )
        if not isinstance(self.url_env, str) or not _ENV_NAME.match(self.url_env):
            raise ConfigError(
                f"RayExecutor url_env = {self.url_env!r} is not an environment variable name",
                hint='e.g. url_env = "AIGW_TEAM_LOG_URL" (letters, digits, _)',
            )
        if not str(self.mirror) or str(self.mirror) == ":memory:":
            raise ConfigError("RayExecutor mirror must be a file path", hint="team.duckdb")
        if not isinstance(self.gateway, WorkerGateway):
            raise ConfigError("RayExecutor gateway must be a WorkerGateway")
        if self.scorer_specs is not None:
            object.__setattr__(self, "scorer_specs", tuple(self.scorer_specs))

    def team_url(self, env: Mapping[str, str] | None = None) -> str:
        """The team log URL from ``url_env`` (a `ConfigError` when unset or not a URL;
        the value is never echoed: it may hold a password)."""
        url = (os.environ if env is None else env).get(self.url_env, "")
        if not re.match(r"postgres(ql)?://\S+\Z", url):
            raise ConfigError(
                f"the Ray executor logs to the team log, and {self.url_env} "
                f"{'does not hold a postgresql:// URL' if url else 'is unset'}",
                hint=f"export {self.url_env}=postgresql://user@host:5432/db (on the driver and "
                "every Ray node)",
            )
        return url

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
    ) -> ExperimentResult:
        """Run ``experiment`` on Ray (see `arun_experiment` for the parameters and the
        result; ``result.log`` is the mirror)."""
        ray = import_ray("the Ray executor")
        url = self.team_url()
        shipped = self._shipped(experiment, ray)
        # lazy: psycopg and duckdb are the team log's; only a Ray run needs them here
        from aigw_lab.store.team_mirror import TeamLogMirror
        from aigw_lab.store.team_rows import TeamRows

        rows = await asyncio.to_thread(TeamRows, url)
        try:
            await asyncio.to_thread(rows.lock_experiment, experiment.id)
            if resume:
                await asyncio.to_thread(self.send_local_leftovers, url)
                if self.address is not None or ray.is_initialized():
                    # Other machines' spools too (a local cluster started here has none).
                    await asyncio.to_thread(self.ensure_ray, ray)
                    await asyncio.to_thread(self.send_cluster_leftovers, ray, url)
            mirror = TeamLogMirror(url, self.mirror)
            await asyncio.to_thread(mirror.sync)
            driver = RunDriver(self, ray, gateway, experiment, shipped, rows, mirror, url)
            return await driver.run(
                progress=progress,
                resume=resume,
                force=force,
                on_progress=on_progress,
                output_tokens=output_tokens,
            )
        finally:
            await asyncio.to_thread(rows.close)

    def _shipped(self, experiment: Experiment, ray: ModuleType) -> Experiment:
        """The experiment as the workers get it: without scorers when they build their own
        from specs; else checked to pickle now, not in a worker."""
        if self.scorer_specs is not None:
            return replace(experiment, scorers=())
        try:
            ray.cloudpickle.dumps(experiment)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means the same fix
            raise ConfigError(
                f"experiment {experiment.name!r} cannot be sent to Ray workers: "
                f"{type(exc).__name__}: {str(exc)[:200]}",
                hint="a scorer holding a gateway (an LLM judge) cannot travel: pass "
                "RayExecutor(scorer_specs=[...]) so each worker builds it for its own gateway",
            ) from exc
        return experiment

    def ensure_ray(self, ray: ModuleType) -> None:
        """Join the cluster at ``address``, or start a local one on 127.0.0.1, unless this
        process has already (`aigw_lab.experiments.ray_start.init_ray`)."""
        init_ray(ray, address=self.address, num_cpus=self.num_cpus)

    def driver_gateway(self) -> Gateway:
        """A gateway for the driver, built as the workers build theirs (the team log its
        only log): for the estimate, and for judges rescoring done units on a resume."""
        import_ray("the Ray executor")
        url = self.team_url()
        # lazy: psycopg is the team log's; only a Ray run's driver needs it here
        from aigw_lab.store.team_log import TeamLogSink

        sink = TeamLogSink(url, spool_dir=Path(self.spool_for(url)).expanduser() / "driver")
        try:
            gateway = self.gateway.build(team=sink, team_url=url)
        except BaseException:
            sink.close()
            raise
        weakref.finalize(gateway, sink.close)
        return gateway

    def send_local_leftovers(self, url: str, timeout: float = 60.0) -> None:
        """Send to the team log what dead shards left in this machine's spool folders,
        before the driver reads which units are done. Without it, a call a killed run's
        worker finished (paid, its row still in its shard's spool) could be dealt to another
        shard of the resumed run and paid again before its own shard's folder was replayed.
        A live process's segments are locked, so they are left alone. Other machines'
        folders: `send_cluster_leftovers`."""
        send_spool_root(url, Path(self.spool_for(url)), timeout)

    def send_cluster_leftovers(self, ray: ModuleType, url: str, timeout: float = 60.0) -> int:
        """`send_local_leftovers` on every alive node of the cluster this process has
        joined: one Ray task pinned to each node (`ray_worker.send_node_leftovers`, reading
        the URL from ``url_env`` there), waited for. A resuming driver calls it before it
        reads which units are done, and a run whose worker died calls it when its shards
        have returned, so a killed worker's rows and ``interrupted`` calls reach PostgreSQL
        whichever machine it ran on and whether or not the run is resumed. Returns the
        number of nodes swept. A node's typed error (no URL there) is raised as itself."""
        # lazy: part of ray, the optional ray extra imported by the caller already
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(send_node_leftovers)
        refs = [
            task.options(
                num_cpus=0,
                max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(self.url_env, self.spool_for(url), timeout)
            for node in ray.nodes()
            if node.get("Alive")
        ]
        for ref in refs:
            shard_result(ray, ref)
        return len(refs)

    def spool_for(self, url: str) -> str:
        """The spool directory workers use for this team log (expanded on each node)."""
        if self.spool_dir is not None:
            return str(self.spool_dir)
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        return f"~/.aigw-lab/team-spool/{digest}"


def executor_for_spec(
    spec: ExperimentSpec, *, config: str | os.PathLike[str] | None = None, **overrides: Any
) -> RayExecutor:
    """The `RayExecutor` of an experiment file: its ``[executor]`` keywords, then
    ``overrides`` (the CLI's options; None values ignored). Workers build the file's
    gateway (``config``, the CLI's --config, replaces it) and its scorers from their specs."""
    path = config if config is not None else spec.gateway_config
    gateway = WorkerGateway(
        config=None if path is None else str(Path(path).resolve()),
        inline=None if path is not None else spec.gateway_inline,
        base_dir=str(Path(spec.source).parent.resolve()),
        simulated=dict(spec.simulated),
    )
    options = {**(spec.executor or {}), **{k: v for k, v in overrides.items() if v is not None}}
    return RayExecutor(gateway=gateway, scorer_specs=list(spec.scorers), **options)
