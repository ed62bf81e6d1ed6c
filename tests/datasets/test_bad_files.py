"""Hostile dataset files: every loader answers a bad file with one `ConfigError` naming the
file (and line or byte) and the fix, never a codec, JSON, csv or KeyError traceback."""

from __future__ import annotations

import json
import os

import pytest

from aigw_lab.datasets import (
    Dataset,
    load_alpaca_eval_instructions,
    load_arena_bench_questions,
    load_gsm8k,
    load_mmlu,
    load_mt_bench_questions,
)
from aigw_lab.datasets.bundled import bundled_dataset
from aigw_lab.errors import ConfigError

GOOD_LINE = {
    "dataset": {"id": "q1", "prompt": "What is 2 + 2?", "reference": "4"},
    "gsm8k": {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"},
    "mt_bench": {"question_id": 1, "category": "math", "turns": ["What is 2 + 2?"]},
    "alpaca": {"instruction": "Say hi", "output": "hi", "dataset": "x"},
}
JSONL_LOADERS = {
    "dataset": Dataset.from_jsonl,
    "gsm8k": load_gsm8k,
    "mt_bench": load_mt_bench_questions,
    "arena": load_arena_bench_questions,
    "alpaca": load_alpaca_eval_instructions,
}


def good_line(kind: str) -> dict:
    return GOOD_LINE["mt_bench" if kind == "arena" else kind]


def latin1(kind: str) -> bytes:
    text = json.dumps({**good_line(kind), "note": "café"}, ensure_ascii=False)
    return text.encode("latin-1") + b"\n"


HOSTILE: dict[str, tuple[object, str]] = {
    # name: (bytes, or a function of the loader kind giving bytes; what the message says)
    # Read a line at a time: the first line (bytes 0-10) is UTF-8 but not JSON.
    "binary": (bytes(range(256)) * 8, ":1 is not valid JSON"),
    "binary past line 1": (
        lambda k: json.dumps(good_line(k)).encode() + b"\n" + bytes(range(128, 256)),
        "is not UTF-8 text (byte 0x80 at offset",
    ),
    "latin-1": (latin1, "is not UTF-8 text (byte 0xe9 at offset"),
    "a list line": (
        lambda k: (json.dumps(good_line(k)) + "\n[1, 2]\n").encode(),
        ":2 holds a list, not an",
    ),
    "a number line": (b"42\n", ":1 holds a number, not an object"),
    "a string line": (b'"hello"\n', ":1 holds a string, not an object"),
    "null line": (b"null\n", ":1 holds null, not an object"),
    "broken JSON": (b'{"id": "q1", "prompt": \n', ":1 is not valid JSON"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
    "nested in a record": (
        b'{"id": "a", "prompt": "x", "m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        "nested too deeply",
    ),
}


@pytest.mark.parametrize("kind", sorted(JSONL_LOADERS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_jsonl_files_are_one_config_error(tmp_path, kind, case):
    content, message = HOSTILE[case]
    data = content(kind) if callable(content) else content
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        JSONL_LOADERS[kind](path)
    assert message in caught.value.message
    assert str(path) in caught.value.message and caught.value.hint


@pytest.mark.parametrize("kind", sorted(JSONL_LOADERS))
def test_a_directory_or_a_missing_path_is_one_config_error(tmp_path, kind):
    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        JSONL_LOADERS[kind](folder)
    with pytest.raises(ConfigError, match="does not exist"):
        JSONL_LOADERS[kind](tmp_path / "absent.jsonl")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a chmod 000 file"
)
@pytest.mark.parametrize("kind", sorted(JSONL_LOADERS))
def test_an_unreadable_file_is_one_config_error(tmp_path, kind):
    path = tmp_path / "locked.jsonl"
    path.write_text(json.dumps(good_line(kind)) + "\n")
    path.chmod(0)
    try:
        with pytest.raises(ConfigError, match="cannot read .* file .*locked.jsonl"):
            JSONL_LOADERS[kind](path)
    finally:
        path.chmod(0o600)


def test_the_offset_of_a_bad_byte_counts_from_the_start_of_the_file(tmp_path):
    path = tmp_path / "bom.jsonl"
    first = b'\xef\xbb\xbf{"id": "a", "prompt": "x"}\n'
    path.write_bytes(first + b'{"id": "b", "prompt": "caf\xe9"}\n')
    with pytest.raises(ConfigError) as caught:
        Dataset.from_jsonl(path)
    expected = len(first) + len(b'{"id": "b", "prompt": "caf')
    assert f"(byte 0xe9 at offset {expected}, line 2)" in caught.value.message
    path.write_bytes(b'\xef\xbb\xbf{"id": "\xff"}\n')  # the bad byte on the BOM's line
    with pytest.raises(ConfigError, match=r"\(byte 0xff at offset 11, line 1\)"):
        Dataset.from_jsonl(path)


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD_LINE["dataset"]).encode() + b"\n")
    assert Dataset.from_jsonl(path).ids == ("q1",)


def test_a_line_separator_inside_a_string_is_not_a_line_break(tmp_path):
    path = tmp_path / "ls.jsonl"
    record = {"id": "q1", "prompt": "one\u2028two"}
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert Dataset.from_jsonl(path).items[0].prompt == "one\u2028two"


def test_a_huge_line_loads(tmp_path):
    path = tmp_path / "huge.jsonl"
    path.write_text(json.dumps({"id": "big", "prompt": "x" * 3_000_000}) + "\n")
    assert len(Dataset.from_jsonl(path).items[0].prompt) == 3_000_000


RECORDS = [
    ({"id": "a"}, ":1: a dataset record lacks prompt"),
    ({"prompt": "x"}, ":1: a dataset record lacks id"),
    ({"id": None, "prompt": "x"}, "has id None"),
    ({"id": ["a"], "prompt": "x"}, "has id ['a']"),
    ({"id": True, "prompt": "x"}, "has id True"),
    ({"id": "a", "prompt": 5}, "has no prompt text (prompt is 5)"),
    ({"id": "a", "prompt": ""}, "has no prompt text"),
    ({"id": "a", "prompt": "x", "category": ["c"]}, "category is ['c'], not a string"),
    ({"id": "a", "prompt": "x", "difficulty": 3}, "difficulty is 3, not a string"),
    ({"id": "a", "prompt": "x", "system": {"s": 1}}, "system is {'s': 1}, not a string"),
    ({"id": "a", "prompt": "x", "history": "hi"}, "history is 'hi', not a list"),
    ({"id": "a", "prompt": "x", "history": [{"role": "wizard", "content": "x"}]}, "history[0]"),
    ({"id": "a", "prompt": "x", "history": [{"role": "user"}]}, "history[0]"),
    ({"id": "a", "prompt": "x", "history": [["user", "hi"]]}, "history[0]"),
]


@pytest.mark.parametrize(("record", "message"), RECORDS)
def test_missing_keys_and_wrong_types_name_the_line_and_the_field(tmp_path, record, message):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ConfigError) as caught:
        Dataset.from_jsonl(path)
    assert message in caught.value.message and caught.value.hint


def test_from_records_rejects_a_record_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match="a dataset record is list"):
        Dataset.from_records("x", [["q1", "prompt"]])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"q,a,b,c,d,A\n\xff\xfe,a,b,c,d,A\n",
            "is not UTF-8 text (byte 0xff at offset 12, line 2)",
        ),
        (b"q,a,b,c,d,A\n" + b"x" * 200_000 + b",a,b,c,d,A\n", "row 2 cannot be read as CSV"),
        (b"q,a,b,c,d\n", "has 5 columns, not 6"),
        (b"q,a,b,c,d," + b"Z" * 1000 + b"\n", "not a letter A-D"),
    ],
    ids=["not-utf8", "huge-field", "five-columns", "huge-answer"],
)
def test_hostile_mmlu_csv_files(tmp_path, content, message):
    path = tmp_path / "algebra_test.csv"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_mmlu(path)
    assert message in caught.value.message
    assert len(caught.value.message) < 400  # a huge cell is cut, not pasted whole


def test_alpaca_json_array_hostile(tmp_path):
    path = tmp_path / "alpaca_eval.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_alpaca_eval_instructions(path)
    path.write_bytes('[{"instruction": "caf\u00e9", "output": "x"}]'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_alpaca_eval_instructions(path)


@pytest.mark.parametrize("name", ["../mixed_v1", "/etc/passwd", "a/b", " ", "..", ".hidden"])
def test_a_bundled_name_is_never_a_path(name):
    with pytest.raises(ConfigError, match="is not a bundled dataset name|no bundled dataset"):
        bundled_dataset(name)
