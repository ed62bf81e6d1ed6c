"""``[exploration.NAME]`` in a gateway config wraps a ``[policies]`` policy in `Exploring`
(so ``aigw-lab serve`` runs it), through the config schema; the policy-file form
(``"kind": "explore"``) loads too; mistakes are `ConfigError`s naming the table."""

from __future__ import annotations

import textwrap

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.gateway import Gateway
from aigw_lab.policy import Exploring, Rules, load_policy, save_policy
from aigw_lab.store import CallLog

NANO = "sim-openai/sim-nano"
LARGE = "sim-openai/sim-large"


def base():
    return Rules("router", [({"keywords": ["prove"]}, LARGE)], default=NANO)


def write_config(tmp_path, extra):
    save_policy(base(), tmp_path / "policies" / "router.json")
    path = tmp_path / "gw.toml"
    path.write_text(
        textwrap.dedent(
            """
            [gateway]
            log = false

            [providers.sim-openai]
            kind = "simulated"
            format = "openai"
            time_scale = 0

            [policies]
            router = "policies/router.json"
            """
        )
        + textwrap.dedent(extra)
    )
    return path


def test_an_exploration_table_wraps_the_named_policy(tmp_path, new_log_path):
    config = write_config(
        tmp_path,
        """
        [exploration.router]
        epsilon = 0.5
        floor = 0.05
        seed = 3
        budget_usd = 2.5
        per_tenant = { acme = 0.0 }
        """,
    )
    with CallLog(new_log_path) as log, Gateway.from_config(config, log=log) as gw:
        policy = next(m for m in gw.middleware if hasattr(m, "policies")).policies["router"]
        assert isinstance(policy, Exploring)
        assert (policy.epsilon, policy.floor, policy.seed, policy.budget_usd) == (
            0.5,
            0.05,
            3,
            2.5,
        )
        assert policy.per_tenant == {"acme": 0.0}
        for _ in range(20):
            gw.chat("router", "hello")
        log.flush()
        rows = log.query("SELECT provider_name, request_model, propensity FROM calls")
    assert set(rows.request_model) == {"sim-nano", "sim-large"}
    # K = 2, eps = 2 x 0.05 + 0.9 x 0.5 = 0.55: nano 1 - 0.275, large 0.275.
    expected = {"sim-nano": 0.725, "sim-large": 0.275}
    assert [round(expected[m], 12) for m in rows.request_model] == [
        round(p, 12) for p in rows.propensity
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[exploration.other]\nepsilon = 0.1\n", r"\[exploration.other\] names no policy"),
        ("[exploration.router]\nepsilon = 2\n", r"epsilon = 2 must be a probability"),
        ("[exploration.router]\nepsilon = 0.1\nrate = 3\n", r"unknown key|rate"),
        ("[exploration.router]\nfloor = 0.1\n", r"exactly one of epsilon"),
        ("[exploration.router]\nepsilon = 0.1\nfloor = 0.9\n", r"floor=0.9 is invalid"),
    ],
)
def test_exploration_mistakes_are_config_errors(tmp_path, extra, message):
    config = write_config(tmp_path, extra)
    with pytest.raises(ConfigError, match=message):
        Gateway.from_config(config)


def test_the_policy_file_form_round_trips(tmp_path):
    explore = Exploring(base(), temperature=0.7, floor=0.01, seed=4)
    path = save_policy(explore, tmp_path / "explore.json")
    again = load_policy(path)
    assert isinstance(again, Exploring) and again.to_dict() == explore.to_dict()
