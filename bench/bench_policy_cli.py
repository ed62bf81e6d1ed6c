"""Wall and CPU time of the real `aigw-lab policy` commands, cold and warm embedding cache.

For each ``--data`` name it runs, as a user would, each in a fresh process:

    aigw-lab policy train --data D --router knn --strong-share 0.5 --out P
    aigw-lab policy evaluate P
    aigw-lab policy export P --to litellm|portkey|cloudflare --out ...

With ``--cold`` the first `train` runs against an empty cache folder (the cost of embedding
the dataset once); every later command reads that folder (the warm cache). Without
``--cold`` the cache folder given by ``--cache-dir`` (default: the user's cache) is used as
it is, so run it after a cold run. CPU time is the child processes' user+system time, wall
time the process's lifetime. The cold train is the baseline each warm command is compared
to. A shared machine's wall times vary with its load: compare within one run.

``--embedder`` trains with another embedder (every later command uses the one the policy
names).

    python bench/bench_policy_cli.py --data routellm/gsm8k routellm/mmlu [--cold]
        [--embedder all-MiniLM-L6-v2-static256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _child_time import run_timed  # bench/, the script's own folder


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    result = run_timed([sys.executable, "-m", "aigw_lab.cli.main", *argv], env=env)
    if result.done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.done.stderr}")
    return result.wall, result.cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["routellm/gsm8k"])
    parser.add_argument("--cold", action="store_true", help="start from an empty cache")
    parser.add_argument("--cache-dir", help="embedding cache folder to use when not --cold")
    parser.add_argument("--embedder", help="the policy's embedder (default all-MiniLM-L6-v2)")
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = str(folder / "cache") if args.cold else args.cache_dir
        common = ["--cache-dir", cache] if cache else []
        print(f"{'command':<42} {'wall s':>8} {'CPU s':>8} {'vs first train':>15}")
        for data in args.data:
            policy = str(folder / f"{data.replace('/', '-')}.json")
            train = ["policy", "train", "--data", data, "--router", "knn"]
            train += ["--strong-share", "0.5", "--out", policy, *common]
            if args.embedder:
                train += ["--embedder", args.embedder]
            runs = [("train (cold)" if args.cold else "train", train), ("train", train)]
            runs.append(("evaluate", ["policy", "evaluate", policy, *common]))
            for target in ("litellm", "portkey", "cloudflare"):
                out = str(folder / f"out.{target}")
                argv = ["policy", "export", policy, "--to", target, "--out", out, *common]
                if target == "cloudflare":
                    argv += ["--cloudflare-provider", "together=openrouter"]
                runs.append((f"export --to {target}", argv))
            baseline = None
            for label, argv in runs:
                wall, cpu = timed(argv, env)
                baseline = baseline or wall
                print(f"{data + ' ' + label:<42} {wall:8.2f} {cpu:8.2f} {wall / baseline:14.2f}x")


if __name__ == "__main__":
    main()
