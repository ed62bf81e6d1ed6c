"""Alerts over a real DuckDB call log: a quiet baseline and one spike, and exactly the
spiking rule fires; the CLI's table and exit codes; the webhook on a loopback receiver."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aigw_lab.alerts import RULES, AlertSettings, Window, evaluate, format_table
from aigw_lab.cli.main import main
from aigw_lab.store import CallLog
from aigw_lab.store.records import CallRecord

NOW = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


def _rows(window_end, *, spike=None, start_id=0):
    """30 calls in the hour before ``window_end``: 20 misses (one of them failing), 10
    cache hits; ``spike`` changes one thing about them."""
    rows = []
    for i in range(30):
        at = window_end - timedelta(minutes=59) + timedelta(seconds=i * 60)
        hit = i % 3 == 0
        status = "error" if i == 1 else "ok"
        cost = 0.0 if hit else 0.001
        latency = 5.0 if hit else 200.0 + i
        cache = "hit" if hit else "miss"
        if spike == "cost_per_hour" and not hit:
            cost = 0.01
        if spike == "error_rate" and not hit and i % 3 == 1:
            status = "error"
        if spike == "cache_hit_rate":
            hit, cache, cost, latency = False, "miss", 0.001, 200.0 + i
        if spike == "p95_latency" and not hit:
            latency = 2000.0 + i
        if status == "error":
            cost = None
        rows.append(
            CallRecord(
                call_id=f"c{start_id + i}",
                trace_id=f"t{start_id + i}",
                timestamp=at,
                provider_name="sim",
                request_model="m",
                status=status,
                error_type="server_error" if status == "error" else None,
                cost_usd=cost,
                latency_ms=latency,
                cache_status=cache,
                attempt=0 if hit else 1,
            )
        )
    return rows


def _seed(path, spike=None, baseline_windows=24):
    log = CallLog(path)
    rows = []
    for w in range(1, baseline_windows + 1):
        rows += _rows(NOW - timedelta(hours=w), start_id=w * 100)
    rows += _rows(NOW, spike=spike, start_id=0)
    log.append_many(rows)
    log.close()


@pytest.mark.parametrize("spike", RULES)
def test_exactly_the_spiking_rule_fires(tmp_path, capsys, spike):
    db = tmp_path / "calls.duckdb"
    _seed(db, spike)
    code = main(["alerts", "--db", str(db), "--now", NOW.isoformat(), "--json"])
    results = json.loads(capsys.readouterr().out)["results"]
    states = {r["rule"]: r["state"] for r in results}
    assert states == {rule: "firing" if rule == spike else "ok" for rule in RULES}
    assert code == 1


def test_a_quiet_log_fires_nothing_and_exits_0(tmp_path, capsys):
    db = tmp_path / "calls.duckdb"
    _seed(db)
    assert main(["alerts", "--db", str(db), "--now", NOW.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "30 calls" in out
    for rule in RULES:
        assert f"{rule} " in out and "FIRING" not in out


def test_too_little_history_or_traffic_is_said_not_fired(tmp_path, capsys):
    db = tmp_path / "calls.duckdb"
    _seed(db, "cost_per_hour", baseline_windows=2)
    assert main(["alerts", "--db", str(db), "--now", NOW.isoformat(), "--json"]) == 0
    states = {r["rule"]: r["state"] for r in json.loads(capsys.readouterr().out)["results"]}
    assert states["cost_per_hour"] == "no baseline"
    later = (NOW + timedelta(hours=1)).isoformat()  # the window after the spike is empty
    assert main(["alerts", "--db", str(db), "--now", later, "--json"]) == 0
    states = {r["rule"]: r["state"] for r in json.loads(capsys.readouterr().out)["results"]}
    assert set(states.values()) == {"too few calls"}


def test_rules_are_pure_functions_of_windows():
    settings = AlertSettings(min_calls=1, min_baseline_windows=2)
    base = [Window(start="a", end="b", calls=10, values={"p95_latency": v}) for v in (100, 110, 90)]
    spike = Window(start="b", end="c", calls=10, values={"p95_latency": 400.0})
    (p95,) = [r for r in evaluate(spike, base, settings) if r.rule == "p95_latency"]
    assert p95.firing and p95.baseline == 100 and p95.threshold == 200
    calm = Window(start="b", end="c", calls=10, values={"p95_latency": 150.0})
    assert not [r for r in evaluate(calm, base, settings) if r.firing]
    assert "P95_LATENCY" not in format_table(evaluate(spike, base, settings))
    assert "FIRING" in format_table(evaluate(spike, base, settings))


class _Receiver:
    def __init__(self, status=200):
        self.bodies, self.headers = [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.bodies.append(json.loads(body))
                outer.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/aigw"
        # A short poll: `shutdown` waits for the loop to notice (0.5 s at the default).
        serve = self.server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _config(tmp_path, db, extra=""):
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\ndb = "{db}"\n[providers.sim]\nkind = "simulated"\n'
        '[alerts]\nwebhook_url_env = "AIGW_ALERT_URL"\nwebhook_token_env = "AIGW_ALERT_TOKEN"\n'
        + extra
    )
    return path


def test_the_webhook_gets_what_fired(tmp_path, monkeypatch, capsys):
    db = tmp_path / "calls.duckdb"
    _seed(db, "error_rate")
    receiver = _Receiver()
    try:
        monkeypatch.setenv("AIGW_ALERT_URL", receiver.url)
        monkeypatch.setenv("AIGW_ALERT_TOKEN", "tok-123")
        config = _config(tmp_path, db)
        assert main(["alerts", "--config", str(config), "--now", NOW.isoformat()]) == 1
    finally:
        receiver.close()
    (body,) = receiver.bodies
    assert body["source"] == "aigw-lab"
    assert [f["rule"] for f in body["firing"]] == ["error_rate"]
    assert receiver.headers[0]["authorization"] == "Bearer tok-123"
    assert "FIRING: error_rate" in capsys.readouterr().out


def test_nothing_is_posted_when_nothing_fires(tmp_path, monkeypatch):
    db = tmp_path / "calls.duckdb"
    _seed(db)
    receiver = _Receiver()
    try:
        monkeypatch.setenv("AIGW_ALERT_URL", receiver.url)
        monkeypatch.setenv("AIGW_ALERT_TOKEN", "tok")
        assert (
            main(["alerts", "--config", str(_config(tmp_path, db)), "--now", NOW.isoformat()]) == 0
        )
    finally:
        receiver.close()
    assert receiver.bodies == []


def test_an_unreachable_or_refusing_webhook_exits_3(tmp_path, monkeypatch, capsys):
    db = tmp_path / "calls.duckdb"
    _seed(db, "cost_per_hour")
    receiver = _Receiver(status=500)
    try:
        monkeypatch.setenv("AIGW_ALERT_URL", receiver.url)
        monkeypatch.setenv("AIGW_ALERT_TOKEN", "tok-secret")
        assert (
            main(["alerts", "--config", str(_config(tmp_path, db)), "--now", NOW.isoformat()]) == 3
        )
    finally:
        receiver.close()
    err = capsys.readouterr().err
    assert "HTTP 500" in err and "tok-secret" not in err and "/hooks/aigw" not in err
    monkeypatch.setenv("AIGW_ALERT_URL", "http://127.0.0.1:9/hook")  # nothing listens
    assert main(["alerts", "--config", str(_config(tmp_path, db)), "--now", NOW.isoformat()]) == 3


@pytest.mark.parametrize(
    ("url", "token", "expected"),
    [
        ("ftp://example.com/x", "t", "http(s) URL"),
        ("http://user:pw@127.0.0.1/x", "t", "credentials"),
        (None, "t", "AIGW_ALERT_URL is not set"),
        ("http://127.0.0.1/x", None, "AIGW_ALERT_TOKEN is not set"),
    ],
)
def test_webhook_settings_are_checked_with_one_line(
    tmp_path, monkeypatch, capsys, url, token, expected
):
    db = tmp_path / "calls.duckdb"
    _seed(db, baseline_windows=1)
    for name, value in (("AIGW_ALERT_URL", url), ("AIGW_ALERT_TOKEN", token)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert main(["alerts", "--config", str(_config(tmp_path, db))]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "pw" not in err.replace("pass", "")


def test_bad_alert_settings_are_config_errors(tmp_path, capsys):
    db = tmp_path / "calls.duckdb"
    _seed(db, baseline_windows=1)
    path = tmp_path / "bad.toml"
    path.write_text(
        '[providers.sim]\nkind = "simulated"\n[alerts]\nrules = ["cost", "error_rate"]\n'
    )
    assert main(["alerts", "--db", str(db), "--config", str(path)]) == 2
    assert "rules" in capsys.readouterr().err
    path.write_text('[providers.sim]\nkind = "simulated"\n[alerts]\nwindow_minutes = -5\n')
    assert main(["alerts", "--db", str(db), "--config", str(path)]) == 2
