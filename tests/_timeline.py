"""A timeline of a parallel test run: when each xdist worker ran which test, for finding where a
run's wall time goes beyond its CPU time (idle workers, a late long group, a one-worker tail).

Not active by default; load it with ``-p``::

    python -m pytest -p tests._timeline            # the summary at the end of the run
    AIGW_LAB_TIMELINE=/tmp/tl python -m pytest -p tests._timeline   # and keep the records

Each test process appends one JSON line per test to ``<folder>/<worker>.jsonl``: its node id,
start and end (wall clock, seconds since the epoch, setup to teardown) and the CPU the process
and its finished subprocesses used meanwhile. The controller (or a run without workers) prints,
from those files: when each worker started its first test and finished its last, its busy and
idle time, the gaps of a second or more between its tests, what the last worker to finish ran
in its last 60 s, and the longest ``xdist_group``\\s. ``python -m tests._timeline <folder>``
prints the same from kept records.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The folder the records go to; made (and removed after the summary) when not set.
TIMELINE_ENV = "AIGW_LAB_TIMELINE"
_MADE_KEY = pytest.StashKey[str]()
#: A gap between two tests of one worker counted as idle (seconds).
MIN_GAP = 1.0
#: The span at the end of the run shown for the last worker (seconds).
TAIL = 60.0


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its waited-for subprocesses."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _worker(config: pytest.Config) -> str:
    return getattr(config, "workerinput", {}).get("workerid", "main")


def pytest_configure(config: pytest.Config) -> None:
    # Set in the controller before xdist starts its workers, so that they inherit the folder.
    if os.environ.get(TIMELINE_ENV):
        Path(os.environ[TIMELINE_ENV]).mkdir(parents=True, exist_ok=True)
    elif not hasattr(config, "workerinput"):
        folder = tempfile.mkdtemp(prefix="aigw_lab-timeline-")
        config.stash[_MADE_KEY] = folder
        os.environ[TIMELINE_ENV] = folder
    config.stash[_START_KEY] = time.time()


_START_KEY = pytest.StashKey[float]()


def _record(config: pytest.Config, row: dict[str, object]) -> None:
    folder = os.environ.get(TIMELINE_ENV)
    if not folder:
        return
    path = Path(folder) / f"{_worker(config)}.jsonl"
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        _record(
            config, {"event": "collected", "start": config.stash[_START_KEY], "end": time.time()}
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    # What this run's subprocesses compiled into its bytecode folder (tests/conftest.py's
    # PYTHONPYCACHEPREFIX), by package: each worker looks when it ends; the last sees most.
    prefix = os.environ.get("PYTHONPYCACHEPREFIX")
    if prefix and hasattr(session.config, "workerinput"):
        _record(session.config, {"event": "bytecode", "end": time.time(), **_bytecode(prefix)})


def _bytecode(prefix: str) -> dict[str, object]:
    """The ``.pyc`` files under ``prefix``, counted by installed package (the name after
    ``site-packages``) or by the first two folders of any other tree."""
    counts: dict[str, int] = defaultdict(int)
    for path in Path(prefix).rglob("*.pyc"):
        parts = path.relative_to(prefix).parts
        if "site-packages" in parts:
            at = parts.index("site-packages")
            key = "site-packages/" + parts[at + 1].split(".")[0]
        else:
            key = "/".join(parts[:3])
        counts[key] += 1
    return {"files": sum(counts.values()), "by_package": dict(counts)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    start, (own, children) = time.time(), _cpu()
    yield
    end, (own_after, children_after) = time.time(), _cpu()
    _record(
        item.config,
        {
            "test": item.nodeid,
            "start": start,
            "end": end,
            "cpu": round(own_after - own, 3),
            "child_cpu": round(children_after - children, 3),
        },
    )


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if hasattr(config, "workerinput"):
        return
    folder = os.environ.get(TIMELINE_ENV)
    if folder:
        terminalreporter.write_line("")
        for line in summarize(Path(folder), run_start=config.stash.get(_START_KEY, None)):
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    made = config.stash.get(_MADE_KEY, None)
    if made is not None:
        import shutil

        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(TIMELINE_ENV, None)


def _group(nodeid: str) -> str | None:
    # xdist's loadgroup names each grouped test "<id>@<group>" (after any parameters' "]").
    at = nodeid.rfind("@")
    return nodeid[at + 1 :] if at > nodeid.rfind("]") else None


def summarize(folder: Path, run_start: float | None = None) -> list[str]:
    """The timeline's summary lines, from the records in ``folder``."""
    tests: dict[str, list[dict]] = defaultdict(list)
    collected: dict[str, dict] = {}
    bytecode: dict = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("event") == "collected":
                collected[path.stem] = row
            elif row.get("event") == "bytecode":
                if row["files"] >= bytecode.get("files", -1):
                    bytecode = row
            else:
                tests[path.stem].append(row)
    if not tests:
        return ["timeline: no tests recorded"]
    starts = [row["start"] for row in collected.values()] or [
        row["start"] for rows in tests.values() for row in rows
    ]
    origin = run_start or min(starts)
    ends = {w: max(r["end"] for r in rows) for w, rows in tests.items()}
    last_end = max(ends.values())
    lines = [
        f"timeline ({folder}); seconds from the run's start; last test ends at "
        f"{last_end - origin:.1f}, summary at {time.time() - origin:.1f}:"
    ]
    lines.append("worker  collected  first test  last end  busy   idle  tests  cpu(own+children)")
    for worker in sorted(tests, key=lambda w: ends[w]):
        rows = sorted(tests[worker], key=lambda r: r["start"])
        busy = sum(r["end"] - r["start"] for r in rows)
        span = rows[-1]["end"] - rows[0]["start"]
        cpu = sum(r["cpu"] + r["child_cpu"] for r in rows)
        got = collected.get(worker)
        lines.append(
            f"{worker:<7} {(got['end'] - origin) if got else float('nan'):>9.1f} "
            f"{rows[0]['start'] - origin:>11.1f} {ends[worker] - origin:>9.1f} {busy:>6.1f} "
            f"{span - busy:>6.1f} {len(rows):>6} {cpu:>10.1f}"
        )
    for worker in sorted(tests):
        rows = sorted(tests[worker], key=lambda r: r["start"])
        gaps = [
            (b["start"] - a["end"], a["end"] - origin, b["test"])
            for a, b in zip(rows, rows[1:], strict=False)
            if b["start"] - a["end"] >= MIN_GAP
        ]
        if gaps:
            lines.append(f"{worker}: {len(gaps)} gaps of {MIN_GAP:.0f} s or more:")
            lines += [f"    {g:6.1f} s at {at:6.1f}, before {name}" for g, at, name in gaps]
    order = sorted(ends, key=lambda w: ends[w])
    if len(order) > 1:
        last, runner_up = order[-1], order[-2]
        lines.append(
            f"last worker {last} ends {last_end - ends[runner_up]:.1f} s after the next "
            f"({runner_up}); its tests in the last {TAIL:.0f} s:"
        )
        for row in sorted(tests[last], key=lambda r: r["start"]):
            if row["end"] >= last_end - TAIL:
                lines.append(
                    f"    {row['start'] - origin:6.1f}-{row['end'] - origin:6.1f} "
                    f"{row['end'] - row['start']:5.1f} s cpu {row['cpu'] + row['child_cpu']:5.1f} "
                    f"{row['test']}"
                )
    groups: dict[str, list[dict]] = defaultdict(list)
    for rows in tests.values():
        for row in rows:
            name = _group(row["test"])
            if name is not None:
                groups[name].append(row)
    lines.append("longest xdist groups (sum of their tests; first start, last end):")
    by_length = sorted(groups.items(), key=lambda kv: -sum(r["end"] - r["start"] for r in kv[1]))
    for name, rows in by_length[:10]:
        total = sum(r["end"] - r["start"] for r in rows)
        cpu = sum(r["cpu"] + r["child_cpu"] for r in rows)
        lines.append(
            f"    {name:<28} {total:6.1f} s, cpu {cpu:6.1f}, {len(rows):4} tests, "
            f"{min(r['start'] for r in rows) - origin:6.1f}-{max(r['end'] for r in rows) - origin:6.1f}"
        )
    if bytecode:
        top = sorted(bytecode["by_package"].items(), key=lambda kv: -kv[1])
        lines.append(
            f"bytecode the run's subprocesses compiled: {bytecode['files']} files; "
            + ", ".join(f"{name} {count}" for name, count in top[:15])
        )
    return lines


if __name__ == "__main__":
    print("\n".join(summarize(Path(sys.argv[1]))))
