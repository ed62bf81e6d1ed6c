"""How the call-log writer hands one batch to DuckDB: the cheapest insert it offers.

Profiled on DuckDB 2.0.1 (``bench/bench_log_rates.py --profile-insert`` prints it), a
one-row insert of a ``calls`` batch costs about 4-6 ms of CPU, and almost none of it is
writing: binding the statement (the Arrow scan of ~50 columns) takes about 1.8 ms,
registering and unregistering the batch as a view about 1 ms, re-validating the four JSON
columns with ``COALESCE(TRY_CAST(... AS JSON), to_json(...))`` about 1.2 ms, executing
0.4 ms and the commit with its write-ahead-log entry about 0.5 ms. So this module:

* finds the batch by DuckDB's *replacement scan* (a local variable named in the SQL) instead
  of ``register``/``unregister``; when a connection has replacement scans switched off
  (``python_enable_replacements = false``) it falls back to registering, once and for all;
* skips the JSON re-validation for batches made only of rows the gateway built (``built``):
  their JSON columns travel as Arrow's ``arrow.json`` extension type, which DuckDB reads as
  JSON without parsing. Rows from anywhere else (a user's `CallLog.append`, a spool replay,
  an import) keep the repairing ``COALESCE``: invalid JSON text is stored as a JSON string
  instead of failing the batch. Without pyarrow (the pandas path) every batch is repaired.

The fixed cost that remains is paid per insert, not per row; the writer's batching by size
and age (see `BatchWriter`) is what makes it small per call.

What a row costs DuckDB after its insert is mostly checkpointing: by default DuckDB
checkpoints each time its write-ahead log passes 16MB, and every checkpoint compresses the
table's unfinished row group again, so a log written in small batches paid for its rows
several times over, more the longer the log (bench/bench_log_writer.py ``--checkpoints``:
about 14 µs of CPU per row at 500k rows in 4,000-row inserts, 7 µs with 64MiB).
`tune_log_database` raises that threshold for a call log's database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aigw_lab.store.schema import COLUMN_TYPES

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "BATCH_NAME",
    "CHECKPOINT_THRESHOLD",
    "InsertPath",
    "repairing_insert_sql",
    "tune_log_database",
]

#: The name the insert statements read the batch by (a local variable, or a registered view).
BATCH_NAME = "_aigw_call_batch"


#: The write-ahead log size at which a call log's database checkpoints (DuckDB's default is
#: 16MB). Larger means fewer checkpoints, each compressing more rows at once; the costs: up
#: to this much more disk beside the file until the next checkpoint (and in what
#: `CallLog.snapshot` copies), and a longer replay when a killed process's log is next opened.
CHECKPOINT_THRESHOLD = "64MiB"

# DuckDB's names for the setting: a config that gives either keeps its own value.
_CHECKPOINT_SETTINGS = frozenset({"checkpoint_threshold", "wal_autocheckpoint"})


def tune_log_database(conn: duckdb.DuckDBPyConnection, config: Mapping[str, Any] | None) -> None:
    """Set a call log's database up for the writer's inserts: `CHECKPOINT_THRESHOLD`, unless
    ``config`` (what ``duckdb.connect`` was given) sets the threshold itself. The setting is
    the database's, so other connections to the same file in this process share it."""
    if config and _CHECKPOINT_SETTINGS & set(config):
        return
    conn.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")


def repairing_insert_sql() -> str:
    """The insert for rows from outside: invalid JSON text is stored as a JSON string."""
    # BY NAME keeps inserts right even if a later migration adds columns in another order.
    select = ", ".join(
        f"COALESCE(TRY_CAST({name} AS JSON), to_json({name})) AS {name}"
        if sql_type == "JSON"
        else f'"{name}"'
        for name, sql_type in COLUMN_TYPES.items()
    )
    return f"INSERT INTO calls BY NAME SELECT {select} FROM {BATCH_NAME}"


_BUILT_INSERT = f"INSERT INTO calls BY NAME SELECT * FROM {BATCH_NAME}"


class InsertPath:
    """Inserts batch tables into ``calls`` through one cursor (the writer thread's).

    ``json_typed`` says whether built batches carry their JSON columns as ``arrow.json``
    (see `aigw_lab.store.batches.ColumnBatches.json_typed`): only then can the repairing
    cast be skipped for them.
    """

    def __init__(self, cursor: duckdb.DuckDBPyConnection, *, json_typed: bool) -> None:
        # lazy: duckdb loads in ~0.1-0.2 s; the writer exists only once a database is open
        import duckdb

        self._cursor = cursor
        self._json_typed = json_typed
        self._repair = repairing_insert_sql()
        self._not_found = duckdb.CatalogException
        self.by_register = False  # set when the connection has replacement scans off

    def insert(self, table: Any, *, built: bool) -> None:
        """Insert ``table``; ``built``: every row in it was built by the gateway."""
        sql = _BUILT_INSERT if built and self._json_typed else self._repair
        if self.by_register:
            self._registered(table, sql)
            return
        try:
            self._replaced(table, sql)
        except self._not_found:
            # Replacement scans are off in this connection's config (or the table is
            # missing, which registering reports again): register from now on.
            self.by_register = True
            self._registered(table, sql)

    def _replaced(self, table: Any, sql: str) -> None:
        # DuckDB resolves the name in the SQL to this local variable (a replacement scan):
        # about 1 ms of CPU cheaper per insert than register() + unregister().
        _aigw_call_batch = table  # noqa: F841 - read by name by DuckDB, not by Python
        self._cursor.execute(sql)

    def _registered(self, table: Any, sql: str) -> None:
        self._cursor.register(BATCH_NAME, table)
        try:
            self._cursor.execute(sql)
        finally:
            self._cursor.unregister(BATCH_NAME)
