"""The bundled dataset and its loader."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from aigw_lab.datasets import (
    DATASETS_ENV_VAR,
    bundled_dataset_path,
    bundled_datasets_dir,
    list_bundled,
    load_bundled,
)
from aigw_lab.errors import ConfigError
from aigw_lab.sim.catalog import CATEGORIES
from aigw_lab.sim.fleet import normalise_prompt


def test_default_dataset_is_found_next_to_the_package() -> None:
    path = bundled_dataset_path()
    assert path.parent == Path(__file__).resolve().parents[2] / "datasets"
    assert "mixed_v1" in list_bundled()


def test_bundled_dataset_covers_every_category_and_difficulty() -> None:
    items = load_bundled()
    assert 120 <= len(items) <= 200
    assert len({item["id"] for item in items}) == len(items)
    assert len({normalise_prompt(item["prompt"]) for item in items}) == len(items)
    per_category = Counter(item["category"] for item in items)
    assert set(per_category) == set(CATEGORIES)
    assert min(per_category.values()) >= 15
    assert Counter(item["difficulty"] for item in items).keys() == {"easy", "medium", "hard"}


def test_items_carry_what_a_scorer_needs() -> None:
    for item in load_bundled():
        category, ref = item["category"], item["reference"]
        assert item["distractors"] and ref not in item["distractors"], item["id"]
        if category == "arithmetic":
            assert ref.lstrip("-").isdigit()
        elif category == "multiple_choice":
            assert ref in item["choices"] and set(item["choices"]) == set("ABCD")
        elif category == "classification":
            assert ref in item["labels"]
        elif category == "extraction":
            assert list(ref) == item["fields"]
            assert all(json.loads(d) != ref for d in item["distractors"])
        elif category == "summarisation":
            assert len(ref.split()) <= item["max_words"]
            for alternatives in item["key_points"]:
                assert any(a.lower() in ref.lower() for a in alternatives), item["id"]
            wrong = item["distractors"][0].lower()
            missed = [p for p in item["key_points"] if not any(a.lower() in wrong for a in p)]
            assert 2 * len(missed) >= len(item["key_points"]), item["id"]


def test_env_var_overrides_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = {
        "id": "x1",
        "category": "arithmetic",
        "difficulty": "easy",
        "prompt": "1+1?",
        "reference": "2",
    }
    (tmp_path / "tiny.jsonl").write_text(json.dumps(line) + "\n\n", encoding="utf-8")
    monkeypatch.setenv(DATASETS_ENV_VAR, str(tmp_path))
    assert bundled_datasets_dir() == tmp_path
    assert load_bundled("tiny") == [line]
    with pytest.raises(ConfigError, match="no bundled dataset named 'mixed_v1'.*tiny"):
        load_bundled()


def test_missing_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATASETS_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=f"{DATASETS_ENV_VAR}.*does not exist"):
        load_bundled()


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an object"),
        ('{"id": "a", "category": "c"}', "lacks difficulty, prompt, reference"),
        (
            '{"id": "a", "category": "c", "difficulty": "tricky", "prompt": "p", "reference": "r"}',
            "difficulty 'tricky'",
        ),
    ],
)
def test_bad_lines_name_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, fragment: str
) -> None:
    (tmp_path / "bad.jsonl").write_text("\n" + line + "\n", encoding="utf-8")
    monkeypatch.setenv(DATASETS_ENV_VAR, str(tmp_path))
    with pytest.raises(ConfigError, match=f"bad.jsonl:2 .*{fragment}"):
        load_bundled("bad")


def test_installed_wheel_location_is_used_without_a_checkout(tmp_path, monkeypatch):
    """A wheel puts the datasets under {sys.prefix}/share/aigw-lab/datasets."""
    import sys

    from aigw_lab.datasets import bundled as datasets

    share = tmp_path / "share" / "aigw-lab" / "datasets"
    share.mkdir(parents=True)
    (share / "mixed_v1.jsonl").write_text(
        '{"id": "x1", "category": "arithmetic", "difficulty": "easy", "prompt": "1+1?", "reference": "2"}\n'
    )
    monkeypatch.delenv(datasets.DATASETS_ENV_VAR, raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    fake_module_file = tmp_path / "site-packages" / "aigw_lab" / "datasets" / "bundled.py"
    monkeypatch.setattr(datasets, "__file__", str(fake_module_file))
    assert datasets.bundled_datasets_dir() == share
    assert [item["id"] for item in datasets.load_bundled()] == ["x1"]
