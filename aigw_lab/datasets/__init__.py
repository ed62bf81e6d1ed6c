"""Evaluation datasets: the `Dataset` type, the sets bundled with aigw_lab, and loaders for
the formats users bring.

Names are imported lazily, so ``import aigw_lab.datasets`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "dataset_from_log": "aigw_lab.datasets.from_log",
    "recorded_from_experiment": "aigw_lab.datasets.from_log",
    "Dataset": "aigw_lab.datasets.items",
    "DatasetItem": "aigw_lab.datasets.items",
    "DATASETS_ENV_VAR": "aigw_lab.datasets.bundled",
    "DEFAULT_DATASET": "aigw_lab.datasets.bundled",
    "bundled_datasets_dir": "aigw_lab.datasets.bundled",
    "bundled_dataset_path": "aigw_lab.datasets.bundled",
    "list_bundled": "aigw_lab.datasets.bundled",
    "load_bundled": "aigw_lab.datasets.bundled",
    "bundled_dataset": "aigw_lab.datasets.bundled",
    "SHARED_DATA_ENV_VAR": "aigw_lab.datasets.shared",
    "shared_data_dir": "aigw_lab.datasets.shared",
    "shared_data_dir_or_none": "aigw_lab.datasets.shared",
    "MMLU_INSTRUCTION": "aigw_lab.datasets.loaders",
    "format_mmlu_prompt": "aigw_lab.datasets.loaders",
    "load_gsm8k": "aigw_lab.datasets.loaders",
    "load_mmlu": "aigw_lab.datasets.loaders",
    "load_mt_bench_questions": "aigw_lab.datasets.loaders",
    "load_arena_bench_questions": "aigw_lab.datasets.loaders",
    "load_alpaca_eval_instructions": "aigw_lab.datasets.loaders",
    "from_dataframe": "aigw_lab.datasets.loaders",
    "load_huggingface": "aigw_lab.datasets.loaders",
    "RecordedDataset": "aigw_lab.datasets.recorded",
    "RecordedOutcome": "aigw_lab.datasets.recorded",
    "LIST_PRICES": "aigw_lab.datasets.recorded",
    "PRICE_BASIS": "aigw_lab.datasets.recorded",
    "CHARS_PER_TOKEN": "aigw_lab.datasets.recorded",
    "OUTCOME_COLUMNS": "aigw_lab.datasets.recorded",
    "estimate_tokens": "aigw_lab.datasets.recorded",
    "ROUTELLM_BENCHMARKS": "aigw_lab.datasets.recorded_sources",
    "GSM8K_GPT3_VARIANTS": "aigw_lab.datasets.recorded_sources",
    "load_routellm": "aigw_lab.datasets.recorded_sources",
    "load_arena_bench": "aigw_lab.datasets.recorded_sources",
    "load_alpaca_eval": "aigw_lab.datasets.recorded_sources",
    "load_gsm8k_gpt3": "aigw_lab.datasets.recorded_sources",
    "load_routerbench": "aigw_lab.datasets.routerbench",
}

__all__ = [
    "dataset_from_log",
    "recorded_from_experiment",
    "Dataset",
    "DatasetItem",
    "DATASETS_ENV_VAR",
    "DEFAULT_DATASET",
    "bundled_datasets_dir",
    "bundled_dataset_path",
    "list_bundled",
    "load_bundled",
    "bundled_dataset",
    "SHARED_DATA_ENV_VAR",
    "shared_data_dir",
    "shared_data_dir_or_none",
    "MMLU_INSTRUCTION",
    "format_mmlu_prompt",
    "load_gsm8k",
    "load_mmlu",
    "load_mt_bench_questions",
    "load_arena_bench_questions",
    "load_alpaca_eval_instructions",
    "from_dataframe",
    "load_huggingface",
    "RecordedDataset",
    "RecordedOutcome",
    "LIST_PRICES",
    "PRICE_BASIS",
    "CHARS_PER_TOKEN",
    "OUTCOME_COLUMNS",
    "estimate_tokens",
    "ROUTELLM_BENCHMARKS",
    "GSM8K_GPT3_VARIANTS",
    "load_routellm",
    "load_arena_bench",
    "load_alpaca_eval",
    "load_gsm8k_gpt3",
    "load_routerbench",
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
    from aigw_lab.datasets.from_log import dataset_from_log, recorded_from_experiment
    from aigw_lab.datasets.items import Dataset, DatasetItem
    from aigw_lab.datasets.loaders import (
        MMLU_INSTRUCTION,
        format_mmlu_prompt,
        from_dataframe,
        load_alpaca_eval_instructions,
        load_arena_bench_questions,
        load_gsm8k,
        load_huggingface,
        load_mmlu,
        load_mt_bench_questions,
    )
    from aigw_lab.datasets.recorded import (
        CHARS_PER_TOKEN,
        LIST_PRICES,
        OUTCOME_COLUMNS,
        PRICE_BASIS,
        RecordedDataset,
        RecordedOutcome,
        estimate_tokens,
    )
    from aigw_lab.datasets.recorded_sources import (
        GSM8K_GPT3_VARIANTS,
        ROUTELLM_BENCHMARKS,
        load_alpaca_eval,
        load_arena_bench,
        load_gsm8k_gpt3,
        load_routellm,
    )
    from aigw_lab.datasets.routerbench import (
        load_routerbench,
    )
    from aigw_lab.datasets.shared import (
        SHARED_DATA_ENV_VAR,
        shared_data_dir,
        shared_data_dir_or_none,
    )
