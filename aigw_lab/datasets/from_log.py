"""Datasets from production: a filtered slice of the call log turned into a `Dataset`.

    golden = dataset_from_log(gateway.log, name="support-golden", model="sim-openai/sim-large",
                              feedback="up", since="2026-11-01")

Each distinct conversation among the matching calls becomes one item: the last user message
is the prompt, system messages the system prompt, earlier turns the history. Items are
deduplicated by conversation, and their ids are a hash of it, so the same slice of the log
always gives the same ids (experiments resume on them). With ``reference="response"`` the
logged answer becomes the reference: a "golden" set of answers production was happy with,
to check a cheaper model or a new prompt against.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.datasets.recorded import RecordedDataset
from aigw_lab.errors import ConfigError
from aigw_lab.store.experiment_frame import experiment_frame
from aigw_lab.types import Message

if TYPE_CHECKING:
    from aigw_lab.store.calllog import CallLog

__all__ = ["dataset_from_log", "conversation_id", "recorded_from_experiment", "as_utc"]

_SELECT = (
    'SELECT c.call_id, c.trace_id, c."timestamp", c.provider_name, c.request_model, '
    "c.request_json, c.response_text, c.tags_json FROM calls c"
)
# The latest feedback on each logical call, "up" when its value is at least one half.
_FEEDBACK = (
    "c.trace_id IN (SELECT trace_id FROM (SELECT trace_id, value, row_number() OVER "
    "(PARTITION BY trace_id ORDER BY created_at DESC, score_id DESC) AS latest "
    "FROM scores WHERE kind = 'feedback') WHERE latest = 1 AND value {op} 0.5)"
)
_ROLES = frozenset(("user", "assistant", "tool"))


def conversation_id(system: str | None, history: Sequence[Message], prompt: str) -> str:
    """A stable item id for a conversation: ``"log-"`` and 16 hex digits of its SHA-256."""
    payload = json.dumps(
        [system, [[m.role, m.text] for m in history], prompt], ensure_ascii=False
    ).encode()
    return "log-" + hashlib.sha256(payload).hexdigest()[:16]


def dataset_from_log(
    log: CallLog,
    *,
    name: str,
    model: str | None = None,
    provider: str | None = None,
    tags: Mapping[str, str] | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    experiment_id: str | None = None,
    feedback: Literal["up", "down"] | None = None,
    status: str | None = "ok",
    limit: int | None = None,
    reference: Literal["response"] | None = "response",
    category_tag: str = "category",
    include_judge: bool = False,
) -> Dataset:
    """The prompts of the logged calls matching every given filter, as a `Dataset`.

    ``model`` is ``"provider/model"`` or a bare model name; ``tags`` must all match the
    call's tags; ``since`` (inclusive) and ``until`` (exclusive) bound the call's start time
    (a naive datetime or ISO string is UTC); ``feedback`` keeps calls whose latest feedback
    (`aigw_lab.store.scores.record_feedback`) is thumbs up (value >= 0.5) or down;
    ``status`` is the call row's status (None: any). ``limit`` caps the number of items.
    ``reference="response"`` makes the logged answer (the latest one, for a repeated
    conversation) the reference; None leaves references empty. An item's category is the
    call's ``category_tag`` tag, if any. An LLM judge's own calls are left out unless
    ``include_judge``. No match gives an empty dataset.
    """
    if reference not in ("response", None):
        raise ConfigError(
            f"reference={reference!r} is not supported",
            hint='use reference="response" (the logged answer) or None',
        )
    if feedback not in ("up", "down", None):
        raise ConfigError(f"feedback={feedback!r} is invalid", hint='use "up", "down" or None')
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit={limit!r} is invalid", hint="use a positive integer or None")
    conditions: list[str] = []
    params: list[Any] = []
    if status is not None:
        conditions.append("c.status = ?")
        params.append(status)
    if model is not None:
        conditions.append("(c.request_model = ? OR c.provider_name || '/' || c.request_model = ?)")
        params += [model, model]
    if provider is not None:
        conditions.append("c.provider_name = ?")
        params.append(provider)
    for key, value in (tags or {}).items():
        conditions.append("json_extract_string(c.tags_json, ?) = ?")
        params += [_json_path(key), str(value)]
    if not include_judge:
        conditions.append(
            "coalesce(json_extract_string(c.tags_json, '$.aigw_role'), '') <> 'judge'"
        )
    if since is not None:
        conditions.append('c."timestamp" >= ?')
        params.append(as_utc(since, "since"))
    if until is not None:
        conditions.append('c."timestamp" < ?')
        params.append(as_utc(until, "until"))
    if experiment_id is not None:
        conditions.append("c.experiment_id = ?")
        params.append(experiment_id)
    if feedback is not None:
        conditions.append(_FEEDBACK.format(op=">=" if feedback == "up" else "<"))
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    rows = log.execute(f'{_SELECT}{where} ORDER BY c."timestamp", c.call_id', params)

    items: dict[str, dict[str, Any]] = {}
    for call_id, trace_id, started, provider_name, request_model, request, answer, tag_json in rows:
        conversation = _conversation(request)
        if conversation is None:
            continue
        system, history, prompt = conversation
        item_id = conversation_id(system, history, prompt)
        seen = items.get(item_id)
        if seen is None:
            if limit is not None and len(items) >= limit:
                continue
            call_tags = json.loads(tag_json) if tag_json else {}
            category = call_tags.get(category_tag) if isinstance(call_tags, dict) else None
            seen = items[item_id] = {
                "id": item_id,
                "prompt": prompt,
                "system": system,
                "history": history,
                "category": category if isinstance(category, str) else None,
                "calls": 0,
            }
        # Later rows overwrite: the reference is the latest answer to the conversation.
        seen.update(
            reference=answer if reference == "response" else None,
            call_id=call_id,
            trace_id=trace_id,
            model=f"{provider_name}/{request_model}",
            timestamp=started.isoformat() if started is not None else None,
        )
        seen["calls"] += 1
    source = "calls:" + ",".join(
        f"{key}={value}"
        for key, value in (
            ("model", model),
            ("provider", provider),
            ("tags", json.dumps(dict(tags), sort_keys=True) if tags else None),
            ("since", since),
            ("until", until),
            ("experiment_id", experiment_id),
            ("feedback", feedback),
            ("status", status),
            ("limit", limit),
        )
        if value is not None
    )
    return Dataset(name, tuple(_item(record) for record in items.values()), source)


def _item(record: dict[str, Any]) -> DatasetItem:
    metadata = {key: record[key] for key in ("call_id", "trace_id", "model", "timestamp", "calls")}
    return DatasetItem(
        id=record["id"],
        prompt=record["prompt"],
        reference=record["reference"],
        category=record["category"],
        system=record["system"],
        history=tuple(record["history"]),
        metadata=MappingProxyType(metadata),
    )


def _conversation(request_json: str | None) -> tuple[str | None, list[Message], str] | None:
    """(system, earlier turns, prompt) of a logged request, or None when it has no user
    message with text (a malformed or tool-only request)."""
    try:
        request = json.loads(request_json) if request_json else None
    except ValueError:
        return None
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list):
        return None
    turns = [(m.get("role"), _text(m.get("content"))) for m in messages if isinstance(m, dict)]
    last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=None)
    if last_user is None or not turns[last_user][1]:
        return None
    systems = [text for role, text in turns[:last_user] if role == "system" and text]
    history = [Message(role, text) for role, text in turns[:last_user] if role in _ROLES]
    return ("\n\n".join(systems) or None), history, turns[last_user][1]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text") or ""
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _json_path(key: str) -> str:
    if not isinstance(key, str) or '"' in key or "\\" in key:
        raise ConfigError(
            f"tag name {key!r} cannot be filtered on",
            hint="tag names with quotes or backslashes are not supported as filters",
        )
    return f'$."{key}"'


def as_utc(value: datetime | str, what: str) -> datetime:
    """A time bound given as a datetime or an ISO string (``what`` names it in errors), as
    an aware datetime; a naive one is taken as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(
                f"{what}={value!r} is not an ISO date or time",
                hint='use e.g. "2026-11-01" or "2026-11-01T09:00:00+00:00"',
            ) from exc
    if not isinstance(value, datetime):
        raise ConfigError(
            f"{what} is a {type(value).__name__}", hint="pass a datetime or ISO string"
        )
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def recorded_from_experiment(
    log: CallLog,
    experiment_id: str,
    dataset: Dataset,
    *,
    scorer: str,
    score_scale: tuple[float, float] = (0.0, 1.0),
) -> RecordedDataset:
    """An experiment's logged outcomes as a `RecordedDataset`, so routers can be trained
    and evaluated on your own runs exactly as on the shared recordings.

    Each experiment *target* becomes a "model" of the recording (its label, which is already
    a gateway address or policy name). Per item and target: the mean score by ``scorer``
    over repetitions (units without that score, failed ones included, count as missing),
    the first ok answer as the output, and the mean logged tokens and cost (real usage and
    prices here, not estimates). ``dataset`` is the experiment's dataset, for the prompts.
    """
    frame = experiment_frame(log, experiment_id)
    column = f"score_{scorer}"
    if frame.empty:
        raise ConfigError(
            f"experiment {experiment_id!r} has no logged units in {log.path}",
            hint="check the experiment id (aigw_lab.analysis.experiments_frame lists them)",
        )
    if column not in frame.columns:
        known = sorted(c.removeprefix("score_") for c in frame.columns if c.startswith("score_"))
        raise ConfigError(
            f"experiment {experiment_id!r} has no scores by {scorer!r}",
            hint=f"use one of: {', '.join(known) or '(none: the experiment had no scorers)'}",
        )
    ok = frame["status"] == "ok"
    frame = frame.assign(output=frame["response_text"].where(ok))
    grouped = frame.groupby(["item_id", "target"], sort=False)
    outcomes = grouped.agg(
        output=("output", "first"),
        score=(column, "mean"),
        input_tokens=("input_tokens", "mean"),
        output_tokens=("output_tokens", "mean"),
        cost_usd=("cost_usd", "mean"),
    ).reset_index()
    outcomes = outcomes.rename(columns={"target": "model"})
    for name in ("input_tokens", "output_tokens"):
        outcomes[name] = outcomes[name].round().astype("Int64")
    kept = dataset.filter(ids=set(outcomes["item_id"]))
    return RecordedDataset.from_outputs(
        kept,
        outcomes,
        score_name=scorer,
        score_scale=score_scale,
        source=f"experiment {experiment_id} in {log.path}",
        prices={},
        models=list(dict.fromkeys(outcomes["model"])),
        notes="logged usage and cost (not estimates); targets are the recording's models",
    )
