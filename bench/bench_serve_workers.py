"""Throughput and latency of ``aigw-lab serve --workers N`` at 64 concurrent clients, against
a loopback fake upstream called directly, interleaved in one run (issue 14 §3).

    python bench/bench_serve_workers.py            # full: 3 rounds x 10 s per target
    python bench/bench_serve_workers.py --quick    # the headline figures in ~2 minutes

Three kinds of process, so no one's CPU is counted as another's:

* the **fake upstream**: a minimal ASGI app under uvicorn (uvloop when installed) answering
  every POST with a fixed OpenAI chat completion (this script, ``--fake-upstream PORT``);
* the **servers**: ``aigw-lab serve --workers 1`` and ``--workers 2`` over that upstream,
  ``[gateway] log = false`` (log off), and for N = 1 ``--db`` (log on, a DuckDB file);
  with ``--team-log``, also ``--workers 2`` with logging on (N > 1 needs the PostgreSQL
  team log: this script starts a loopback cluster, ``aigw_lab.testing.postgres``, with
  PostgreSQL's default fsync settings); ``--http-compare`` adds N = 1 on h11 beside the
  default parser (httptools when installed); ``--shards K`` sets ``[gateway] pool_shards``
  on every serve target;
* the **client**: one process (``--client URL``) holding ``--concurrency`` keep-alive
  connections, each sending a small chat completion and reading the answer, back to back,
  for ``--seconds``. A raw asyncio HTTP/1.1 client, not httpx: its own CPU per call at 64
  connections (the issue measured httpx at ~10 ms) would cap the figures first.

Each round runs every target once, in a new random order, twice: paced at a realistic
``--rate`` (50 requests/s in all over the same connections: latency and CPU per request
when the box is not saturated by us) and flat out. Reported per target: req/s,
p50/p99 latency (median over rounds, with the min-max spread), the client's CPU and the
target's own CPU (its whole process tree, from /proc) per request, and req/s as a share of
the fake called directly in the same round. Prints ``os.getloadavg()`` with every result.
The numbers are for this machine and its load; only ratios within one run compare.
Where the CPU of one serve process goes per request: bench/profile_serve.py; the front
alone (HTTP protocol and app), A/B: bench/bench_serve_front.py.

``--lean`` adds ``serve`` targets with ``[gateway] transport = "lean"`` (the lean upstream
transport, aigw_lab.providers.lean). ``--litellm-proxy`` adds LiteLLM's proxy as a target:
``litellm[proxy]`` in its own virtual environment (made with pip on first use, then reused
from ``--litellm-venv``), started with a generated config whose one model points at the same
fake upstream (``LITELLM_LOCAL_MODEL_COST_MAP=True``, telemetry off), and reports aigw's
req/s over the proxy's per round against the issue's 20x. ``--targets`` keeps only the
targets whose names contain one of its comma-separated words (the fake is always kept).
``--gc-compare`` adds, for every kept serve target of this tree, a copy named ``... nogc``
started with ``AIGW_SERVE_GC_FREEZE=0`` (no ``gc.freeze`` after start-up), and prints
frozen over not frozen per round: req/s, p99 and the target's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _litellm_proxy import LITELLM_TARGET, LITELLM_VENV, _start_litellm_proxy
from _serve_summary import _summary

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()

LENGTH = str(len(COMPLETION)).encode()

CONFIG = """
[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "BENCH_UPSTREAM_KEY"
models = ["m"]
prices = {{ m = {{ input_per_mtok = 0.5, output_per_mtok = 1.5 }} }}

[gateway]
log = {log}
"""


# -- the fake upstream (its own process) --------------------------------------------------


async def fake_app(scope, receive, send):
    """Answers any HTTP request with COMPLETION once its body is read."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", LENGTH)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": COMPLETION})


def run_fake(port: int) -> None:
    import uvicorn

    uvicorn.run(fake_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the client (its own process) ---------------------------------------------------------


async def _connection(host, port, request, until, latencies, interval, offset):
    reader, writer = await asyncio.open_connection(host, port)
    next_at = time.monotonic() + offset
    try:
        while time.monotonic() < until:
            if interval:  # paced: this connection's next slot
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"status {status}")
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _load(url: str, concurrency: int, seconds: float, rate: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": "up/m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    path = "/v1/chat/completions"
    request = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer x\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    cpu0, wall0 = time.process_time(), time.monotonic()
    until = wall0 + seconds
    interval = concurrency / rate if rate else 0.0  # per connection, for `rate` in all
    await asyncio.gather(
        *(
            _connection(
                host, int(port), request, until, latencies, interval, i * interval / concurrency
            )
            for i in range(concurrency)
        )
    )
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "wall_s": wall,
        "client_cpu_s": cpu,
        "p50_ms": 1000 * latencies[n // 2],
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))],
    }


def run_client(url: str, concurrency: int, seconds: float, rate: float) -> None:
    try:
        import uvloop  # lazy: optional, the client is faster with it

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_load(url, concurrency, seconds, rate))), flush=True)


# -- the driver -----------------------------------------------------------------------------


@contextlib.contextmanager
def fake_upstream():
    """The fake upstream in its own process, for as long as the block runs; yields its URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--fake-upstream",
                             str(port)])  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def wait_listening(proc: subprocess.Popen) -> str:
    """The URL a one-process ``aigw-lab serve`` (stdout piped) announces."""
    text = ""
    while "listening on" not in text:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("serve did not start")
        text += line
    return re.search(r"listening on (http://\S+)", text).group(1)


def run_client_process(url: str, concurrency: int, seconds: float, rate: float) -> dict:
    """One client run (its own process) against ``url``; its result dict."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--client", url, "--seconds",
         str(seconds), "--concurrency", str(concurrency), "--client-rate", str(rate)],
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode:
        raise SystemExit(f"the client failed on {url}: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


TEAM_LOG = """
[log]
backend = "postgres"
url_env = "BENCH_TEAM_LOG_URL"
team_spool = "{spool}"
"""


def _start_serve(
    folder: Path,
    upstream: str,
    workers: int,
    log: bool | str,
    shards: int = 1,
    transport: str = "httpx",
    http: str = "auto",
    team_url: str | None = None,
    gateway_lines: tuple[str, ...] = (),
    tree: str | None = None,
    gc_freeze: bool = True,
) -> tuple:
    """One ``aigw-lab serve`` target; ``log`` is False (off), True (a DuckDB file) or
    "team" (the PostgreSQL team log at ``team_url``, beside each worker's own file);
    ``transport`` is ``[gateway] transport`` (written unless "httpx"). ``gateway_lines``
    go into its ``[gateway]`` table; ``tree`` runs another checkout's code (its
    PYTHONPATH; ``--http`` is then left to its default, an older tree lacks it).
    ``gc_freeze`` False: serve's garbage-collector freeze after start-up off."""
    tag = f"gw{workers}{log if log else ''}sh{shards}{transport}{http}{'base' if tree else ''}"
    tag += "" if gc_freeze else "nogc"
    config = folder / f"{tag}.toml"
    text = CONFIG.format(url=upstream, log="true" if log else "false")
    if log == "team":
        head, _, gateway = text.partition("[gateway]")
        text = head + TEAM_LOG.format(spool=folder / f"{tag}.spool") + "[gateway]" + gateway
    # Always written: the config's default ("auto") is the lean transport where httptools
    # is installed, so an "httpx" target must say so.
    text += f'transport = "{transport}"\n'
    text += f"pool_shards = {shards}\n" + "".join(f"{line}\n" for line in gateway_lines)
    config.write_text(text)  # [gateway] is the last table
    argv = [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(config)]
    argv += ["--no-auth", "--port", "0", "--workers", str(workers)]
    if tree is None:
        argv += ["--http", http]
    argv += ["--max-requests-in-flight", "4096"]
    if log:
        argv += ["--db", str(folder / f"calls-{tag}.duckdb")]
    env = {**os.environ, "BENCH_UPSTREAM_KEY": "sk-bench"}
    if tree is not None:
        env["PYTHONPATH"] = tree
    if team_url:
        env["BENCH_TEAM_LOG_URL"] = team_url
    if not gc_freeze:
        env["AIGW_SERVE_GC_FREEZE"] = "0"
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    wanted = workers if workers > 1 else 1
    seen, text = 0, ""
    while seen < wanted:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"serve --workers {workers} did not start")
        text += line
        seen += ("aigw-lab serve: worker" in line) if workers > 1 else ("listening on" in line)
    return proc, re.search(r"listening on (http://\S+)", text).group(1)


@contextlib.contextmanager
def team_log_database():
    """A loopback PostgreSQL cluster (aigw_lab.testing.postgres, PostgreSQL's own fsync
    defaults) for as long as the block runs; yields the URL of a fresh database."""
    import psycopg

    from aigw_lab.testing.postgres import PostgresCluster

    with PostgresCluster.start_new(fast=False) as cluster:
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        yield cluster.url.rsplit("/", 1)[0] + "/bench"


def _wait_up(url: str) -> None:
    import socket

    host, port = url.removeprefix("http://").split(":")
    for _ in range(400):
        try:
            socket.create_connection((host, int(port)), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds x 5 s (~2 minutes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--pool-shards",
        type=int,
        default=1,
        help="also run serve N=1 (log off) with [gateway] pool_shards = this (the upstream"
        " pool split into independent pools, aigw_lab.providers.sharded)",
    )
    parser.add_argument(
        "--lean", action="store_true",
        help='also run serve N=1 (log off and on) and N=2 with [gateway] transport = "lean"',
    )  # fmt: skip
    parser.add_argument(
        "--litellm-proxy", action="store_true",
        help="also run LiteLLM's proxy (litellm[proxy] in its own venv) over the same upstream",
    )  # fmt: skip
    parser.add_argument(
        "--litellm-venv", type=Path, default=LITELLM_VENV,
        help=f"the proxy's virtual environment, made on first use (default {LITELLM_VENV})",
    )  # fmt: skip
    parser.add_argument(
        "--targets", default="",
        help="keep only targets whose names contain one of these comma-separated words",
    )  # fmt: skip
    parser.add_argument(
        "--shards", type=int, default=1,
        help="[gateway] pool_shards of every serve target (default 1; --pool-shards adds one"
        " more N=1 target with its own value)",
    )  # fmt: skip
    parser.add_argument(
        "--http-compare", action="store_true",
        help="also run serve N=1 (log off) on h11, beside the default parser (httptools)",
    )  # fmt: skip
    parser.add_argument(
        "--fronts", default="",
        help="comma-separated serve --http fronts (e.g. 'httptools,aigw'): every --lean"
        " target runs once per front, interleaved (default: serve's own choice)",
    )  # fmt: skip
    parser.add_argument(
        "--team-log", action="store_true",
        help="also run serve N=2 with logging on: the PostgreSQL team log (a loopback cluster"
        " this script starts) beside each worker's own DuckDB file",
    )  # fmt: skip
    parser.add_argument(
        "--gateway-line", action="append", default=[],
        help="a line added to every serve target's [gateway] table, e.g."
        " 'transport = \"lean\"' (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-tree", metavar="PATH",
        help="also run serve N=1 log on from another checkout (e.g. /work/main), interleaved:"
        " an A/B of two versions of the code in one run",
    )  # fmt: skip
    parser.add_argument(
        "--gc-compare", action="store_true",
        help="also run every kept serve target of this tree with AIGW_SERVE_GC_FREEZE=0"
        " (named '... nogc'): serve's gc.freeze after start-up off, interleaved",
    )  # fmt: skip
    parser.add_argument("--fake-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--client-rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rate", type=float, default=50.0,
        help="the paced pass: requests/s in all over the same connections (default 50)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.fake_upstream is not None:
        return run_fake(args.fake_upstream)
    if args.client:
        return run_client(args.client, args.concurrency, args.seconds, args.client_rate)
    if args.quick:
        args.rounds, args.seconds = 2, 5.0

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        fake_port = s.getsockname()[1]
    fake_url = f"http://127.0.0.1:{fake_port}"
    me = str(Path(__file__).resolve())
    procs = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        try:
            fake = subprocess.Popen([sys.executable, me, "--fake-upstream", str(fake_port)])
            procs.append(fake)
            _wait_up(fake_url)
            targets = {"fake direct": (fake, fake_url)}
            # (name, workers, log, pool shards, upstream transport, HTTP parser, checkout)
            serves = [
                ("serve N=1 log off", 1, False, args.shards),
                ("serve N=2 log off", 2, False, args.shards),
                ("serve N=1 log on", 1, True, args.shards),
            ]
            if args.pool_shards > 1:
                serves.append((f"serve N=1 off sh{args.pool_shards}", 1, False, args.pool_shards))
            serves = [(*serve, "httpx", "auto", None) for serve in serves]
            if args.lean:
                serves += [
                    ("serve N=1 off lean", 1, False, 1, "lean", "auto", None),
                    ("serve N=2 off lean", 2, False, 1, "lean", "auto", None),
                    ("serve N=1 log lean", 1, True, 1, "lean", "auto", None),
                ]
            if args.http_compare:
                serves.append(("serve N=1 off h11", 1, False, args.shards, "httpx", "h11", None))
            base = args.baseline_tree
            if base:  # with --lean, the other checkout on the lean transport too
                serves.append(
                    ("base N=1 log lean", 1, True, 1, "lean", "auto", base)
                    if args.lean
                    else ("base N=1 log on", 1, True, args.shards, "httpx", "auto", base)
                )
            team_url = None
            if args.team_log:
                serves.append(("serve N=2 team log", 2, "team", args.shards, "httpx", "auto", None))
                if args.lean:
                    serves.append(("serve N=2 team lean", 2, "team", 1, "lean", "auto", None))
                if args.lean and base:
                    serves.append(("base N=2 team lean", 2, "team", 1, "lean", "auto", base))
            fronts = [f.strip() for f in args.fronts.split(",") if f.strip()]
            if fronts:  # each lean target of this tree once per front, named by it
                serves = [s for s in serves if s[4] != "lean" or s[6]] + [
                    (f"{s[0]} {front}", *s[1:5], front, s[6])
                    for s in serves if s[4] == "lean" and not s[6] for front in fronts
                ]  # fmt: skip
            words = [w.strip() for w in args.targets.split(",") if w.strip()]
            serves = [s for s in serves if not words or any(w in s[0] for w in words)]
            if args.gc_compare:
                serves += [(f"{s[0]} nogc", *s[1:]) for s in serves if not s[6]]
            if any(s[2] == "team" for s in serves):
                team_url = stack.enter_context(team_log_database())
            for name, workers, log, shards, transport, http, tree in serves:
                proc, url = _start_serve(
                    Path(tmp), fake_url, workers, log, shards, transport, http, team_url,
                    tuple(args.gateway_line), tree, gc_freeze=not name.endswith(" nogc"),
                )  # fmt: skip
                procs.append(proc)
                targets[name] = (proc, url)
            if args.litellm_proxy:
                proc, url = _start_litellm_proxy(Path(tmp), fake_url, args.litellm_venv)
                procs.append(proc)
                targets[LITELLM_TARGET] = (proc, url)
            print(f"concurrency {args.concurrency}, {args.rounds} rounds x {args.seconds:g} s; "
                  f"cpu_count {os.cpu_count()}; loadavg {os.getloadavg()}", flush=True)  # fmt: skip
            results: dict[str, list[dict]] = {name: [] for name in targets}
            paced: dict[str, list[dict]] = {name: [] for name in targets}
            passes = [(f"{args.rate:g}/s", args.rate, paced), ("flat out", 0.0, results)]
            for round_, (label, rate, sink) in (
                (r, p) for r in range(args.rounds) for p in reversed(passes)
            ):
                order = list(targets)
                random.shuffle(order)
                for name in order:
                    proc, url = targets[name]
                    cpu0 = _tree_cpu(proc.pid)
                    out = subprocess.run(
                        [sys.executable, me, "--client", url, "--seconds", str(args.seconds),
                         "--concurrency", str(args.concurrency), "--client-rate", str(rate)],
                        capture_output=True, text=True,
                    )  # fmt: skip
                    if out.returncode:
                        raise SystemExit(f"the client failed on {name}: {out.stderr[-2000:]}")
                    result = json.loads(out.stdout)
                    result["server_cpu_s"] = _tree_cpu(proc.pid) - cpu0
                    result["rps"] = result["requests"] / result["wall_s"]
                    sink[name].append(result)
                    per = 1e6 / result["requests"]
                    print(f"  round {round_} {label:8} {name:26} {result['rps']:7.0f} req/s  "
                          f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                          f"client cpu {per * result['client_cpu_s']:5.0f} us/req  "
                          f"target cpu {per * result['server_cpu_s']:5.0f} us/req  "
                          f"loadavg {os.getloadavg()}", flush=True)  # fmt: skip
            print(f"\npaced at {args.rate:g} req/s in all over {args.concurrency} connections")
            _summary(paced, ratios=False)
            print(f"\nflat out at {args.concurrency} connections")
            _summary(results)
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
