"""Do provider kinds as objects cost anything? This tree against an earlier one, same run.

    python bench/bench_provider_kinds.py --old-tree DIR [--rounds R] [--calls N]

``DIR`` holds an earlier ``aigw_lab`` package (e.g. ``git archive 44b59a3 aigw_lab | tar -x
-C DIR``). Each round starts one fresh interpreter per tree, in alternating order, and
measures in it:

* ``import config``: importing ``aigw_lab.config`` (which now imports the kind registry and
  the HTTP kinds' codecs);
* ``parse config``: `parse_config` of a five-provider config (kinds looked up, keys checked),
  per call;
* ``first call``: building a gateway from that config and its first simulated call (the
  ``simulated`` kind is imported on first lookup now);
* ``chat``: per-call time of ``Gateway.chat`` on an OpenAI provider answered by an in-process
  ``httpx.MockTransport``, logged to a DuckDB file (the spool's start hook reads the
  provider's traits on every call).

Wall and CPU time are printed side by side with the new/old ratio of the medians over the
rounds. Exits 0; nothing is enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

# Runs inside each interpreter; prints one JSON object of (wall, cpu) seconds.
PROBE = r"""
import json, sys, time, tempfile, os
calls = int(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
import aigw_lab.config as config
out = {"import config": (time.perf_counter() - t0, time.process_time() - c0)}

import httpx
from aigw_lab import Gateway, HttpClients, ProviderSpec

table = {
    "gateway": {"default_provider": "sim"},
    "providers": {
        "sim": {"kind": "simulated", "time_scale": 0},
        "oa": {"kind": "openai"},
        "an": {"kind": "anthropic"},
        "wk": {"kind": "workers-ai", "account_id": "a1"},
        "compat": {"kind": "openai-compatible", "base_url": "http://localhost:1/v1"},
    },
}
config.parse_config(table)
n = 200
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(n):
    config.parse_config(table)
out["parse config"] = ((time.perf_counter() - t0) / n, (time.process_time() - c0) / n)

t0, c0 = time.perf_counter(), time.process_time()
with Gateway(providers=config.parse_config(table).providers, log=None) as gw:
    gw.chat("sim/sim-small", "What is 2 + 2?")
out["first call"] = (time.perf_counter() - t0, time.process_time() - c0)

body = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
    "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 2,
    "total_tokens": 11}}).encode()
transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body,
    headers={"content-type": "application/json"}))
spec = ProviderSpec(name="oa", kind="openai", base_url="http://bench.invalid/v1",
    api_key_env="BENCH_KEY")
folder = tempfile.mkdtemp(prefix="bench-kinds-")
import atexit, shutil
atexit.register(shutil.rmtree, folder, True)
with Gateway(providers=[spec], log=os.path.join(folder, "calls.duckdb"),
        clients=HttpClients(transport=transport), env={"BENCH_KEY": "k"}) as gw:
    for _ in range(50):
        gw.chat("oa/gpt-4o-mini", "What is the capital of France?")
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        gw.chat("oa/gpt-4o-mini", "What is the capital of France?")
    out["chat"] = ((time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls)
print(json.dumps(out))
"""


def probe(tree: Path, calls: int) -> dict[str, tuple[float, float]]:
    # Both trees compiled from source: a __pycache__ that one tree has and the other lacks
    # would decide the import times.
    cache = tempfile.mkdtemp(prefix="bench-kinds-pyc-")
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": cache,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(calls)],
            env=env,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
            check=True,
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {k: tuple(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args(argv)
    trees = {"new": HERE, "old": args.old_tree.resolve()}
    results: dict[str, list[dict[str, tuple[float, float]]]] = {"new": [], "old": []}
    for i in range(args.rounds):
        order = ["new", "old"] if i % 2 == 0 else ["old", "new"]
        for side in order:
            results[side].append(probe(trees[side], args.calls))
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, {args.rounds} rounds")
    print(f"{'measure':<14} {'old wall':>10} {'new wall':>10} {'ratio':>6}   "
          f"{'old cpu':>10} {'new cpu':>10} {'ratio':>6}")  # fmt: skip
    for key in results["new"][0]:
        row = []
        for index in (0, 1):
            old = statistics.median(r[key][index] for r in results["old"])
            new = statistics.median(r[key][index] for r in results["new"])
            row.append((old, new, new / old if old else float("nan")))
        (ow, nw, rw), (oc, nc, rc) = row
        unit, scale = ("us", 1e6) if ow < 0.01 else ("ms", 1e3)
        print(
            f"{key:<14} {ow * scale:>8.1f}{unit} {nw * scale:>8.1f}{unit} {rw:>6.2f}   "
            f"{oc * scale:>8.1f}{unit} {nc * scale:>8.1f}{unit} {rc:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
