"""An experiment's own rows in the team log: scores, the ``experiments`` row, its
``experiment_runs`` rows, and the questions a distributed run asks PostgreSQL directly
(which units are done, is another driver running this experiment).

`aigw_lab.store.team_log.TeamLogSink` sends ``calls`` rows; this module sends the rest, so a
mirror (`aigw_lab.store.team_mirror.TeamLogMirror`) of the whole team log answers
`target_summary`, `paired_comparison` and the report as the file of a single-process run
would. Scores are append-only, like calls. ``experiments`` and ``experiment_runs`` rows
change during a run (counts, status), so `TeamRows.replace` deletes a key's rows and
inserts the new ones in one transaction under the writers' advisory lock: the new rows get
new ``_seq`` values, and a mirror syncing past its watermark replaces its copy by the same
key (`aigw_lab.store.team_log_schema.REPLACED_BY_KEY`).

Scores are not spooled: a score lost with its process is computed again from the logged
call by the next run's resume (no call is paid again for it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import AigwError, StoreError
from aigw_lab.store.team_log import import_psycopg, safe_url
from aigw_lab.store.team_log_schema import REPLACED_BY_KEY, WRITE_LOCK, ensure_schema

if TYPE_CHECKING:
    import psycopg

__all__ = ["ExperimentBusyError", "TeamRows", "experiment_lock_key"]


class ExperimentBusyError(AigwError):
    """Another driver holds this experiment's run lock in the team log."""


def experiment_lock_key(experiment_id: str) -> int:
    """The advisory-lock key of an experiment's runs (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"aigw-experiment:{experiment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# Per unit, its traces' outcome rows (the highest attempt), then units with an ok outcome:
# the PostgreSQL spelling of aigw_lab.experiments.records._DONE_UNITS' first two steps.
_DONE_KEYS = """
SELECT DISTINCT item_id, target, repetition FROM (
    SELECT DISTINCT ON (trace_id) item_id, target, repetition, status FROM calls
    WHERE {column} = %s AND item_id IS NOT NULL AND target IS NOT NULL
    ORDER BY trace_id, attempt DESC
) outcomes WHERE status = 'ok' AND repetition IS NOT NULL
"""


class TeamRows:
    """One connection to the team log for an experiment's rows (not thread-safe: one per
    thread). ``connect`` opens a connection (default ``psycopg.connect(url,
    autocommit=True)``)."""

    def __init__(
        self, url: str, *, connect: Callable[[str], psycopg.Connection[Any]] | None = None
    ) -> None:
        psycopg = import_psycopg("an experiment on the team log")
        self.where = f"team log {safe_url(url)}"
        opener = connect or (lambda u: psycopg.connect(u, autocommit=True, connect_timeout=5))
        try:
            self._conn = opener(url)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot reach the {self.where}: {str(exc).strip()[:300]}",
                hint="check that PostgreSQL is running and the URL is right",
            ) from exc
        self._columns = ensure_schema(self._conn)
        self._locks: set[int] = set()

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Append ``rows`` (dicts keyed by column; missing columns are NULL) to ``table``."""
        if not rows:
            return 0
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
            self._insert(table, rows)
        return len(rows)

    def replace(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Replace the rows of ``table`` whose key (`REPLACED_BY_KEY`) any of ``rows`` has,
        by ``rows``, in one transaction: they get new ``_seq`` values, so mirrors sync them
        and drop their old copies."""
        key = REPLACED_BY_KEY[table]
        if not rows:
            return 0
        keys = sorted({str(row[key]) for row in rows})
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
            self._conn.execute(f'DELETE FROM "{table}" WHERE "{key}" = ANY(%s)', [keys])
            self._insert(table, rows)
        return len(rows)

    def _insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        columns = self._columns[table]
        unknown = {name for row in rows for name in row} - set(columns)
        if unknown:
            raise StoreError(f"the team log's {table} has no column {', '.join(sorted(unknown))}")
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        with self._conn.cursor() as cursor:
            cursor.executemany(
                f'INSERT INTO "{table}" ({names}) VALUES ({marks})',
                [[_clean(row.get(c)) for c in columns] for row in rows],
            )

    def done_keys(
        self, *, experiment_id: str | None = None, run_id: str | None = None
    ) -> set[tuple[str, str, int]]:
        """``(item_id, target, repetition)`` of the units with an ok outcome in the team log,
        of the experiment (every run) or of one run."""
        column, value = (
            ("run_id", run_id) if run_id is not None else ("experiment_id", experiment_id)
        )
        rows = self._conn.execute(_DONE_KEYS.format(column=column), [value]).fetchall()
        return {(item, target, int(rep)) for item, target, rep in rows}

    def lock_experiment(self, experiment_id: str) -> None:
        """Hold the experiment's run lock for as long as this connection lives (a killed
        driver's connection ends, and so does its lock). Raises `ExperimentBusyError` when
        another driver holds it."""
        key = experiment_lock_key(experiment_id)
        got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
        if not got or not got[0]:
            raise ExperimentBusyError(
                f"experiment {experiment_id!r} is being run by another driver on the {self.where}",
                hint="wait for it to end (or stop it), then run again to resume",
            )
        self._locks.add(key)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows (none for a statement without)."""
        cursor = self._conn.execute(sql, list(params))
        return cursor.fetchall() if cursor.description is not None else []

    def close(self) -> None:
        """Close the connection (releasing any experiment lock it holds)."""
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close
            pass

    def __enter__(self) -> TeamRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clean(value: Any) -> Any:
    """NUL characters (which PostgreSQL's text refuses) replaced, as the calls sink does."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    return value
