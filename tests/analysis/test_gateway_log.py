"""The analysis over a log written by a real gateway run (the simulated fleet)."""

from aigw_lab.analysis import paired_comparison, target_summary, unit_frame
from aigw_lab.gateway import Gateway

TARGETS = {"small": "sim-openai/sim-small", "haiku": "sim-anthropic/sim-haikuish"}


def test_summary_of_a_simulated_fleet_experiment(tmp_path):
    db = tmp_path / "calls.duckdb"
    with Gateway.simulated_fleet(time_scale=0, log=str(db)) as gw:
        for item in range(3):
            for label, model in TARGETS.items():
                coords = {"run_id": "r1", "item_id": f"q{item}", "target": label, "repetition": 0}
                gw.chat(
                    model,
                    f"What is {item} + 2?",
                    max_tokens=16,
                    temperature=0,
                    experiment_id="gw-exp",
                    metadata={"aigw_experiment": coords},
                )
        gw.chat("sim-openai/sim-small", "outside the experiment")
        calls = gw.query("SELECT call_id, item_id, target FROM calls WHERE target IS NOT NULL")
        gw.log.insert(
            "scores",
            [
                {
                    "call_id": c.call_id,
                    "experiment_id": "gw-exp",
                    "item_id": c.item_id,
                    "target": c.target,
                    "scorer": "always_right" if c.target == "haiku" else "x",
                    "kind": "scorer",
                    "value": 1.0,
                }
                for c in calls.itertuples()
            ],
        )
    summary = target_summary(db, experiment_id="gw-exp", scorer="always_right")
    assert summary["target"].tolist() == ["haiku", "small"]
    assert summary["units"].tolist() == [3, 3]
    assert summary["simulated"].all()
    assert (summary["cost_per_call"] > 0).all() and (summary["latency_p50_ms"] >= 0).all()
    assert summary["quality_mean"].tolist()[0] == 1.0
    assert summary["scored"].tolist() == [3, 0]
    units = unit_frame(db, "gw-exp")
    assert sorted(units["item_id"].unique()) == ["q0", "q1", "q2"]
    paired = paired_comparison(db, "haiku", "small", experiment_id="gw-exp")
    assert paired.set_index("metric").loc["cost_usd", "n_items"] == 3
    everything = target_summary(db)
    assert "sim-openai/sim-small" in set(everything["target"])  # the call outside it


def test_gateway_log_without_scores(tmp_path):
    db = tmp_path / "calls.duckdb"
    with Gateway.simulated_fleet(time_scale=0, log=str(db)) as gw:
        gw.chat("sim-openai/sim-nano", "hi")
    summary = target_summary(db)
    assert summary["target"].tolist() == ["sim-openai/sim-nano"]
    assert summary["quality_mean"].isna().all()
