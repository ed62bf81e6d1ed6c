"""Where the shared folder of real recorded LLM outcomes lives.

The recordings (RouteLLM's GPT-4 vs Mixtral runs, arena-bench v1 judgements, AlpacaEval 2
annotations, the GSM8K paper's GPT-3 solutions) are public data that aigw_lab reads but never
copies into the repository. They are found at ``$AIGW_LAB_SHARED_DATA`` when that variable is
set, else at ``<repository root>/../shared/data`` (the repository root being the folder that
holds the ``aigw_lab`` package). The folder's ``README.md`` describes formats and provenance.
"""

from __future__ import annotations

import os
from pathlib import Path

from aigw_lab.errors import ConfigError

__all__ = ["SHARED_DATA_ENV_VAR", "shared_data_dir", "shared_data_dir_or_none"]

#: Environment variable naming the shared data folder.
SHARED_DATA_ENV_VAR = "AIGW_LAB_SHARED_DATA"


def _default_dir() -> Path:
    # aigw_lab/datasets/shared.py -> parents[2] is the repository root.
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_data_dir_or_none() -> Path | None:
    """The shared data folder, or None when neither ``$AIGW_LAB_SHARED_DATA`` nor the
    default location holds one (tests that need the data skip then)."""
    override = os.environ.get(SHARED_DATA_ENV_VAR)
    folder = Path(override).expanduser() if override else _default_dir()
    return folder if folder.is_dir() else None


def shared_data_dir() -> Path:
    """The shared data folder; a `ConfigError` naming both places looked at if absent."""
    found = shared_data_dir_or_none()
    if found is not None:
        return found
    override = os.environ.get(SHARED_DATA_ENV_VAR)
    looked = (
        f"${SHARED_DATA_ENV_VAR}={override} (set, so the default {_default_dir()} is not used)"
        if override
        else f"${SHARED_DATA_ENV_VAR} (unset) and the default {_default_dir()}"
    )
    raise ConfigError(
        f"the shared data folder is absent: looked at {looked}",
        hint=f"set {SHARED_DATA_ENV_VAR} to the folder holding the recorded datasets "
        f"(the one with README.md and routellm_gpt4_vs_mixtral/), or place it at "
        f"{_default_dir()}",
    )
