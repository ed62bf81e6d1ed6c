"""The format loaders: GSM8K, MMLU, FastChat questions, AlpacaEval, DataFrames, Hugging Face."""

from __future__ import annotations

import csv
import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

from aigw_lab.datasets import (
    MMLU_INSTRUCTION,
    from_dataframe,
    load_alpaca_eval_instructions,
    load_arena_bench_questions,
    load_gsm8k,
    load_huggingface,
    load_mmlu,
    load_mt_bench_questions,
)
from aigw_lab.errors import ConfigError


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


# --- GSM8K ----------------------------------------------------------------------------------


def test_gsm8k_reference_is_the_final_answer_and_the_solution_is_kept(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "test.jsonl",
        [
            {"question": "6 times 7?", "answer": "6 * 7 = <<6*7=42>>42\n#### 42"},
            {"question": "How many?", "answer": "Add them.\n#### 1,200"},
        ],
    )
    ds = load_gsm8k(path)
    assert ds.ids == ("gsm8k/0", "gsm8k/1")
    first, second = ds.items
    assert (first.prompt, first.reference) == ("6 times 7?", "42")
    assert first.metadata["solution"] == "6 * 7 = <<6*7=42>>42"
    assert second.reference == "1200"
    assert ds.source == str(path) and ds.name == "test"


def test_gsm8k_errors_name_the_line_and_the_fix(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"question": "a", "answer": "b\\n#### 1"}\n\n{"question": "q", "answer": "no final"}\n'
    )
    with pytest.raises(ConfigError, match=r"bad\.jsonl:3: the answer has no final '#### <answer>'"):
        load_gsm8k(path)
    path.write_text('{"question": "a"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1 lacks 'answer'"):
        load_gsm8k(path)
    path.write_text("{not json\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1 is not valid JSON"):
        load_gsm8k(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_gsm8k(tmp_path / "absent.jsonl")


# --- MMLU -----------------------------------------------------------------------------------


def test_mmlu_folder_gives_lettered_prompts_with_subject_categories(tmp_path) -> None:
    write_csv(
        tmp_path / "anatomy_test.csv", [["Which bone?", "Femur", "Ulna", "Rib", "Skull", "B"]]
    )
    write_csv(
        tmp_path / "astronomy_test.csv",
        [["Closest star?", "Sirius", "Sun", "Vega", "Rigel", "b"], ["Q2", "1", "2", "3", "4", "D"]],
    )
    write_csv(tmp_path / "astronomy_dev.csv", [["ignored", "1", "2", "3", "4", "A"]])
    ds = load_mmlu(tmp_path)
    assert ds.ids == ("mmlu/anatomy/0", "mmlu/astronomy/0", "mmlu/astronomy/1")
    item = ds.items[1]
    assert (
        item.prompt
        == f"Closest star?\n\nA. Sirius\nB. Sun\nC. Vega\nD. Rigel\n\n{MMLU_INSTRUCTION}"
    )
    assert item.reference == "B" and item.category == "astronomy"
    assert item.metadata["choices"] == {"A": "Sirius", "B": "Sun", "C": "Vega", "D": "Rigel"}
    assert load_mmlu(tmp_path / "anatomy_test.csv").ids == ("mmlu/anatomy/0",)


def test_mmlu_errors_name_file_row_and_fix(tmp_path) -> None:
    path = write_csv(
        tmp_path / "law_test.csv", [["q", "a", "b", "c", "d", "A"], ["q", "a", "b", "c", "d", "E"]]
    )
    with pytest.raises(ConfigError, match=r"law_test\.csv, row 2: the answer column holds 'E'"):
        load_mmlu(path)
    write_csv(path, [["q", "a", "b", "A"]])
    with pytest.raises(ConfigError, match=r"row 1 has 4 columns, not 6"):
        load_mmlu(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"has no \*_test\.csv files"):
        load_mmlu(empty)


# --- FastChat questions and AlpacaEval ------------------------------------------------------


def test_mt_bench_questions_turn_one_is_the_prompt(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "question.jsonl",
        [
            {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
            {
                "question_id": 111,
                "category": "math",
                "turns": ["2+2?", "3+3?"],
                "reference": ["4", "6"],
            },
        ],
    )
    ds = load_mt_bench_questions(path)
    poem, maths = ds.items
    assert (
        poem.id == "mt_bench/81" and poem.prompt == "Write a poem." and poem.category == "writing"
    )
    assert poem.metadata["later_turns"] == ["Shorter."] and poem.reference is None
    assert maths.reference == "4" and maths.metadata["turn_references"] == ["4", "6"]


def test_arena_bench_questions_keep_their_other_fields(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "question.jsonl",
        [
            {
                "question_id": "abc",
                "category": "arena-bench-v1",
                "turns": ["Hi?"],
                "required_temperature": 0,
            }
        ],
    )
    item = load_arena_bench_questions(path).items[0]
    assert item.id == "arena/abc" and item.prompt == "Hi?"
    assert item.metadata["required_temperature"] == 0


def test_question_files_reject_malformed_turns(tmp_path) -> None:
    path = write_jsonl(tmp_path / "question.jsonl", [{"question_id": 1, "turns": []}])
    with pytest.raises(ConfigError, match=r"question\.jsonl:1: 'turns' is \[\]"):
        load_mt_bench_questions(path)


def test_alpaca_eval_instructions_from_jsonl_and_from_the_published_json(tmp_path) -> None:
    record = {
        "dataset": "helpful_base",
        "instruction": "Name a fruit.",
        "output": "Apple.",
        "generator": "gpt4_1106_preview",
    }
    jsonl = write_jsonl(tmp_path / "instructions.jsonl", [{"idx": 7, **record}])
    item = load_alpaca_eval_instructions(jsonl).items[0]
    assert (item.id, item.prompt, item.reference, item.category) == (
        "alpaca_eval/7",
        "Name a fruit.",
        "Apple.",
        "helpful_base",
    )
    assert item.metadata["reference_generator"] == "gpt4_1106_preview"
    array = tmp_path / "alpaca_eval.json"
    array.write_text(json.dumps([record, record]))
    assert load_alpaca_eval_instructions(array).ids == ("alpaca_eval/0", "alpaca_eval/1")
    array.write_text(json.dumps([{"instruction": "x"}]))
    with pytest.raises(ConfigError, match=r"record 0 lacks 'output'"):
        load_alpaca_eval_instructions(array)


# --- DataFrames -----------------------------------------------------------------------------


def test_from_dataframe_maps_columns_and_cleans_values() -> None:
    df = pd.DataFrame(
        {
            "key": ["a", "b"],
            "question": ["2+2?", "Capital of France?"],
            "answer": ["4", None],
            "topic": ["maths", np.nan],
            "level": ["easy", "hard"],
            "source_row": [np.int64(10), np.int64(11)],
        }
    )
    ds = from_dataframe(
        df,
        id="key",
        prompt="question",
        reference="answer",
        category="topic",
        difficulty="level",
        metadata=["source_row"],
        name="mine",
    )
    first, second = ds.items
    assert ds.name == "mine" and ds.ids == ("a", "b")
    assert first.reference == "4"
    assert second.reference is None and second.category is None
    assert first.difficulty == "easy" and first.metadata == {"source_row": 10}
    assert type(first.metadata["source_row"]) is int
    json.dumps(dict(first.metadata))  # plain Python values, JSON-ready


def test_from_dataframe_default_ids_are_the_index_labels() -> None:
    ds = from_dataframe(pd.DataFrame({"prompt": ["x", "y"]}, index=[5, 9]))
    assert ds.ids == ("5", "9")


def test_from_dataframe_errors_name_the_missing_and_available_columns() -> None:
    df = pd.DataFrame({"question": ["x"], "answer": ["y"]})
    with pytest.raises(ConfigError) as caught:
        from_dataframe(df, reference="gold")
    message = str(caught.value)
    assert "'prompt', 'gold'" in message and "available: 'question', 'answer'" in message
    with pytest.raises(ConfigError, match=r"row 1 \(id '1'\) of column 'prompt' holds None"):
        from_dataframe(pd.DataFrame({"prompt": ["x", None]}))


# --- Hugging Face ---------------------------------------------------------------------------


def test_load_huggingface_without_the_datasets_package_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ConfigError, match="pip install datasets"):
        load_huggingface("openai/gsm8k", prompt="question")


def test_load_huggingface_detects_a_folder_shadowing_the_package(monkeypatch, tmp_path) -> None:
    shadow = types.ModuleType("datasets")
    shadow.__path__ = [str(tmp_path / "datasets")]  # a namespace package, as a data folder is
    monkeypatch.setitem(sys.modules, "datasets", shadow)
    with pytest.raises(ConfigError, match="found a folder instead"):
        load_huggingface("openai/gsm8k", prompt="question")


def test_load_huggingface_turns_the_loaded_split_into_a_dataset(monkeypatch) -> None:
    calls = []

    class FakeSplit:
        def to_pandas(self):
            return pd.DataFrame({"question": ["1+1?"], "answer": ["2"]})

    def load_dataset(path, config, split, **kwargs):
        calls.append((path, config, split, kwargs))
        if path == "missing/set":
            raise FileNotFoundError("no such dataset")
        return FakeSplit()

    fake = types.ModuleType("datasets")
    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    ds = load_huggingface(
        "openai/gsm8k", "test", prompt="question", reference="answer", config="main", revision="abc"
    )
    assert calls == [("openai/gsm8k", "main", "test", {"revision": "abc"})]
    assert ds.items[0].reference == "2" and ds.source == "huggingface:openai/gsm8k/main:test"
    with pytest.raises(ConfigError, match="FileNotFoundError: no such dataset") as caught:
        load_huggingface("missing/set", prompt="question")
    assert isinstance(caught.value.__cause__, FileNotFoundError)
