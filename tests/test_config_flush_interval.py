"""``[log] flush_interval``: the call log's batch age, set from a config file, reaches the
log's writer; a value that is not a positive, finite number of seconds up to 60 is a
`ConfigError` naming the key and the fix."""

from __future__ import annotations

import pytest

from aigw_lab import Gateway
from aigw_lab.config import load_config
from aigw_lab.errors import ConfigError

PROVIDERS = '[providers.sim]\nkind = "simulated"\ntime_scale = 0.0\n'


def _config(tmp_path, log_table: str):
    path = tmp_path / "gw.toml"
    path.write_text(f'[gateway]\ndb = "calls.duckdb"\n\n{PROVIDERS}\n[log]\n{log_table}')
    return path


@pytest.mark.parametrize(
    ("table", "expected"),
    [("flush_interval = 10\n", 10.0), ('flush_interval = 0.5\ndurability = "none"\n', 0.5)],
)
def test_the_batch_age_reaches_the_writer(tmp_path, table, expected):
    path = _config(tmp_path, table)
    assert load_config(path).log_options["flush_interval"] == expected
    with Gateway.from_config(path) as gateway:
        assert gateway.log.flush_interval == expected
        gateway.chat("sim/sim-small", "hi")
    with Gateway.from_config(path) as gateway:  # the row was written on close
        assert gateway.log.execute("SELECT count(*) FROM calls") == [(1,)]


def test_without_the_key_the_log_keeps_its_default(tmp_path):
    path = _config(tmp_path, 'bodies = "full"\n')
    assert "flush_interval" not in load_config(path).log_options
    with Gateway.from_config(path) as gateway:
        assert gateway.log.flush_interval == 5.0  # spooled: the default age


@pytest.mark.parametrize(
    "value", ["0", "-1", "60.5", "inf", "nan", '"10"', "true", "[10]"], ids=str
)
def test_a_bad_batch_age_is_a_config_error_naming_the_key(tmp_path, value):
    path = _config(tmp_path, f"flush_interval = {value}\n")
    with pytest.raises(ConfigError, match=r"\[log\].*flush_interval") as caught:
        load_config(path)
    assert "above 0, at most 60" in str(caught.value)
