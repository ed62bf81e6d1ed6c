"""The shared-data recordings by name, as a ``kind = "replay"`` provider (``recorded =
"..."``), an experiment's ``recorded:NAME`` dataset and the ``recorded`` scorer name them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab.datasets import recorded_sources as sources
from aigw_lab.datasets.routerbench import load_routerbench
from aigw_lab.errors import ConfigError

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset

__all__ = ["RECORDINGS", "load_recording"]


#: The recordings a ``kind = "replay"`` provider can name with ``recorded = "..."``.
RECORDINGS: tuple[str, ...] = (
    "routellm/mmlu",
    "routellm/gsm8k",
    "routellm/mt_bench",
    "arena_bench",
    "alpaca_eval",
    "gsm8k_gpt3",
)


def load_recording(name: str) -> RecordedDataset:
    """The shared-data recording called ``name`` (one of `RECORDINGS`), or a RouterBench
    pickle when ``name`` is a path ending in ``.pkl``."""
    if name.endswith(".pkl"):
        return load_routerbench(name)
    if name.startswith("routellm/") and name in RECORDINGS:
        return sources.load_routellm(name.partition("/")[2])
    loaders = {
        "arena_bench": sources.load_arena_bench,
        "alpaca_eval": sources.load_alpaca_eval,
        "gsm8k_gpt3": sources.load_gsm8k_gpt3,
    }
    if name not in loaders:
        raise ConfigError(
            f"no recording named {name!r}",
            hint=f"use one of {', '.join(RECORDINGS)}, or the path of a RouterBench .pkl",
        )
    return loaders[name]()
