"""Locating the shared folder of recorded outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

import aigw_lab
from aigw_lab.datasets import SHARED_DATA_ENV_VAR, shared_data_dir, shared_data_dir_or_none
from aigw_lab.errors import ConfigError

DEFAULT = Path(aigw_lab.__file__).resolve().parents[1].parent / "shared" / "data"


def test_the_environment_variable_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(SHARED_DATA_ENV_VAR, str(tmp_path))
    assert shared_data_dir() == tmp_path
    assert shared_data_dir_or_none() == tmp_path


def test_without_the_variable_the_folder_next_to_the_repository_is_used(monkeypatch) -> None:
    monkeypatch.delenv(SHARED_DATA_ENV_VAR, raising=False)
    expected = DEFAULT if DEFAULT.is_dir() else None
    assert shared_data_dir_or_none() == expected


def test_an_absent_folder_is_a_config_error_naming_both_places(tmp_path, monkeypatch) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(SHARED_DATA_ENV_VAR, str(missing))
    assert shared_data_dir_or_none() is None
    with pytest.raises(ConfigError) as caught:
        shared_data_dir()
    message = str(caught.value)
    assert str(missing) in message and SHARED_DATA_ENV_VAR in message
    assert str(DEFAULT) in message
