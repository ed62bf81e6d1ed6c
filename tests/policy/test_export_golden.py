"""Golden files: every policy kind exported to every target, byte for byte.

A fixed policy dict (tests/policy/_export_cases.py) goes through `export` and must produce
exactly ``tests/policy/golden/<kind>.<target>.<ext>``. After an intended change to an
exporter, regenerate the files and review the diff::

    AIGW_UPDATE_GOLDEN=1 python -m pytest -q tests/policy/test_export_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aigw_lab.policy.export import EXPORT_TARGETS, export

from ._export_cases import PROVIDERS, SPECS, TARGET_OPTIONS, learned_evaluation

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("AIGW_UPDATE_GOLDEN") == "1"
EXTENSIONS = {"litellm": "yaml", "portkey": "json", "cloudflare": "json"}


def exported_text(kind: str, target: str) -> str:
    options = dict(TARGET_OPTIONS[target])
    if kind == "learned":
        options["evaluation"] = learned_evaluation()
    return export(SPECS[kind], target, providers=PROVIDERS, **options).text


@pytest.mark.parametrize("target", EXPORT_TARGETS)
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_export_matches_golden_file(kind: str, target: str) -> None:
    path = GOLDEN / f"{kind}.{target}.{EXTENSIONS[target]}"
    text = exported_text(kind, target)
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}: run with AIGW_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


def test_every_golden_file_belongs_to_a_case() -> None:
    expected = {f"{k}.{t}.{EXTENSIONS[t]}" for k in SPECS for t in EXPORT_TARGETS}
    assert {p.name for p in GOLDEN.iterdir()} == expected
