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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError
from aigw_lab.store.team_log import import_psycopg, safe_url
from aigw_lab.store.team_log_schema import MIRRORED_TABLES, SEQ_COLUMN, pg_columns

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
        # lazy: duckdb loads in ~0.1-0.2 s; only syncing a mirror needs it
        import duckdb

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
        local = duckdb.connect(str(log.path))
        try:
            local.execute(_WATERMARKS)
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
        mine = [
            name
            for (name,) in local.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = ? AND table_schema = current_schema() "
                "ORDER BY ordinal_position",
                [table],
            ).fetchall()
        ]
        # Columns a newer writer added that this version's mirror lacks are left out.
        columns = [c for c in mine if c in remote]
        select = ", ".join(f'"{c}"' for c in [SEQ_COLUMN, *columns])
        copied = 0
        while True:
            with pg.cursor() as cursor:
                batch = cursor.execute(
                    f'SELECT {select} FROM "{table}" WHERE {SEQ_COLUMN} > %s '
                    f"ORDER BY {SEQ_COLUMN} LIMIT %s",
                    [mark, self._batch_rows],
                ).fetchall()
            pg.rollback()  # end the read transaction: the next batch sees newer commits
            if not batch:
                return copied, mark
            mark = int(batch[-1][0])
            _insert(local, table, columns, batch, mark)
            copied += len(batch)

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


def _insert(
    local: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    batch: Sequence[tuple[Any, ...]],
    mark: int,
) -> None:
    """Insert ``batch`` (``_seq`` first) and move the watermark, in one transaction."""
    # lazy: pyarrow loads in ~0.1-0.2 s; only a sync builds batches
    import pyarrow as pa

    arrays = [pa.array([row[i + 1] for row in batch]) for i in range(len(columns))]
    rows = pa.Table.from_arrays(arrays, names=list(columns))
    names = ", ".join(f'"{c}"' for c in columns)
    local.register("_aigw_team_rows", rows)
    try:
        local.execute("BEGIN TRANSACTION")
        local.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM _aigw_team_rows')
        local.execute("INSERT OR REPLACE INTO team_log_sync VALUES (?, ?, now())", [table, mark])
        local.execute("COMMIT")
    except BaseException:
        local.execute("ROLLBACK")
        raise
    finally:
        local.unregister("_aigw_team_rows")
