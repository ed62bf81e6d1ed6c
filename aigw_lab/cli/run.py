"""``aigw-lab run EXPERIMENT.toml``: run (or resume) an experiment described in a TOML file.

Prints the cost estimate, shows a progress bar, then the per-target summary and where the
call log is. Running the same file again resumes: units already done are skipped.

Exit codes (docs/experiments.md):

- 0: the run completed and every unit it sent succeeded;
- 3: the run completed but some units failed (counted, with a warning; a rerun retries them);
- 1: the run failed - units were sent and every one failed - or it stopped at its budget, or
  was not confirmed;
- 2: a mistake in the files or options, or an estimate over budget_usd without --yes (one
  message naming the problem and its fix, no traceback);
- 130 on Ctrl-C and 143 on SIGTERM: the run is recorded as interrupted with its counts, and
  the command says how to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from aigw_lab.cli._verbs import VERBS
from aigw_lab.errors import ConfigError

__all__ = ["register", "run"]

EXIT_STOPPED = 1
EXIT_FAILED = 1
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``run`` subcommand to an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "run",
        help=VERBS["run"],
        description="Run an experiment (dataset x targets x repetitions) through the gateway, "
        "score the answers and log everything to DuckDB. Running the same file again resumes "
        "it. See docs/experiments.md.",
    )
    parser.add_argument("experiment", metavar="EXPERIMENT.toml", help="the experiment file")
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="the DuckDB call log (default: the file's, else "
        "experiments.duckdb in the current directory)",
    )
    parser.add_argument(
        "--config",
        metavar="GATEWAY.toml",
        help="gateway config file (replaces the experiment file's [gateway] settings)",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="send every unit again, even those a previous run completed",
    )
    parser.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="start without asking, even when the estimate exceeds budget_usd (the run "
        "still stops once the budget is spent)",
    )
    parser.add_argument(
        "--max-items",
        type=int,
        metavar="N",
        help="use only the first N items (after the file's categories and sample)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="show no progress (by default a bar on a terminal, a few lines otherwise)",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where the units run: this process (local, the default) or a Ray cluster, "
        "every worker logging to the team log (the file's [executor] table otherwise)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help='with --executor ray: an existing cluster ("auto", "ray://head:10001"); '
        "default: start a local one",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="with --executor ray: shards of the units, one Ray task each (default 2)",
    )
    parser.add_argument(
        "--mirror",
        metavar="PATH",
        help="with --executor ray: the local DuckDB copy of the team log the results are "
        "read from (default team-mirror.duckdb)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the experiment file; returns the process exit code. A `ConfigError` (or any
    other `AigwError`) propagates to the CLI's main, which prints it without a traceback."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.experiments.estimate import estimate_cost
    from aigw_lab.experiments.runner import run_experiment
    from aigw_lab.experiments.spec import load_spec

    spec = load_spec(args.experiment, max_items=args.max_items)
    executor = _executor(spec, args)
    if executor is None:
        gateway = spec.build_gateway(db=args.db, config=args.config)
    else:
        gateway = executor.driver_gateway()
    with gateway:
        experiment = spec.build(gateway)
        resume = not args.no_resume
        if executor is None:
            estimate = estimate_cost(gateway, experiment, resume=resume)
            where: Any = Path(gateway.log.path).resolve() if gateway.log is not None else "?"
        else:
            estimate = _ray_estimate(executor, gateway, experiment, resume)
            where = Path(executor.mirror).resolve()
            print(f"  on Ray: {executor.workers} workers, team log in ${executor.url_env}")
        print(f"experiment {experiment.name!r} (id {experiment.id})")
        print(
            f"  {len(experiment.dataset)} items x {len(experiment.targets)} targets x "
            f"{experiment.repetitions} repetitions = {experiment.unit_count} units; "
            f"call log {where}"
        )
        if gateway.simulated:
            print("  every provider is SIMULATED: costs are the simulated fleet's prices")
        print(f"  {estimate.describe()}")
        if not args.yes and not gateway.simulated and estimate.units:
            if not _confirm(f"  send {estimate.units} calls to real providers? [y/N] "):
                print("aigw-lab: not started", file=sys.stderr)
                return EXIT_STOPPED
        terminated = threading.Event()
        try:
            with _sigterm_as_interrupt(terminated):
                result = run_experiment(
                    gateway,
                    experiment,
                    progress=not args.no_progress,
                    resume=resume,
                    force=args.yes,
                    executor=executor,
                )
        except KeyboardInterrupt:
            print(
                f"\naigw-lab: interrupted{' (SIGTERM)' if terminated.is_set() else ''}"
                f"{_run_counts(gateway, experiment.id)}; finished units are in {where}.\n"
                f"  resume with: aigw-lab run {_resume_args(args)}",
                file=sys.stderr,
            )
            return EXIT_TERMINATED if terminated.is_set() else EXIT_INTERRUPTED
        _report(result, where, args, _encrypting_config(args.config or spec.gateway_config))
    if result.status == "completed":
        return EXIT_SOME_FAILED if result.failed else 0
    if result.status == "failed":
        return EXIT_FAILED
    return EXIT_STOPPED


def _executor(spec: Any, args: argparse.Namespace) -> Any:
    """The Ray executor the options or the file ask for, or None to run here."""
    kind = args.executor or ("ray" if spec.executor is not None else "local")
    ray_only = {"--ray-address": args.ray_address, "--workers": args.workers,
                "--mirror": args.mirror}  # fmt: skip
    if kind == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise ConfigError(
                f"{', '.join(given)} only apply to --executor ray",
                hint='add --executor ray (or [executor] kind = "ray" in the file)',
            )
        return None
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.experiments.ray_executor import executor_for_spec

    return executor_for_spec(
        spec,
        config=args.config,
        address=args.ray_address,
        workers=args.workers,
        mirror=args.mirror,
    )


def _ray_estimate(executor: Any, gateway: Any, experiment: Any, resume: bool) -> Any:
    """The estimate of the units the team log does not hold as done (its mirror synced)."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.experiments.estimate import estimate_units
    from aigw_lab.experiments.records import done_units, spent_usd
    from aigw_lab.store.team_mirror import TeamLogMirror

    with TeamLogMirror(executor.team_url(), executor.mirror) as mirror:
        mirror.sync()
        done = done_units(mirror.log, experiment.id) if resume else {}
        spent = spent_usd(mirror.log, experiment.id)
    pending = [u for u in experiment.units() if u.key not in done]
    estimate = estimate_units(gateway, experiment, pending)
    return replace(estimate, spent_usd=spent, skipped_units=experiment.unit_count - len(pending))


@contextlib.contextmanager
def _sigterm_as_interrupt(terminated: threading.Event) -> Iterator[None]:
    """Treat SIGTERM (a CI timeout, ``kill``, a container stopping) like Ctrl-C while the
    run lasts, so the run is recorded as interrupted with its counts instead of the process
    dying with its row left ``running``. Sets ``terminated`` when it happened."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.set()
        # The SIGINT handler in force: asyncio's (cancels the run's task, which records the
        # run and ends it) or Python's default one (raises KeyboardInterrupt).
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored (a background job of a shell): SIGTERM must still stop us
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_counts(gateway: Any, experiment_id: str) -> str:
    """`` after N units done and M failed`` from the run's row, or "" if it cannot be read."""
    try:
        rows = gateway.log.execute(
            "SELECT completed, failed FROM experiment_runs WHERE experiment_id = ? "
            "ORDER BY started_at DESC LIMIT 1",
            [experiment_id],
        )
    except Exception:  # only a nicer message; the run's row is what counts
        return ""
    if not rows:
        return ""
    return f" after {rows[0][0]} units done and {rows[0][1]} failed"


def _encrypting_config(path: str | None) -> str | None:
    """``path`` when that gateway config encrypts its call log (reading the log then needs
    it: ``aigw-lab report --config``), else None."""
    if path is None:
        return None
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.config import load_config

    return path if "encryption" in load_config(path).log_options else None


def _report(result: Any, where: Any, args: argparse.Namespace, config: str | None) -> None:
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    print()
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(result.summary().round(4).to_string())
    print()
    print(
        f"run {result.run_id}: {result.status}; {result.completed} units done, "
        f"{result.failed} failed, {result.skipped} skipped (done before); "
        f"cost ${result.cost_usd:.4f}"
    )
    if result.message:
        print(f"  {result.message}")
    if result.status == "failed":
        print(
            f"aigw-lab: run failed: every unit it sent failed ({result.failed}); "
            "nothing was scored. Check the targets and providers, then run again.",
            file=sys.stderr,
        )
    elif result.failed:
        print(
            f"aigw-lab: warning: {result.failed} of {result.completed + result.failed} units "
            "failed (exit status 3)",
            file=sys.stderr,
        )
    if result.failed:
        print(
            f"  units whose call failed are retried by running again: "
            f"aigw-lab run {_resume_args(args)}"
        )
    print(f"call log: {where} (experiment_id = {result.experiment_id!r})")
    if result.completed or result.skipped:
        print(f"next: {report_command(where, result.experiment_id, config=config)}")


def report_command(log_path: Any, experiment_id: str, *, config: str | None = None) -> str:
    """The ``aigw-lab report`` command for this run's log and experiment, as the user would
    type it from the current directory (paths relative to it when inside); with ``--config``
    when the log is encrypted with that config's key."""
    parts = ["aigw-lab", "report", "--db", _shown(log_path)]
    if config is not None:
        parts += ["--config", _shown(config)]
    parts += ["--experiment", experiment_id, "--out", "report.html"]
    return " ".join(shlex.quote(part) for part in parts)


def _shown(path: Any) -> str:
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _resume_args(args: argparse.Namespace) -> str:
    parts = [args.experiment]
    for flag, value in (("--db", args.db), ("--config", args.config),
                        ("--executor", args.executor), ("--ray-address", args.ray_address),
                        ("--workers", args.workers), ("--mirror", args.mirror)):  # fmt: skip
        if value:
            parts += [flag, value]
    if args.max_items:
        parts += ["--max-items", str(args.max_items)]
    return " ".join(shlex.quote(str(p)) for p in parts)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return True  # scripts and CI: running the file is the user's decision
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False
