"""The writer's conversion step (`aigw_lab.store.row_tables`): rows transposed a chunk at a
time (issue 13 §1, session 9) give every column in row order, on both builders, across
chunk boundaries, and a bad row anywhere in a batch still goes to the dead letter alone."""

from __future__ import annotations

from operator import itemgetter

import pytest

from aigw_lab.store import CallLog
from aigw_lab.store.batches import ColumnBatches
from aigw_lab.store.records import CALL_COLUMNS
from aigw_lab.store.row_tables import _TRANSPOSE_ROWS, RowTables, transpose
from aigw_lab.store.schema import COLUMN_TYPES

from .conftest import make_record

SIZES = (0, 1, _TRANSPOSE_ROWS - 1, _TRANSPOSE_ROWS, _TRANSPOSE_ROWS + 1, 2 * _TRANSPOSE_ROWS + 7)


def distinct_rows(n: int) -> list:
    """Rows whose every varying column differs by row, so any reordering shows."""
    return [
        make_record(
            i,
            input_tokens=i,
            output_tokens=n - i,
            latency_ms=i / 7,
            response_text=f"answer {i}",
            stream=bool(i % 2),
            user_id=f"u{i % 13}",
            tags_json=f'{{"i":{i}}}',
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n", SIZES)
def test_transpose_is_each_column_in_row_order(n):
    rows = distinct_rows(n)
    columns = transpose(rows, len(CALL_COLUMNS))
    assert len(columns) == len(CALL_COLUMNS)
    for index, column in enumerate(columns):
        assert column == list(map(itemgetter(index), rows))


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "pandas"])
def test_a_table_across_chunk_boundaries_holds_the_rows_in_order(arrow):
    if arrow:
        pytest.importorskip("pyarrow")
    batches = ColumnBatches(COLUMN_TYPES, arrow=arrow)
    rows = distinct_rows(2 * _TRANSPOSE_ROWS + 7)
    table, good, bad = RowTables(batches).to_table(rows, raw=False)
    assert good is rows and bad == []
    assert batches.num_rows(table) == len(rows)
    if arrow:
        tokens = table.column("input_tokens").to_pylist()
        ids = table.column("call_id").to_pylist()
    else:
        tokens = table["input_tokens"].tolist()
        ids = table["call_id"].tolist()
    assert tokens == list(range(len(rows)))
    assert ids == [row.call_id for row in rows]


def test_a_bad_row_past_the_first_chunk_is_set_aside_alone(tmp_path):
    rows = distinct_rows(_TRANSPOSE_ROWS + 50)
    bad_at = _TRANSPOSE_ROWS + 10
    rows[bad_at] = rows[bad_at]._replace(input_tokens="many")  # no column can hold it
    with pytest.warns(Warning), CallLog(tmp_path / "c.duckdb", batch_size=10_000) as log:
        log.append_many(rows, built=True)
        log.flush()
        stored = log.query("SELECT call_id, input_tokens FROM calls ORDER BY call_id")
        dead = log.execute("SELECT count(*) FROM calls_dead_letter")
    assert dead == [(1,)]
    expected = [row for i, row in enumerate(rows) if i != bad_at]
    assert stored["call_id"].tolist() == [row.call_id for row in expected]
    assert stored["input_tokens"].tolist() == [row.input_tokens for row in expected]
