"""The datasets bundled with aigw_lab: JSONL files of prompts with reference answers.

They live in the repository's ``datasets/`` folder, next to the package (a source checkout or
an editable install); a wheel installs them under ``{sys.prefix}/share/aigw-lab/datasets``.
Set the ``AIGW_LAB_DATASETS`` environment variable to read them from another folder. Each line is
one item ``{"id", "category", "difficulty", "prompt", "reference", ...}``; the format and
provenance are described in ``datasets/README.md``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from aigw_lab.datasets.files import iter_jsonl
from aigw_lab.datasets.items import Dataset
from aigw_lab.errors import ConfigError

__all__ = [
    "DATASETS_ENV_VAR",
    "DEFAULT_DATASET",
    "bundled_dataset",
    "bundled_datasets_dir",
    "bundled_dataset_path",
    "list_bundled",
    "load_bundled",
]

#: Environment variable naming a folder to read bundled datasets from instead.
DATASETS_ENV_VAR = "AIGW_LAB_DATASETS"
#: The dataset `load_bundled` reads when no name is given.
DEFAULT_DATASET = "mixed_v1"

_REQUIRED_KEYS = ("id", "category", "difficulty", "prompt", "reference")
_DIFFICULTIES = frozenset(("easy", "medium", "hard"))
# A bundled name is a file name in the datasets folder, never a path out of it.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def bundled_datasets_dir() -> Path:
    """The folder holding the bundled datasets (``$AIGW_LAB_DATASETS`` if set)."""
    override = os.environ.get(DATASETS_ENV_VAR)
    if override:
        folder = Path(override)
    else:
        checkout = Path(__file__).resolve().parents[2] / "datasets"
        installed = Path(sys.prefix) / "share" / "aigw-lab" / "datasets"
        folder = checkout if checkout.is_dir() or not installed.is_dir() else installed
    if not folder.is_dir():
        where = f"${DATASETS_ENV_VAR}={override}" if override else str(folder)
        raise ConfigError(
            f"the bundled datasets folder {where} does not exist",
            hint=f"run from a source checkout of aigw_lab (it ships datasets/), or set "
            f"{DATASETS_ENV_VAR} to a folder holding the .jsonl files",
        )
    return folder


def list_bundled() -> list[str]:
    """Names of the bundled datasets (file names without ``.jsonl``), sorted."""
    return sorted(p.stem for p in bundled_datasets_dir().glob("*.jsonl"))


def bundled_dataset_path(name: str | None = None) -> Path:
    """The JSONL file of the dataset called ``name`` (the default dataset if None)."""
    name = name or DEFAULT_DATASET
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a bundled dataset name",
            hint="bundled names are plain file names without .jsonl (letters, digits, _ . -), "
            f"e.g. {DEFAULT_DATASET}; give a path to a .jsonl file of your own instead",
        )
    path = bundled_datasets_dir() / f"{name}.jsonl"
    if not path.is_file():
        available = ", ".join(list_bundled()) or "none"
        raise ConfigError(
            f"no bundled dataset named {name!r} in {path.parent}",
            hint=f"use one of: {available}",
        )
    return path


def load_bundled(name: str | None = None) -> list[dict[str, Any]]:
    """Read a bundled dataset: one dict per item, in file order, each checked to have
    ``id``, ``category``, ``difficulty`` (easy|medium|hard), ``prompt`` and ``reference``."""
    path = bundled_dataset_path(name)
    items: list[dict[str, Any]] = []
    for number, item in iter_jsonl(path, "dataset"):
        _check_item(item, path, number)
        items.append(item)
    return items


def _check_item(item: Any, path: Path, number: int) -> None:
    if not isinstance(item, dict):
        raise ConfigError(
            f"{path}:{number} is a JSON {type(item).__name__}, not an object",
            hint="each line of a dataset must be one JSON object",
        )
    missing = [key for key in _REQUIRED_KEYS if key not in item]
    if missing:
        raise ConfigError(
            f"{path}:{number} lacks {', '.join(missing)}",
            hint="every item needs " + ", ".join(_REQUIRED_KEYS),
        )
    if item["difficulty"] not in _DIFFICULTIES:
        raise ConfigError(
            f"{path}:{number} has difficulty {item['difficulty']!r}",
            hint="use easy, medium or hard",
        )


def bundled_dataset(name: str | None = None) -> Dataset:
    """A bundled dataset as a `Dataset` (``source`` is ``"bundled:<name>"``)."""
    name = name or DEFAULT_DATASET
    return Dataset.from_records(name, load_bundled(name), source=f"bundled:{name}")
