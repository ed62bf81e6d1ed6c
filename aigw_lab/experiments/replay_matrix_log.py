"""Reading a `ReplayMatrix`'s rows and scores from a call log (a `CallLog`, a DuckDB
connection, or a .duckdb path read from a snapshot)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.batch import BATCH_TAG
from aigw_lab.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MatrixOptions", "check_targets", "connection", "read_rows", "read_scores", "params_of"]

# Parameters of a logged request that a fill sends again (they change the answer).
_KEPT_PARAMS = ("temperature", "max_tokens", "top_p", "stop", "seed")


@dataclass(frozen=True, slots=True)
class MatrixOptions:
    """How a matrix was read, so `ReplayMatrix.reload` reads it the same way."""

    targets: tuple[str, ...] | None
    scorer: str | None
    include_shadow: bool
    include_batch: bool
    include_experiments: bool
    since: str | None
    until: str | None


def check_targets(targets: Iterable[str] | None) -> tuple[str, ...] | None:
    """``targets`` (an iterable, or one comma-separated string) as distinct ``provider/model``
    addresses; a `ConfigError` naming any that is not one. None stays None."""
    if targets is None:
        return None
    if isinstance(targets, str):
        targets = [t for t in targets.split(",") if t.strip()]
    found = tuple(dict.fromkeys(str(t).strip() for t in targets))
    bad = [t for t in found if "/" not in t or not t.split("/", 1)[0] or not t.split("/", 1)[1]]
    if bad or not found:
        raise ConfigError(
            f"target(s) {', '.join(map(repr, bad)) or '(none)'} are not provider/model addresses",
            hint="name each target as provider/model, e.g. sim-openai/sim-small",
        )
    return found


def connection(log: Any) -> tuple[Any, bool]:
    """(the connection or CallLog to query for ``log``, whether to close it after)."""
    if isinstance(log, (str, Path)):
        # lazy: the snapshot reader loads duckdb; only a path needs it
        from aigw_lab.store.calllog import open_readonly_snapshot

        return open_readonly_snapshot(log), True
    if not hasattr(log, "execute"):
        raise ConfigError(
            f"cannot read a replay matrix from a {type(log).__name__}",
            hint="pass a CallLog (gateway.log), a DuckDB connection or a .duckdb path",
        )
    return log, False


def _fetch(conn: Any, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    if hasattr(conn, "query") and hasattr(conn, "flush"):  # a CallLog: flushes first
        return conn.query(sql, list(params))
    try:
        return conn.execute(sql, list(params)).df()
    except Exception as exc:  # a DuckDB error on a file that is not a call log
        raise StoreError(
            f"cannot read the call log: {exc}",
            hint="pass a call log written by aigw_lab (a .duckdb file with a calls table)",
        ) from exc


def _columns(conn: Any) -> set[str]:
    frame = _fetch(
        conn,
        # the log's own catalog: on a LogEngine, other logs' tables are listed too
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls' "
        "AND table_catalog = current_database() AND table_schema = current_schema()",
    )
    return set(frame["column_name"])


def read_rows(conn: Any, options: MatrixOptions) -> pd.DataFrame:
    columns = _columns(conn)
    if not columns:
        raise StoreError(
            "the database has no calls table",
            hint="pass a call log written by aigw_lab (gateway log=... or [gateway] db)",
        )
    # A log written before migration 9 has no shadow_of column: it holds no shadow rows.
    shadow = "c.shadow_of" if "shadow_of" in columns else "CAST(NULL AS VARCHAR)"
    batch = f"json_extract_string(c.tags_json, '$.{BATCH_TAG}')"
    source = (
        f"CASE WHEN c.experiment_id IS NOT NULL THEN 'experiment' WHEN {shadow} IS NOT NULL "
        f"THEN 'shadow' WHEN {batch} IS NOT NULL THEN 'batch' ELSE 'live' END"
    )
    conditions = [
        "c.status = 'ok'",
        "coalesce(c.cache_status, '') <> 'hit'",
        "coalesce(json_extract_string(c.tags_json, '$.aigw_role'), '') <> 'judge'",
    ]
    params: list[Any] = []
    if not options.include_experiments:
        conditions.append("c.experiment_id IS NULL")
    if not options.include_shadow:
        conditions.append(f"{shadow} IS NULL")
    if not options.include_batch:
        conditions.append(f"{batch} IS NULL")
    for bound, op in ((options.since, ">="), (options.until, "<")):
        if bound is not None:
            conditions.append(f'c."timestamp" {op} CAST(? AS TIMESTAMPTZ)')
            params.append(bound)
    sql = (
        "SELECT c.call_id, c.provider_name || '/' || c.request_model AS target, "
        "c.request_json, c.response_text, c.cost_usd, c.latency_ms, c.input_tokens, "
        "c.output_tokens, json_extract_string(c.tags_json, '$.category') AS category, "
        f"{source} AS source FROM calls c WHERE {' AND '.join(conditions)} "
        'ORDER BY c."timestamp", c.call_id'
    )
    frame = _fetch(conn, sql, params)
    frame["request_json"] = frame["request_json"].map(
        lambda v: v if v is None or isinstance(v, str) else json.dumps(v)
    )
    return frame


def read_scores(
    conn: Any, rows: pd.DataFrame, scorer: str | None
) -> tuple[str | None, pd.DataFrame]:
    """(the scorer used, call_id -> score_value for the rows' calls)."""
    # lazy: pandas loads in ~0.3 s; only building a matrix needs it
    import pandas as pd

    empty = pd.DataFrame(
        {"call_id": pd.Series(dtype=object), "score_value": pd.Series(dtype=float)}
    )
    ids = list(rows["call_id"])
    if not ids:
        return scorer, empty
    counts = _fetch(
        conn,
        "SELECT scorer, count(*) AS n FROM scores WHERE call_id IN (SELECT unnest(?)) "
        "GROUP BY scorer ORDER BY n DESC, scorer",
        [ids],
    )
    known = list(counts["scorer"])
    if scorer is None:
        if not known:
            return None, empty
        scorer = str(known[0])
    elif scorer not in known:
        raise ConfigError(
            f"no score by {scorer!r} on the log's calls",
            hint=f"use one of: {', '.join(known)}"
            if known
            else "score the cells first (ReplayMatrix.score) or leave scorer unset",
        )
    scores = _fetch(
        conn,
        "SELECT call_id, avg(value) AS score_value FROM scores WHERE scorer = ? AND "
        "call_id IN (SELECT unnest(?)) GROUP BY call_id",
        [scorer, ids],
    )
    return scorer, scores


def params_of(request_json: str | None) -> dict[str, Any]:
    try:
        request = json.loads(request_json) if request_json else {}
    except ValueError:
        return {}
    if not isinstance(request, dict):
        return {}
    return {k: request[k] for k in _KEPT_PARAMS if request.get(k) is not None}
