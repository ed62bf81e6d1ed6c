"""The team-log sink a config builds is closed with its gateway (`Gateway.close`): every row
sent, its thread stopped and its spool gone at close time, not when the object is collected."""

from __future__ import annotations

import psycopg

from aigw_lab.gateway.gateway import Gateway
from aigw_lab.store.team_log import TeamLogSink

CONFIG = """
[gateway]
db = "own.duckdb"

[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0.0

[log]
backend = "postgres"
url_env = "TEAM_URL"
"""


def test_closing_the_gateway_closes_its_team_log_sink_once(team_url, tmp_path, monkeypatch):
    closes = []
    original = TeamLogSink.close

    def counted(self):
        closes.append(self)
        original(self)

    monkeypatch.setattr(TeamLogSink, "close", counted)
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG)
    gateway = Gateway.from_config(path, env={"TEAM_URL": team_url})
    for i in range(3):
        gateway.chat("sim/sim-small", f"question {i}")
    (sink,) = [s for s in gateway.recorder.sinks if isinstance(s, TeamLogSink)]
    gateway.close()
    gateway.close()
    assert closes == [sink]  # by the gateway, once (the finalizer's later call is a no-op)
    assert not sink._thread.is_alive()
    assert not (tmp_path / "own.duckdb.team-spool").exists()  # all sent: the spool is gone
    with psycopg.connect(team_url) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 3
