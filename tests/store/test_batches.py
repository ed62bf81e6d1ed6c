"""The call log's two batch builders (issue 10 §1: pyarrow is optional): Arrow tables when
pyarrow is installed, typed pandas columns when not. Both must store the same rows and
refuse the same values, so a core install logs exactly what a dev install does.

The pandas path is forced here by patching `batches.arrow_installed` (this environment has
pyarrow); tests/test_light_install.py runs it in a process where pyarrow cannot be imported.
"""

from __future__ import annotations

import math
import warnings
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aigw_lab.store import CallLog, CallLogWarning, batches
from aigw_lab.store.batches import ColumnBatches, rows_table
from aigw_lab.store.schema import COLUMN_TYPES


@pytest.fixture(params=["arrow", "pandas"])
def path(request, monkeypatch):
    """Runs the test once per builder; CallLogs opened in it use that one."""
    arrow = request.param == "arrow"
    monkeypatch.setattr(batches, "arrow_installed", lambda: arrow)
    return request.param


def varied_rows(record):
    """Rows that exercise every column type's edge: None, NaN, zero, extremes, unicode,
    lists, a naive and a non-UTC timestamp."""
    plus_two = timezone(timedelta(hours=2))
    return [
        record(0),
        record(
            1,
            input_tokens=2**31 - 1,
            output_tokens=0,
            cost_usd=float("nan"),
            latency_ms=0.0,
            stream=True,
            flags=("cache", "retry"),
            response_text="caf\u00e9 \u2603 \U0001f600",
            tags_json='{"a": 1}',
            metadata_json="not json",
            repetition=-(2**31),
        ),
        record(2, timestamp=datetime(2026, 1, 2, 3, 4, 5, 6)),  # naive: read as UTC
        record(3, timestamp=datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=plus_two), flags=()),
        record(4, cost_usd=1, latency_ms=2, simulated=True, cache_similarity=True),
    ]


def stored(log: CallLog) -> list[dict]:
    """Every row as a dict, NaN replaced by a marker (NaN != NaN would fail equality)."""
    rows = log.execute("SELECT * FROM calls ORDER BY call_id")
    nan = "<NaN>"
    return [
        {
            name: nan if isinstance(value, float) and math.isnan(value) else value
            for name, value in zip(COLUMN_TYPES, row, strict=True)
        }
        for row in rows
    ]


def test_both_builders_store_the_same_rows(tmp_path, record, monkeypatch):
    results = {}
    for arrow in (True, False):
        monkeypatch.setattr(batches, "arrow_installed", lambda arrow=arrow: arrow)
        log = CallLog(tmp_path / f"{arrow}.duckdb")
        log.append_many(varied_rows(record))
        log.flush()
        results[arrow] = stored(log)
        log.close()
    assert len(results[False]) == 5
    assert results[False] == results[True]


def test_rows_read_back_as_written(tmp_path, record, path):
    log = CallLog(tmp_path / "c.duckdb")
    log.append_many(varied_rows(record))
    log.flush()
    rows = stored(log)
    log.close()
    assert rows[1]["input_tokens"] == 2**31 - 1 and rows[1]["repetition"] == -(2**31)
    assert rows[1]["output_tokens"] == 0 and rows[0]["output_tokens"] is None
    assert rows[1]["response_text"] == "caf\u00e9 \u2603 \U0001f600"
    assert rows[1]["flags"] == ["cache", "retry"] and rows[3]["flags"] == []
    assert rows[0]["flags"] is None
    assert rows[1]["metadata_json"] == '"not json"'  # stored as a JSON string
    assert rows[1]["tags_json"] == '{"a": 1}'
    utc = [row["timestamp"].astimezone(UTC) for row in rows]
    assert utc[2] == utc[3] == datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert rows[1]["stream"] is True and rows[0]["stream"] is False
    assert rows[4]["cost_usd"] == 1.0 and rows[4]["cache_similarity"] == 1.0


BAD_VALUES = [
    ("input_tokens", "many"),
    ("attempt", 2**31),  # past INTEGER
    ("input_tokens", 2**63),  # past BIGINT
    ("input_tokens", True),
    ("cost_usd", "0.1"),
    ("stream", 1),
    ("response_text", 42),
    ("response_text", "a\ud800"),  # a lone surrogate: not UTF-8
    ("flags", ("ok", 3)),
    ("flags", ("a\udfff",)),
    ("timestamp", "2026-01-01"),
]


@pytest.mark.parametrize(("column", "value"), BAD_VALUES)
def test_both_builders_refuse_the_same_values(column, value):
    index = list(COLUMN_TYPES).index(column)
    for arrow in (True, False):
        builder = ColumnBatches(COLUMN_TYPES, arrow=arrow)
        errors = (TypeError, ValueError, OverflowError, *getattr(builder, "errors", ()))
        with pytest.raises(errors):
            builder.convert(index, [None, value])


def test_refused_rows_go_to_the_dead_letter_and_the_rest_is_written(tmp_path, record, path):
    log = CallLog(tmp_path / "c.duckdb")
    rows = [record(i) for i in range(40)]
    rows[7] = rows[7]._replace(input_tokens="many")
    rows[30] = rows[30]._replace(stream="yes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CallLogWarning)
        log.append_many(rows)
        log.flush()
    written = [call_id for (call_id,) in log.execute("SELECT call_id FROM calls")]
    dead = log.execute("SELECT call_id, error FROM calls_dead_letter ORDER BY call_id")
    health = log.health()
    log.close()
    assert sorted(written) == sorted(r.call_id for i, r in enumerate(rows) if i not in (7, 30))
    assert [call_id for call_id, _ in dead] == [rows[7].call_id, rows[30].call_id]
    assert "input_tokens" in dead[0][1] and "stream" in dead[1][1]
    assert health.rows_dead_lettered == 2


def test_side_table_rows_from_dicts_fill_missing_columns_with_null(monkeypatch):
    monkeypatch.setattr(batches, "arrow_installed", lambda: False)
    table = rows_table([{"a": 1, "b": "x"}, {"b": "y", "c": 2.5}])
    assert list(table.columns) == ["a", "b", "c"]
    assert table.to_dict("records") == [
        {"a": 1, "b": "x", "c": None},
        {"a": None, "b": "y", "c": 2.5},
    ]


def test_side_table_insert_without_pyarrow(tmp_path, path):
    log = CallLog(tmp_path / "c.duckdb")
    inserted = log.insert(
        "scores",
        [
            {"call_id": "c1", "experiment_id": "e", "target": "t", "scorer": "s", "value": 1},
            {"call_id": "c2", "experiment_id": "e", "target": "t", "scorer": "s"},
        ],
    )
    rows = log.execute("SELECT call_id, value FROM scores ORDER BY call_id")
    log.close()
    assert inserted == 2 and rows == [("c1", 1.0), ("c2", None)]
