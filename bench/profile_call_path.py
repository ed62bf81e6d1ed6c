"""Where a `Gateway.chat`/`achat` call's CPU goes in the calling thread (issue 13 §5, issue 14
§3, step 1 of session 9's upstream-client work): the gateway pipeline, request encoding,
httpx's client, the upstream transport, response decoding and the log, log off and on.

    python bench/profile_call_path.py [--quick] [--calls N] [--modes sync,async16]

The fake OpenAI server of ``bench_peers.py`` runs in its own process (its CPU is not counted).
One gateway per log setting calls it flat out, ``--calls`` calls per mode; a SIGPROF timer
(``ITIMER_PROF``, ticking with the process's CPU time, as in ``profile_serve.py``) charges the
calling thread's CPU since the last tick to the category of the interrupted stack, the first
of ``CATEGORIES`` to match from the innermost frame outward. The log writer's own thread is
reported beside (process CPU minus the calling thread's). ``os.getloadavg()`` is printed
with every result; the shares move much less with load than the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("log", ("aigw_lab/store/", "duckdb", "pyarrow", "recorder.py:", "call_end.py:")),
    ("request encoding", ("providers/openai.py:encode", "transport.py:_build",
                          "transport.py:_head", "transport.py:_url", "lean_direct.py:request",
                          "lean_wire.py:request_head")),
    ("response decoding", ("transport.py:_parse_json", "transport.py:_complete",
                           "transport.py:_decode", "transport.py:_response",
                           "transport.py:json_loads", "transport.py:parse",
                           "providers/openai.py", "providers/codec.py",
                           "lean_direct.py:__init__", "lean_direct.py:get",
                           "lean_direct.py:_values", "transport.py:_cache_status")),
    ("httpx client", ("httpx/", "httpcore/", "anyio/")),
    ("transport and loop", ("aigw_lab/providers/lean", "aigw_lab/providers/base.py",
                   "socket.py", "selectors.py", "asyncio/")),
    ("gateway pipeline", ("aigw_lab/",)),
)  # fmt: skip


def _peers():
    spec = importlib.util.spec_from_file_location("bench_peers", HERE / "bench_peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module
    spec.loader.exec_module(module)
    return module


def classify(frame) -> str:
    labels = []
    while frame is not None:
        labels.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
        frame = frame.f_back
    for label in labels:
        for category, needles in CATEGORIES:
            if any(needle in label for needle in needles):
                return category
    return "other"


class Sampler:
    """Charges the main thread's CPU between SIGPROF ticks to the interrupted stack."""

    def __init__(self, period_s: float = 0.0005) -> None:
        self.counts: Counter[str] = Counter()
        self.period_s = period_s
        self.last = time.thread_time()

    def _tick(self, signum, frame) -> None:
        now = time.thread_time()
        spent, self.last = now - self.last, now
        if frame is not None and spent > 0:
            self.counts[classify(frame)] += spent

    def __enter__(self) -> Sampler:
        self.last = time.thread_time()
        signal.signal(signal.SIGPROF, self._tick)
        signal.setitimer(signal.ITIMER_PROF, self.period_s, self.period_s)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)


def run(side, mode: str, calls: int, runner: asyncio.Runner) -> tuple[float, float, Counter]:
    """(process CPU, calling thread CPU) in us per call, and the thread's split."""
    peers = sys.modules["bench_peers"]
    peers.run_round(side, mode, max(20, calls // 10), runner)  # warm
    cpu0, own0 = time.process_time(), time.thread_time()
    with Sampler() as sampler:
        peers.run_round(side, mode, calls, runner)
    cpu, own = time.process_time() - cpu0, time.thread_time() - own0
    return cpu / calls * 1e6, own / calls * 1e6, sampler.counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 calls per mode and side")
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--modes", default="sync,async16")
    parser.add_argument(
        "--transport", default="auto", choices=("auto", "lean", "httpx"),
        help="the gateway's upstream transport (default auto: the gateway's own default)",
    )  # fmt: skip
    args = parser.parse_args()
    calls = args.calls or (1000 if args.quick else 3000)
    peers = _peers()
    proc, base_url = peers.start_server()
    tmp = Path(tempfile.mkdtemp(prefix="aigw-callpath-"))
    sides = [
        peers.Aigw(base_url, None, transport=args.transport),
        peers.Aigw(base_url, tmp / "calls.duckdb", transport=args.transport),
    ]
    print(f"profile_call_path: {calls} calls per mode and side, transport {args.transport};"
          f" load {os.getloadavg()}")  # fmt: skip
    names = [c for c, _ in CATEGORIES] + ["other"]
    try:
        with asyncio.Runner() as runner:
            for mode in args.modes.split(","):
                for side in sides:
                    cpu, own, counts = run(side, mode, calls, runner)
                    total = sum(counts.values()) or 1.0
                    print(f"\n[{mode}] {side.name}: process {cpu:.0f} us/call, calling"
                          f" thread {own:.0f}, other threads {cpu - own:.0f};"
                          f" load {os.getloadavg()}")  # fmt: skip
                    for name in names:
                        share = counts.get(name, 0.0) / total
                        print(f"  {name:<18} {share:6.1%}  ~ {share * own:6.0f} us/call")
            for side in sides:
                runner.run(side.aclose())
    finally:
        for side in sides:
            side.close()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
