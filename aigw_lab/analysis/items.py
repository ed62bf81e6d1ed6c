"""An experiment item by item: which items to look at first, and what each target answered.

`item_ranking` orders the items so the instructive ones come first (the targets disagree
most on quality, then an error, then by id); `item_details` fetches the prompt and every
target's answer, score, cost and latency for chosen items only, texts cut in SQL, so a
report of a ten-thousand-item experiment reads a few hundred items' text, not all of it.
`unit_spread` gives box-plot statistics of latency and cost per target over every unit.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis._source import default_scorer, open_source, units_cte
from aigw_lab.analysis.breakdown import item_quality

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from aigw_lab.analysis._source import LogSource

__all__ = [
    "item_ranking",
    "rank_items",
    "item_details",
    "prompt_text",
    "unit_spread",
    "SPREAD_QUANTILES",
]

# The first repetition of each (item, target) shows its answer; quality, cost and latency
# are means over the repetitions. Texts are cut here, before they leave DuckDB.
_DETAILS_SQL = """
, per_unit AS (
    SELECT u.*, c.response_text, c.request_json, c.metadata_json, c.bodies
    FROM units u
    -- The experiment too: call ids written by other tools need not be unique across them.
    LEFT JOIN calls c
        ON c.call_id = u.call_id AND c.experiment_id IS NOT DISTINCT FROM u.experiment_id
)
SELECT
    item_id, target,
    count(*) AS repetitions,
    avg(quality) AS quality,
    avg(spent_usd) AS cost_usd,
    avg(latency_ms) FILTER (WHERE status = 'ok') AS latency_ms,
    arg_min(status, repetition) AS status,
    arg_min(error_type, repetition) AS error_type,
    left(arg_min(response_text, repetition), ?) AS answer,
    length(arg_min(response_text, repetition)) AS answer_chars,
    arg_min(request_json, repetition) AS request_json,
    arg_min(bodies, repetition) AS bodies,
    any_value(json_extract_string(metadata_json, '$.aigw_experiment.category')) AS category
FROM per_unit
GROUP BY item_id, target
ORDER BY item_id, target
"""


def item_ranking(
    source: LogSource, *, experiment_id: str | None = None, scorer: str | None = None
) -> pd.DataFrame:
    """Every item of the experiment, most instructive first: ``spread`` (best minus worst
    target's quality; NaN when unscored), ``failed`` units, number of ``targets``."""
    per_item = item_quality(source, experiment_id=experiment_id, scorer=scorer)
    frame = rank_items(per_item)
    frame.attrs.update({"experiment_id": experiment_id, "scorer": per_item.attrs.get("scorer")})
    return frame


def rank_items(per_item: pd.DataFrame) -> pd.DataFrame:
    """`item_ranking` from an `item_quality` frame already read: the spread of quality over
    targets (descending, unscored last), then failed units (descending), then item id."""
    grouped = per_item.groupby("item_id", sort=False)
    frame = grouped.agg(
        targets=("target", "nunique"),
        best=("quality", "max"),
        worst=("quality", "min"),
        failed=("failed", "sum"),
    ).reset_index()
    frame["spread"] = frame["best"] - frame["worst"]
    frame["failed"] = frame["failed"].astype("int64")
    frame = frame.sort_values(
        ["spread", "failed", "item_id"], ascending=[False, False, True], na_position="last"
    )
    return frame[["item_id", "targets", "spread", "failed"]].reset_index(drop=True)


def item_details(
    source: LogSource,
    item_ids: Sequence[str],
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    max_chars: int = 2000,
) -> pd.DataFrame:
    """One row per (item, target) for ``item_ids``: repetitions, mean quality, cost and
    latency, the first repetition's status, error type and answer (cut to ``max_chars``;
    ``answer_chars`` is its full length), its ``request_json`` and ``bodies`` mode, and the
    item's category."""
    with open_source(source) as read:
        if scorer is None:
            scorer = default_scorer(read, experiment_id)
        # Only the chosen items' rows are aggregated: a page of items, not the whole log.
        cte, params = units_cte(experiment_id, scorer, item_ids=list(item_ids))
        frame = read(cte + _DETAILS_SQL, [*params, int(max_chars)])
    frame.attrs.update({"experiment_id": experiment_id, "scorer": scorer})
    return frame


def prompt_text(request_json: Any) -> str | None:
    """The conversation of a logged request as plain text (``role: content`` per message,
    text parts only), or None when the log kept no body (``bodies`` none or hash)."""
    if request_json is None or request_json != request_json:  # None or NaN
        return None
    try:
        request = json.loads(request_json) if isinstance(request_json, str) else request_json
    except ValueError:
        return str(request_json)
    if not isinstance(request, dict):
        return None
    lines = []
    system = request.get("system")  # the Anthropic format keeps it outside the messages
    if isinstance(system, str) and system:
        lines.append(f"system: {system}")
    for message in request.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") in (None, "text")
            )
        if content is None:
            continue
        lines.append(f"{message.get('role', '?')}: {content}")
    return "\n".join(lines) if lines else None


# Per target, the spread of two unit metrics over every unit (no sample): logical latency of
# the units that ended ok, and what each unit spent when it spent anything (a log axis
# cannot show zero).
_SPREAD_SQL = """
SELECT
    target,
    count(latency_ms) FILTER (WHERE status = 'ok') AS latency_n,
    quantile_cont(latency_ms, [0.05, 0.25, 0.5, 0.75, 0.95]) FILTER (WHERE status = 'ok')
        AS latency_q,
    avg(latency_ms) FILTER (WHERE status = 'ok') AS latency_mean,
    count(spent_usd) FILTER (WHERE spent_usd > 0) AS cost_n,
    quantile_cont(spent_usd, [0.05, 0.25, 0.5, 0.75, 0.95]) FILTER (WHERE spent_usd > 0)
        AS cost_q,
    avg(spent_usd) FILTER (WHERE spent_usd > 0) AS cost_mean
FROM units
GROUP BY target
ORDER BY target
"""

#: The quantiles `unit_spread` reports, in order.
SPREAD_QUANTILES = ("p05", "q1", "median", "q3", "p95")


def unit_spread(source: LogSource, *, experiment_id: str | None = None) -> pd.DataFrame:
    """Per target and metric (``latency_ms``: units that ended ok; ``cost_usd``: units that
    spent anything), over every unit: ``n``, ``p05``, ``q1``, ``median``, ``q3``, ``p95``
    (linear interpolation) and ``mean``: what a box plot needs, without sending the units."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    with open_source(source) as read:
        cte, params = units_cte(experiment_id, None)
        raw = read(cte + _SPREAD_SQL, params)
    rows = []
    for record in raw.to_dict("records"):
        for metric, prefix in (("latency_ms", "latency"), ("cost_usd", "cost")):
            n = int(record[f"{prefix}_n"] or 0)
            quantiles = record[f"{prefix}_q"]
            if n == 0 or quantiles is None:
                continue
            row = {"target": str(record["target"]), "metric": metric, "n": n}
            row.update({k: float(v) for k, v in zip(SPREAD_QUANTILES, quantiles, strict=True)})
            row["mean"] = float(record[f"{prefix}_mean"])
            rows.append(row)
    columns = ["target", "metric", "n", *SPREAD_QUANTILES, "mean"]
    return pd.DataFrame(rows, columns=columns)
