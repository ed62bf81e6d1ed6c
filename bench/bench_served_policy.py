"""What a served learned routing policy adds per request, against the same server with a
static policy.

Three `aigw-lab serve`-equivalent servers (`GatewayApp` over the simulated fleet at
``time_scale=0``, so an upstream call costs no waiting) run as separate processes on
loopback: one routes with a seeded weighted split between two targets, one with a kNN
learned router (all-MiniLM-L6-v2) trained on the RouteLLM GSM8K recordings, between the same
two targets, and one ("int8") with the same kNN router trained and served with
all-MiniLM-L6-v2-int8 (the same weights, Linear layers quantized to int8), and one ("m2v")
trained and served with all-MiniLM-L6-v2-static256 (a model2vec static embedder distilled
from the same weights, `aigw_lab.static_embedder`; distilled on first use, minutes once per
machine, before the timing starts), and one ("learned-torch") serving the first one's policy
with MiniLM on sentence-transformers and torch instead of onnxruntime (the default engine,
`aigw_lab.minilm_onnx`). ``--embedders`` picks which learned servers run. The
client sends
the held-out GSM8K prompts (distinct, so the router's in-memory LRU never hits, except in the
repeated phase) to every server, interleaved (the servers' order reversed on every other
prompt), in three phases:

- paced: one round of requests every 1/--rate seconds (servers idle between requests);
- flat out: rounds back to back;
- repeated: the paced phase's prompts again, back to back (the router's in-memory LRU of
  recent prompt embeddings answers; what a repeated prompt costs).

``--threads`` adds a fourth server: the learned one with ``OMP_NUM_THREADS=1`` (one torch
thread, against torch's default of one per core). For each server it prints start-up time
(process start to accepting connections: the learned one loads and warms its model before
that), the client-side wall latency p50/p90,
and CPU time per request of the server process (from /proc), then each learned server minus
the static one and the ratio. The machine is shared: compare the two columns of one run, not runs.

    python bench/bench_served_policy.py [--requests 200] [--rate 5] [--threads] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STRONG, WEAK = "sim-openai/sim-large", "sim-openai/sim-nano"


def serve_main(kind: str, policy_path: str) -> None:
    """The server process: build the gateway with one policy named "router", serve it."""
    from aigw_lab.gateway import Gateway
    from aigw_lab.policy import WeightedSplit
    from aigw_lab.policy.policyfile import load_policy
    from aigw_lab.server.app import GatewayApp
    from aigw_lab.server.runner import serve

    if kind == "static":
        policy = WeightedSplit("router", {STRONG: 1, WEAK: 1}, seed=0)
    else:
        policy = load_policy(policy_path)
    if kind == "learned-torch":
        from aigw_lab.embedding_cache import CachedEmbedder
        from aigw_lab.embeddings import SentenceTransformerEmbedder
        from aigw_lab.policy.learned.router import SERVING_MEMORY

        # The same model on sentence-transformers instead of onnxruntime (the default), with
        # the same in-memory memory of recent prompts the router gives its own embedder.
        policy.embedder = CachedEmbedder(
            SentenceTransformerEmbedder(backend="torch"), None, memory=SERVING_MEMORY
        )
    gateway = Gateway.simulated_fleet(time_scale=0.0, policies={"router": policy})
    app = GatewayApp(gateway, None, close_gateway=True)
    # `serve` announces the URL once the port is bound; uvicorn accepts connections only
    # after the app's startup (the warm-up), which the client waits for with /health.
    serve(app, "127.0.0.1", 0, on_listening=lambda url: print(url, flush=True))


def train_policy(
    folder: Path, data_dir: str | None, embedder: str | None = None
) -> tuple[Path, list[str]]:
    """A kNN router on GSM8K's training split (embeddings from the on-disk cache), embedding
    with ``embedder`` (default all-MiniLM-L6-v2), and the prompts it was not trained on
    (calibration and test splits: 522 distinct prompts)."""
    from aigw_lab.cli.policy import load_data, split_three
    from aigw_lab.policy.learned import train_router
    from aigw_lab.policy.learned.features import cached_embedder, make_embedder
    from aigw_lab.policy.policyfile import save_policy

    data = load_data("routellm/gsm8k", data_dir)
    train, calibration, test = split_three(data, 0.2, 0.2, 0)
    router = train_router(
        train,
        "knn",
        name="router",
        targets={"gpt-4-1106-preview": STRONG, "Mixtral-8x7B-Instruct-v0.1": WEAK},
        embedder=cached_embedder(make_embedder(embedder)),
    )
    # A folder per embedder: the artifact is named after the policy ("router.npz"), so
    # policies saved side by side would share one file (the last one trained).
    (folder / (embedder or "default")).mkdir()
    path = save_policy(router, folder / (embedder or "default") / "router.json")
    return path, [item.prompt for item in (*calibration.items, *test.items)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(kind: str, policy: Path) -> tuple[subprocess.Popen, str, float]:
    import httpx

    env = dict(os.environ)
    if kind == "learned-1t":  # one torch thread instead of torch's default (one per core)
        env["OMP_NUM_THREADS"] = "1"
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--policy", str(policy)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = proc.stdout.readline().strip()  # type: ignore[union-attr]
    while True:
        try:
            httpx.get(f"{url}/health", timeout=120).raise_for_status()
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return proc, url, time.perf_counter() - began


def run_phase(clients, prompts, rate: float | None) -> dict[str, dict[str, float]]:
    wall: dict[str, list[float]] = {name: [] for name in clients}
    cpu_before = {name: cpu_seconds(pid) for name, (_, pid) in clients.items()}
    names = list(clients)
    next_at = time.perf_counter()
    for n, prompt in enumerate(prompts):
        order = names if n % 2 == 0 else names[::-1]
        for name in order:
            client, _ = clients[name]
            body = {"model": "router", "messages": [{"role": "user", "content": prompt}]}
            began = time.perf_counter()
            reply = client.post("/v1/chat/completions", json=body)
            wall[name].append(time.perf_counter() - began)
            reply.raise_for_status()
        if rate:
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.perf_counter()))
    out = {}
    for name, (_, pid) in clients.items():
        times = sorted(wall[name])
        out[name] = {
            "p50_ms": 1000 * statistics.median(times),
            "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))],
            "mean_ms": 1000 * statistics.fmean(times),
            "cpu_ms_per_request": 1000 * (cpu_seconds(pid) - cpu_before[name]) / len(times),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per server a phase")
    parser.add_argument("--rate", type=float, default=5.0, help="rounds per second when paced")
    parser.add_argument("--data-dir", help="shared data folder")
    parser.add_argument(
        "--threads",
        action="store_true",
        help="add a third server, the learned one with OMP_NUM_THREADS=1, to compare one "
        "torch thread with torch's default (one per core)",
    )
    parser.add_argument(
        "--embedders",
        default="learned,int8,m2v",
        help="comma-separated learned servers to run beside the static one: learned "
        "(all-MiniLM-L6-v2, on onnxruntime), learned-torch (the same on sentence-transformers "
        "and torch), int8, m2v (all-MiniLM-L6-v2-static256)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.policy)
        return

    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        policy, prompts = train_policy(Path(tmp), args.data_dir)
        embedder_of = {
            "learned": None,
            "int8": "all-MiniLM-L6-v2-int8",
            "m2v": "all-MiniLM-L6-v2-static256",
            "learned-1t": None,
            "learned-torch": None,
        }
        wanted = [k for k in args.embedders.split(",") if k] + (
            ["learned-1t"] if args.threads else []
        )
        unknown = sorted(set(wanted) - set(embedder_of))
        if unknown:
            raise SystemExit(f"unknown --embedders {unknown}: use {', '.join(embedder_of)}")
        policies = {"static": policy}
        for kind in wanted:
            name = embedder_of[kind]
            policies[kind] = (
                policy if name is None else train_policy(Path(tmp), args.data_dir, name)[0]
            )
        # Distinct prompts in each phase, so the router's in-memory LRU never answers.
        n = min(args.requests, (len(prompts) - 5) // 2)
        phases = {"paced": prompts[5 : 5 + n], "flat out": prompts[5 + n : 5 + 2 * n]}
        servers = {}
        try:
            kinds = ("static", *wanted)
            for kind in kinds:
                servers[kind] = start(kind, policies[kind])
            clients = {
                kind: (httpx.Client(base_url=url, timeout=60), proc.pid)
                for kind, (proc, url, _) in servers.items()
            }
            print(f"{n} requests per server per phase; shared 2-core machine")
            for kind, (_, _, seconds) in servers.items():
                print(f"start-up to ready  {kind:<8} {seconds:6.2f} s")
            # A few unmeasured requests: connection set-up, first-call allocations.
            run_phase(clients, prompts[:5], None)
            results = {}
            phases["repeated"] = phases["paced"]  # seen before: the in-memory LRU answers
            for phase, rate in (("paced", args.rate), ("flat out", None), ("repeated", None)):
                results[phase] = r = run_phase(clients, phases[phase], rate)
                label = f"{phase} ({rate:g} rounds/s)" if rate else phase
                print(f"\n{label}")
                print(f"  {'':8} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8} {'CPU ms/req':>11}")
                for kind in kinds:
                    m = r[kind]
                    print(
                        f"  {kind:<8} {m['p50_ms']:8.2f} {m['p90_ms']:8.2f} {m['mean_ms']:8.2f} "
                        f"{m['cpu_ms_per_request']:11.2f}"
                    )
                s = r["static"]
                for kind in kinds[1:]:
                    learned = r[kind]
                    print(
                        f"  {kind} - static: p50 {learned['p50_ms'] - s['p50_ms']:+.2f} ms, CPU "
                        f"{learned['cpu_ms_per_request'] - s['cpu_ms_per_request']:+.2f} ms/req; "
                        f"p50 ratio {learned['p50_ms'] / s['p50_ms']:.2f}x"
                    )
            print("\n" + json.dumps(results))
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
