"""`write_report`: one experiment of a call log as a single self-contained HTML file to
decide from.

What it shows, top to bottom: what was run (dataset, n, selection and seed, targets with
their params, scorers, runs); the targets' summary; quality against cost; quality per
category with intervals; every pair of targets compared on the same items (a table of all
pairs for quality, and a selector for any pair's quality, latency and cost); cost, latency
and errors; cost over time only for runs long enough to have one; and an item browser with
search (prompt, each target's answer, score, cost, latency; capped, see
`aigw_lab.report.browser`). A log with several experiments is reported one experiment at a
time, the latest by default; the report lists the others and how to pick one.

The file opens offline: plotly.js is in it once (compressed, `aigw_lab.report.assets`), the
data as JSON that the page's own script renders with ``textContent``, so nothing from the
log (prompts, answers, target names) is ever parsed as HTML.
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab import analysis
from aigw_lab.analysis._source import open_source
from aigw_lab.errors import AigwError, StoreError
from aigw_lab.palette import target_colors
from aigw_lab.report import charts, sections
from aigw_lab.report.assets import SCRIPT, STYLE, plotly_js_gzip_base64
from aigw_lab.report.browser import MAX_ITEMS, browser_data
from aigw_lab.report.description import description_html, read_record
from aigw_lab.report.format import ms, pct, quality, script_safe, usd
from aigw_lab.store.calllog import CallLog

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.analysis._source import LogSource
    from aigw_lab.report.charts import Figure

__all__ = ["write_report", "CHART_IDS"]

#: The element id of each chart the page may hold, in order (stable: tests and links use
#: them). A chart the experiment has nothing for is left out with a note in its place.
CHART_IDS: tuple[str, ...] = (
    "chart-quality-vs-cost",
    "chart-quality-by-category",
    "chart-cost",
    "chart-latency",
    "chart-errors",
    "chart-cost-over-time",
)


def write_report(
    source: LogSource,
    out_path: str | os.PathLike[str],
    *,
    experiment_id: str | None = None,
    scorer: str | None = None,
    title: str | None = None,
) -> Path:
    """Write the HTML report of ``experiment_id`` (default: the newest experiment that has
    calls, or the whole log when it has no experiments) to ``out_path``; return the path
    written.

    ``source`` is a `CallLog`, a DuckDB connection or a log file's path (read from a
    snapshot, so a running gateway may keep writing). ``scorer`` picks the quality scorer
    (default: the one with the most scores). Raises `StoreError` when the log cannot be read,
    has no calls for the experiment, or does not know ``experiment_id``.
    """
    if isinstance(source, str | os.PathLike):
        conn = CallLog.snapshot(source)
        try:
            page = _build_page(conn, experiment_id, scorer, title, where=os.fspath(source))
        finally:
            conn.close()
    else:
        page = _build_page(source, experiment_id, scorer, title, where="the call log")
    out = Path(out_path).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise AigwError(
            f"cannot write the report to {out}: {exc.strerror or exc}",
            hint="choose a writable --out path",
        ) from exc
    return out


def _build_page(
    source: Any, experiment_id: str | None, scorer: str | None, title: str | None, *, where: str
) -> str:
    experiments = analysis.experiments_frame(source)
    known = experiments["experiment_id"].astype(str).tolist()
    if experiment_id is None:
        # The newest experiment that has calls (one defined but not yet run has nothing).
        with_calls = experiments.loc[experiments["calls"] > 0, "experiment_id"].astype(str)
        experiment_id = with_calls.iloc[0] if len(with_calls) else (known[0] if known else None)
    elif experiment_id not in known:
        raise StoreError(
            f"{where} has no experiment {experiment_id!r}",
            hint=f"choose one of: {', '.join(known)}" if known else "run an experiment first",
        )
    with open_source(source) as read:
        count = read(
            "SELECT count(*) AS n, min(timestamp) AS first, max(timestamp) AS last FROM calls"
            + (" WHERE experiment_id = ?" if experiment_id else ""),
            [experiment_id] if experiment_id else [],
        )
        record = read_record(read, experiment_id)
        scorers = (
            read(
                "SELECT DISTINCT scorer FROM scores WHERE scorer IS NOT NULL"
                + (" AND experiment_id = ?" if experiment_id else "")
                + " ORDER BY scorer",
                [experiment_id] if experiment_id else [],
            )["scorer"]
            .astype(str)
            .tolist()
        )
    calls = int(count["n"].iloc[0])
    if calls == 0:
        raise StoreError(
            f"{where} has no calls"
            + (f" for experiment {experiment_id!r}" if experiment_id else ""),
            hint="point --db at the log your gateway or experiment wrote",
        )
    first, last = count["first"].iloc[0], count["last"].iloc[0]

    summary = analysis.target_summary(source, experiment_id=experiment_id, scorer=scorer)
    scorer = summary.attrs.get("scorer")
    colors = target_colors(summary["target"])
    # Best first: quality (then cheaper), so "a" in a pair is the better-ranked target.
    ranked = summary.sort_values(
        ["quality_mean", "cost_per_call", "target"], ascending=[False, True, True]
    )["target"].tolist()
    spread = analysis.unit_spread(source, experiment_id=experiment_id)
    errors = analysis.errors_by_target(source, experiment_id=experiment_id)
    per_item = analysis.item_quality(source, experiment_id=experiment_id, scorer=scorer)
    by_category = analysis.category_quality(source, experiment_id=experiment_id, per_item=per_item)
    scored = bool(summary["quality_mean"].notna().any())
    pairs = None
    if scored and len(ranked) > 1:
        pairs = analysis.pairwise_comparisons(
            source, experiment_id=experiment_id, targets=ranked, per_item=per_item
        )
    items = browser_data(
        source, experiment_id=experiment_id, scorer=scorer, targets=ranked, per_item=per_item
    )
    span = (last - first).total_seconds()

    item_categories = per_item.drop_duplicates("item_id")["category"]
    has_categories = bool(len(by_category)) and set(by_category["category"]) != {"(none)"}
    cost_chart = charts.cost_per_call(spread, colors)
    latency_chart = charts.latency(spread, colors)
    long_run = charts.show_cost_over_time(span)
    # (element id, heading, figure or None, note shown above it or in its place)
    chart_list: list[tuple[str, str, Figure | None, str]] = [
        (
            CHART_IDS[0],
            "Quality vs cost",
            charts.quality_vs_cost(summary, colors) if scored else None,
            f"Mean quality ({summary.attrs.get('confidence', 0.95):.0%} bootstrap interval "
            "over items) against cost per call, log scale. Upper left is better; the dashed "
            "line is the Pareto frontier." + _free_note(summary)
            if scored
            else "No scores in this experiment: run a scorer to compare quality.",
        ),
        (
            CHART_IDS[1],
            "Quality by category",
            charts.quality_by_category(by_category, colors) if has_categories else None,
            _category_note(by_category)
            if has_categories
            else "No categories recorded for this experiment's items."
            if scored
            else "No scores in this experiment.",
        ),
        (
            CHART_IDS[2],
            "Cost per call",
            cost_chart,
            "What each unit cost (retries and fallbacks included), every unit, log scale: the "
            "box spans the middle half, with the median; the dashed line is the mean; "
            "whiskers reach the 5th and 95th percentiles. Units that cost nothing (cache "
            "hits) are left out."
            if cost_chart is not None
            else "Nothing in this experiment cost anything.",
        ),
        (
            CHART_IDS[3],
            "Latency",
            latency_chart,
            "Logical latency of every unit that ended ok: box from the first to the third "
            "quartile with the median, the mean dashed, whiskers at the 5th and 95th "
            "percentiles."
            if latency_chart is not None
            else "No unit ended ok.",
        ),
        (
            CHART_IDS[4],
            "Errors",
            charts.errors(errors) if len(errors) else None,
            "" if len(errors) else "No failed attempts.",
        ),
    ]
    if long_run:
        freq = "minute" if span <= 6 * 3600 else "hour" if span <= 3 * 86400 else "day"
        spend = analysis.cost_over_time(source, freq=freq, experiment_id=experiment_id)
        chart_list.append(
            (CHART_IDS[5], "Cost over time", charts.cost_over_time(spend, colors), "")
        )
    description = description_html(
        record,
        scorer=scorer,
        categories=item_categories if has_categories else None,
        items=int(per_item["item_id"].nunique()) if len(per_item) else 0,
        calls=calls,
        first_call=first,
        last_call=last,
        simulated_targets=summary.loc[summary["simulated"], "target"].tolist(),
    )
    heading = (
        title
        or record.name
        or (f"Experiment {experiment_id}" if experiment_id else "Call log report")
    )
    return _page(
        heading=heading,
        experiment_id=experiment_id,
        scorer=scorer,
        calls=calls,
        summary=summary,
        description=description,
        by_category=by_category if has_categories else None,
        pairs=pairs,
        ranked=ranked,
        items=items,
        experiments=experiments,
        charts=chart_list,
        span=span,
        long_run=long_run,
        other_scorers=[s for s in scorers if s != scorer],
    )


def _free_note(summary: pd.DataFrame) -> str:
    """Names the scored targets a log cost axis cannot show (they cost nothing)."""
    free = summary[summary["quality_mean"].notna() & ~(summary["cost_per_call"] > 0)]
    if free.empty:
        return ""
    names = ", ".join(map(str, free["target"]))
    return f" Not drawn (they cost nothing, and a log axis has no zero): {names}."


def _category_note(frame: pd.DataFrame) -> str:
    methods = sorted(set(frame["interval"]))
    confidence = frame.attrs.get("confidence", 0.95)
    how = {
        "wilson": "Wilson score intervals (0/1 scores)",
        "bootstrap": "percentile bootstrap over items",
    }
    return (
        f"Mean quality per category with {confidence:.0%} intervals: "
        + " and ".join(how[m] for m in methods)
        + "; each cell is mean [interval] (items). Few items per category make wide "
        "intervals: read overlapping ones as no clear difference."
    )


def _page(
    *,
    heading: str,
    experiment_id: str | None,
    scorer: str | None,
    calls: int,
    summary: pd.DataFrame,
    description: str,
    by_category: pd.DataFrame | None,
    pairs: pd.DataFrame | None,
    ranked: list[str],
    items: dict[str, Any],
    experiments: pd.DataFrame,
    charts: list[tuple[str, str, Figure | None, str]],
    span: float,
    long_run: bool,
    other_scorers: list[str],
) -> str:
    esc = html.escape
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    simulated = bool(summary["simulated"].any())
    figures = {chart_id: (name, figure, note) for chart_id, name, figure, note in charts}
    parts = [
        f"<h1>{esc(heading)}</h1>",
        '<p class="meta">'
        + " &middot; ".join(
            esc(s)
            for s in (
                f"experiment id: {experiment_id}" if experiment_id else "all calls",
                f"{calls:,} calls, {int(summary['units'].sum()):,} units",
                f"quality scorer: {scorer}" if scorer else "no scores",
                f"generated {generated}",
            )
        )
        + "</p>",
    ]
    if other_scorers:
        parts.append(
            '<p class="note" id="other-scorers">This experiment is also scored by '
            + ", ".join(f"<code>{esc(name)}</code>" for name in other_scorers)
            + ": write its report with <code>aigw-lab report --scorer NAME</code>.</p>"
        )
    if simulated:
        parts.append(
            '<p class="warn">Some targets are <b>simulated</b> (marked in the tables and as '
            "open diamonds in the plots): their numbers describe the simulator, not a real "
            "model.</p>"
        )
    at_a_glance = sections.glance(summary, pairs, ranked)
    if at_a_glance:
        parts += ["<h2>At a glance</h2>", at_a_glance]
    parts += ['<h2 id="what-was-run">What was run</h2>', description]
    parts += ["<h2>Targets</h2>", _summary_table(summary)]
    parts.append(_chart(CHART_IDS[0], figures))
    parts.append(_chart(CHART_IDS[1], figures))
    if by_category is not None:
        parts.append(sections.category_table(by_category))
    parts.append('<h2 id="pairs">Every pair of targets, on the same items</h2>')
    if pairs is None:
        parts.append("<p>Needs quality scores for at least two targets.</p>")
    else:
        parts.append(sections.pairs_section(pairs, ranked))
    for chart_id in CHART_IDS[2:5]:
        parts.append(_chart(chart_id, figures))
    if long_run:
        parts.append(_chart(CHART_IDS[5], figures))
    else:
        parts.append(
            f'<p class="note">No cost-over-time chart: the calls span {span:,.1f} s, under '
            f"{_min_minutes()} minutes; the cost table says what each target spent.</p>"
        )
    parts.append(sections.browser_section(items, MAX_ITEMS))
    if len(experiments) > 1:
        parts.append("<h2>Experiments in this log</h2>")
        parts.append(
            "<p>This report shows one experiment; pick another with "
            "<code>aigw-lab report --experiment ID</code>.</p>"
        )
        shown = experiments[
            ["experiment_id", "name", "dataset_name", "created_at", "runs", "calls", "targets"]
        ]
        parts.append(shown.to_html(index=False, escape=True, na_rep="", classes="table"))
    if any(figure is not None for _, figure, _ in figures.values()):
        parts.append(
            '<script type="text/plain" id="plotly-js">' + plotly_js_gzip_base64() + "</script>"
        )
    parts.append(f"<script>{SCRIPT}</script>")
    body = "\n".join(parts)
    return _TEMPLATE.format(title=esc(heading), style=STYLE, body=body)


def _min_minutes() -> int:
    return charts.COST_OVER_TIME_MIN_SECONDS // 60


def _chart(chart_id: str, figures: dict[str, tuple[str, Figure | None, str]]) -> str:
    name, figure, note = figures[chart_id]
    parts = [f"<h2>{html.escape(name)}</h2>"]
    if note:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    if figure is not None:
        data_id = f"{chart_id}-data"
        parts.append(
            f'<script type="application/json" id="{data_id}">'
            f"{script_safe(charts.figure_json(figure))}</script>"
            f'<div class="chart" id="{chart_id}" data-figure="{data_id}"></div>'
        )
    return "\n".join(parts)


def _summary_table(summary: pd.DataFrame) -> str:
    confidence = summary.attrs.get("confidence", 0.95)
    shown = summary.assign(
        quality_ci=[
            f"[{lo:.3f}, {hi:.3f}]" if lo == lo and hi == hi else ""
            for lo, hi in zip(summary["quality_ci_low"], summary["quality_ci_high"], strict=True)
        ]
    )
    columns = {
        "target": ("target", str),
        "simulated": ("simulated", lambda v: "yes" if v else ""),
        "units": ("units", "{:,}".format),
        "error_rate": ("errors", pct),
        "fallback_rate": ("fell back", pct),
        "cache_hit_rate": ("cache hits", pct),
        "latency_p50_ms": ("latency p50 (ms)", ms),
        "latency_p95_ms": ("p95 (ms)", ms),
        "latency_p99_ms": ("p99 (ms)", ms),
        "ttft_p50_ms": ("TTFT p50 (ms)", ms),
        "cost_per_call": ("cost/call", usd),
        "total_cost": ("total cost", usd),
        "quality_mean": ("quality", quality),
        "quality_ci": (f"{confidence:.0%} CI", str),
        "cost_per_correct": ("cost/correct", usd),
    }
    table = shown[list(columns)].copy()
    for column, (_, fmt) in columns.items():
        table[column] = [fmt(v) for v in table[column]]
    table.columns = [label for label, _ in columns.values()]
    return table.to_html(index=False, escape=True, classes="table", table_id="summary-table")


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""
