"""The windows `aigw_lab.alerts` judges, read from a call log: the latest window (ending at
``now``) and the ``baseline_windows`` before it, each with the rules' values, in one SQL
query grouped by window.

What a window counts (shadow rows left out: they are not traffic):

- calls: rows with ``attempt <= 1`` (each call has exactly one: its first attempt, or its
  attempt-0 row when answered or refused without a provider);
- ``cost_per_hour``: the cost of every row, per hour of window (a window after the log's
  first row with no calls cost 0);
- ``error_rate``: rows with ``status = 'error'`` over all rows (attempts and refusals);
- ``cache_hit_rate``: calls with ``cache_status = 'hit'`` over calls with ``hit`` or
  ``miss`` (None in a window with no cacheable call);
- ``p95_latency``: the 95th percentile of ``latency_ms`` over answered rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aigw_lab.alerts import AlertSettings, Window

if TYPE_CHECKING:
    from aigw_lab.store import CallLog

__all__ = ["read_windows"]

_SQL = """
WITH w AS (
    SELECT
        CAST(floor((epoch($now) - epoch("timestamp")) / $seconds) AS BIGINT) AS idx,
        attempt, status, cache_status, cost_usd, latency_ms
    FROM calls
    WHERE "timestamp" < $now AND "timestamp" >= $since AND shadow_of IS NULL
)
SELECT
    idx,
    count(*) FILTER (WHERE attempt <= 1) AS calls,
    count(*) AS n_rows,
    count(*) FILTER (WHERE status = 'error') AS errors,
    count(*) FILTER (WHERE attempt <= 1 AND cache_status = 'hit') AS hits,
    count(*) FILTER (WHERE attempt <= 1 AND cache_status IN ('hit', 'miss')) AS cacheable,
    coalesce(sum(cost_usd), 0) AS cost,
    quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok') AS p95
FROM w
GROUP BY idx
ORDER BY idx
"""


def read_windows(
    log: CallLog, settings: AlertSettings, now: datetime
) -> tuple[Window, list[Window]]:
    """``(current, baseline)``: the window ``[now - window, now)`` and up to
    ``baseline_windows`` earlier ones (newest first), from ``log``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    width = timedelta(minutes=settings.window_minutes)
    since = now - width * (settings.baseline_windows + 1)
    frame = log.query(_SQL, {"now": now, "since": since, "seconds": width.total_seconds()})
    by_index = {int(row.idx): row for row in frame.itertuples(index=False)}
    oldest = max(by_index, default=0)
    hours = width.total_seconds() / 3600.0
    windows = []
    for idx in range(0, settings.baseline_windows + 1):
        end = now - width * idx
        start, row = end - width, by_index.get(idx)
        if row is None:
            # After the log's first row, a window without calls cost nothing; before it,
            # nothing is known.
            values = {"cost_per_hour": 0.0} if idx < oldest else {}
            windows.append(
                Window(start=start.isoformat(), end=end.isoformat(), calls=0, values=values)
            )
            continue
        n_rows, cacheable = int(row.n_rows), int(row.cacheable)
        values = {
            "cost_per_hour": float(row.cost) / hours,
            "error_rate": int(row.errors) / n_rows if n_rows else None,
            "cache_hit_rate": int(row.hits) / cacheable if cacheable else None,
            "p95_latency": None if row.p95 is None or row.p95 != row.p95 else float(row.p95),
        }
        windows.append(
            Window(
                start=start.isoformat(), end=end.isoformat(), calls=int(row.calls), values=values
            )
        )
    return windows[0], windows[1:]
