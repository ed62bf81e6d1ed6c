"""One batch of the call log's writer on its way into ``calls``: finished, converted to a
table, inserted, and the rows the database refuses found by bisecting.

This is the writer thread's work on a batch it has taken from the queue
(`aigw_lab.store.writer.BatchWriter`, which keeps the queue, the lock, the counters, the
retries and the warnings): no lock and no thread here, one call per attempt, and an
`InsertOutcome` that says what became of every row, so that the writer's bookkeeping (a
retry keeps exactly the rows not written) does not depend on how the batch was inserted.

Unfinished rows (`aigw_lab.store.unfinished`) are finished column by column when the whole
batch allows it (`finish_columns`: the usual gateway batch), else row by row
(``finish``). A batch finished by columns keeps its queued items until its insert succeeds;
on any failure they are replaced, in place, by the finished rows the table was made of, so a
retry, the bisect, the dead letter and the spill file see rows, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from aigw_lab.store.batches import ColumnBatches
from aigw_lab.store.dead_letter import is_row_problem, isolate_refused
from aigw_lab.store.insert_path import InsertPath
from aigw_lab.store.records import CallRecord
from aigw_lab.store.row_tables import RowTables
from aigw_lab.store.schema import COLUMN_TYPES

if TYPE_CHECKING:
    import duckdb

__all__ = ["BatchInsert", "InsertOutcome"]

_new_row = partial(tuple.__new__, CallRecord)


class InsertOutcome(NamedTuple):
    """What one insert attempt made of a batch: ``written`` rows are in ``calls``; ``dead``
    rows were refused (each with why) and go to the dead letter; if ``failure`` is set, the
    database failed and ``keep`` are the rows still to write (retried as they are)."""

    written: int
    dead: list[tuple[CallRecord, str]]
    failure: Exception | None = None
    keep: list[Any] | None = None


class BatchInsert:
    """Turns batches into ``calls`` rows through ``cursor`` (the writer thread's).

    ``arrow`` picks how tables are built (`ColumnBatches`); ``before_insert`` is called with
    the row count before every insert (tests slow the writer down or fail it with it);
    ``finish`` finishes a batch's unfinished rows in place and returns problems to report;
    ``finish_columns`` gives a batch's finished rows as columns, or None (then ``finish``).
    """

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        *,
        arrow: bool | None,
        before_insert: Callable[[int], None] | None,
        finish: Callable[[list[Any]], list[str]] | None,
        finish_columns: Callable[[list[Any]], list[list[Any]] | None] | None,
    ) -> None:
        self.before_insert = before_insert
        self.finish = finish
        self.finish_columns = finish_columns if finish is not None else None
        self.batches = ColumnBatches(COLUMN_TYPES, arrow=arrow)
        self.inserts = InsertPath(cursor, json_typed=self.batches.json_typed)
        self.tables = RowTables(self.batches)
        # One empty batch through the whole path, on the thread that opens the log: pyarrow
        # imports pandas on first use, and an import on the writer thread fails during
        # interpreter exit.
        self.inserts.insert(self.tables.to_table([], raw=True)[0], built=False)

    def finished(self, batch: list[Any]) -> tuple[list[list[Any]] | None, list[str]]:
        """Finish ``batch``'s unfinished rows: its columns when `finish_columns` made them
        (``batch`` is then left as it is), else None after finishing it in place; and the
        problems met (rows kept, something in them dropped), to report."""
        if self.finish_columns is not None:
            columns = self.finish_columns(batch)
            if columns is not None:
                return columns, []
        if self.finish is None:
            return None, []
        return None, self.finish(batch)

    def write(
        self, batch: list[Any], *, raw: bool, columns: list[list[Any]] | None = None
    ) -> InsertOutcome:
        """Insert ``batch`` (finished, or given as ``columns`` by `finished`). ``raw``: some
        row came from outside the gateway, so JSON columns are re-validated. Never raises
        what the database raises: that is in the outcome."""
        if columns is None:
            table, good, bad = self.tables.to_table(batch, raw=raw)
        else:
            table = self.tables.from_columns(columns, raw=raw)
            if table is None:  # a value no column can hold: the row-by-row path finds it
                self.rows_in_place(batch, columns)
                columns = None
                table, good, bad = self.tables.to_table(batch, raw=raw)
            else:
                good, bad = batch, []
        # A batch that needed sanitising here held rows the gateway did not make storable.
        built = not raw and not bad and good is batch
        try:
            if self.before_insert is not None:
                self.before_insert(len(batch))
            if self.batches.num_rows(table):
                self.inserts.insert(table, built=built)
            return InsertOutcome(len(good), bad)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the rows for a retry
            if columns is not None:  # rows, not queued items, for what follows
                self.rows_in_place(batch, columns)
            if not is_row_problem(exc):
                return InsertOutcome(0, [], exc, batch)
            # Some row's values were refused: bisect, so only the culprits are set aside.
            written, refused, left, failure = isolate_refused(
                partial(self._insert_slice, table, built), good, exc
            )
            if failure is not None:  # the database itself failed half-way: retry the rest
                return InsertOutcome(written, [], failure, left + [r for r, _ in bad])
            return InsertOutcome(written, bad + refused)

    @staticmethod
    def rows_in_place(batch: list[Any], columns: list[list[Any]]) -> None:
        """Replace ``batch``'s items with the finished rows of ``columns`` (its own rows,
        in order), for a batch whose insert did not go as planned."""
        batch[:] = map(_new_row, zip(*columns, strict=True))

    def _insert_slice(self, table: Any, built: bool, start: int, stop: int) -> None:
        if self.before_insert is not None:
            self.before_insert(stop - start)
        self.inserts.insert(self.batches.slice(table, start, stop), built=built)
