"""`write_report`: one experiment of a call log as a single self-contained HTML file.

The file carries plotly.js inline (once, with the first chart), so it opens offline, from
an e-mail attachment or a CI artefact, with nothing to fetch. What it shows: the targets'
summary table, the paired comparison of the two best targets, and the figures of
`aigw_lab.notebook.figures`. A log with several experiments is reported one experiment at a
time, the latest by default; the report lists the others and how to pick one.
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import AigwError, StoreError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from aigw_lab.analysis._source import LogSource

__all__ = ["write_report", "CHART_IDS", "LATENCY_SAMPLE_PER_TARGET"]

#: The element id of each chart in the page, in order (stable: tests and links use them).
CHART_IDS: tuple[str, ...] = (
    "chart-quality-vs-cost",
    "chart-cost",
    "chart-latency",
    "chart-errors",
    "chart-cost-over-time",
)

#: The latency box plot draws at most this many units per target (a deterministic sample),
#: so a report of a ten-million-call log stays a few megabytes.
LATENCY_SAMPLE_PER_TARGET = 2000

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


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
    from aigw_lab.store.calllog import CallLog

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
    from aigw_lab import analysis
    from aigw_lab.analysis._source import open_source
    from aigw_lab.notebook import figures

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
    calls = int(count["n"].iloc[0])
    if calls == 0:
        raise StoreError(
            f"{where} has no calls"
            + (f" for experiment {experiment_id!r}" if experiment_id else ""),
            hint="point --db at the log your gateway or experiment wrote",
        )

    summary = analysis.target_summary(source, experiment_id=experiment_id, scorer=scorer)
    scorer = summary.attrs.get("scorer")
    colors = figures.target_colors(summary["target"])
    sampled = analysis.unit_frame(
        source, experiment_id, scorer=scorer, max_per_target=LATENCY_SAMPLE_PER_TARGET
    )
    errors = analysis.errors_by_target(source, experiment_id=experiment_id)
    span = count["last"].iloc[0] - count["first"].iloc[0]
    # Buckets fine enough that the curve has points to draw: an experiment of a few minutes
    # would be one point per target at an hourly grain.
    seconds = span.total_seconds()
    freq = (
        "second" if seconds <= 600
        else "minute" if seconds <= 6 * 3600
        else "hour" if seconds <= 3 * 86400
        else "day"
    )  # fmt: skip
    spend = analysis.cost_over_time(source, freq=freq, experiment_id=experiment_id)

    best = _best_two(summary)
    paired = None
    if best is not None:
        paired = analysis.paired_comparison(
            source, best[0], best[1], experiment_id=experiment_id, scorer=scorer
        )

    scored = bool(summary["quality_mean"].notna().any())
    sample_note = ""
    if len(sampled) < int(summary["units"].sum()):
        sample_note = f"A deterministic sample of {LATENCY_SAMPLE_PER_TARGET} units per target."
    # (element id, heading, figure or None, note shown above it or in its place)
    charts: list[tuple[str, str, go.Figure | None, str]] = [
        (
            CHART_IDS[0],
            "Quality vs cost",
            figures.quality_vs_cost(summary, colors=colors) if scored else None,
            "" if scored else "No scores in this experiment: run a scorer to compare quality.",
        ),
        (CHART_IDS[1], "Cost per call", figures.cost_bars(summary, colors=colors), ""),
        (
            CHART_IDS[2],
            "Latency",
            figures.latency_distribution(sampled, colors=colors),
            sample_note,
        ),
        (
            CHART_IDS[3],
            "Errors",
            figures.error_breakdown(errors) if len(errors) else None,
            "" if len(errors) else "No failed attempts.",
        ),
        (CHART_IDS[4], "Cost over time", figures.cost_over_time(spend, colors=colors), ""),
    ]
    heading = title or (f"Experiment {experiment_id}" if experiment_id else "Call log report")
    return _page(
        heading=heading,
        experiment_id=experiment_id,
        scorer=scorer,
        calls=calls,
        summary=summary,
        paired=paired,
        experiments=experiments,
        charts=charts,
    )


def _best_two(summary: pd.DataFrame) -> tuple[str, str] | None:
    """The two targets with the highest quality (ties: cheaper first), or None."""
    ranked = summary[summary["quality_mean"].notna()].sort_values(
        ["quality_mean", "cost_per_call", "target"], ascending=[False, True, True]
    )
    if len(ranked) < 2:
        return None
    return str(ranked["target"].iloc[0]), str(ranked["target"].iloc[1])


def _page(
    *,
    heading: str,
    experiment_id: str | None,
    scorer: str | None,
    calls: int,
    summary: pd.DataFrame,
    paired: pd.DataFrame | None,
    experiments: pd.DataFrame,
    charts: list[tuple[str, str, go.Figure | None, str]],
) -> str:
    esc = html.escape
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    simulated = bool(summary["simulated"].any())
    parts = [
        f"<h1>{esc(heading)}</h1>",
        '<p class="meta">'
        + " &middot; ".join(
            esc(s)
            for s in (
                f"experiment: {experiment_id}" if experiment_id else "all calls",
                f"{calls:,} calls, {int(summary['units'].sum()):,} units",
                f"quality scorer: {scorer}" if scorer else "no scores",
                f"generated {generated}",
            )
        )
        + "</p>",
    ]
    if simulated:
        parts.append(
            '<p class="warn">Some targets are <b>simulated</b> (marked in the table and as open'
            " diamonds in the plots): their numbers describe the simulator, not a real model."
            "</p>"
        )
    parts += ["<h2>Targets</h2>", _summary_table(summary)]
    parts.append("<h2>Best two targets, paired on the same items</h2>")
    if paired is None:
        parts.append("<p>Needs quality scores for at least two targets.</p>")
    else:
        parts.append(_paired_table(paired))
    plotly_js_included = False
    for chart_id, name, figure, note in charts:
        parts.append(f"<h2>{esc(name)}</h2>")
        if note:
            parts.append(f'<p class="note">{esc(note)}</p>')
        if figure is None:
            continue
        parts.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=not plotly_js_included,
                div_id=chart_id,
                config=_PLOT_CONFIG,
            )
        )
        plotly_js_included = True
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
    body = "\n".join(parts)
    return _TEMPLATE.format(title=esc(heading), body=body)


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
        "error_rate": ("errors", _pct),
        "fallback_rate": ("fell back", _pct),
        "cache_hit_rate": ("cache hits", _pct),
        "latency_p50_ms": ("latency p50 (ms)", _ms),
        "latency_p95_ms": ("p95 (ms)", _ms),
        "latency_p99_ms": ("p99 (ms)", _ms),
        "ttft_p50_ms": ("TTFT p50 (ms)", _ms),
        "cost_per_call": ("cost/call (USD)", _usd),
        "total_cost": ("total (USD)", _usd),
        "quality_mean": ("quality", lambda v: "" if v != v else f"{v:.3f}"),
        "quality_ci": (f"{confidence:.0%} CI", str),
        "cost_per_correct": ("cost/correct (USD)", _usd),
    }
    table = shown[list(columns)].copy()
    for column, (_, fmt) in columns.items():
        table[column] = [fmt(v) for v in table[column]]
    table.columns = [label for label, _ in columns.values()]
    return table.to_html(index=False, escape=True, classes="table", table_id="summary-table")


def _paired_table(paired: pd.DataFrame) -> str:
    first = paired.iloc[0]
    confidence = paired.attrs.get("confidence", 0.95)
    labels = {"quality": "quality", "latency_ms": "latency (ms)", "cost_usd": "cost (USD)"}
    fmt = {"quality": "{:.3f}", "latency_ms": "{:.0f}", "cost_usd": "{:.6f}"}
    rows = []
    for row in paired.itertuples(index=False):
        f = fmt[row.metric].format
        cell = lambda v, f=f: "" if v != v else f(v)  # noqa: E731 - a tiny per-row formatter
        rows.append(
            {
                "metric": labels[row.metric],
                "items": row.n_items,
                f"{first.target_a}": cell(row.mean_a),
                f"{first.target_b}": cell(row.mean_b),
                "difference (a - b)": cell(row.diff),
                f"{confidence:.0%} CI": f"[{cell(row.ci_low)}, {cell(row.ci_high)}]",
                "a better / tie / worse": f"{row.wins} / {row.ties} / {row.losses}",
            }
        )
    import pandas as pd

    return (
        f"<p>a = <b>{html.escape(str(first.target_a))}</b>, "
        f"b = <b>{html.escape(str(first.target_b))}</b>; paired bootstrap over items.</p>"
        + pd.DataFrame(rows).to_html(
            index=False, escape=True, classes="table", table_id="paired-table"
        )
    )


def _pct(value: float) -> str:
    return "" if value != value else f"{value:.1%}"


def _ms(value: float) -> str:
    return "" if value != value else f"{value:,.0f}"


def _usd(value: float) -> str:
    return "" if value != value else f"{value:.6f}"


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; }}
h1 {{ margin-bottom: 0.2rem; }}
h2 {{ margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }}
.meta, .note {{ color: #666; }}
.warn {{ background: #fff7e0; border-left: 4px solid #f0b400; padding: 0.5rem 0.8rem; }}
table.table {{ border-collapse: collapse; font-size: 0.9rem; }}
table.table th, table.table td {{ border: 1px solid #ddd; padding: 0.3rem 0.6rem;
                                  text-align: right; }}
table.table th {{ background: #f5f5f5; }}
table.table td:first-child {{ text-align: left; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
