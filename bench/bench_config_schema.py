"""Does checking a config against typed schemas cost anything? This tree against an earlier
one, in the same run.

    git archive 781dda4 aigw_lab | tar -x -C /tmp/old    # the tree before the schemas
    python bench/bench_config_schema.py --old-tree /tmp/old [--rounds R] [--parses N]

Each round starts one fresh interpreter per tree (``new`` twice: how far two identical sides
drift apart on this machine, the noise floor), in a new random order each round, and
measures in it:

* ``import config``: importing ``aigw_lab.config`` (it now imports the gateway's tables);
* ``parse full``: `parse_config` of a config with every table (gateway and retry, five
  providers, prices, fallbacks, health, cache, budgets, rate limits, semantic cache, server
  with keys, log), per parse;
* ``parse small``: a one-provider config, per parse;
* ``parse typo``: a config whose ``[[rate_limits.rule]]`` has a typo (the error path,
  with its difflib suggestion), per parse.

Wall and CPU (``process_time``) medians over the rounds, with the new/old ratio. Exits 0;
nothing is enforced. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

# Runs inside each interpreter; prints one JSON object of (wall, cpu) seconds.
PROBE = r"""
import json, sys, time
n = int(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
import aigw_lab.config as config
out = {"import config": (time.perf_counter() - t0, time.process_time() - c0)}
from aigw_lab.errors import ConfigError

full = {
    "gateway": {"default_provider": "sim", "tags": {"team": "a"}, "log": False,
                "retry": {"max_attempts": 2, "base_delay": 0.0}, "pool_max_connections": 50},
    "providers": {
        "sim": {"kind": "simulated", "time_scale": 0, "seed": 3},
        "oa": {"kind": "openai", "timeout": 30, "models": ["gpt-4o-mini"],
               "prices": {"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}},
        "an": {"kind": "anthropic", "headers": {"x-team": "a"}},
        "wk": {"kind": "workers-ai", "account_id": "a1", "cf_gateway": "g",
               "cf_headers": {"cf-aig-cache-ttl": "60"}},
        "compat": {"kind": "openai-compatible", "base_url": "http://localhost:1/v1"},
    },
    "prices": {"oa/gpt-4.1": {"input_per_mtok": 2, "output_per_mtok": 8}},
    "fallbacks": {"sim/sim-small": ["sim/sim-nano"]},
    "health": {"failure_threshold": 3, "cooldown": 10},
    "cache": {"store": "memory", "ttl": 60},
    "budgets": {"limit": [{"scope": "tenant", "id": "acme", "usd": 5, "period": "day"}]},
    "rate_limits": {"rule": [{"key": ["tenant"], "requests_per_minute": 60},
                             {"tokens_per_minute": 10000}]},
    "semantic_cache": {"threshold": 0.9, "index": {"kind": "ivf", "nprobe": 4}},
    "server": {"host": "127.0.0.1", "port": 8080, "keys": [{"key_env": "K", "name": "a"}]},
    "log": {"bodies": "redacted", "redact_patterns": {"emp": "EMP-[0-9]+"}},
}
small = {"providers": {"sim": {"kind": "simulated"}}}
typo = {"providers": {"sim": {"kind": "simulated"}},
        "rate_limits": {"rule": [{"requests_per_minute": 1}, {"request_per_minute": 1}]}}

def per_parse(data, fails=False):
    for _ in range(20):  # warm
        try:
            config.parse_config(data)
        except ConfigError:
            assert fails
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        try:
            config.parse_config(data)
        except ConfigError:
            pass
    return ((time.perf_counter() - t0) / n, (time.process_time() - c0) / n)

out["parse full"] = per_parse(full)
out["parse small"] = per_parse(small)
out["parse typo"] = per_parse(typo, fails=True)
print(json.dumps(out))
"""


def probe(tree: Path, parses: int) -> dict[str, tuple[float, float]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(parses)], env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    return {name: tuple(pair) for name, pair in json.loads(done.stdout).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--parses", type=int, default=2000)
    args = parser.parse_args(argv)
    sides = {"old": args.old_tree.resolve(), "new": HERE, "new, again": HERE}
    results: dict[str, list[dict[str, tuple[float, float]]]] = {side: [] for side in sides}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(sides)
        rng.shuffle(order)
        for side in order:
            results[side].append(probe(sides[side], args.parses))
    print(f"# {platform.python_version()} {platform.machine()}, load {os.getloadavg()[0]:.1f}, "
          f"{args.rounds} rounds, {args.parses} parses")  # fmt: skip
    print(f"{'workload':<15}{'side':<12}{'wall':>12}{'cpu':>12}{'wall/old':>10}{'cpu/old':>9}")
    for name in results["old"][0]:
        medians = {
            side: tuple(statistics.median(r[name][i] for r in runs) for i in (0, 1))
            for side, runs in results.items()
        }
        old = medians["old"]
        for side, (wall, cpu) in medians.items():
            unit, scale = ("ms", 1e3) if name == "import config" else ("us", 1e6)
            print(f"{name:<15}{side:<12}{wall * scale:>9.1f} {unit}{cpu * scale:>9.1f} {unit}"
                  f"{wall / old[0]:>10.2f}{cpu / old[1]:>9.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
