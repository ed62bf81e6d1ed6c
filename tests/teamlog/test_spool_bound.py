"""The team log's spool is bounded: while PostgreSQL is stopped, a sink whose spool passes
``max_spool_bytes`` with rows waiting says it is ``full`` (a warning and a log line), the
gateway refuses new calls with `TeamLogFullError` before sending them (counted in the
metrics), and nothing already paid for is dropped: once PostgreSQL is back every waiting
row is sent and calls are accepted again. Real PostgreSQL 15, stopped and started."""

from __future__ import annotations

import logging
import time
import warnings

import pytest

from aigw_lab.errors import ConfigError, StoreError, TeamLogFullError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.gateway.metrics_sink import MetricsSink
from aigw_lab.store.team_log import TeamLogSink, TeamLogWarning

from .conftest import make_rows, psycopg

BOUND = 300_000  # a little over one 256 KiB spool segment


def _ids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT call_id FROM calls ORDER BY _seq")]


def _until(predicate, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_a_full_spool_is_said_once_and_cleared_when_postgres_has_the_rows(
    own_cluster, tmp_path, caplog
):
    url = own_cluster.url
    sink = TeamLogSink(
        url, spool_dir=tmp_path / "spool", retry_interval=0.05, max_retry_interval=0.2,
        flush_timeout=1.0, max_spool_bytes=BOUND,
    )  # fmt: skip
    rows = make_rows(4000)
    caplog.set_level(logging.WARNING, logger="aigw_lab.team_log")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink.append(rows[0])
        sink.flush(timeout=60)
        own_cluster.stop()
        appended = 1
        for row in rows[1:]:
            sink.append(row)  # a paid call's row is always taken, full or not
            appended += 1
            if sink.full:
                break
        assert sink.full, "the spool never reached its bound"
        for row in rows[appended : appended + 5]:  # calls in flight when it filled
            sink.append(row)
            appended += 1
        assert sink.spool_bytes > BOUND and sink.pending_rows == appended - 1
        with pytest.raises(StoreError):
            sink.flush()
        own_cluster.start()
        sink.flush(timeout=60)
        _until(lambda: not sink.full, "the sink accepting again")
    messages = [str(w.message) for w in caught if issubclass(w.category, TeamLogWarning)]
    assert sum("over max_spool_bytes=300000" in m for m in messages) == 1
    assert sum("new calls are accepted" in m for m in messages) == 1
    assert any("new calls are refused" in r.getMessage() for r in caplog.records)
    assert _ids(url) == [r.call_id for r in rows[:appended]]  # every row, once, in order
    sink.close()


CONFIG = """
[gateway]
db = "own.duckdb"

[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0.0
models = ["sim-small"]

[log]
backend = "postgres"
url_env = "TEAM_URL"
team_spool_max_bytes = 1048576

[metrics]
"""


@pytest.mark.slow  # a PostgreSQL stop and start, and about 2,000 calls: 10-30 s loaded
def test_the_gateway_refuses_calls_while_the_spool_is_full_and_drops_no_paid_one(
    own_cluster, tmp_path
):
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG)
    gw = Gateway.from_config(path, env={"TEAM_URL": own_cluster.url})
    (sink,) = [s for s in gw.recorder.sinks if isinstance(s, TeamLogSink)]
    (metrics,) = [s for s in gw.recorder.sinks if isinstance(s, MetricsSink)]
    gw.chat("sim/sim-small", "first")
    sink.flush(timeout=60)
    own_cluster.stop()
    answered, refused = 1, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TeamLogWarning)
        for i in range(20_000):
            try:
                gw.chat("sim/sim-small", f"question {i} " + "x" * 400)
            except TeamLogFullError as exc:
                refused += 1
                assert exc.retry_after > 0 and "team_spool_max_bytes" in (exc.hint or "")
                if refused == 3:
                    break
            else:
                answered += 1
        assert refused == 3, "the spool never reached its bound"
        text = metrics.exposition()[0].decode()
        assert 'error_type="team_log_full"' in text
        own_cluster.start()
        sink.flush(timeout=60)
        _until(lambda: not sink.full, "the sink accepting again")
        gw.chat("sim/sim-small", "after")
        answered += 1
        gw.close()
    with psycopg.connect(own_cluster.url) as conn:
        ok = conn.execute("SELECT count(*) FROM calls WHERE status = 'ok'").fetchone()[0]
        full = conn.execute(
            "SELECT count(*) FROM calls WHERE error_type = 'team_log_full'"
        ).fetchone()[0]
    assert ok == answered and full == 0  # every answered (paid) call; refusals stay local
    assert sink.refused_rows == 3
    local = Gateway([], log=str(tmp_path / "own.duckdb"))
    counts = local.query("SELECT error_type, count(*) AS n FROM calls GROUP BY 1")
    local.close()
    assert dict(zip(counts["error_type"], counts["n"], strict=True))["team_log_full"] == 3


def test_the_bound_is_checked_in_the_config(tmp_path):
    from aigw_lab.config import load_config

    path = tmp_path / "gw.toml"
    path.write_text(CONFIG.replace("1048576", "1000"))
    with pytest.raises(ConfigError, match="team_spool_max_bytes"):
        load_config(path, env={"TEAM_URL": "postgresql://u@127.0.0.1/x"})
    path.write_text(CONFIG.replace('backend = "postgres"\n', ""))
    with pytest.raises(ConfigError, match="team_spool_max_bytes"):
        load_config(path, env={"TEAM_URL": "postgresql://u@127.0.0.1/x"})
    with pytest.raises(StoreError, match="max_spool_bytes"):
        TeamLogSink("postgresql://u@127.0.0.1/x", spool_dir=tmp_path / "s", max_spool_bytes=0)
