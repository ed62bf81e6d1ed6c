"""The report's tables and interactive sections, as HTML strings: the at-a-glance summary,
quality per category, every pair of targets (table and selector), and the item browser.

Every text that comes from the log goes through `html.escape` (tables) or `script_json`
(data the page's script renders with ``textContent``).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis.pareto import pareto_frontier
from aigw_lab.report.format import ms, quality, script_json, usd

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["glance", "category_table", "pairs_section", "browser_section"]


def category_table(frame: pd.DataFrame) -> str:
    """Categories down, targets across: ``mean [low, high] (n)`` per cell."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    cells = frame.assign(
        cell=[
            f"{quality(m)} [{quality(lo)}, {quality(hi)}] ({n})"
            for m, lo, hi, n in zip(
                frame["quality_mean"],
                frame["ci_low"],
                frame["ci_high"],
                frame["items"],
                strict=True,
            )
        ]
    )
    table = cells.pivot(index="category", columns="target", values="cell").fillna("")
    table = pd.DataFrame(table.to_numpy(), index=table.index, columns=list(table.columns))
    return table.reset_index().to_html(
        index=False, escape=True, classes="table", table_id="category-table"
    )


def pairs_section(pairs: pd.DataFrame, ranked: list[str]) -> str:
    confidence = pairs.attrs.get("confidence", 0.95)
    fmt = {"quality": quality, "latency_ms": ms, "cost_usd": usd}
    labels = {"quality": "quality", "latency_ms": "latency (ms)", "cost_usd": "cost"}
    rows = []
    data: list[dict[str, Any]] = []
    for (a, b), group in pairs.groupby(["target_a", "target_b"], sort=False):
        detail = []
        for row in group.itertuples(index=False):
            f = fmt[row.metric]
            detail.append(
                {
                    "metric": labels[row.metric],
                    "items": int(row.n_items),
                    "mean_a": f(row.mean_a),
                    "mean_b": f(row.mean_b),
                    "diff": f(row.diff),
                    "diff_flipped": f(-row.diff),
                    "ci": f"[{f(row.ci_low)}, {f(row.ci_high)}]",
                    "ci_flipped": f"[{f(-row.ci_high)}, {f(-row.ci_low)}]",
                    "wins": int(row.wins),
                    "ties": int(row.ties),
                    "losses": int(row.losses),
                }
            )
            if row.metric == "quality":
                if row.n_items == 0:
                    verdict = "no common items"
                elif row.ci_low > 0:
                    verdict = "a better"
                elif row.ci_high < 0:
                    verdict = "b better"
                else:
                    verdict = "no clear difference"
                rows.append(
                    {
                        "a": a,
                        "b": b,
                        "items": int(row.n_items),
                        "quality a": quality(row.mean_a),
                        "quality b": quality(row.mean_b),
                        "a - b": quality(row.diff),
                        f"{confidence:.0%} interval": f"[{quality(row.ci_low)}, "
                        f"{quality(row.ci_high)}]",
                        "a better / tie / worse": f"{row.wins} / {row.ties} / {row.losses}",
                        "verdict": verdict,
                    }
                )
        data.append({"a": a, "b": b, "rows": detail})
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    table = pd.DataFrame(rows).to_html(
        index=False, escape=True, classes="table", table_id="pairs-table"
    )
    payload = {"targets": ranked, "pairs": data, "confidence": f"{confidence:.0%}"}
    return "\n".join(
        [
            f'<p class="note">Quality of every pair (a ranked above b), paired percentile '
            f"bootstrap over the items both answered; &ldquo;a better&rdquo; when the whole "
            f"{confidence:.0%} interval of a - b is above zero.</p>",
            table,
            "<h3>Any pair: quality, latency and cost</h3>",
            '<div class="controls">a <select id="pair-a"></select> b '
            '<select id="pair-b"></select></div>',
            '<div id="pair-detail"></div>',
            f'<script type="application/json" id="pairs-data">{script_json(payload)}</script>',
        ]
    )


def browser_section(items: dict[str, Any], max_items: int) -> str:
    total, shown = items["total_items"], len(items["items"])
    note = (
        f"All {total:,} items. "
        if shown == total
        else f"The {shown:,} most instructive of {total:,} items (the report holds at most "
        f"{max_items:,}): targets disagreeing most first, then failures. "
    )
    if items.get("repetitions", 1) > 1:
        note += (
            "With repetitions, the answer shown is the first repetition's; score, cost and "
            "latency are means over the repetitions. "
        )
    note += (
        f"Texts are cut at {items['text_chars']:,} characters. Search matches ids, categories, "
        "prompts and answers (all words)."
    )
    return "\n".join(
        [
            '<h2 id="items">Items</h2>',
            f'<p class="note">{html.escape(note)}</p>',
            '<div class="controls"><input type="search" id="item-search" '
            'placeholder="search prompts, answers, ids" aria-label="search items">'
            '<select id="item-category" aria-label="category">'
            '<option value="">all categories</option></select>'
            '<label><input type="checkbox" id="item-differ"> only items where targets '
            "differ</label>"
            '<span id="item-count" class="note"></span></div>',
            '<div id="item-list"></div>',
            '<div class="controls"><button id="item-prev" type="button">previous</button>'
            '<span id="item-page"></span>'
            '<button id="item-next" type="button">next</button></div>',
            f'<script type="application/json" id="items-data">{script_json(items)}</script>',
        ]
    )


def glance(summary: pd.DataFrame, pairs: pd.DataFrame | None, ranked: list[str]) -> str:
    """A few sentences to decide from: the best target by quality, the cheapest one that is
    not clearly worse (its paired interval of the difference to the best covers zero), the
    Pareto frontier, and the targets that failed. Empty when nothing is scored."""
    esc = html.escape
    rows = summary.set_index("target")
    scored = summary[summary["quality_mean"].notna()]
    if scored.empty or pairs is None:
        return ""
    confidence = pairs.attrs.get("confidence", 0.95)
    best = ranked[0]
    top = rows.loc[best]
    lines = [
        f"<li>Highest quality: <b>{esc(best)}</b>, {quality(top.quality_mean)} "
        f"[{quality(top.quality_ci_low)}, {quality(top.quality_ci_high)}] at "
        f"{usd(top.cost_per_call)} per call.</li>"
    ]
    against = pairs[(pairs["target_a"] == best) & (pairs["metric"] == "quality")]
    within = [
        str(r.target_b)
        for r in against.itertuples(index=False)
        if r.n_items > 0
        and r.ci_low <= 0
        and rows.loc[r.target_b, "cost_per_call"] < top.cost_per_call
    ]
    if within:
        cheapest = min(within, key=lambda t: (rows.loc[t, "cost_per_call"], t))
        pair = against[against["target_b"] == cheapest].iloc[0]
        ratio = top.cost_per_call / rows.loc[cheapest, "cost_per_call"]
        lines.append(
            f"<li>Cheapest not clearly worse: <b>{esc(cheapest)}</b>, "
            f"{quality(rows.loc[cheapest, 'quality_mean'])} at "
            f"{usd(rows.loc[cheapest, 'cost_per_call'])} per call ({ratio:,.1f}x cheaper); "
            f"{esc(best)} minus it: {quality(pair['diff'])} [{quality(pair.ci_low)}, "
            f"{quality(pair.ci_high)}], an interval that includes 0 at {confidence:.0%}.</li>"
        )
    else:
        lines.append(
            "<li>Every cheaper target is clearly worse than "
            f"<b>{esc(best)}</b> (its {confidence:.0%} paired interval is below 0).</li>"
        )
    front = pareto_frontier(scored)
    steps = ", then ".join(
        f"{esc(str(r.target))} ({usd(r.cost_per_call)}, {quality(r.quality_mean)})"
        for r in front.itertuples(index=False)
    )
    lines.append(f"<li>Pareto frontier, cheapest first: {steps}.</li>")
    failing = summary[summary["error_rate"] > 0].sort_values("error_rate", ascending=False)
    if len(failing):
        shown = ", ".join(
            f"{esc(str(r.target))} {r.error_rate:.1%}" for r in failing.itertuples(index=False)
        )
        lines.append(f"<li>Units that ended in an error: {shown}.</li>")
    return '<ul id="at-a-glance">' + "".join(lines) + "</ul>"
