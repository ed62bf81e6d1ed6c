"""RouterBench's pickled DataFrame, on a small pickle built to its documented format (no
RouterBench file is available offline)."""

from __future__ import annotations

import pandas as pd
import pytest

from aigw_lab.datasets import load_routerbench
from aigw_lab.errors import ConfigError


def routerbench_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": ["mmlu.1", "gsm8k.7"],
            "prompt": ["Which is a prime? A) 4 B) 5", ["First turn", "Second turn"]],
            "eval_name": ["mmlu", "gsm8k"],
            "gpt-4-1106-preview": [1.0, 0.0],
            "gpt-4-1106-preview|model_response": ["B", "12"],
            "gpt-4-1106-preview|total_cost": [0.0031, 0.0042],
            "mistralai/mixtral-8x7b-chat": [0.0, 1.0],
            "mistralai/mixtral-8x7b-chat|model_response": ["A", "18"],
            "mistralai/mixtral-8x7b-chat|total_cost": [0.00002, 0.00003],
            "oracle_model_to_route_to": ["gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat"],
        }
    )


def test_routerbench_pickle_becomes_a_recording_with_its_own_costs(tmp_path) -> None:
    path = tmp_path / "routerbench_0shot.pkl"
    routerbench_frame().to_pickle(path)
    rec = load_routerbench(path)
    assert rec.models == ("gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat")
    assert rec.ids == ("mmlu.1", "gsm8k.7") and rec.name == "routerbench_0shot"
    assert rec.items[1].prompt == "First turn\n\nSecond turn"
    assert rec.items[0].category == "mmlu"
    assert rec.items[0].metadata["oracle_model_to_route_to"] == "gpt-4-1106-preview"
    outcome = rec.outcome("gsm8k.7", "mistralai/mixtral-8x7b-chat")
    assert (outcome.output, outcome.score, outcome.cost_usd) == ("18", 1.0, 0.00003)
    assert outcome.output_tokens == 1  # estimated from "18"
    assert rec.prices == {}  # RouterBench's recorded costs, not list prices


def test_routerbench_errors_name_the_missing_columns(tmp_path) -> None:
    path = tmp_path / "rb.pkl"
    routerbench_frame().drop(columns=["gpt-4-1106-preview|total_cost"]).to_pickle(path)
    with pytest.raises(ConfigError, match=r"lacks column\(s\) 'gpt-4-1106-preview\|total_cost'"):
        load_routerbench(path)
    routerbench_frame()[["sample_id", "prompt", "eval_name"]].to_pickle(path)
    with pytest.raises(ConfigError, match="no '<model>\\|model_response' columns"):
        load_routerbench(path)
    pd.Series([1, 2]).to_pickle(path)
    with pytest.raises(ConfigError, match="holds a Series, not a DataFrame"):
        load_routerbench(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="could not be unpickled"):
        load_routerbench(path)
