"""Where cache warming finds its prompts: a dataset's items, or the most frequent
conversations of a call log (with the answers the log already holds).

`aigw_lab.experiments.warming` plans and runs the warming; this module only reads. A
logged prompt is rebuilt as the request its call sent (messages, generation parameters,
``extra``, user and tenant), so the key the exact cache computes for it is the key a live
call computes; rows whose bodies the log did not keep in full (``[log] bodies``, or cut or
repaired text in ``flags``) are left out and counted, since their request is not the one
sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.datasets.bundled import bundled_dataset
from aigw_lab.datasets.from_log import as_utc
from aigw_lab.datasets.items import Dataset
from aigw_lab.datasets.recordings import load_recording
from aigw_lab.errors import AigwError, ConfigError
from aigw_lab.gateway.cache import cache_key
from aigw_lab.types import ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from aigw_lab.store import CallLog

__all__ = [
    "LoggedPrompt",
    "LogPrompts",
    "WARM_ROLE",
    "WARM_TAG",
    "load_dataset",
    "prompt_text",
    "top_prompts",
]

#: The tag every paid warming call carries (``tags_json``'s ``aigw_role``), so analysis can
#: tell warming calls apart, as the LLM judge's calls carry ``aigw_role = 'judge'``.
WARM_TAG = "aigw_role"
WARM_ROLE = "warm"

_NEVER = datetime.min.replace(tzinfo=UTC)
_PARAMS = ("temperature", "top_p", "max_tokens", "seed", "tool_choice", "stop", "tools", "extra")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedPrompt:
    """One distinct request of the log, as the live path keys it: ``request`` (with the
    bare model name), its target, how many ok calls asked it, when last, the log's latest
    upstream answer to it on that target (None: none kept), and the latest answer on any
    target (its text: a basis for estimating the output of a paid call)."""

    request: ChatRequest
    provider: str
    model: str
    key: str
    count: int
    last_seen: datetime | None
    answer: ChatResponse | None
    any_answer_text: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogPrompts:
    """The top prompts of a log, and what was read to find them: ``ok_rows`` ok live rows in
    the window, ``distinct`` distinct requests among them, ``skipped`` rows left out by
    reason (e.g. ``{"bodies not kept in full": 3}``)."""

    prompts: tuple[LoggedPrompt, ...]
    ok_rows: int
    distinct: int
    skipped: Mapping[str, int]


def load_dataset(reference: Dataset | str | os.PathLike[str]) -> Dataset:
    """A dataset from ``reference``: a `Dataset`, ``"bundled:NAME"`` or a bare bundled name,
    ``"recorded:NAME"`` (shared data), or the path of a ``.jsonl`` file."""
    if isinstance(reference, Dataset):
        return reference
    if isinstance(reference, os.PathLike):
        reference = os.fspath(reference)
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigError(
            f"dataset {reference!r} is not a dataset name or file",
            hint='pass "bundled:mixed_v1", "recorded:routellm/gsm8k" or a .jsonl path',
        )
    if reference.startswith("recorded:"):
        dataset = load_recording(reference.removeprefix("recorded:")).dataset
    elif reference.endswith(".jsonl"):
        dataset = Dataset.from_jsonl(Path(reference).expanduser())
    else:
        dataset = bundled_dataset(reference.removeprefix("bundled:") or None)
    if not dataset.items:
        raise ConfigError(
            f"dataset {reference!r} holds no items", hint="pass a dataset with prompts"
        )
    return dataset


# Rows whose request is not the one sent (its bodies redacted, hashed, dropped, cut or
# repaired), or keyed by the request's own cache key: counted, never used.
# Reason -> (the column it needs: older logs lack some, the clause).
_UNUSABLE = {
    "bodies not kept in full": ("bodies", "coalesce(bodies, 'full') <> 'full'"),
    "bodies cut or repaired (flags)": ("flags", "coalesce(len(flags), 0) > 0"),
    "own cache key (metadata cache.key)": (
        "metadata_json",
        "json_extract(metadata_json, '$.cache.key') IS NOT NULL",
    ),
}
# Not production traffic: the judge's calls, earlier warming, shadow copies.
_NOT_LIVE = "coalesce(json_extract_string(tags_json, '$.aigw_role'), '') NOT IN ('judge', 'warm')"
_ANSWER = """arg_max(struct_pack(text := response_text, finish := finish_reason,
    tools := tool_calls_json::VARCHAR, input := input_tokens, output := output_tokens,
    cache_read := cache_read_input_tokens, cache_write := cache_creation_input_tokens,
    reasoning := reasoning_tokens, cost := cost_usd, model := response_model,
    response_id := response_id, simulated := simulated, ts := "timestamp",
    provider := provider_name), "timestamp")"""
_UPSTREAM = (
    "attempt >= 1 AND coalesce(cache_status, 'none') <> 'hit' "
    "AND coalesce(finish_reason, '') NOT IN ('error', '') AND response_text IS NOT NULL"
)


def top_prompts(
    log: CallLog | Any,
    top: int,
    *,
    target: tuple[str, str] | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    tenant: str | None = None,
) -> LogPrompts:
    """The ``top`` most frequent distinct requests among the ok live rows of ``log`` (a
    `CallLog` or a DuckDB connection), most frequent first (ties: the most recent first).

    A request is identified as the exact cache identifies it: its conversation and
    parameters, its namespace (tenant, else user) and its target, which is the row's own
    unless ``target`` (provider, model) replaces it. So one tenant's prompt is counted, and
    later warmed, in that tenant's namespace only; ``tenant`` keeps that tenant's rows alone.
    ``since`` (inclusive) and ``until`` (exclusive) bound the call's start time.
    """
    columns = _columns(log)
    live = ["status = 'ok'", "request_json IS NOT NULL", _NOT_LIVE]
    params: list[Any] = []
    if "shadow_of" in columns:
        live.append("shadow_of IS NULL")
    for name, value, clause in (
        ("since", since, '"timestamp" >= ?'),
        ("until", until, '"timestamp" < ?'),
    ):
        if value is not None:
            live.append(clause)
            params.append(as_utc(value, name))
    if tenant is not None:
        live.append("tenant_id = ?")
        params.append(tenant)
    unusable = {
        reason: clause for reason, (column, clause) in _UNUSABLE.items() if column in columns
    }
    where = " AND ".join(live)
    counts = ", ".join(
        f'count(*) FILTER (WHERE {clause}) AS "{reason}"' for reason, clause in unusable.items()
    )
    totals = _rows(log, f"SELECT count(*){', ' + counts if counts else ''} FROM calls "
                   f"WHERE {where}", params)[0]  # fmt: skip
    usable = " AND ".join([where, *(f"NOT ({c})" for c in unusable.values())])
    grouped = _rows(
        log,
        f"""SELECT provider_name, request_model, request_json, tenant_id, user_id,
                   count(*), max("timestamp"),
                   {_ANSWER} FILTER (WHERE {_UPSTREAM}),
                   arg_max(response_text, "timestamp") FILTER (WHERE response_text IS NOT NULL)
            FROM calls WHERE {usable} GROUP BY ALL""",
        params,
    )
    skipped = {reason: n for reason, n in zip(unusable, totals[1:], strict=True) if n}
    merged: dict[str, dict[str, Any]] = {}
    for provider, model, request_json, tenant_id, user_id, n, last, answer, text in grouped:
        request = _request(request_json, model, tenant_id, user_id)
        if request is None:
            skipped["request not readable"] = skipped.get("request not readable", 0) + n
            continue
        to_provider, to_model = target if target is not None else (provider, model)
        key = cache_key(request, provider=to_provider, model=to_model)
        seen = merged.setdefault(
            key,
            {"request": request, "provider": to_provider, "model": to_model, "count": 0,
             "last": None, "answer": None, "answer_ts": None, "text": None, "text_ts": None},
        )  # fmt: skip
        seen["count"] += n
        if last is not None and (seen["last"] is None or last > seen["last"]):
            seen["last"] = last
            seen["text"] = text if text is not None else seen["text"]
        elif seen["text"] is None:
            seen["text"] = text
        own_target = (provider, model) == (to_provider, to_model)
        if own_target and answer is not None and _newer(answer["ts"], seen["answer_ts"]):
            seen["answer"], seen["answer_ts"] = answer, answer["ts"]
    # Most calls first, then the most recent, then the key (two stable sorts: cheaper than
    # a key of timestamps as numbers, which costs a time-zone conversion each).
    ranked = sorted(merged.items())
    ranked.sort(key=lambda kv: (kv[1]["count"], kv[1]["last"] or _NEVER), reverse=True)
    prompts = tuple(
        LoggedPrompt(
            request=seen["request"],
            provider=seen["provider"],
            model=seen["model"],
            key=key,
            count=seen["count"],
            last_seen=seen["last"],
            # Built for the chosen few only: a big log has tens of thousands of requests.
            answer=None if seen["answer"] is None else _response(seen["answer"], seen["model"]),
            any_answer_text=seen["text"],
        )
        for key, seen in ranked[:top]
    )
    return LogPrompts(
        prompts=prompts, ok_rows=int(totals[0]), distinct=len(merged), skipped=skipped
    )


def _columns(log: Any) -> set[str]:
    rows = _rows(
        log,
        # the log's own catalog: on a LogEngine, other logs' tables are listed too
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'calls' "
        "AND table_catalog = current_database() AND table_schema = current_schema()",
        [],
    )
    if not rows:
        raise ConfigError(
            "the call log has no calls table", hint="pass a .duckdb file a gateway logged to"
        )
    return {str(r[0]) for r in rows}


def _rows(log: Any, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` from a `CallLog` (its ``execute``) or a DuckDB connection."""
    if hasattr(log, "rows_written"):  # a CallLog: flushes its writer before reading
        return log.execute(sql, params)
    return log.execute(sql, params).fetchall()


def _request(
    request_json: str, model: str, tenant: str | None, user: str | None
) -> ChatRequest | None:
    """The request a logged call sent, rebuilt; None when the row's JSON is not one."""
    try:
        data = json.loads(request_json)
        messages = data["messages"]
        params = {name: data[name] for name in _PARAMS if data.get(name) is not None}
        return ChatRequest.create(model, messages, tenant=tenant, user=user, **params)
    except (AigwError, ValueError, TypeError, KeyError):
        return None


def _response(answer: Mapping[str, Any], model: str) -> ChatResponse:
    """A logged answer as the cache would have stored it."""
    known = answer["input"] is not None and answer["output"] is not None
    tools = json.loads(answer["tools"]) if answer["tools"] else None
    return ChatResponse(
        text=answer["text"],
        finish_reason=answer["finish"],
        usage=Usage(
            input_tokens=answer["input"] or 0,
            output_tokens=answer["output"] or 0,
            cache_read_tokens=answer["cache_read"] or 0,
            cache_write_tokens=answer["cache_write"] or 0,
            reasoning_tokens=answer["reasoning"] or 0,
            known=known,
        ),
        provider=answer["provider"],
        model=answer["model"] or model,
        cost_usd=answer["cost"],
        response_id=answer["response_id"],
        tool_calls=tuple(tools) if tools else None,
        simulated=bool(answer["simulated"]),
    )


def _newer(stamp: datetime | None, than: datetime | None) -> bool:
    return than is None or (stamp is not None and stamp > than)


def prompt_text(request: ChatRequest) -> str:
    """The last user turn of ``request`` (for display and estimates)."""
    users: Iterable[str] = (m.text for m in request.messages if m.role == "user")
    return next(reversed(list(users)), "") or request.messages[-1].text
