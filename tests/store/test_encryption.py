"""Encrypted call log and cache ([log] encryption_key_env): the file holds no prompt text, a
wrong key is a clear StoreError naming the variable, a missing variable a ConfigError.

DuckDB here has no httpfs extension (no downloads in tests), so these tests opt in to
DuckDB's built-in crypto (``encryption_crypto = "builtin"``); the default refuses with a
message saying how to get OpenSSL (tested too)."""

from __future__ import annotations

import json

import pytest

from aigw_lab import Gateway
from aigw_lab.config import parse_config
from aigw_lab.errors import ConfigError, StoreError
from aigw_lab.gateway.cache_stores import DuckDBStore
from aigw_lab.store import CallLog
from aigw_lab.store.encryption import Encryption
from aigw_lab.types import ChatResponse, Latency, Usage

from .conftest import make_record

PROMPT = "The launch code for project NIGHTJAR is 7-alpha-tango"
KEY = "correct horse battery staple 0123456789"


def builtin(key: str = KEY) -> Encryption:
    return Encryption(key, "AIGW_LOG_KEY", "builtin")


def _httpfs_installed() -> bool:
    import duckdb

    row = (
        duckdb.connect()
        .execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = 'httpfs'")
        .fetchone()
    )
    return bool(row and row[0])


def test_an_encrypted_log_file_holds_no_prompt_text(tmp_path):
    path = tmp_path / "calls.duckdb"
    gw = Gateway.simulated_fleet(time_scale=0, log=path, log_options={"encryption": builtin()})
    reply = gw.chat("sim-openai/sim-small", [{"role": "user", "content": PROMPT}])
    assert gw.query("SELECT count(*) AS n FROM calls")["n"][0] == 1
    gw.close()
    data = path.read_bytes()
    assert b"NIGHTJAR" not in data and reply.text.encode()[:20] not in data
    wal = tmp_path / "calls.duckdb.wal"
    assert not wal.exists() or b"NIGHTJAR" not in wal.read_bytes()
    # Reopened with the key, every row is there.
    with CallLog(path, encryption=builtin()) as log:
        [(prompt,)] = log.execute(
            "SELECT json_extract_string(request_json, '$.messages[0].content') FROM calls"
        )
        assert prompt == PROMPT


def test_a_plain_log_does_hold_the_prompt(tmp_path):
    # The control for the test above: the same call, unencrypted, is readable in the file.
    path = tmp_path / "calls.duckdb"
    gw = Gateway.simulated_fleet(time_scale=0, log=path)
    gw.chat("sim-openai/sim-small", [{"role": "user", "content": PROMPT}])
    gw.close()
    wal = tmp_path / "calls.duckdb.wal"
    data = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"NIGHTJAR" in data


def test_a_wrong_key_fails_with_a_message_naming_the_variable(tmp_path):
    path = tmp_path / "calls.duckdb"
    with CallLog(path, encryption=builtin()) as log:
        log.append(make_record(1))
    with pytest.raises(StoreError, match="different key than the one in AIGW_LOG_KEY") as exc:
        CallLog(path, encryption=builtin("not the key"))
    assert "not the key" not in str(exc.value) + str(exc.value.hint)


def test_an_encrypted_log_opened_without_a_key_says_so(tmp_path):
    path = tmp_path / "calls.duckdb"
    CallLog(path, encryption=builtin()).close()
    with pytest.raises(StoreError, match="is encrypted") as exc:
        CallLog(path)
    assert "encryption_key_env" in exc.value.hint


def test_a_plain_log_opened_with_a_key_is_refused(tmp_path):
    path = tmp_path / "calls.duckdb"
    CallLog(path).close()
    with pytest.raises(StoreError, match="not encrypted"):
        CallLog(path, encryption=builtin())


@pytest.mark.skipif(_httpfs_installed(), reason="httpfs installed: OpenSSL crypto works")
def test_without_openssl_the_default_refuses_and_says_how_to_fix_it(tmp_path):
    with pytest.raises(StoreError, match="httpfs") as exc:
        CallLog(tmp_path / "calls.duckdb", encryption=Encryption(KEY, "AIGW_LOG_KEY"))
    assert "INSTALL httpfs" in exc.value.hint and "builtin" in exc.value.hint
    assert not (tmp_path / "calls.duckdb").exists()


def test_the_duckdb_cache_is_encrypted_with_the_same_setting(tmp_path):
    path = tmp_path / "cache.duckdb"
    store = DuckDBStore(path, encryption=builtin())
    store.set(
        "k",
        ChatResponse(
            text=PROMPT,
            finish_reason="stop",
            usage=Usage(input_tokens=1, output_tokens=1),
            provider="p",
            model="m",
            latency=Latency(total_ms=1.0),
        ),
        None,
    )
    store.close()
    assert b"NIGHTJAR" not in path.read_bytes()
    again = DuckDBStore(path, encryption=builtin())
    assert again.get("k").text == PROMPT
    again.close()
    with pytest.raises(StoreError, match="different key"):
        DuckDBStore(path, encryption=builtin("wrong"))


def _config(log: dict, env: dict, cache: dict | None = None):
    data = {"providers": {"sim": {"kind": "simulated"}}, "log": log}
    if cache is not None:
        data["cache"] = cache
    return parse_config(data, source="gw.toml", env=env)


def test_a_missing_key_variable_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="AIGW_LOG_KEY, which is unset or empty"):
        _config({"encryption_key_env": "AIGW_LOG_KEY"}, env={})


def test_config_encrypts_the_log_and_the_duckdb_cache(tmp_path):
    log = {"encryption_key_env": "AIGW_LOG_KEY", "encryption_crypto": "builtin"}
    cache = {"store": "duckdb", "path": str(tmp_path / "cache.duckdb")}
    config = _config(log, {"AIGW_LOG_KEY": KEY}, cache)
    assert KEY not in repr(config)
    [exact_cache] = config.middleware()
    exact_cache.store.close()
    with pytest.raises(StoreError, match="is encrypted"):
        DuckDBStore(tmp_path / "cache.duckdb")


def test_a_gateway_from_config_writes_an_encrypted_log(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[providers.sim-openai]\nkind = "simulated"\nformat = "openai"\ntime_scale = 0.0\n'
        '[log]\nencryption_key_env = "AIGW_LOG_KEY"\nencryption_crypto = "builtin"\n'
    )
    db = tmp_path / "calls.duckdb"
    gw = Gateway.from_config(config, env={"AIGW_LOG_KEY": KEY}, log=str(db))
    gw.chat("sim-openai/sim-small", [{"role": "user", "content": PROMPT}])
    gw.close()
    assert b"NIGHTJAR" not in db.read_bytes()
    with pytest.raises(StoreError, match="is encrypted"):
        CallLog(db)
    with pytest.raises(ConfigError, match="AIGW_LOG_KEY"):
        Gateway.from_config(config, env={}, log=str(db))


def test_a_snapshot_of_an_encrypted_log_needs_and_takes_the_key(tmp_path):
    from aigw_lab.store import summary_by_model

    path = tmp_path / "calls.duckdb"
    log = CallLog(path, encryption=builtin())
    log.append(make_record(1, request_json=json.dumps({"q": PROMPT})))
    log.flush()  # the writer keeps the file open: the snapshot reads a copy
    with pytest.raises(StoreError, match="the log is encrypted") as exc:
        CallLog.snapshot(path)
    assert "encryption=" in exc.value.hint
    with CallLog.snapshot(path, encryption=builtin()) as snap:
        assert snap.execute("SELECT count(*) FROM calls").fetchone() == (1,)
        assert summary_by_model(snap)["calls"].tolist() == [1]
    with pytest.raises(StoreError, match="different key"):
        CallLog.snapshot(path, encryption=builtin("wrong"))
    log.close()


def test_an_encrypted_log_has_no_plain_text_spool(tmp_path):
    """The crash spool is not encrypted: an encrypted log keeps none (no prompt text in any
    file next to it while calls run), and asking for one is a clear error."""
    path = tmp_path / "calls.duckdb"
    gw = Gateway.simulated_fleet(time_scale=0, log=path, log_options={"encryption": builtin()})
    gw.chat("sim-openai/sim-small", [{"role": "user", "content": PROMPT}])
    log = gw.log
    assert log is not None and log.spool is None
    for file in tmp_path.rglob("*"):  # while the gateway is still open
        if file.is_file():
            assert b"NIGHTJAR" not in file.read_bytes(), file
    gw.close()
    with pytest.raises(StoreError, match="not encrypted") as caught:
        CallLog(tmp_path / "other.duckdb", encryption=builtin(), durability="os")
    assert "durability" in caught.value.hint


def test_a_config_asking_for_a_spool_with_encryption_fails_when_it_loads():
    data = {
        "providers": {"sim": {"kind": "simulated"}},
        "log": {"encryption_key_env": "AIGW_LOG_KEY", "encryption_crypto": "builtin",
                "durability": "os"},
    }  # fmt: skip
    with pytest.raises(ConfigError, match="not encrypted"):
        parse_config(data, env={"AIGW_LOG_KEY": KEY})
