"""How close is the experiment cost estimate to what the run then costs, and what does it
take to compute?

    python bench/bench_estimate_accuracy.py [--sample N] [--repeats R]

Runs, each in a temporary call log: ``examples/experiment.toml`` (the simulated fleet, the
file's seed and sample), the README's Python experiment (40 bundled items, 4 simulated
targets, no max_tokens), and, when the shared data folder is there, a replay of the first
three models of four recordings (``--sample`` items each). For each it prints the actual
cost, the estimate (`aigw_lab.experiments.estimate_cost`) with the sources it used, the
naive estimate the module used before (prompt tokens plus ``max_tokens`` or 256 output
tokens for every unit), and actual / estimate for both: 1.0 is perfect, the target is
[0.5, 2].

It also times the two estimates, interleaved ``--repeats`` times on the same experiment (the
run's log is in place, so the estimate reads it), CPU time beside wall time: the new
estimate's one log query and per-unit source lookup, against the naive per-unit pricing.

Then, for a live model (a fake answering with the first model's recorded outputs, so not a
replay) on the same recordings' prompts: actual / estimate from reference answers alone, and
after a five-item trial run has put the model's answers in the log (``reference_log``).

``--log-rows N`` (default 2,000,000) then times the estimate of the example file against a
log that also holds N other ok calls of its models (10,000 item ids), written with SQL: the
one query over the log is what grows with it. Baseline in the same run: the same estimate on
the log before those rows were added.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aigw_lab.datasets import shared_data_dir_or_none
from aigw_lab.experiments import estimate_cost, run_experiment
from aigw_lab.gateway.budget_limits import estimate_input_tokens
from aigw_lab.types import ChatRequest, Usage

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ("routellm/gsm8k", "routellm/mt_bench", "arena_bench", "alpaca_eval")


def naive_usd(gateway: Any, experiment: Any) -> float:
    """The estimate as computed before: every answer runs to max_tokens, else 256 tokens."""
    total = 0.0
    for unit in experiment.units():
        params = unit.target.request_params(experiment.params)
        request = ChatRequest(model=unit.target.model, messages=unit.item.messages())
        usage = Usage(
            input_tokens=estimate_input_tokens(request),
            output_tokens=params.get("max_tokens") or 256,
        )
        provider, model = gateway.resolve(unit.target.model)
        total += gateway.prices.cost(provider, model, usage) or 0.0
    return total


def timed(function: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(label: str, gateway: Any, experiment: Any, repeats: int) -> None:
    estimate = estimate_cost(gateway, experiment)
    naive = naive_usd(gateway, experiment)
    result = run_experiment(gateway, experiment, progress=False)
    sources = ", ".join(f"{n} {k}" for k, n in estimate.output_sources.items())
    print(
        f"{label:<28} units {result.completed + result.failed:>4}  actual ${result.cost_usd:.5f}"
        f"  estimate ${estimate.usd:.5f} (x{result.cost_usd / estimate.usd:.2f})"
        f"  naive ${naive:.5f} (x{result.cost_usd / naive:.3f})  [{sources}]"
    )
    new_t, old_t = [0.0, 0.0], [0.0, 0.0]
    for _ in range(repeats):  # interleaved, so a busy neighbour slows both alike
        wall, cpu = timed(lambda: estimate_cost(gateway, experiment))
        new_t[0], new_t[1] = new_t[0] + wall, new_t[1] + cpu
        wall, cpu = timed(lambda: naive_usd(gateway, experiment))
        old_t[0], old_t[1] = old_t[0] + wall, old_t[1] + cpu
    print(
        f"{'':<28} estimate time: {new_t[0] / repeats * 1000:.1f} ms wall, "
        f"{new_t[1] / repeats * 1000:.1f} ms CPU; naive {old_t[0] / repeats * 1000:.1f} ms wall, "
        f"{old_t[1] / repeats * 1000:.1f} ms CPU (x{new_t[1] / max(old_t[1], 1e-9):.1f} CPU)"
    )


def live_model(name: str, tmp: str, sample: int) -> None:
    """Estimate before and after a five-item trial of a live lookalike of the recording's
    first model, against what the full run costs."""
    from aigw_lab.experiments import Experiment
    from aigw_lab.gateway import Gateway
    from aigw_lab.providers.base import Price
    from aigw_lab.sim.replay import load_recording
    from aigw_lab.testing.fakes import FunctionProvider

    recorded = load_recording(name)
    model = recorded.models[0]
    by_prompt = {" ".join(item.prompt.split()): item.id for item in recorded.items}

    def answer(request: Any) -> str:
        item_id = by_prompt[" ".join(request.messages[-1].text.split())]
        return recorded.outcome(item_id, model).output or ""

    drawn = recorded.dataset.sample(sample, seed=0)
    dataset = drawn.filter(ids=[i for i in drawn.ids if recorded.has_outcome(i, model)])
    address = f"live/{model}"
    prices = {address: recorded.prices.get(model, Price(1.0, 1.0))}
    db = f"{tmp}/live-{name.replace('/', '_')}.duckdb"
    with Gateway([FunctionProvider(answer, "live")], log=db, prices=prices) as gateway:
        full = Experiment("full", dataset, [address])
        before = estimate_cost(gateway, full)
        trial = Experiment("trial", dataset.filter(ids=list(dataset.ids[:5])), [address])
        run_experiment(gateway, trial, progress=False)
        after = estimate_cost(gateway, full)
        run_experiment(gateway, full, progress=False)
        actual = gateway.query(
            "SELECT sum(cost_usd) AS usd FROM calls WHERE experiment_id = ?", [full.id]
        ).usd[0]
    sources = ", ".join(f"{n} {k}" for k, n in after.output_sources.items())
    print(
        f"{'live ' + name:<28} units {len(dataset):>4}  actual / estimate: references alone "
        f"x{actual / before.usd:.2f}, after a 5-item trial x{actual / after.usd:.2f} [{sources}]"
    )


def add_rows(path: str, rows: int) -> None:
    """Append ``rows`` ok calls of the example's models to the log at ``path`` (bench only:
    straight SQL, not the gateway's writer)."""
    import duckdb

    conn = duckdb.connect(path)
    conn.execute(
        "INSERT INTO calls (call_id, provider_name, request_model, status, attempt, "
        "output_tokens, item_id) SELECT 'bench-' || i, "
        "['sim-openai', 'sim-anthropic', 'sim-workers'][1 + i % 3], "
        "['sim-nano', 'sim-haikuish', 'sim-llamaish-8b'][1 + i % 3], 'ok', 1, "
        "(i % 97)::INTEGER, 'bench-item-' || (i % 10000) FROM range(?) t(i)",
        [rows],
    )
    conn.execute("CHECKPOINT")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=100, help="items per recording")
    parser.add_argument("--repeats", type=int, default=5, help="timed estimates per case")
    parser.add_argument(
        "--log-rows", type=int, default=2_000_000, help="extra log rows for the last timing"
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {platform.system()}")
    from aigw_lab import Experiment, Gateway, Target, build_scorer, bundled_dataset
    from aigw_lab.experiments.spec import load_spec, parse_spec

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_spec(ROOT / "examples" / "experiment.toml")
        with spec.build_gateway(db=f"{tmp}/example.duckdb") as gateway:
            experiment = spec.build(gateway)
            measure("examples/experiment.toml", gateway, experiment, args.repeats)
            small = [timed(lambda: estimate_cost(gateway, experiment)) for _ in range(3)]
        if args.log_rows:
            add_rows(f"{tmp}/example.duckdb", args.log_rows)
            with spec.build_gateway(db=f"{tmp}/example.duckdb") as gateway:
                big = [timed(lambda: estimate_cost(gateway, experiment)) for _ in range(3)]
            print(
                f"{'':<28} with {args.log_rows:,} more log rows: "
                f"{min(w for w, _ in big) * 1000:.0f} ms wall, "
                f"{min(c for _, c in big) * 1000:.0f} ms CPU (before: "
                f"{min(w for w, _ in small) * 1000:.0f} ms wall, "
                f"{min(c for _, c in small) * 1000:.0f} ms CPU)"
            )

        with Gateway.simulated_fleet(log=f"{tmp}/readme.duckdb", time_scale=0) as gateway:
            models = (
                "sim-openai/sim-nano",
                "sim-openai/sim-large",
                "sim-anthropic/sim-haikuish",
                "sim-workers/sim-llamaish-70b",
            )
            experiment = Experiment(
                "fleet comparison",
                bundled_dataset().sample(40),
                [Target(model=m) for m in models],
                scorers=[build_scorer("auto")],
            )
            measure("README experiment", gateway, experiment, args.repeats)

        if shared_data_dir_or_none() is None:
            print("shared data folder absent: recordings skipped")
            return
        from aigw_lab.sim.replay import load_recording

        for name in RECORDINGS:
            live_model(name, tmp, args.sample)
        for name in RECORDINGS:
            data = {
                "experiment": {
                    "name": f"replayed {name}",
                    "dataset": f"recorded:{name}",
                    "sample": args.sample,
                    "seed": 0,
                    "scorers": ["recorded"],
                },
                "targets": [{"model": f"rec/{m}"} for m in load_recording(name).models[:3]],
                "gateway": {"providers": {"rec": {"kind": "replay", "recorded": name}}},
            }
            spec = parse_spec(data, base_dir=tmp)
            db = f"{tmp}/{name.replace('/', '_')}.duckdb"
            with spec.build_gateway(db=db) as gateway:
                measure(f"replay {name}", gateway, spec.build(gateway), args.repeats)


if __name__ == "__main__":
    main()
