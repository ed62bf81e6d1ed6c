"""What a gateway call runs on the calling thread, counted: bytecodes, Python calls and C
calls per call, against bench_peers.py's loopback fake, for one or two trees.

    python bench/bench_peers_work.py [--baseline-tree TREE] [--calls N] [--transport auto]

Issue 13 §5. Sides (as in bench_peers.py): ``raw direct`` (the least a client over the lean
transport's direct path does; with ``--transport httpx``, raw httpx), ``aigw log off`` and
``aigw log on`` (a DuckDB file log), in the modes ``sync``, ``async1`` and ``stream``. The
counts come from the interpreter's trace and profile hooks (`_work_counts.count_work`,
shared with bench_log_caller.py), so no machine load changes them: a cut of the gateway's
per-call work shows here exactly, where CPU timings on the shared box move by more than it.
The log's writer thread is not counted (the hooks are per thread). ``--baseline-tree`` runs
the same in a second process on another checkout (the code before a change) and prints both,
with the difference. Each tree runs in a process of its own (``PYTHONPATH`` set to it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bench's own helpers, however this file is loaded
from _work_counts import COUNTS, count_work  # noqa: E402

MODES = ("sync", "async1", "stream")
#: Where a function's bytecodes go for ``--functions``' summary, by a fragment of its name
#: (first match wins; the rest is "transport, JSON, other": the work raw direct also does).
AREAS = (
    ("frozen values' __init__", ("<string>",)),
    ("the log (recorder, rows, spool, queue)", ("gateway/recorder", "gateway/records", "store/")),
    ("request validation", ("aigw_lab/types.py", "aigw_lab/addressing.py")),
    ("codec (encode, decode, usage)", ("providers/openai.py", "providers/codec.py")),
    (
        "provider glue (exchange, build, complete)",
        ("providers/transport.py", "providers/_sync/", "providers/_async/", "providers/base"),
    ),
    (
        "pipeline (context, ids, targets, attempt)",
        ("gateway/gateway.py", "gateway/middleware.py", "gateway/_sync/", "gateway/_async/",
         "gateway/targets.py"),
    ),
    ("pricing", ("aigw_lab/pricing.py",)),
)  # fmt: skip


def by_function(call, n: int) -> dict[str, float]:  # noqa: ANN001
    """Bytecodes per call of ``call`` on this thread by the function running them
    (``file:line name``, paths from the package or the standard library on)."""
    counts: dict[str, int] = {}

    def tracer(frame, event, arg):  # noqa: ANN001, ANN202, ARG001
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            name = code.co_filename
            for marker in ("/aigw_lab/", "/bench/", "/python3.11/"):
                if marker in name:
                    name = marker.strip("/") + "/" + name.split(marker, 1)[1]
                    break
            key = f"{name}:{code.co_firstlineno} {code.co_name}"
            counts[key] = counts.get(key, 0) + 1
        return tracer

    sys.settrace(tracer)
    try:
        for _ in range(n):
            call()
    finally:
        sys.settrace(None)
    return {key: value / n for key, value in counts.items()}


def worker(base_url: str, transport: str, calls: int, functions: int = 0) -> int:
    """Count every side in every mode on the tree in PYTHONPATH; print one JSON line."""
    sys.path.insert(0, str(HERE))
    import bench_peers
    from _raw_direct import RawDirect

    import aigw_lab

    folder = Path(tempfile.mkdtemp(prefix="aigw-work-"))
    raw = (
        RawDirect(base_url, bench_peers.MODEL, bench_peers.MESSAGES)
        if transport != "httpx"
        else bench_peers.RawHttpx(base_url)
    )
    sides = [
        raw,
        bench_peers.Aigw(base_url, None, transport=transport),
        bench_peers.Aigw(base_url, folder / "calls.duckdb", transport=transport),
    ]
    out: dict[str, object] = {"aigw_lab": aigw_lab.__file__}
    with asyncio.Runner() as runner:
        for side in sides:
            for mode in MODES:
                call = {
                    "sync": side.call,
                    "stream": side.stream,
                    "async1": lambda side=side: runner.run(side.acall()),
                }[mode]
                for _ in range(20):  # warm: pools, caches, the first insert
                    call()
                if mode == "async1":
                    # The runner's own frames are the same for every side: count them apart.
                    empty = count_work(lambda: runner.run(asyncio.sleep(0)), calls)
                    counted = count_work(call, calls)
                    counted = {k: counted[k] - empty[k] for k in COUNTS}
                else:
                    counted = count_work(call, calls)
                out[f"{side.name}|{mode}"] = counted
                if functions and mode == "sync":
                    found = sorted(by_function(call, calls).items(), key=lambda kv: -kv[1])
                    out[f"functions|{side.name}"] = found[:functions]
                side.end_round()
            runner.run(side.aclose())
            side.close()
    print(json.dumps(out), flush=True)
    return 0


def run_tree(
    tree: Path, base_url: str, transport: str, calls: int, functions: int
) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [
        sys.executable,
        __file__,
        "--worker",
        base_url,
        transport,
        str(calls),
        str(functions),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the worker on {tree} failed:\n{done.stderr}")
    found = json.loads(done.stdout.splitlines()[-1])
    if not Path(str(found["aigw_lab"])).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the worker on {tree} imported {found['aigw_lab']}")
    return found


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--worker"]:
        return worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to count too")
    parser.add_argument("--calls", type=int, default=200, help="calls counted per side/mode")
    parser.add_argument("--transport", choices=("httpx", "lean", "auto"), default="auto")
    parser.add_argument(
        "--functions",
        type=int,
        default=0,
        help="also print each side's bytecodes per call in sync by area and its costliest"
        " functions, from its N costliest (use a large N, e.g. 500, for complete areas)",
    )
    args = parser.parse_args(argv)
    if args.baseline_tree and not (args.baseline_tree / "aigw_lab" / "__init__.py").is_file():
        parser.error(f"{args.baseline_tree} holds no aigw_lab package")
    sys.path.insert(0, str(HERE))
    import bench_peers

    proc, base_url = bench_peers.start_server()
    try:
        trees = {"this tree": HERE.parent}
        if args.baseline_tree:
            trees = {"baseline": args.baseline_tree, **trees}
        found = {
            name: run_tree(tree, base_url, args.transport, args.calls, args.functions)
            for name, tree in trees.items()
        }
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    print(f"per call, calling thread ({args.calls} calls; transport {args.transport})")
    print(
        f"  {'side':<14} {'mode':<7}"
        + "".join(f" {n + ' ' + c:>22}" for n in trees for c in COUNTS)
    )
    for key in found["this tree"]:
        if "|" not in key or key.startswith("functions|"):
            continue
        side, mode = key.split("|")
        cells = [found[n][key][c] for n in trees for c in COUNTS]  # type: ignore[index]
        print(f"  {side:<14} {mode:<7}" + "".join(f" {v:22.0f}" for v in cells))
    for name in trees:
        for key, rows in found[name].items():
            if key.startswith("functions|"):
                areas = dict.fromkeys([a for a, _ in AREAS] + ["transport, JSON, other"], 0.0)
                for function, count in rows:  # type: ignore[union-attr]
                    area = next(
                        (a for a, marks in AREAS if any(m in function for m in marks)),
                        "transport, JSON, other",
                    )
                    areas[area] += count
                print(f"{name}, {key.split('|')[1]}, sync: bytecodes per call by area")
                for area, count in areas.items():
                    print(f"  {count:7.0f}  {area}")
                print(f"{name}, {key.split('|')[1]}, sync: the costliest functions")
                for function, count in rows[:25]:  # type: ignore[index]
                    print(f"  {count:7.0f}  {function}")
    if args.baseline_tree:
        print("this tree minus baseline:")
        for key in found["this tree"]:
            if "|" in key and not key.startswith("functions|"):
                delta = [found["this tree"][key][c] - found["baseline"][key][c] for c in COUNTS]  # type: ignore[index]
                print(
                    f"  {key.replace('|', ' '):<22}"
                    + "".join(f" {c} {d:+.0f}" for c, d in zip(COUNTS, delta, strict=True))
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
