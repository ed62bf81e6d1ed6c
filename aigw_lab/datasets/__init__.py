"""Evaluation datasets: the `Dataset` type, the sets bundled with aigw_lab, and loaders for
the formats users bring.

Names are imported lazily, so ``import aigw_lab.datasets`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Dataset": "aigw_lab.datasets.items",
    "DatasetItem": "aigw_lab.datasets.items",
    "DATASETS_ENV_VAR": "aigw_lab.datasets.bundled",
    "DEFAULT_DATASET": "aigw_lab.datasets.bundled",
    "bundled_datasets_dir": "aigw_lab.datasets.bundled",
    "bundled_dataset_path": "aigw_lab.datasets.bundled",
    "list_bundled": "aigw_lab.datasets.bundled",
    "load_bundled": "aigw_lab.datasets.bundled",
    "bundled_dataset": "aigw_lab.datasets.bundled",
}

__all__ = [
    "Dataset",
    "DatasetItem",
    "DATASETS_ENV_VAR",
    "DEFAULT_DATASET",
    "bundled_datasets_dir",
    "bundled_dataset_path",
    "list_bundled",
    "load_bundled",
    "bundled_dataset",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.datasets.bundled import (
        DATASETS_ENV_VAR,
        DEFAULT_DATASET,
        bundled_dataset,
        bundled_dataset_path,
        bundled_datasets_dir,
        list_bundled,
        load_bundled,
    )
    from aigw_lab.datasets.items import Dataset, DatasetItem
