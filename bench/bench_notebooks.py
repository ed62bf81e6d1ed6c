"""How long do the notebooks take, on a first run and on a rerun with warm caches?

    python bench/bench_notebooks.py [--rounds R] [NAME ...]      # default: 04_routing_policies

Each round runs every named notebook twice in fresh kernels started from this interpreter
(nbclient, like tests/notebook): first with an empty ``AIGW_LAB_CACHE`` (a first run: 04
embeds its 1,307 questions), then again with the cache the first run left (a rerun).
Rounds alternate so a machine that gets busier affects both alike. Prints, per run, the
wall time of the cells and the kernel's CPU time over them, then medians and the
rerun/first-run ratio. The load average is printed beside them: on a shared machine wall
time grows with other people's work, CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
_CPU = "print(sum(__import__('os').times()[:2]))"


def run_once(name: str, cache: Path, workdir: Path) -> tuple[float, float]:
    """Wall and kernel CPU seconds of one run of notebook ``name`` with cache ``cache``."""
    os.environ["AIGW_LAB_CACHE"] = str(cache)  # the kernel inherits it
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": workdir}}
    )
    with client.setup_kernel():
        client.wait_for_reply(client.kc.kernel_info())
        cpu = -_kernel_cpu(client)
        started = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
        wall = time.perf_counter() - started
        cpu += _kernel_cpu(client)
    return wall, cpu


def _kernel_cpu(client: nbclient.NotebookClient) -> float:
    cell = nbformat.v4.new_code_cell(_CPU)
    client.nb.cells.append(cell)
    try:
        client.execute_cell(cell, len(client.nb.cells) - 1, store_history=False)
    finally:
        client.nb.cells.pop()
    return float("".join(o.get("text", "") for o in cell.outputs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["04_routing_policies"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_ in range(args.rounds):
        for name in args.names:
            with tempfile.TemporaryDirectory(prefix="aigw-bench-nb-") as tmp:
                for kind in ("first run", "rerun"):
                    wall, cpu = run_once(name, Path(tmp) / "cache", tmp)
                    results.setdefault((name, kind), []).append((wall, cpu))
                    load = os.getloadavg()[0]
                    print(
                        f"round {round_ + 1} {name} {kind:9s}: wall {wall:6.1f} s, "
                        f"CPU {cpu:6.1f} s, load average {load:.1f}"
                    )
    print()
    for name in args.names:
        medians = {}
        for kind in ("first run", "rerun"):
            runs = results[(name, kind)]
            medians[kind] = [statistics.median(v) for v in zip(*runs, strict=True)]
            wall, cpu = medians[kind]
            print(f"{name} {kind:9s}: median wall {wall:6.1f} s, CPU {cpu:6.1f} s")
        ratio = [r / f for r, f in zip(medians["rerun"], medians["first run"], strict=True)]
        print(f"{name} rerun / first run: wall {ratio[0]:.2f}, CPU {ratio[1]:.2f}")


if __name__ == "__main__":
    main()
