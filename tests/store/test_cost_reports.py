"""Cost reports over the log, checked against the same figures computed in Python."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from aigw_lab.errors import StoreError
from aigw_lab.store import CallLog, cost_reports

_T0 = datetime(2025, 6, 1, 21, 0, tzinfo=UTC)  # 3 hours before midnight UTC


@pytest.fixture
def rows(record):
    """Calls spread over three UTC days, with unknown costs and tokens, missing users and
    tenants, and tags with plain and dotted keys."""
    made = []
    for i in range(60):
        failed = i % 6 == 0
        tags = {}
        if i % 3:
            tags["team"] = "search" if i % 3 == 1 else "ads"
        if i % 4 == 0:
            tags["cost.center"] = f"cc-{i % 8}"
        made.append(
            record(
                i,
                timestamp=_T0 + timedelta(minutes=47 * i),
                provider_name=("openai", "anthropic", "workers")[i % 3],
                request_model=("gpt-4o-mini", "claude-haiku", "llama")[i % 3] + ("-x" * (i % 2)),
                status="error" if failed else "ok",
                input_tokens=None if failed else 10 + i,
                output_tokens=None if failed else 3 * i,
                cost_usd=None if failed or i % 7 == 0 else round(0.0013 * i + 0.0001 * (i % 5), 6),
                user_id=None if i % 5 == 0 else f"user-{i % 4}",
                tenant_id=None if i % 9 == 0 else ("acme", "globex")[i % 2],
                experiment_id="exp-a" if i < 30 else "exp-b",
                tags_json=json.dumps(tags) if tags else None,
            )
        )
    return made


@pytest.fixture
def log(tmp_path, rows):
    with CallLog(tmp_path / "c.duckdb") as opened:
        opened.append_many(rows)
        yield opened


def _expected(rows, key, *, by_cost=True):
    """The report computed in Python: ``key(row)`` gives the group (a tuple)."""
    groups = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    out = []
    for k, group in groups.items():
        costs = [r.cost_usd for r in group if r.cost_usd is not None]
        inputs = [r.input_tokens for r in group if r.input_tokens is not None]
        outputs = [r.output_tokens for r in group if r.output_tokens is not None]
        out.append(
            {
                "key": k,
                "calls": len(group),
                "cost_usd": sum(costs) if costs else None,
                "cost_known_calls": len(costs),
                "input_tokens": sum(inputs) if inputs else None,
                "output_tokens": sum(outputs) if outputs else None,
                "total_tokens": sum(inputs) + sum(outputs),
            }
        )

    def key_order(item):
        return tuple((v is None, "" if v is None else v) for v in item["key"])

    out.sort(key=key_order)
    if by_cost:
        out.sort(key=lambda item: (item["cost_usd"] is None, -(item["cost_usd"] or 0.0)))
    return out


def _check(frame, expected, key_columns):
    assert list(frame.columns) == [
        *key_columns,
        "calls",
        "cost_usd",
        "cost_known_calls",
        "input_tokens",
        "output_tokens",
        "total_tokens",
    ]
    got = frame.to_dict("records")
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        assert tuple(_none(row[c]) for c in key_columns) == want["key"]
        assert row["calls"] == want["calls"]
        assert row["cost_known_calls"] == want["cost_known_calls"]
        for column in ("cost_usd", "input_tokens", "output_tokens", "total_tokens"):
            if want[column] is None:
                assert _none(row[column]) is None, column
            else:
                assert row[column] == pytest.approx(want[column]), column


def _none(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _dates(column):
    import pandas as pd

    return [pd.Timestamp(d).date() for d in column]


def test_by_provider(log, rows):
    _check(
        cost_reports.by_provider(log),
        _expected(rows, lambda r: (r.provider_name,)),
        ["provider_name"],
    )


def test_by_model(log, rows):
    _check(
        cost_reports.by_model(log),
        _expected(rows, lambda r: (r.provider_name, r.request_model)),
        ["provider_name", "request_model"],
    )


def test_by_user_keeps_calls_without_a_user_as_a_group(log, rows):
    frame = cost_reports.by_user(log)
    _check(frame, _expected(rows, lambda r: (r.user_id,)), ["user_id"])
    assert frame["user_id"].isna().sum() == 1


def test_by_tenant(log, rows):
    _check(cost_reports.by_tenant(log), _expected(rows, lambda r: (r.tenant_id,)), ["tenant_id"])


@pytest.mark.parametrize("key", ["team", "cost.center", "absent"])
def test_by_tag(log, rows, key):
    def tag(r):
        return (json.loads(r.tags_json).get(key) if r.tags_json else None,)

    _check(cost_reports.by_tag(log, key), _expected(rows, tag), [key])


def test_by_tag_needs_a_key(log):
    with pytest.raises(StoreError, match="tag key"):
        cost_reports.by_tag(log, "")


def test_by_day_is_utc_and_in_date_order(log, rows):
    frame = cost_reports.by_day(log)
    expected = _expected(rows, lambda r: (r.timestamp.astimezone(UTC).date(),), by_cost=False)
    frame["day"] = _dates(frame["day"])
    _check(frame, expected, ["day"])
    assert [w["key"][0] for w in expected] == sorted(w["key"][0] for w in expected)


def test_by_day_ignores_the_sessions_time_zone(tmp_path, rows, log):
    log.close()
    conn = duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True)
    try:
        conn.execute("SET TimeZone = 'America/Los_Angeles'")
        frame = cost_reports.by_day(conn)
    finally:
        conn.close()
    frame["day"] = _dates(frame["day"])
    expected = _expected(rows, lambda r: (r.timestamp.astimezone(UTC).date(),), by_cost=False)
    _check(frame, expected, ["day"])  # Los Angeles days would split the calls differently


def test_filters_by_experiment_and_since(log, rows):
    since = _T0 + timedelta(hours=20)
    kept = [r for r in rows if r.experiment_id == "exp-b" and r.timestamp >= since]
    assert 0 < len(kept) < len(rows)
    _check(
        cost_reports.by_tenant(log, experiment_id="exp-b", since=since),
        _expected(kept, lambda r: (r.tenant_id,)),
        ["tenant_id"],
    )
    naive = since.replace(tzinfo=None)  # naive datetimes are UTC
    _check(
        cost_reports.by_provider(log, experiment_id="exp-b", since=naive),
        _expected(kept, lambda r: (r.provider_name,)),
        ["provider_name"],
    )


def test_reports_read_a_snapshot_connection(tmp_path, rows, log):
    log.flush()
    conn = CallLog.snapshot(tmp_path / "c.duckdb")
    try:
        _check(
            cost_reports.by_model(conn),
            _expected(rows, lambda r: (r.provider_name, r.request_model)),
            ["provider_name", "request_model"],
        )
    finally:
        conn.close()


def test_an_empty_log_gives_empty_reports(tmp_path):
    with CallLog(tmp_path / "empty.duckdb") as empty:
        assert cost_reports.by_tag(empty, "team").empty
        assert cost_reports.by_day(empty).empty
