"""Where ``aigw-lab serve``'s CPU goes per request under the throughput bench's load (issue 14
§3, step 1): a stack sampler inside the serve process, not a tracing profiler, so the split
is not skewed toward code that makes many small calls.

    python bench/profile_serve.py                 # 64 clients flat out, 10 s, log off
    python bench/profile_serve.py --log --seconds 10 --http h11
    python bench/profile_serve.py --workers 2 --team-log --http aigw   # N=2, each sampled

It starts the fake upstream and the raw client of ``bench_serve_workers.py`` and one serve
process wrapped by this script (``--serve-sampled OUT``): a daemon thread samples the main
thread's stack (``sys._current_frames``) every ~1 ms of wall time and every thread's CPU
clock. Each sample of the main thread is put in the first category its stack matches, from
the innermost frame outward (see ``CATEGORIES``); a sample with no frame of ours or a
library's above the event loop is the loop itself (uvloop's C code). Printed: CPU
per request of each thread, and the main thread's CPU per request split by category
(share of its busy samples times its CPU per request). ``os.getloadavg()`` is printed with
the result; absolute figures depend on the load, the shares much less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (category, substrings of a frame's "file:function"), tried innermost frame first; the
# first frame matching any rule decides. Libraries used by several stages (json, asyncio,
# h11 on both sides) are not listed, so they count for the stage that called them.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("log", ("aigw_lab/store/", "duckdb", "pyarrow", "pandas", "recorder.py:")),
    ("upstream client", ("httpx/", "httpcore/", "anyio/", "aigw_lab/providers/")),
    ("auth", ("aigw_lab/server/auth.py", "aigw_lab/server/keyfile.py")),
    ("body parse", ("safe_json.py", "openai_api.py:parse", "anthropic_api.py:parse",
                    "aigw_lab/server/fields.py", "app.py:_read_body")),
    ("response encoding", ("openai_api.py:render", "anthropic_api.py:render", "_send_json",
                           "_response_headers", "header_value", "_send_chunk")),
    ("gateway pipeline", ("aigw_lab/gateway/", "aigw_lab/policy/", "aigw_lab/pricing.py",
                          "aigw_lab/types.py", "aigw_lab/tokens.py", "aigw_lab/addressing",
                          "app.py:_for_client")),
    ("HTTP protocol (server)", ("uvicorn/protocols", "httptools", "granian",
                                "aigw_lab/server/h1.py")),
    ("ASGI app plumbing", ("aigw_lab/server/",)),
    ("uvicorn other", ("uvicorn/",)),
)  # fmt: skip
LOOP = "event loop (C code)"


def classify(frame) -> tuple[str, str]:
    """The category of the stack whose innermost frame is ``frame``, and the frame that
    decided it (``file:function``)."""
    labels = []
    while frame is not None:
        code = frame.f_code
        labels.append(f"{code.co_filename}:{code.co_name}")
        frame = frame.f_back
    if labels and ("asyncio/runners.py" in labels[0] or "base_events.py:run_" in labels[0]):
        return LOOP, labels[0]  # the loop's C code (uvloop) runs, or it waits for events
    for label in labels:
        for category, needles in CATEGORIES:
            if any(needle in label for needle in needles):
                return category, label
    return "other", labels[0] if labels else "?"


def start_sampling(out: Path, period_s: float = 0.001) -> None:
    """Sample the main thread where its CPU goes, until the process ends: a SIGPROF timer
    (``ITIMER_PROF``, ticking with the process's CPU time) interrupts the main thread, whose
    handler charges the main thread's CPU since the previous tick (``time.thread_time``) to
    the interrupted stack's category. Time-sampling from another thread is biased: it gets
    the GIL exactly when the main thread releases it (in a syscall), so those spots would
    dominate. A daemon thread writes the counts and every thread's CPU to ``out`` every 2 s.
    """
    import signal

    counts: Counter[str] = Counter()
    where: Counter[str] = Counter()
    started = time.monotonic()
    cpu0 = time.process_time()
    last = [time.thread_time()]

    def on_tick(signum, frame) -> None:
        now = time.thread_time()
        spent, last[0] = now - last[0], now
        if frame is not None and spent > 0:
            category, label = classify(frame)
            counts[category] += spent
            where[f"{category} | {label[-70:]}"] += spent

    def thread_cpu() -> dict[str, float]:
        seconds: dict[str, float] = {}
        for thread in threading.enumerate():
            if thread.ident is None:
                continue
            try:
                clock = time.pthread_getcpuclockid(thread.ident)
                seconds[thread.name] = seconds.get(thread.name, 0.0) + time.clock_gettime(clock)
            except (OSError, AttributeError):
                pass
        return seconds

    first = thread_cpu()

    def dump_forever() -> None:
        while True:
            time.sleep(2.0)
            now = thread_cpu()
            per_thread = {name: now[name] - first.get(name, 0.0) for name in now}
            partial = out.with_name(out.name + ".tmp")  # renamed: never read half-written
            partial.write_text(json.dumps({
                "samples": dict(counts), "where": dict(where),
                "wall_s": time.monotonic() - started,
                "process_cpu_s": time.process_time() - cpu0, "thread_cpu_s": per_thread,
            }))  # fmt: skip
            partial.replace(out)

    signal.signal(signal.SIGPROF, on_tick)
    signal.setitimer(signal.ITIMER_PROF, period_s, period_s)
    threading.Thread(target=dump_forever, daemon=True, name="sampler").start()


def run_sampled_serve(out: str, argv: list[str]) -> int:
    """``aigw-lab serve argv`` in this process, sampled (see `start_sampling`)."""
    from aigw_lab.cli.main import main

    start_sampling(Path(out))
    return main(["serve", *argv])


def run_parent_serve(out: str, argv: list[str]) -> int:
    """``aigw-lab serve --workers N argv`` in this process (not sampled: it only waits),
    whose worker ``i`` runs `run_sampled_serve` with ``out.i``: serve's own command line for
    a worker, its program swapped for this script."""
    import aigw_lab.cli.serve as serve_cli
    from aigw_lab.cli.main import main

    own = serve_cli._worker_argv

    def sampled_worker(args, fd: int, index: int) -> list[str]:
        worker = own(args, fd, index)
        rest = worker[worker.index("serve") + 1 :]
        return [sys.executable, str(Path(__file__).resolve()), "--serve-sampled",
                f"{out}.{index}", *rest]  # fmt: skip

    serve_cli._worker_argv = sampled_worker
    return main(["serve", *argv])


def load_samples(out: Path, workers: int) -> dict:
    """The sampler's counts of every serve process (``out``, or ``out.i`` per worker),
    summed."""
    paths = [out] if workers == 1 else [Path(f"{out}.{i}") for i in range(workers)]
    total: dict = {"samples": Counter(), "where": Counter(), "process_cpu_s": 0.0,
                   "thread_cpu_s": Counter()}  # fmt: skip
    for path in paths:
        for _ in range(600):  # a worker writes its first counts ~2 s after it starts
            if path.exists():
                break
            time.sleep(0.1)
        one = json.loads(path.read_text())
        total["samples"].update(one["samples"])
        total["where"].update(one["where"])
        total["process_cpu_s"] += one["process_cpu_s"]
        total["thread_cpu_s"].update(one["thread_cpu_s"])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--log", action="store_true", help="log on (a DuckDB file)")
    parser.add_argument("--pool-shards", type=int, default=1)
    parser.add_argument("--http", default=None, help="serve's --http (default: its own)")
    parser.add_argument(
        "--gateway-line", action="append", default=[],
        help="a line appended to the serve config's [gateway] table, e.g. 'transport = \"lean\"'"
        " (repeatable)",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=25, help="frames to list (default 25)")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (each sampled)")
    parser.add_argument(
        "--team-log", action="store_true",
        help="log on through the PostgreSQL team log (a loopback cluster started here), as"
        " bench_serve_workers.py --team-log",
    )  # fmt: skip
    parser.add_argument("--serve-sampled", help=argparse.SUPPRESS)
    parser.add_argument("--serve-parent", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve_sampled:
        sys.exit(run_sampled_serve(args.serve_sampled, rest))
    if args.serve_parent:
        sys.exit(run_parent_serve(args.serve_parent, [*rest, "--workers", str(args.workers)]))

    sys.path.insert(0, str(HERE))
    import bench_serve_workers as bsw

    args.log = args.log or args.team_log
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        fake_url = stack.enter_context(bsw.fake_upstream())
        env = {**os.environ, "BENCH_UPSTREAM_KEY": "sk-bench"}
        text = bsw.CONFIG.format(url=fake_url, log="true" if args.log else "false")
        if args.team_log:
            env["BENCH_TEAM_LOG_URL"] = stack.enter_context(bsw.team_log_database())
            head, _, gateway = text.partition("[gateway]")
            text = head + bsw.TEAM_LOG.format(spool=folder / "spool") + "[gateway]" + gateway
        config = folder / "gw.toml"
        config.write_text(text + f"pool_shards = {args.pool_shards}\n"
                          + "".join(f"{line}\n" for line in args.gateway_line))  # fmt: skip
        out = folder / "samples.json"
        mode = "--serve-sampled" if args.workers == 1 else "--serve-parent"
        argv = [sys.executable, str(Path(__file__).resolve()), mode, str(out),
                "--config", str(config), "--no-auth", "--port", "0",
                "--max-requests-in-flight", "4096"]  # fmt: skip
        if args.workers > 1:
            argv += ["--workers", str(args.workers)]
        if args.http:
            argv += ["--http", args.http]
        if args.log:
            argv += ["--db", str(folder / "calls.duckdb")]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        try:
            url = bsw.wait_listening(proc)
            # a short warm-up, then the measured run (the sampler's counts restart at 0 only
            # per process, so the warm-up is subtracted)
            bsw.run_client_process(url, args.concurrency, 1.0, 0.0)
            time.sleep(2.2)
            before = load_samples(out, args.workers)
            result = bsw.run_client_process(url, args.concurrency, args.seconds, 0.0)
            time.sleep(2.2)
            after = load_samples(out, args.workers)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    n = result["requests"]
    log = "team log" if args.team_log else "on" if args.log else "off"
    print(f"{n / result['wall_s']:.0f} req/s at {args.concurrency} clients, N={args.workers}, "
          f"log {log}, http {args.http or 'default'}, p99 {result['p99_ms']:.0f} ms; "
          f"loadavg {os.getloadavg()}")  # fmt: skip
    cpu = after["process_cpu_s"] - before["process_cpu_s"]
    print(f"serve processes' CPU {1e6 * cpu / n:.0f} us/req (all threads); per thread:")
    for name, seconds in sorted(after["thread_cpu_s"].items()):
        spent = seconds - before["thread_cpu_s"].get(name, 0.0)
        if spent > 0.01:
            print(f"  {name:28} {1e6 * spent / n:7.0f} us/req")
    main_cpu = after["thread_cpu_s"].get("MainThread", 0.0) - before["thread_cpu_s"].get(
        "MainThread", 0.0
    )
    samples = Counter(after["samples"])  # (summed over workers)
    samples.subtract(before["samples"])
    total = sum(samples.values())
    print(f"main thread split ({total:.2f} s of its CPU sampled):")
    for category, count in samples.most_common(25):
        share = count / total
        print(f"  {category:28} {100 * share:5.1f}%  ~{1e6 * share * main_cpu / n:6.0f} us/req")
    where = Counter(after["where"])
    where.subtract(before["where"])
    print(f"the {args.top} frames deciding most samples:")
    for label, count in where.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {label}")


if __name__ == "__main__":
    main()
