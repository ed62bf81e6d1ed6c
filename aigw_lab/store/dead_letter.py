"""Where the call log puts rows the database refuses, and how it reports its own health.

A row that still fails after `aigw_lab.store.sanitize` (a wrong type in a number column, a
constraint) goes to the ``calls_dead_letter`` table of the same database, with the error and
the whole row as JSON; if even that insert fails, to an owner-only JSON-lines file next to the
database. Neither is ever raised into another caller's call: `LogHealth` says what happened.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigw_lab.store.batches import ColumnBatches
from aigw_lab.store.files import open_private
from aigw_lab.store.records import CALL_COLUMNS, CallRecord
from aigw_lab.store.sanitize import sanitize_record, sanitize_text

__all__ = [
    "DEAD_LETTER_BATCH",
    "DEAD_LETTER_INSERT",
    "LogHealth",
    "MAX_FAILED_INSERTS",
    "dead_letter_table",
    "is_row_problem",
    "isolate_refused",
    "row_json",
    "spill_rows",
    "split_unconvertible",
    "unconvertible_rows",
    "write_dead_letter",
]

#: The columns of ``calls_dead_letter`` filled from the row itself (typed copies, so budget
#: seeding and cost reports can filter them), then the error, the row and the time.
_COPIED = (
    "call_id",
    "trace_id",
    "timestamp",
    "provider_name",
    "request_model",
    "status",
    "tenant_id",
    "user_id",
    "experiment_id",
    "cost_usd",
    "budget_usd",
)
_INDEX = {name: CALL_COLUMNS.index(name) for name in _COPIED}

#: The name `dead_letter_table` is registered under for `DEAD_LETTER_INSERT`.
DEAD_LETTER_BATCH = "_aigw_dead_letter_batch"
DEAD_LETTER_INSERT = (
    f"INSERT INTO calls_dead_letter BY NAME SELECT *, now() AS dead_lettered_at "
    f"FROM {DEAD_LETTER_BATCH}"
)
#: After this many failed inserts in one batch, bisection stops splitting small slices
#: (`isolate_refused`): a batch where most rows are refused would otherwise take about two
#: failed inserts per row, at a few ms each: a minute for 5,000 rows. Enough to isolate
#: dozens of refused rows in one batch exactly.
MAX_FAILED_INSERTS = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class LogHealth:
    """The call log's own health, for operators and ``/health``: `CallLog.health`.

    ``state``: ``"ok"``; ``"retrying"`` (inserts are failing; the rows are kept and retried);
    ``"crashed"`` (the writer thread died: a bug); ``"closed"``. Counts are since the log was
    opened. ``last_error`` names the kind of the last problem and the exception type, never
    a row's content, a call id or the database path (those are in ``calls_dead_letter`` and
    the `CallLogWarning`), so it is safe to show to any client.
    """

    state: str
    rows_written: int
    rows_pending: int
    rows_dead_lettered: int
    rows_spilled: int
    insert_failures: int
    last_error: str | None

    @property
    def ok(self) -> bool:
        """True unless inserts are failing or the writer crashed."""
        return self.state in ("ok", "closed")

    def as_dict(self) -> dict[str, Any]:
        """The fields (and ``ok``) as a JSON-ready dict."""
        return {**asdict(self), "ok": self.ok}


def is_row_problem(exc: BaseException) -> bool:
    """True when ``exc`` says some row's values were refused (a conversion, a constraint), so
    bisecting the batch finds the culprit; False for the database itself failing (I/O, out
    of memory, a test hook simulating a full disk), where the whole batch is retried."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    # Not InvalidInputException: DuckDB also raises it for a database invalidated by an
    # earlier fatal error, where every row would "fail" and be set aside for nothing.
    if isinstance(exc, duckdb.Error):
        return isinstance(exc, (duckdb.DataError, duckdb.IntegrityError))
    return isinstance(exc, (ValueError, TypeError))


def isolate_refused(
    insert: Callable[[int, int], None],
    rows: Sequence[Any],
    error: Exception,
    *,
    max_failed_inserts: int = MAX_FAILED_INSERTS,
) -> tuple[int, list[tuple[Any, str]], list[Any], Exception | None]:
    """Bisect ``rows``, whose insert raised the row problem ``error``, into slices that
    ``insert(start, stop)`` writes and single rows the database refuses: at most two inserts
    per halving per refused row, not one per row, and the written rows keep their order.

    After ``max_failed_inserts`` failed inserts it stops splitting small slices: one of at
    most max(64, len(rows) // 256) rows that fails from then on is refused as a whole (its
    good rows too; they are recoverable from the dead letter), so a batch of mostly bad rows
    costs at most about a thousand inserts, not two per row.

    Returns the number of rows written, the refused rows with their errors and, if the
    database itself failed meanwhile (not `is_row_problem`), the rows not yet written
    (refused ones included: they are tried again with the rest) and that failure."""
    written = 0
    failures = 1  # the insert of the whole batch
    whole = max(64, len(rows) // 256)
    refused: list[tuple[Any, str]] = []
    todo: list[tuple[int, int, Exception | None]] = [(0, len(rows), error)]  # a stack
    while todo:
        start, stop, failed = todo.pop()
        if failed is None:
            try:
                insert(start, stop)
                written += stop - start
                continue
            except Exception as exc:  # noqa: BLE001 - classified just below
                if not is_row_problem(exc):
                    left = list(rows[start:stop])
                    for begin, end, _ in reversed(todo):
                        left += rows[begin:end]
                    return written, [], left + [row for row, _ in refused], exc
                failed = exc
                failures += 1
        if stop - start == 1:
            refused.append((rows[start], describe(failed)))
            continue
        if failures >= max_failed_inserts and stop - start <= whole:
            why = f"not isolated (too many refused rows in one batch): {describe(failed)}"
            refused += [(row, why) for row in rows[start:stop]]
            continue
        middle = (start + stop) // 2
        todo.append((middle, stop, None))
        todo.append((start, middle, None))
    return written, refused, [], None


def unconvertible_rows(
    columns: Sequence[tuple[str, Callable[[Any], Any], Any]], rows: Sequence[Any]
) -> dict[int, str]:
    """Index -> why, for the rows that cannot be converted to their columns. ``columns``
    holds each column's name, value getter and converter (`ColumnBatches.converters`). A
    column that converts costs one call; one that does not is bisected down to its bad rows
    (first failing column wins)."""
    problems: dict[int, str] = {}
    for name, get, convert in columns:
        todo = [(0, len(rows))]
        while todo:
            start, stop = todo.pop()
            try:
                convert([get(row) for row in rows[start:stop]])
                continue
            except Exception as exc:  # noqa: BLE001 - any failure makes a row unwritable
                if stop - start == 1:
                    problems.setdefault(start, f"column {name}: {type(exc).__name__}: {exc}")
                    continue
            middle = (start + stop) // 2
            todo += [(middle, stop), (start, middle)]
    return problems


def describe(exc: BaseException) -> str:
    """``Type: message``, as stored in ``calls_dead_letter.error`` (the operator's table)."""
    return sanitize_text(f"{type(exc).__name__}: {exc}")


def row_json(record: Any, *, exact: bool = True, **extra: Any) -> str:
    """The row as a JSON object keyed by column, plus ``extra`` keys: always encodable,
    whatever the fields hold. ``exact`` (spill files): lone surrogates are kept, as JSON
    escapes Python reads back as they were; otherwise (the dead letter's ``row_json``: DuckDB's
    JSON refuses such escapes) they are replaced with U+FFFD."""
    values = {name: _jsonable(getattr(record, name, None), exact) for name in CALL_COLUMNS}
    values.update(extra)
    return json.dumps(values, default=str, ensure_ascii=True)


def dead_letter_table(dead: Sequence[tuple[CallRecord, str]]) -> Any:
    """The refused rows with their errors as a DataFrame for `DEAD_LETTER_INSERT`: each
    copied column converted to its type or NULL (the row was refused, so its values are not
    trusted), then the error and the row as JSON. One insert however many rows. pandas, not
    Arrow, on every install: pyarrow is optional, and dead letters are rare."""
    columns: dict[str, list[Any]] = {name: [] for name in (*_COPIED, "error", "row_json")}
    for record, error in dead:
        for name in _COPIED:
            index = _INDEX[name]
            columns[name].append(_typed(name, record[index] if len(record) > index else None))
        columns["error"].append(sanitize_text(error))  # it may quote the row's own text
        columns["row_json"].append(row_json(record, exact=False))
    types = {"timestamp": "TIMESTAMPTZ", "cost_usd": "DOUBLE", "budget_usd": "DOUBLE"}
    batches = ColumnBatches({name: types.get(name, "VARCHAR") for name in columns}, arrow=False)
    arrays = [batches.convert(i, values) for i, values in enumerate(columns.values())]
    return batches.table(arrays)


def write_dead_letter(
    cursor: Any,
    dead: Sequence[tuple[CallRecord, str]],
    spill_dir: str | None,
    spill: Callable[..., str | None] | None = None,
) -> tuple[str | None, str, Exception | None]:
    """Put refused rows, each with why, in ``calls_dead_letter`` through ``cursor``, or, if
    that fails, in an owner-only file (``spill``, default `spill_rows`). Returns the file
    (None: the table took them), where they went in words, and the insert's error if no file
    could be written either (then nothing kept them)."""
    try:
        cursor.register(DEAD_LETTER_BATCH, dead_letter_table(dead))
        try:
            cursor.execute(DEAD_LETTER_INSERT)
        finally:
            cursor.unregister(DEAD_LETTER_BATCH)
        return None, "the calls_dead_letter table", None
    except Exception as exc:  # noqa: BLE001 - the last resort below keeps the rows
        records = [record for record, _ in dead]
        path = (spill or spill_rows)(spill_dir, records, reasons=[why for _, why in dead])
        if path is None:
            return None, "", exc
        return path, f"{path} (the dead-letter insert failed: {exc})", None


def spill_rows(
    folder: str | None,
    rows: list[Any],
    *,
    reasons: list[str] | None = None,
    append_to: str | None = None,
) -> str | None:
    """Save rows as JSON lines in a new owner-only (0600) file in ``folder`` (or, failing
    that, the temp directory), or at the end of ``append_to`` (a file this function made
    earlier) when that still works; return the file, or None if even that failed. With
    ``reasons``, each line also holds the row's ``error``."""
    lines = "".join(
        row_json(row, **({} if reasons is None else {"error": reasons[i]})) + "\n"
        for i, row in enumerate(rows)
    )
    if append_to is not None:
        try:
            with os.fdopen(open_private(Path(append_to), "a"), "w", encoding="utf-8") as out:
                out.write(lines)
            return append_to
        except OSError:
            pass  # a new file, below
    stamp = time.strftime("%Y%m%dT%H%M%S")
    name = f"calls.unwritten-{stamp}-{os.getpid()}-{time.monotonic_ns()}.jsonl"
    folders = [folder] if folder else []
    for target in [Path(f) / name for f in [*folders, tempfile.gettempdir()]]:
        try:
            with os.fdopen(open_private(target, "x"), "w", encoding="utf-8") as out:
                out.write(lines)
            return str(target)
        except OSError:
            continue
    return None


def _jsonable(value: Any, exact: bool) -> Any:
    if isinstance(value, str):
        return value if exact else sanitize_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN is not JSON
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_jsonable(item, exact) for item in value]
    return value


def _typed(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "timestamp":
        if not isinstance(value, datetime):
            return None
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if name in ("cost_usd", "budget_usd"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if math.isfinite(value) else None
    return sanitize_text(value) if isinstance(value, str) else None


def split_unconvertible(
    named_columns: Sequence[tuple[str, Callable[[Any], Any], Callable[[list[Any]], Any]]],
    batch: list[CallRecord],
) -> tuple[list[CallRecord], list[tuple[CallRecord, str]]]:
    """The writer's slow path, for a batch that cannot be converted as a whole: the rows
    that can (a row that bypassed sanitising, appended by hand, is sanitised here first)
    and the others with why. Bad rows are found by bisecting each failing column (a few
    conversions per bad row, not one per row and column)."""
    problems = unconvertible_rows(named_columns, batch)
    good: list[CallRecord] = []
    bad: list[tuple[CallRecord, str]] = []
    for index, record in enumerate(batch):
        reason = problems.get(index)
        if reason is not None:
            fixed = _sanitized(record)
            if fixed is not None and not unconvertible_rows(named_columns, [fixed]):
                record, reason = fixed, None
        if reason is None:
            good.append(record)
        else:
            bad.append((record, reason))
    return good, bad


def _sanitized(record: CallRecord) -> CallRecord | None:
    try:
        fixed = sanitize_record(record)
    except Exception:  # noqa: BLE001 - a row too broken to sanitise is dead-lettered as is
        return None
    return None if fixed is record else fixed
