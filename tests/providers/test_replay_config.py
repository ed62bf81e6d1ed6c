"""A replay provider declared in the TOML config (kind = "replay")."""

import pytest

from aigw_lab import ConfigError, Gateway
from aigw_lab.config import load_config
from aigw_lab.datasets.shared import shared_data_dir_or_none


def write(tmp_path, text):
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_a_call_log_replays_through_the_config(tmp_path):
    earlier = tmp_path / "earlier.duckdb"
    with Gateway.simulated_fleet(time_scale=0.0, log=earlier) as gw:
        original = gw.chat("sim-openai/sim-small", "Name a prime number above 10.", temperature=0)
    path = write(
        tmp_path,
        f'[providers.again]\nkind = "replay"\ncall_log = "{earlier.as_posix()}"\n',
    )
    with Gateway.from_config(path, log=tmp_path / "now.duckdb") as gw:
        again = gw.chat(
            "again/sim-openai/sim-small", "Name a prime number above 10.", temperature=0
        )
        rows = gw.log.query("SELECT provider_name, request_model, cost_usd FROM calls")
    assert again.text == original.text and again.cost_usd == original.cost_usd
    assert rows.provider_name.tolist() == ["again"]


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ('kind = "openai"\nrecorded = "arena_bench"', 'only apply to kind = "replay"'),
        ('kind = "replay"\nrecordd = "arena_bench"', "did you mean 'recorded'"),
    ],
)
def test_replay_keys_are_checked_when_the_config_loads(tmp_path, table, fragment):
    path = write(tmp_path, f"[providers.r]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ('kind = "replay"', "exactly one of recorded or call_log"),
        ('kind = "replay"\nrecorded = "no_such_set"', "no recording named 'no_such_set'"),
    ],
)
def test_replay_mistakes_are_named_when_the_provider_is_built(tmp_path, table, fragment):
    path = write(tmp_path, f"[providers.r]\n{table}\n")
    with Gateway.from_config(path, log=None) as gw, pytest.raises(ConfigError) as info:
        gw.provider("r")
    assert fragment in str(info.value)


def test_a_shared_recording_replays_real_outputs_priced_from_list_prices(tmp_path):
    if shared_data_dir_or_none() is None:
        pytest.skip("shared data folder absent: set AIGW_LAB_SHARED_DATA to run this test")
    from aigw_lab.sim.replay import load_recording

    recording = load_recording("routellm/gsm8k")
    item = recording.dataset.items[0]
    path = write(tmp_path, '[providers.rec]\nkind = "replay"\nrecorded = "routellm/gsm8k"\n')
    with Gateway.from_config(path, log=tmp_path / "x.duckdb") as gw:
        assert set(gw.list_models()["rec"]) == set(recording.models)
        answer = gw.chat("rec/gpt-4-1106-preview", item.prompt)
        logged = gw.log.query("SELECT cost_usd, simulated FROM calls")
    assert answer.text == recording.outcome(item.id, "gpt-4-1106-preview").output
    assert answer.cost_usd and answer.cost_usd > 0 and not logged.simulated[0]
