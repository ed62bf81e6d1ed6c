"""How often does the calling thread ask the spool whether the writer committed its rows?

    python bench/bench_log_committed.py [--calls N] [--baseline TREE]

Issue 13 §1 (session 12). A spooled log seals a 256 KiB segment every ~400 gateway calls and
empties it once the writer has inserted every row it holds. Until session 12 each end frame
written on the calling thread asked ``committed()`` (two Python calls: the log's closure and
the writer's ``pending_rows``) while a sealed segment waited, which at 100 calls/s with the
5 s batch age is most of the time; now the writer thread empties segments after its inserts
(`Spool.drop_committed`) and a rotation asks once. This counts the questions, by thread,
over ``--calls`` gateway calls made back to back (the writer's 5 s age has not passed, so
sealed segments wait as they do when paced), in a process of this tree and, with
``--baseline TREE`` (``git archive <commit> aigw_lab | tar -x -C TREE``), one of that tree.
Counts, not times: the load of the machine does not change them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(calls: int) -> int:
    sys.path.insert(0, str(HERE))
    from bench_gateway_overhead import MESSAGES, MODEL, make_gateway

    import aigw_lab
    from aigw_lab.store import CallLog

    folder = tempfile.mkdtemp(prefix="bench-log-committed-")
    log = CallLog(Path(folder) / "calls.duckdb")
    gateway = make_gateway(log)
    spool = log.spool
    assert spool is not None
    inner = spool._committed  # bench-only: counts the spool's questions
    calling = threading.get_ident()
    asked = {"calling": 0, "other": 0}

    def counted() -> int:
        asked["calling" if threading.get_ident() == calling else "other"] += 1
        return inner()

    spool._committed = counted
    for _ in range(calls):
        gateway.chat(f"bench/{MODEL}", MESSAGES, temperature=0, max_tokens=16)
    sealed = len(spool._sealed)
    gateway.close()
    log.close()
    print(json.dumps({**asked, "sealed": sealed, "aigw_lab": aigw_lab.__file__}))
    return 0


def run(calls: int, tree: str | None) -> dict:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = tree
    out = subprocess.run(
        [sys.executable, __file__, "--worker", "--calls", str(calls)],
        env=env,
        cwd=tempfile.gettempdir(),  # so that the tree given is the aigw_lab imported
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--baseline", metavar="TREE", help="a checkout of aigw_lab before")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.calls)
    this_tree = str(HERE.parent)
    sides = [("this tree", this_tree)]
    if args.baseline:
        sides.append(("baseline", args.baseline))
    print(f"committed() questions over {args.calls:,} gateway calls (spooled log, 5 s age)")
    print(
        f"| {'side':<10} | {'calling thread':>14} | {'other threads':>13} | {'sealed at end':>13} |"
    )
    print(f"|{'-' * 12}|{'-' * 16}|{'-' * 15}|{'-' * 15}|")
    for label, tree in sides:
        report = run(args.calls, tree)
        print(
            f"| {label:<10} | {report['calling']:>14,} | {report['other']:>13,} "
            f"| {report['sealed']:>13} |   ({report['aigw_lab']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
