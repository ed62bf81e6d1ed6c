"""What the OpenTelemetry sink and the Prometheus metrics cost per call, against the same
gateway without them, interleaved in one run.

    python bench/bench_observability.py            # full: 7 rounds x 2000 calls per variant
    python bench/bench_observability.py --quick    # the headline figures in ~1-2 minutes

Variants (one `Gateway` each over an in-process `MockProvider`, no call log, so the
difference is the sinks' own work):

* ``no sink``: nothing takes rows, so the gateway does not even build them (not a
  deployment: ``serve`` always logs);
* ``baseline``: a sink that drops every row, so rows are built as with a call log: the
  reference the differences are taken from;
* ``otel``: `OtelSink` exporting over OTLP/HTTP to a loopback receiver in another process
  (so the receiver's CPU is not counted; the sink's worker and export threads are);
* ``metrics``: `MetricsSink` (counters and the latency histogram);
* ``otel+metrics``: both.

Each round runs every variant once, in a new random order, flat out (``--calls`` calls
back to back) and at a realistic rate (``--rate`` calls/s for ``--paced-calls`` calls).
CPU is ``process_time`` (every thread of this process), measured from before the first call
to after the sinks' flush (so spans built and exported after the calls are counted). The
table gives the median over rounds of CPU and wall microseconds per call, the spread
(min-max), and the median of the per-round difference from the baseline of the same round.
Also: the CPU of one ``/metrics`` exposition with ``--label-sets`` label combinations.
Prints ``os.getloadavg()`` with every result. Numbers are for this machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VARIANTS = ("no sink", "baseline", "otel", "metrics", "otel+metrics")


def _receiver_main(port_file: str) -> None:
    """A loopback OTLP/HTTP receiver that reads and discards each export (own process)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file, "w") as fh:
        fh.write(str(server.server_address[1]))
    server.serve_forever()


def _start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    import tempfile

    port_file = tempfile.mktemp(prefix="otlp-port-")  # noqa: S306 - the child creates it
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", port_file])
    deadline = time.monotonic() + 30
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("the OTLP receiver did not start")
        time.sleep(0.05)
    port = open(port_file).read().strip()
    os.unlink(port_file)
    return proc, f"http://127.0.0.1:{port}"


class _NullSink:
    """Takes rows and drops them: the gateway builds its rows, as with a call log."""

    def append(self, record: object) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _gateway(variant: str, endpoint: str):
    from aigw_lab import Gateway, Price
    from aigw_lab.gateway.metrics_sink import MetricsSink
    from aigw_lab.gateway.otel_sink import OtelSink
    from aigw_lab.testing.fakes import MockProvider

    sinks: list = []
    if variant == "baseline":
        sinks.append(_NullSink())
    if "otel" in variant:
        sinks.append(OtelSink(endpoint=endpoint))
    if "metrics" in variant:
        sinks.append(MetricsSink())
    mock = MockProvider("mock", models=("m",), default="a short answer")
    gw = Gateway([mock], log=None, sinks=sinks, prices={"mock/m": Price(1.0, 2.0)})
    return gw, sinks


def _run(variant: str, endpoint: str, calls: int, rate: float | None) -> tuple[float, float]:
    """CPU and wall microseconds per call of ``calls`` calls (at ``rate`` calls/s if given),
    the sinks' flush included."""
    gw, sinks = _gateway(variant, endpoint)
    for i in range(20):  # warm: first calls build providers, label children, the tracer
        gw.chat("mock/m", f"warm {i}", tenant="t")
    for sink in sinks:
        sink.flush()
    interval = None if rate is None else 1.0 / rate
    cpu0, wall0 = time.process_time(), time.perf_counter()
    next_at = wall0
    for i in range(calls):
        if interval is not None:
            next_at += interval
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        gw.chat("mock/m", f"prompt {i % 50}", tenant=f"t{i % 5}")
    for sink in sinks:
        sink.flush()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    gw.close()
    for sink in sinks:
        sink.close()
    return cpu / calls * 1e6, wall / calls * 1e6


def _exposition_cost(label_sets: int, repeats: int) -> float:
    """CPU milliseconds of one ``/metrics`` body with ``label_sets`` label combinations."""
    from aigw_lab.gateway.call_end import CallEnd
    from aigw_lab.gateway.metrics_sink import MetricsSink

    sink = MetricsSink(max_values=1000)
    for i in range(label_sets):
        sink.call_ended(
            CallEnd(
                trace_id=str(i), provider=f"p{i % 4}", model=f"m{i % 25}", tenant=f"t{i}",
                cache_status="none", status="ok", error_type=None, started_wall=0.0,
                duration_s=0.1, stream=False, attempts=1,
            )
        )  # fmt: skip
    cpu0 = time.process_time()
    for _ in range(repeats):
        sink.exposition()
    return (time.process_time() - cpu0) / repeats * 1e3


def _spread(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds x 600 calls (~1-2 min)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="paced calls per second")
    parser.add_argument("--paced-calls", type=int, default=400)
    parser.add_argument("--label-sets", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--receiver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        _receiver_main(args.receiver)
        return
    if args.quick:
        args.rounds, args.calls, args.paced_calls = 3, 600, 200
    print(
        f"bench_observability: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    print(f"load average at start: {os.getloadavg()}")
    proc, endpoint = _start_receiver()
    rng = random.Random(args.seed)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for r in range(args.rounds):
            order = list(VARIANTS)
            rng.shuffle(order)
            for pace in ("flat out", f"{args.rate:g}/s"):
                for variant in order:
                    rate = None if pace == "flat out" else args.rate
                    calls = args.calls if rate is None else args.paced_calls
                    results.setdefault((pace, variant), []).append(
                        _run(variant, endpoint, calls, rate)
                    )
            print(f"  round {r + 1}/{args.rounds} done; load {os.getloadavg()}", flush=True)
    finally:
        proc.kill()
        proc.wait()
    print()
    print(
        f"{'pace':<9} {'variant':<13} {'CPU us/call':>11} {'(min-max)':>11} "
        f"{'wall us/call':>12} {'CPU - baseline':>15} {'(min-max)':>11} {'CPU ratio':>9}"
    )
    for pace in ("flat out", f"{args.rate:g}/s"):
        base = results[(pace, "baseline")]
        for variant in VARIANTS:
            runs = results[(pace, variant)]
            cpu = [c for c, _ in runs]
            wall = [w for _, w in runs]
            deltas = [c - b for (c, _), (b, _) in zip(runs, base, strict=True)]
            ratios = [c / b for (c, _), (b, _) in zip(runs, base, strict=True)]
            print(
                f"{pace:<9} {variant:<13} {statistics.median(cpu):>11.0f} {_spread(cpu):>11} "
                f"{statistics.median(wall):>12.0f} {statistics.median(deltas):>+15.0f} "
                f"{_spread(deltas):>11} {statistics.median(ratios):>9.2f}"
            )
    print()
    cost = _exposition_cost(args.label_sets, 20 if args.quick else 50)
    print(f"/metrics exposition with {args.label_sets} label sets: {cost:.1f} ms CPU each")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
