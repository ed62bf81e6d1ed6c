"""The report's item browser data: for the most instructive items, the prompt and each
target's answer, score, cost and latency, capped so a huge experiment still makes a file
one can open and mail.

Caps: at most `MAX_ITEMS` items (the ones where targets disagree most on quality come first,
then those with failures, then by id), and about `TEXT_BUDGET` characters of prompts and
answers in all: each text is cut to the same length, between `MIN_TEXT_CHARS` and
`MAX_TEXT_CHARS`, and the page says where it cut.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aigw_lab.analysis.items import item_details, item_ranking, prompt_text, rank_items
from aigw_lab.report.format import ms, usd

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.analysis._source import LogSource

__all__ = ["MAX_ITEMS", "TEXT_BUDGET", "MIN_TEXT_CHARS", "MAX_TEXT_CHARS", "browser_data"]

#: The most items the browser holds, whatever the experiment's size.
MAX_ITEMS = 300
#: About how many characters of prompts and answers one report holds.
TEXT_BUDGET = 600_000
#: Each prompt or answer is cut to a length between these.
MIN_TEXT_CHARS = 200
MAX_TEXT_CHARS = 4000


def browser_data(
    source: LogSource,
    *,
    experiment_id: str | None,
    scorer: str | None,
    targets: list[str],
    per_item: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The JSON-ready data of the item browser (see the module docstring for the caps);
    ``per_item`` is the experiment's `item_quality` frame if already read."""
    if per_item is None:
        ranking = item_ranking(source, experiment_id=experiment_id, scorer=scorer)
    else:
        ranking = rank_items(per_item)
    chosen = ranking["item_id"].astype(str).tolist()[:MAX_ITEMS]
    texts_per_item = len(targets) + 1
    per_text = TEXT_BUDGET // max(1, len(chosen) * texts_per_item)
    per_text = max(MIN_TEXT_CHARS, min(MAX_TEXT_CHARS, per_text))
    details = item_details(
        source, chosen, experiment_id=experiment_id, scorer=scorer, max_chars=per_text
    )
    spread = dict(zip(ranking["item_id"].astype(str), ranking["spread"], strict=True))
    column = {t: i for i, t in enumerate(targets)}
    by_item: dict[str, list[dict[str, Any]]] = {}
    for row in details.to_dict("records"):
        by_item.setdefault(str(row["item_id"]), []).append(row)
    items = []
    for item_id in chosen:
        rows = by_item.get(item_id, [])
        cells: list[dict[str, Any] | None] = [None] * len(targets)
        prompt = None
        category = None
        scores = set()
        hidden = None
        for row in rows:
            bodies = _text(row.get("bodies"))
            if bodies in _NOT_KEPT:
                hidden = bodies  # a digest or nothing: no prompt to show
            elif prompt is None:
                prompt = prompt_text(row.get("request_json"))
            category = category or _text(row.get("category"))
            index = column.get(str(row["target"]))
            if index is None:
                continue
            cells[index] = _cell(row, per_text)
            if cells[index]["score_value"] is not None:
                scores.add(cells[index]["score_value"])
        value = spread.get(item_id)
        items.append(
            {
                "id": item_id,
                "category": category or "(none)",
                "prompt": None if prompt is None else prompt[:per_text],
                "prompt_note": f"(prompt not logged: bodies = {hidden})"
                if hidden and prompt is None
                else None,
                "prompt_cut": prompt is not None and len(prompt) > per_text,
                "spread": None if value is None or value != value else round(float(value), 3),
                "differ": len(scores) > 1 or any(c is None or c["status"] != "ok" for c in cells),
                "cells": cells,
            }
        )
    repetitions = details["repetitions"].max() if len(details) else 1
    return {
        "targets": targets,
        "items": items,
        "total_items": len(ranking),
        "text_chars": per_text,
        "repetitions": int(repetitions) if repetitions == repetitions else 1,
    }


# Body modes that keep no readable text ("hash" keeps a digest, "none" nothing).
_NOT_KEPT = ("hash", "none")


def _cell(row: dict[str, Any], per_text: int) -> dict[str, Any]:
    quality = row.get("quality")
    score_value = None if quality is None or quality != quality else round(float(quality), 4)
    chars = row.get("answer_chars")
    chars = 0 if chars is None or chars != chars else int(chars)
    answer = _text(row.get("answer")) or ""
    bodies = _text(row.get("bodies"))
    if bodies in _NOT_KEPT:  # a digest is not an answer
        answer, chars = f"(answer not logged: bodies = {bodies})", 0
    return {
        "answer": answer,
        "chars": chars,
        "cut": chars > per_text,
        "score": "" if score_value is None else f"{score_value:g}",
        "score_value": score_value,
        "cost": usd(row.get("cost_usd")),
        "latency": ms(row.get("latency_ms")),
        "status": _text(row.get("status")) or "unknown",
        "error": _text(row.get("error_type")),
    }


def _text(value: Any) -> str | None:
    return None if value is None or value != value else str(value)
