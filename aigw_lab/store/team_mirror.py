"""A local DuckDB mirror of the team log, synced from PostgreSQL past a watermark.

    mirror = TeamLogMirror(url, "team.duckdb")
    mirror.sync()                        # copies the rows written since the last sync
    gateway = Gateway(providers, log=mirror.log)      # Gateway.query reads the whole team
    target_summary(mirror.log)           # the analysis functions, the report, the notebook

The mirror is an ordinary call-log file (the same migrations), so everything that reads a
log reads it unchanged, and no reader ever opens a file a server is writing (DuckDB's lock
error). Each reader keeps its own mirror; `sync` copies, per table, the rows whose ``_seq``
is above the table's watermark (kept in the mirror's ``team_log_sync`` table), inserting
them and moving the watermark in one DuckDB transaction: a sync cut short copies nothing
twice. Writers commit ``_seq`` in order (`aigw_lab.store.team_log_schema`), so a row can
never appear below a watermark already passed.

Rows of the tables in `REPLACED_BY_KEY` (an experiment's definition, a run's counts) are
replaced in the team log by key with new ``_seq`` values (`aigw_lab.store.team_rows`); a
sync deletes its copies of the keys a batch brings before inserting it, so the mirror holds
one row per key, the latest.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.store.team_log import import_psycopg, safe_url
from aigw_lab.store.team_log_schema import (
    MIRRORED_TABLES,
    REPLACED_BY_KEY,
    SEQ_COLUMN,
    pg_columns,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import psycopg

    from aigw_lab.store.calllog import CallLog

__all__ = ["SyncResult", "TeamLogMirror"]

_WATERMARKS = """
CREATE TABLE IF NOT EXISTS team_log_sync (
    table_name VARCHAR PRIMARY KEY,
    seq BIGINT NOT NULL,
    synced_at TIMESTAMPTZ NOT NULL
)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResult:
    """What one `TeamLogMirror.sync` copied: rows per table and the new watermarks."""

    rows: Mapping[str, int] = field(default_factory=dict)
    watermarks: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Rows copied, all tables together."""
        return sum(self.rows.values())


class TeamLogMirror:
    """A reader's local copy of the team log at ``url``, in the DuckDB file ``path``.

    ``batch_rows`` bounds the rows fetched (and held in memory) per step of a sync.
    ``connect`` opens a PostgreSQL connection (default ``psycopg.connect(url)``)."""

    def __init__(
        self,
        url: str,
        path: str | os.PathLike[str],
        *,
        batch_rows: int = 50_000,
        connect: Callable[[str], psycopg.Connection[Any]] | None = None,
    ) -> None:
        psycopg = import_psycopg("the team log mirror")
        if str(path) == ":memory:":
            raise StoreError(
                "a team log mirror is a file", hint="give it a path such as team.duckdb"
            )
        self._url = url
        self.where = f"team log {safe_url(url)}"
        self.path = Path(path).expanduser()
        self._batch_rows = batch_rows
        self._psycopg = psycopg
        self._connect = connect or (lambda u: psycopg.connect(u, connect_timeout=5))
        self._log: CallLog | None = None

    @property
    def log(self) -> CallLog:
        """The mirror as a `CallLog` (opened on first use; no spool: it is a copy)."""
        if self._log is None:
            # lazy: the call log pulls in duckdb and pyarrow; only reading the mirror needs it
            from aigw_lab.store.calllog import CallLog

            self._log = CallLog(self.path, durability="none")
        return self._log

    def query(self, sql: str, params: Any = None) -> pd.DataFrame:
        """`sync`, then run ``sql`` over the mirror (as `CallLog.query`)."""
        self.sync()
        return self.log.query(sql, params)

    def sync(self) -> SyncResult:
        """Copy the team log's new rows into the mirror; return what was copied."""
        log = self.log  # creates the file and its tables
        try:
            pg = self._connect(self._url)
        except self._psycopg.Error as exc:
            raise StoreError(
                f"cannot reach the {self.where}: {str(exc).strip()[:300]}",
                hint="check that PostgreSQL is running and the URL is right; the mirror "
                f"{self.path} still holds what the last sync copied",
            ) from exc
        rows: dict[str, int] = {}
        marks: dict[str, int] = {}
        # A cursor of the log's own database: on a LogEngine too (where the file is attached
        # and a second duckdb.connect of it in this process is refused).
        local = log.cursor()
        try:
            local.execute(_WATERMARKS)
            pg.execute("SET TimeZone TO 'UTC'")  # the CSV batches' timestamps, as +00
            pg.commit()  # else the first batch's rollback would undo it
            for table in MIRRORED_TABLES:
                rows[table], marks[table] = self._sync_table(pg, local, table)
        except self._psycopg.Error as exc:
            raise StoreError(
                f"syncing from the {self.where} failed: {str(exc).strip()[:300]}",
                hint="run the sync again: what was copied is kept, nothing twice",
            ) from exc
        finally:
            local.close()
            pg.close()
        return SyncResult(rows=rows, watermarks=marks)

    def _sync_table(
        self, pg: psycopg.Connection[Any], local: duckdb.DuckDBPyConnection, table: str
    ) -> tuple[int, int]:
        found = local.execute(
            "SELECT seq FROM team_log_sync WHERE table_name = ?", [table]
        ).fetchone()
        mark = int(found[0]) if found else 0
        remote = pg_columns(pg, table)
        if not remote:
            return 0, mark  # no writer has created it yet
        mine = local.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema() "
            "AND table_catalog = current_database() ORDER BY ordinal_position",
            [table],
        ).fetchall()
        # Columns a newer writer added that this version's mirror lacks are left out.
        columns = [(name, kind) for name, kind in mine if name in remote]
        copy_sql = _copy_sql(table, columns)
        copied = 0
        while True:
            with _scratch(self.path) as scratch:
                with open(scratch, "wb") as out, pg.cursor() as cursor:
                    with cursor.copy(copy_sql.format(mark=int(mark), n=self._batch_rows)) as copy:
                        for block in copy:
                            out.write(block)
                pg.rollback()  # end the read transaction: the next batch sees newer commits
                if os.path.getsize(scratch) == 0:
                    return copied, mark
                rows, mark = _insert(local, table, columns, scratch)
            copied += rows

    def close(self) -> None:
        """Close the mirror's `CallLog` (if opened)."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TeamLogMirror:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _copy_sql(table: str, columns: Sequence[tuple[str, str]]) -> str:
    """``COPY (...) TO STDOUT`` of a batch past ``{mark}``, ``{n}`` rows, as CSV. A list
    travels as JSON text (CSV has no arrays); timestamps in UTC (the session's zone)."""
    select = [SEQ_COLUMN] + [
        f'array_to_json("{name}")' if kind.endswith("[]") else f'"{name}"' for name, kind in columns
    ]
    return (
        f'COPY (SELECT {", ".join(select)} FROM "{table}" WHERE {SEQ_COLUMN} > {{mark}} '
        f"ORDER BY {SEQ_COLUMN} LIMIT {{n}}) TO STDOUT (FORMAT csv)"
    )


@contextmanager
def _scratch(mirror: Path) -> Iterator[str]:
    """A private temporary file beside the mirror (it holds bodies), removed afterwards."""
    fd, name = tempfile.mkstemp(prefix=f".{mirror.name}.", suffix=".csv", dir=mirror.parent)
    os.close(fd)
    try:
        yield name
    finally:
        os.unlink(name)


def _insert(
    local: duckdb.DuckDBPyConnection, table: str, columns: Sequence[tuple[str, str]], path: str
) -> tuple[int, int]:
    """Insert a batch's CSV (``_seq`` first) and move the watermark, in one transaction;
    return the rows inserted and the new watermark."""
    # DuckDB parses the CSV in C++: no Python object per value (about 4x faster than rows
    # fetched through psycopg and rebuilt as Arrow arrays, bench/bench_team_log.py).
    types = {SEQ_COLUMN: "BIGINT"}
    for name, kind in columns:
        types[name] = "VARCHAR" if kind == "JSON" or kind.endswith("[]") else kind
    spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in types.items()) + "}"
    names = ", ".join(f'"{name}"' for name, _ in columns)
    values = ", ".join(
        f'CAST(CAST("{name}" AS JSON) AS {kind})' if kind.endswith("[]") else f'"{name}"'
        for name, kind in columns
    )
    source = (
        f"read_csv(?, header = false, auto_detect = false, delim = ',', quote = '\"', "
        f"escape = '\"', nullstr = '', allow_quoted_nulls = false, columns = {spec})"
    )
    try:
        local.execute("BEGIN TRANSACTION")
        key = REPLACED_BY_KEY.get(table)
        if key is not None:
            # A row replaced in the team log (a run's counts, say) comes again with a newer
            # _seq: the copy synced earlier goes.
            local.execute(
                f'DELETE FROM "{table}" WHERE "{key}" IN (SELECT "{key}" FROM {source})', [path]
            )
        # Inserted straight from the file; the watermark from a second scan of its first
        # column only (a fraction of the insert's cost), not a temporary copy of the batch.
        local.execute(f'INSERT INTO "{table}" ({names}) SELECT {values} FROM {source}', [path])
        rows, mark = local.execute(
            f"SELECT count(*), max({SEQ_COLUMN}) FROM {source}", [path]
        ).fetchone()  # type: ignore[misc]
        local.execute("INSERT OR REPLACE INTO team_log_sync VALUES (?, ?, now())", [table, mark])
        local.execute("COMMIT")
    except BaseException:
        local.execute("ROLLBACK")
        raise
    return int(rows), int(mark)
