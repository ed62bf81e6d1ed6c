"""Call logs on disk for the report tests: a synthetic one with two experiments, a real run
through the simulated fleet, and one whose every text field holds markup."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aigw_lab.analysis import SyntheticTarget, synthetic_experiment_log
from aigw_lab.analysis.synthetic import DEFAULT_SYNTHETIC_TARGETS
from aigw_lab.store import CallLog

#: The main experiment: three simulated targets and one real-looking one.
TARGETS = (
    *DEFAULT_SYNTHETIC_TARGETS,
    SyntheticTarget("real/model", 0.8, 900, 0.002, simulated=False),
)


@pytest.fixture(scope="package")
def report_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "calls.duckdb"
    with CallLog(path) as log:
        synthetic_experiment_log(
            log, n_items=30, repetitions=2, targets=TARGETS, experiment_id="older", seed=1
        )
        synthetic_experiment_log(
            log,
            n_items=25,
            targets=TARGETS,
            experiment_id="latest",
            seed=2,
            start=datetime(2026, 3, 1, tzinfo=UTC),
        )
    return path


#: The experiment file behind `run_db`: four simulated targets (one with its own params) on
#: a seeded sample of 40 bundled items, the shape of examples/experiment.toml.
RUN_SPEC = """
[experiment]
name = "four targets, forty items"
dataset = "bundled:mixed_v1"
sample = 40
seed = 3
repetitions = 1
concurrency = 8
params = { max_tokens = 256 }
scorers = ["auto"]

[[targets]]
model = "sim-openai/sim-nano"

[[targets]]
model = "sim-openai/sim-large"

[[targets]]
model = "sim-anthropic/sim-haikuish"

[[targets]]
model = "sim-workers/sim-llamaish-8b"
name = "llama-8b-hot"
params = { temperature = 1.0 }

[gateway.simulated]
seed = 7
time_scale = 0.01
"""


@pytest.fixture(scope="package")
def run_db(tmp_path_factory):
    """A real experiment run through the simulated fleet, logged to a file."""
    from aigw_lab.experiments import load_spec, run_experiment

    root = tmp_path_factory.mktemp("run")
    spec_path = root / "experiment.toml"
    spec_path.write_text(RUN_SPEC, encoding="utf-8")
    spec = load_spec(spec_path)
    gateway = spec.build_gateway(db=root / "calls.duckdb")
    try:
        run_experiment(gateway, spec.build(gateway), progress=False)
    finally:
        gateway.close()
    return root / "calls.duckdb"


#: Markup in every field the log supplies: prompts, answers, categories, ids, target names.
HOSTILE_PROMPT = "</script><script>window.__pwned = 1; alert(1)</script>"
HOSTILE_ANSWER = '<img src=x onerror="window.__pwned = 2">'
HOSTILE_TARGET = "<img src=x onerror=window.__pwned=3>"
HOSTILE_CATEGORY = "<b onmouseover=window.__pwned=4>cat</b>"


def write_experiment_log(path, *, items, targets, answer, prompt, category, start=None, cost=None):
    """A call log with one experiment: every item answered by every target (one ok call
    each, alternating 0/1 scores), request bodies kept, like a run writes them."""
    import json
    from datetime import timedelta

    from aigw_lab.store import CallRecord

    start = start or datetime(2026, 5, 1, tzinfo=UTC)
    records, scores = [], []
    for i in range(items):
        item_id = f"item-{i:05d}"
        for t, target in enumerate(targets):
            call_id = f"c-{i}-{t}"
            coords = {"run_id": "run-1", "item_id": item_id, "target": target,
                      "repetition": 0, "category": category(i)}  # fmt: skip
            records.append(
                CallRecord(
                    call_id=call_id,
                    trace_id=f"t-{i}-{t}",
                    timestamp=start + timedelta(milliseconds=10 * i),
                    provider_name="sim-openai",
                    request_model="sim-nano",
                    request_json=json.dumps({"messages": [{"role": "user", "content": prompt(i)}]}),
                    response_text=answer(i, t),
                    cost_usd=0.00005 * (t + 1) if cost is None else cost(i, t),
                    latency_ms=100.0 + t,
                    experiment_id="exp",
                    metadata_json=json.dumps({"aigw_experiment": coords}),
                    simulated=True,
                    run_id="run-1",
                    item_id=item_id,
                    target=target,
                    repetition=0,
                )
            )
            scores.append(
                {"score_id": f"s-{i}-{t}", "call_id": call_id, "trace_id": f"t-{i}-{t}",
                 "experiment_id": "exp", "item_id": item_id, "target": target,
                 "scorer": "exact", "kind": "scorer", "value": float((i + t) % 2)}
            )  # fmt: skip
    with CallLog(path) as log:
        log.append_many(records)
        log.flush()
        log.insert("scores", scores)
        log.insert(
            "experiments",
            [{"experiment_id": "exp", "name": "written by a test", "created_at": start}],
        )
    return path


@pytest.fixture(scope="package")
def hostile_db(tmp_path_factory):
    return write_experiment_log(
        tmp_path_factory.mktemp("hostile") / "calls.duckdb",
        items=3,
        targets=(HOSTILE_TARGET, "sim-openai/sim-large"),
        answer=lambda i, t: HOSTILE_ANSWER if t == 0 else "plain answer",
        prompt=lambda i: HOSTILE_PROMPT if i == 0 else f"question {i}",
        category=lambda i: HOSTILE_CATEGORY if i == 0 else "plain",
    )
