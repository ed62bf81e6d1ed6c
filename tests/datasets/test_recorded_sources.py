"""The recorded-data loaders on small folders built in the shared data's format, so the
parsing is checked even where the real shared folder is absent."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aigw_lab.datasets import load_routellm
from aigw_lab.errors import ConfigError

GPT4, MIXTRAL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def routellm_gsm8k_folder(root, frame: pd.DataFrame, contaminated: list[str]):
    folder = root / "routellm_gpt4_vs_mixtral" / "gsm8k"
    folder.mkdir(parents=True)
    frame.to_csv(folder / "gsm8k_responses.csv", index=False)
    (folder / "contaminated_prompts.jsonl").write_text(
        "".join(json.dumps({"eval_prompt": p, "train_prompt": p}) + "\n" for p in contaminated)
    )
    return root


def gsm8k_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": ["1+1?", "2+2?", "3+3?"],
            MIXTRAL: [True, False, False],
            GPT4: [True, True, False],
            f"{MIXTRAL}_response": ["2", "5", "7"],
            f"{GPT4}_response": ["2", "4", "9"],
        }
    )


def test_routellm_gsm8k_drops_contaminated_prompts_and_keeps_row_ids(tmp_path) -> None:
    root = routellm_gsm8k_folder(tmp_path, gsm8k_frame(), contaminated=["2+2?"])
    rec = load_routellm("gsm8k", data_dir=root)
    assert rec.ids == ("gsm8k/0", "gsm8k/2")
    assert rec.models == (GPT4, "Mixtral-8x7B-Instruct-v0.1")
    assert rec.mean_scores().to_dict() == {GPT4: 0.5, "Mixtral-8x7B-Instruct-v0.1": 0.5}
    assert rec.outcome("gsm8k/2", GPT4).output == "9"
    assert rec.items[0].reference is None  # no GSM8K test-set copy in this folder
    assert len(load_routellm("gsm8k", decontaminate=False, data_dir=root)) == 3


def test_routellm_gsm8k_with_a_missing_column_names_it(tmp_path) -> None:
    root = routellm_gsm8k_folder(tmp_path, gsm8k_frame().drop(columns=[GPT4]), contaminated=[])
    with pytest.raises(
        ConfigError, match=r"gsm8k_responses\.csv lacks column\(s\) 'gpt-4-1106-preview'"
    ):
        load_routellm("gsm8k", data_dir=root)


def test_a_missing_recording_folder_says_which(tmp_path) -> None:
    with pytest.raises(ConfigError, match="has no routellm_gpt4_vs_mixtral/"):
        load_routellm("gsm8k", data_dir=tmp_path)


def test_numeric_looking_responses_stay_text(tmp_path) -> None:
    frame = gsm8k_frame()
    frame[f"{GPT4}_response"] = ["2", "None", "0009"]
    rec = load_routellm("gsm8k", data_dir=routellm_gsm8k_folder(tmp_path, frame, []))
    assert [rec.outcome(f"gsm8k/{i}", GPT4).output for i in range(3)] == ["2", "None", "0009"]


def test_a_correctness_cell_that_is_not_true_or_false_names_its_row(tmp_path) -> None:
    frame = gsm8k_frame()
    frame[GPT4] = ["True", "maybe", "False"]
    root = routellm_gsm8k_folder(tmp_path, frame, [])
    with pytest.raises(
        ConfigError, match=r"column 'gpt-4-1106-preview', row 2: 'maybe' is not True or False"
    ):
        load_routellm("gsm8k", data_dir=root)
