"""The bundled MiniLM's two engines, onnxruntime (``backend="onnx"``, the default) against
sentence-transformers on torch (``backend="torch"``): start-up, batches, and one text per
call flat out and at a paced rate, interleaved in one run, CPU beside wall, with the ratio
onnx / torch. Shared machine: compare the rows of one run, not runs.

- start-up: a fresh ``python -c`` that builds the embedder and embeds one text (imports,
  model load, graph build), ``--starts`` times each, alternating; CPU from the child's rusage.
- batch: ``--n`` GSM8K prompts (a seeded sample) in batches of 64, ``--rounds`` times each,
  alternating, on one intra-op thread and on the engines' default (one per core).
- one text per call: the same prompts one by one on one thread, flat out and paced at
  ``--rate`` calls per second (a served policy's or a semantic cache's embedding path).

Also prints the largest difference and the lowest cosine between the engines' vectors.

    python bench/bench_embedders.py [--n 300] [--starts 4] [--rounds 3] [--rate 20] [--seed 0]
        [--data-dir D]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

_START = (
    "import time, resource\n"
    "from aigw_lab.embeddings import SentenceTransformerEmbedder\n"
    "SentenceTransformerEmbedder(backend={backend!r}).embed(['how do I reverse a list?'])\n"
)


def _start_up(backend: str) -> tuple[float, float]:
    """Wall and CPU seconds of a fresh process that loads ``backend`` and embeds one text."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", _START.format(backend=backend)], check=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _timed(run, *args) -> tuple[float, float, object]:  # noqa: ANN001
    wall, cpu = time.perf_counter(), time.process_time()
    out = run(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _row(label: str, onnx: list[float], torch: list[float], unit: str, scale: float) -> None:
    o, t = statistics.median(onnx), statistics.median(torch)
    print(f"  {label:34} {scale * o:9.2f} {scale * t:9.2f} {unit:3} {o / t:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="GSM8K prompts (default 300)")
    parser.add_argument("--starts", type=int, default=4, help="fresh processes per engine")
    parser.add_argument("--rate", type=float, default=20.0, help="paced one-text calls per s")
    parser.add_argument("--rounds", type=int, default=3, help="batch runs per engine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="the shared data folder (default: ../shared/data)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from aigw_lab.cli.policy import load_data
    from aigw_lab.embeddings import SentenceTransformerEmbedder

    prompts = sorted({item.prompt for item in load_data("routellm/gsm8k", args.data_dir).items})
    prompts = random.Random(args.seed).sample(prompts, min(args.n, len(prompts)))
    print(f"{time.strftime('%Y-%m-%d %H:%M')} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{len(prompts)} GSM8K prompts; medians; onnx / torch")
    print(f"  {'':34} {'onnx':>9} {'torch':>9} {'':3} {'ratio':>8}")

    starts: dict[str, list[tuple[float, float]]] = {"onnx": [], "torch": []}
    for i in range(args.starts):
        for backend in ("onnx", "torch") if i % 2 == 0 else ("torch", "onnx"):
            starts[backend].append(_start_up(backend))
    for k, name in ((0, "wall"), (1, "CPU")):
        _row(
            f"start-up + one text, {name}",
            *([s[k] for s in starts[b]] for b in ("onnx", "torch")),
            "s",
            1,
        )

    engines = ("onnx", "torch")
    import torch

    default_threads = torch.get_num_threads()
    batch: dict[str, dict[str, list[float]]]
    vectors = {}
    for threads in (1, 0):
        os.environ["OMP_NUM_THREADS"] = str(threads or default_threads)
        torch.set_num_threads(threads or default_threads)
        fresh = {b: SentenceTransformerEmbedder(backend=b) for b in engines}  # onnx reads it
        for engine in fresh.values():
            engine.embed(["warm-up"])  # the load is not the batch's work
        batch = {b: {"wall": [], "cpu": []} for b in engines}
        for r in range(args.rounds):
            for label in engines if r % 2 == 0 else engines[::-1]:
                wall, cpu, vectors[label] = _timed(fresh[label].embed, prompts)
                batch[label]["wall"].append(wall)
                batch[label]["cpu"].append(cpu)
        for k in ("wall", "cpu"):
            _row(
                f"batches of 64, {threads or default_threads} thread(s), {k}",
                batch["onnx"][k],
                batch["torch"][k],
                "s",
                1,
            )
    cosines = (vectors["onnx"] * vectors["torch"]).sum(axis=1)
    largest = np.abs(vectors["onnx"] - vectors["torch"]).max()
    print(f"  vectors: min cosine {cosines.min():.7f}, max |diff| {largest:.2e}")

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    single = {b: SentenceTransformerEmbedder(backend=b) for b in engines}
    for engine in single.values():
        engine.embed(["warm-up"])
    for paced in (False, True):
        cpu: dict[str, list[float]] = {b: [] for b in single}
        wall: dict[str, list[float]] = {b: [] for b in single}
        for n, prompt in enumerate(prompts):
            for label in ("onnx", "torch") if n % 2 == 0 else ("torch", "onnx"):
                if paced:
                    time.sleep(1.0 / args.rate)
                w, c, _ = _timed(single[label].embed, [prompt])
                cpu[label].append(c)
                wall[label].append(w)
        how = f"paced {args.rate:g}/s" if paced else "flat out"
        _row(f"one text per call, {how}, CPU", cpu["onnx"], cpu["torch"], "ms", 1000)
        _row(f"one text per call, {how}, wall", wall["onnx"], wall["torch"], "ms", 1000)


if __name__ == "__main__":
    main()
