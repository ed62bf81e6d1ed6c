"""Does the HTTP server hold its ground? Two bounded loopback scenarios (issue 9, section 5).

    python bench/bench_server_limits.py [--slow N] [--rounds R] [--requests K]
                                        [--clients C] [--pool P]

1. **Slow clients.** ``aigw-lab serve`` runs as a subprocess (simulated fleet, no latency,
   no log, ``--header-timeout 2``). N slow clients (default 200) each open a connection and
   send a request's headers one byte per second, reconnecting whenever the server closes
   them (a slowloris attack). A normal client sends K sequential requests per round and
   records each latency. Rounds alternate *baseline* (no slow clients) and *attack*, so
   drift in the shared machine hits both; the server's CPU time (from /proc) is reported
   beside wall time. Printed: p50/p99 per side, the p99 ratio attack/baseline, and how long
   the server took to close the slow connections (it should be ~ the header timeout).

2. **Pool wait.** C concurrent clients (default 1,000, raw asyncio sockets) call
   ``aigw-lab serve`` (a subprocess) whose one provider is a slow fake upstream (another
   subprocess, 1 s per answer) through a pool of P connections (default 10), read timeout
   20 s. Rows: the code before issue 9 (``--old-tree``: the pool wait inherits the read
   timeout), this code with ``pool_timeout`` 0.5 s, and with 20 s (= the read timeout).
   Printed: answers by status, median time to an answer and to a failure, the server's
   CPU time.

3. **The gateway alone.** The same burst (500 calls) straight into ``Gateway.achat`` in one
   process, without the HTTP server in front, so the time to a failure is the pool wait
   itself; with the process's CPU time.

Loopback only; everything is bounded (counts and timeouts). Exits 0; nothing is enforced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

CONFIG = """
[gateway]
log = false

[providers.sim-openai]
kind = "simulated"
time_scale = 0.0
"""
BODY = {"model": "sim-openai/sim-nano", "messages": [{"role": "user", "content": "hi"}]}
SLOW_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: " + b"a" * 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- 1. slow clients -------------------------------------------------------------------------


class Slowloris:
    """N connections sending headers one byte a second, reconnecting when closed; records
    how long each connection lived before the server closed it."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.address = address
        self.count = count
        self.lifetimes: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _open(self, selector: selectors.BaseSelector) -> None:
        sock = socket.create_connection(self.address)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, [time.monotonic(), 0])

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._open(selector)
        next_tick = time.monotonic()
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.05):
                self._closed(selector, key)
            if time.monotonic() >= next_tick:  # one more byte on every connection
                next_tick += 1.0
                for key in list(selector.get_map().values()):
                    opened, sent = key.data
                    try:
                        key.fileobj.send(SLOW_HEAD[sent : sent + 1])  # type: ignore[union-attr]
                        key.data[1] = (sent + 1) % len(SLOW_HEAD)
                    except OSError:
                        self._closed(selector, key)
        for key in list(selector.get_map().values()):
            selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]

    def _closed(self, selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        sock = key.fileobj
        try:
            data = sock.recv(4096)  # type: ignore[union-attr]
        except OSError:
            data = b""
        if data and not data.startswith(b"HTTP/1.1 408"):
            return  # not closed yet
        self.lifetimes.append(time.monotonic() - key.data[0])
        selector.unregister(sock)
        sock.close()  # type: ignore[union-attr]
        if not self._stop.is_set():
            self._open(selector)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(folder: Path, header_timeout: float) -> tuple[subprocess.Popen[str], str]:
    """``aigw-lab serve`` in a subprocess; returns it and its URL."""
    config = folder / "gateway.toml"
    config.write_text(CONFIG)
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(config),
         "--no-auth", "--port", "0", "--header-timeout", str(header_timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on" in line:
            return process, line.split("listening on", 1)[1].split()[0]
    raise SystemExit("the server did not start")


def slow_clients(args: argparse.Namespace) -> None:
    header_timeout = 2.0
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_server(Path(folder), header_timeout)
        host, port = url.removeprefix("http://").split(":")
        attack = Slowloris((host, int(port)), args.slow)
        latencies: dict[str, list[float]] = {"baseline": [], "attack": []}
        cpu: dict[str, float] = {"baseline": 0.0, "attack": 0.0}
        wall: dict[str, float] = {"baseline": 0.0, "attack": 0.0}
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                client.post("/v1/chat/completions", json=BODY)  # warm up
                for _ in range(args.rounds):
                    for side in ("baseline", "attack"):
                        if side == "attack":
                            attack.start()
                            time.sleep(header_timeout + 1)  # every slow client connected
                        cpu0, wall0 = cpu_seconds(process.pid), time.perf_counter()
                        for _ in range(args.requests):
                            t0 = time.perf_counter()
                            response = client.post("/v1/chat/completions", json=BODY)
                            latencies[side].append(time.perf_counter() - t0)
                            assert response.status_code == 200, response.text
                        cpu[side] += cpu_seconds(process.pid) - cpu0
                        wall[side] += time.perf_counter() - wall0
                        if side == "attack":
                            attack.stop()
        finally:
            attack.stop()
            process.terminate()
            process.wait(timeout=20)
    print(f"\n1. slow clients: {args.slow} slowloris connections (headers at 1 byte/s), "
          f"--header-timeout {header_timeout:g}; {args.rounds} interleaved rounds x "
          f"{args.requests} requests")  # fmt: skip
    print(f"{'side':10} {'p50 ms':>8} {'p99 ms':>8} {'server CPU s':>13} {'wall s':>8}")
    for side, values in latencies.items():
        p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
        print(f"{side:10} {p50:8.2f} {p99:8.2f} {cpu[side]:13.2f} {wall[side]:8.2f}")
    ratio = percentile(latencies["attack"], 0.99) / percentile(latencies["baseline"], 0.99)
    print(f"p99 ratio attack/baseline: {ratio:.2f}")
    lives = attack.lifetimes
    if lives:
        print(f"slow connections closed by the server: {len(lives)}; lifetime median "
              f"{statistics.median(lives):.2f} s, max {max(lives):.2f} s "
              f"(header timeout {header_timeout:g} s)")  # fmt: skip


# --- 2. pool wait ----------------------------------------------------------------------------

UPSTREAM = """
import json, sys, time
from aigw_lab.testing import fake_upstream
from aigw_lab.testing.fake_upstream import FakeUpstream
fake_upstream._Server.request_queue_size = 1024  # socketserver's 5 would drop SYNs
answer = {"id": "x", "object": "chat.completion", "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
with FakeUpstream() as fake:
    for _ in range(int(sys.argv[1])):
        fake.reply_json(answer, delay=float(sys.argv[2]))
    print(fake.url, flush=True)
    sys.stdin.read()  # until the bench closes it
"""

# The gateway server of the pool scenario, for any code tree (PYTHONPATH): the old tree's
# HttpClients takes only httpx limits; the new one also takes PoolSettings.
SERVER = """
import sys
import httpx
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import HttpClients, ProviderSpec
from aigw_lab.server import GatewayApp
from aigw_lab.server.runner import serve
upstream, pool, pool_timeout, read_timeout, clients = sys.argv[1:6]
limits = httpx.Limits(max_connections=int(pool), max_keepalive_connections=int(pool))
try:
    from aigw_lab.providers.base import PoolSettings
    from aigw_lab.server_limits import ServerLimits
except ImportError:  # the code before issue 9
    http, app_limits = HttpClients(limits=limits), {}
else:
    pool_settings = PoolSettings(int(pool), int(pool), float(pool_timeout))
    http = HttpClients(limits=limits, pool=pool_settings)
    app_limits = {"limits": ServerLimits(max_connections=2 * int(clients),
                                         max_requests_in_flight=2 * int(clients))}
spec = ProviderSpec("up", "openai-compatible", base_url=upstream + "/v1",
                    timeout=float(read_timeout))
gateway = Gateway([spec], clients=http, log=None)
serve(GatewayApp(gateway, None, **app_limits), "127.0.0.1", 0,
      on_listening=lambda url: print("listening on", url, flush=True))
"""


def pool_wait(args: argparse.Namespace) -> None:
    read_timeout, upstream_delay = 20.0, 1.0
    print(f"\n2. pool wait: {args.clients} concurrent clients, upstream answers in "
          f"{upstream_delay:g} s, pool of {args.pool} connections, read timeout "
          f"{read_timeout:g} s; server, upstream and clients in separate processes")  # fmt: skip
    print(f"{'server':30} {'answers by status':26} {'ok p50 s':>8} {'fail p50 s':>10}"
          f" {'fail p99 s':>10} {'wall s':>7} {'server CPU s':>12}")  # fmt: skip
    here = str(Path(__file__).resolve().parents[1])
    rows = [("new, pool_timeout 0.5 s", here, 0.5),
            ("new, pool_timeout 20 s", here, read_timeout)]  # fmt: skip
    if args.old_tree:
        rows.insert(0, ("old code (before issue 9)", args.old_tree, read_timeout))
    for label, tree, pool_timeout in rows:
        upstream = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM, str(args.clients), str(upstream_delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert upstream.stdout is not None and upstream.stdin is not None
        fake_url = upstream.stdout.readline().strip()
        argv = [fake_url, str(args.pool), str(pool_timeout), str(read_timeout), str(args.clients)]
        process = subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", SERVER, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": tree},
        )  # fmt: skip
        assert process.stdout is not None
        url = process.stdout.readline().split("listening on", 1)[1].strip()
        try:
            host, port = url.removeprefix("http://").split(":")
            cpu0, wall0 = cpu_seconds(process.pid), time.perf_counter()
            results = asyncio.run(_burst(host, int(port), args.clients))
            wall, cpu = time.perf_counter() - wall0, cpu_seconds(process.pid) - cpu0
        finally:
            process.terminate()
            process.wait(timeout=30)
            upstream.stdin.close()
            upstream.wait(timeout=30)
        statuses = Counter(status for status, _ in results)
        ok = [t for status, t in results if status == 200]
        failures = [t for status, t in results if status != 200]
        by_status = ", ".join(f"{s or 'none'}: {n}" for s, n in sorted(statuses.items()))
        ok50 = percentile(ok, 0.5) if ok else float("nan")
        p50 = percentile(failures, 0.5) if failures else float("nan")
        p99 = percentile(failures, 0.99) if failures else float("nan")
        print(f"{label:30} {by_status:26} {ok50:8.2f} {p50:10.2f} {p99:10.2f} {wall:7.1f}"
              f" {cpu:12.1f}")  # fmt: skip


async def _burst(host: str, port: int, clients: int) -> list[tuple[int, float]]:
    """``clients`` requests at once over raw asyncio streams (an HTTP client library would
    cost more CPU than the server under test); (status, seconds) each, status 0 for none."""
    body = json.dumps({**BODY, "model": "up/m"}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )

    async def one() -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), timeout=120)
            writer.close()
            status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
        except (TimeoutError, OSError):
            status = 0
        return status, time.perf_counter() - t0

    return await asyncio.gather(*(one() for _ in range(clients)))


# --- 3. the gateway alone --------------------------------------------------------------------

GATEWAY_ONLY = """
import asyncio, sys, time, warnings
warnings.simplefilter("ignore")
import httpx
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import HttpClients, ProviderSpec
from aigw_lab.testing import fake_upstream
from aigw_lab.testing.fake_upstream import FakeUpstream
fake_upstream._Server.request_queue_size = 1024
calls, pool, pool_timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
answer = {"id": "x", "object": "chat.completion", "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
try:
    from aigw_lab.providers.base import PoolSettings
except ImportError:
    http = HttpClients(limits=limits)
else:
    http = HttpClients(limits=limits, pool=PoolSettings(pool, pool, pool_timeout))
with FakeUpstream() as fake:
    for _ in range(calls):
        fake.reply_json(answer, delay=1.0)
    spec = ProviderSpec("up", "openai-compatible", base_url=fake.url + "/v1", timeout=20.0)
    gateway = Gateway([spec], clients=http, log=None)
    async def one():
        t0 = time.perf_counter()
        try:
            await gateway.achat("up/m", "hi")
            return True, time.perf_counter() - t0
        except Exception:
            return False, time.perf_counter() - t0
    async def burst():
        return await asyncio.gather(*(one() for _ in range(calls)))
    cpu0 = time.process_time()
    results = asyncio.run(burst())
    fails = sorted(t for ok, t in results if not ok)
    print(time.process_time() - cpu0, sum(ok for ok, _ in results),
          fails[len(fails) // 2] if fails else float("nan"))
"""


def gateway_only(args: argparse.Namespace) -> None:
    calls = 500
    print(
        f"\n3. the gateway alone: {calls} concurrent Gateway.achat calls in one process, pool "
        f"of {args.pool}, upstream answers in 1 s (the upstream runs in the same process)"
    )
    print(f"{'code':30} {'answers':>8} {'fail p50 s':>10} {'CPU s':>7}")
    here = str(Path(__file__).resolve().parents[1])
    rows = [("new, pool_timeout 0.5 s", here, 0.5), ("new, pool_timeout 20 s", here, 20.0)]
    if args.old_tree:
        rows.insert(0, ("old code (before issue 9)", args.old_tree, 20.0))
    for label, tree, pool_timeout in rows:
        out = subprocess.run(
            [sys.executable, "-c", GATEWAY_ONLY, str(calls), str(args.pool), str(pool_timeout)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": tree}, check=True,
        ).stdout.split()  # fmt: skip
        cpu, ok, fail50 = float(out[0]), int(out[1]), float(out[2])
        print(f"{label:30} {ok:8d} {fail50:10.2f} {cpu:7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--skip-slow", action="store_true", help="only the pool scenario")
    parser.add_argument(
        "--old-tree",
        help="a folder holding the aigw_lab package from before issue 9 (e.g. from "
        "'git archive c279044 aigw_lab | tar -x -C DIR'), for an 'old code' row",
    )
    args = parser.parse_args()
    logging.getLogger("aigw_lab.server").setLevel(logging.ERROR)  # one line per failed call
    print(f"bench_server_limits: {platform.node()} {platform.processor() or platform.machine()},"
          f" {os.cpu_count()} CPUs, Python {platform.python_version()}")  # fmt: skip
    if not args.skip_slow:
        slow_clients(args)
    pool_wait(args)
    gateway_only(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
