"""Analytics over the log, checked against the same figures computed in Python."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store import CallLog, cost_by, errors_by_type, summary_by_model

_T0 = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def rows(record):
    """Two models with varied latencies, errors, unknown costs and cache hits."""
    made = []
    for i in range(40):
        failed = i % 5 == 0
        made.append(
            record(
                i,
                timestamp=_T0 + timedelta(minutes=i),
                provider_name="openai" if i % 2 else "anthropic",
                request_model="gpt-4o-mini" if i % 2 else "claude-haiku",
                status="error" if failed else "ok",
                error_type=("rate_limited" if i % 10 == 0 else "timeout") if failed else None,
                error_message=f"failure {i}" if failed else None,
                http_status_code=(429 if i % 10 == 0 else None) if failed else None,
                latency_ms=float((i * 37) % 101) + 0.5,
                ttft_ms=None if failed else float((i * 13) % 29),
                stream=i % 3 != 0,
                input_tokens=None if failed else 10 + i,
                output_tokens=None if failed else 2 * i,
                cost_usd=None if failed or i % 7 == 0 else 0.001 * i,
                cache_status="hit" if i % 9 == 0 else "miss",
                experiment_id="exp-a" if i < 20 else "exp-b",
                simulated=i % 2 == 1,
            )
        )
    return made


@pytest.fixture
def log(tmp_path, rows):
    with CallLog(tmp_path / "c.duckdb") as opened:
        opened.append_many(rows)
        yield opened


def _expected_summary(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r.provider_name, r.request_model), []).append(r)
    out = []
    for (provider, model), group in sorted(groups.items()):
        latency = [r.latency_ms for r in group if r.status == "ok"]
        streamed = [r for r in group if r.status == "ok" and r.stream]
        ttft = [r.ttft_ms for r in streamed]
        costs = [r.cost_usd for r in group if r.cost_usd is not None]
        errors = sum(r.status == "error" for r in group)
        out.append(
            {
                "provider_name": provider,
                "request_model": model,
                "calls": len(group),
                "errors": errors,
                "error_rate": errors / len(group),
                "cache_hits": sum(r.cache_status == "hit" for r in group),
                # quantile_cont interpolates linearly, like numpy's default percentile
                "latency_p50_ms": np.percentile(latency, 50),
                "latency_p95_ms": np.percentile(latency, 95),
                "latency_p99_ms": np.percentile(latency, 99),
                "streamed_calls": len(streamed),
                "ttft_p50_ms": np.percentile(ttft, 50),
                "ttft_p95_ms": np.percentile(ttft, 95),
                "input_tokens": sum(r.input_tokens or 0 for r in group),
                "output_tokens": sum(r.output_tokens or 0 for r in group),
                "cost_usd": sum(costs),
                "cost_known_calls": len(costs),
                "simulated": any(r.simulated for r in group),
            }
        )
    return out


def _assert_records_close(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        for key, value in e.items():
            if isinstance(value, float):
                assert math.isclose(g[key], value, rel_tol=1e-9), key
            else:
                assert g[key] == value, key


def test_summary_by_model_matches_python(log, rows):
    _assert_records_close(summary_by_model(log).to_dict("records"), _expected_summary(rows))


def test_summary_filters_by_experiment_and_time(log, rows):
    by_experiment = summary_by_model(log, experiment_id="exp-b")
    _assert_records_close(
        by_experiment.to_dict("records"),
        _expected_summary([r for r in rows if r.experiment_id == "exp-b"]),
    )
    since = _T0 + timedelta(minutes=30)
    recent = summary_by_model(log, since=since.replace(tzinfo=None))  # naive means UTC
    assert recent["calls"].sum() == sum(r.timestamp >= since for r in rows)
    assert summary_by_model(log, since=timedelta(days=1)).empty  # rows are from 2025


def test_summary_of_an_empty_log_is_an_empty_frame(tmp_path):
    with CallLog(tmp_path / "empty.duckdb") as log:
        frame = summary_by_model(log)
    assert frame.empty and "latency_p95_ms" in frame.columns


def test_errors_by_type(log, rows):
    frame = errors_by_type(log)
    failed = [r for r in rows if r.status == "error"]
    keys = {(r.error_type, r.provider_name, r.request_model) for r in failed}
    assert len(frame) == len(keys)
    assert frame["errors"].is_monotonic_decreasing
    for row in frame.to_dict("records"):
        mine = [
            r
            for r in failed
            if (r.error_type, r.provider_name, r.request_model)
            == (row["error_type"], row["provider_name"], row["request_model"])
        ]
        assert row["errors"] == len(mine)
        assert list(row["http_status_codes"]) == sorted(
            {r.http_status_code for r in mine if r.http_status_code is not None}
        )
        latest = max(mine, key=lambda r: r.timestamp)
        assert row["last_seen"] == latest.timestamp
        assert row["last_message"] == latest.error_message


def test_cost_by_any_columns(log, rows):
    frame = cost_by(log, by="experiment_id")
    for row in frame.to_dict("records"):
        mine = [r for r in rows if r.experiment_id == row["experiment_id"]]
        known = [r.cost_usd for r in mine if r.cost_usd is not None]
        assert row["calls"] == len(mine)
        assert row["cost_known_calls"] == len(known)
        assert math.isclose(row["cost_usd"], sum(known))
        assert math.isclose(row["cost_per_call_usd"], sum(known) / len(known))
    assert frame["cost_usd"].is_monotonic_decreasing
    assert list(cost_by(log).columns[:2]) == ["provider_name", "request_model"]


def test_cost_by_refuses_unknown_columns(log):
    with pytest.raises(StoreError, match="cannot group by.*drop table"):
        cost_by(log, by=("provider_name", "drop table"))


@pytest.mark.own_instance("a second duckdb.connect of a file a LogEngine has attached is refused")
def test_queries_accept_a_plain_duckdb_connection(log, rows):
    log.flush()
    conn = duckdb.connect(str(log.path))  # same process: shares the open database
    try:
        assert summary_by_model(conn)["calls"].sum() == len(rows)
    finally:
        conn.close()
