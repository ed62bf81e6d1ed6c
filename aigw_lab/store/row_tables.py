"""A batch of `CallRecord` rows turned into one insert table, column by column: the writer
thread's conversion step (`aigw_lab.store.writer`), with the rows no column can hold set
aside (`aigw_lab.store.dead_letter.split_unconvertible`) instead of failing the batch."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from aigw_lab.store.batches import ColumnBatches
from aigw_lab.store.dead_letter import split_unconvertible
from aigw_lab.store.records import CALL_COLUMNS, CallRecord

__all__ = ["RowTables", "transpose"]

#: Rows transposed at a time: ``zip(*rows)`` over a few thousand rows keeps them in the CPU's
#: cache while every column is read; over a whole row group (122,880 rows) it is slower
#: than one pass per column (bench/bench_log_writer.py --split).
_TRANSPOSE_ROWS = 2_048


def transpose(rows: list[CallRecord], width: int) -> list[list[Any]]:
    """The rows' values as ``width`` column lists, in row order.

    Chunks of `_TRANSPOSE_ROWS` rows are zipped and appended to each column's list: measured
    at 0.74-0.85x the CPU of one ``map(itemgetter(i), rows)`` per column, at 1,000 to 122,880
    rows of gateway-shaped records allocated one by one (``bench_log_writer.py --split``)."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for start in range(0, len(rows), _TRANSPOSE_ROWS):
        chunk = zip(*rows[start : start + _TRANSPOSE_ROWS], strict=True)
        # A row of another width raises ValueError: the writer's slow path then finds it.
        for column, values in zip(columns, chunk, strict=True):
            column.extend(values)
    return columns


class RowTables:
    """Builds ``calls`` insert tables from rows with ``batches`` (pyarrow or pandas)."""

    def __init__(self, batches: ColumnBatches) -> None:
        self._batches = batches
        self._columns = [
            (itemgetter(index), convert) for index, convert in enumerate(batches.converters)
        ]
        self._named_columns = [
            (name, get, convert)
            for name, (get, convert) in zip(CALL_COLUMNS, self._columns, strict=True)
        ]
        self._convert_errors = (
            TypeError,
            ValueError,
            AttributeError,
            OverflowError,
            *getattr(batches, "errors", ()),
        )

    def to_table(
        self, batch: list[CallRecord], *, raw: bool
    ) -> tuple[Any, list[CallRecord], list[tuple[CallRecord, str]]]:
        """The batch as a table to insert, the rows in it, and the rows that cannot be
        converted, with why. ``raw``: some row came from outside the gateway, so JSON
        columns stay plain text for the insert to validate."""
        try:
            return self._batches.table(self._arrays(batch), json=not raw), batch, []
        except self._convert_errors:
            pass
        # Slow path, only when the batch holds a bad row (see `split_unconvertible`).
        good, bad = split_unconvertible(self._named_columns, batch)
        return self._batches.table(self._arrays(good)), good, bad

    def _arrays(self, rows: list[CallRecord]) -> list[Any]:
        converters = self._batches.converters
        columns = transpose(rows, len(converters))
        return [convert(values) for convert, values in zip(converters, columns, strict=True)]
