"""The semantic cache's saved form and its answers' flat form: what `SemanticCache.save`
writes (``vectors.npy`` and ``entries.json``), what `SemanticCache.load` reads back, and the
tuple of plain values a stored answer is kept as (`answer_fields`, `answer_from_fields`),
shared by the JSON file and `MemorySemanticStore`'s in-memory table.

Split out of ``semantic_cache.py`` (which keeps the lookup and storing logic) for size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aigw_lab.errors import ConfigError, StoreError
from aigw_lab.types import ChatResponse, Latency, Usage

if TYPE_CHECKING:  # semantic_store imports this module (the answers' flat form)
    from aigw_lab.gateway.semantic_store import SemanticEntry

__all__ = ["FORMAT_VERSION", "answer_fields", "answer_from_fields", "save_entries", "read_saved"]

#: Bump when the partition recipe or the saved format changes: older saves then refuse to load.
FORMAT_VERSION = 1
# The answer fields a saved entry keeps: what a hit needs (as `stored_answer` keeps).
_SAVED_FIELDS = ("text", "finish_reason", "provider", "model", "cost_usd", "response_id")
# A saved entry's usage is a list in this order (the files' format, fixed when they were
# first written): named here, so reordering `Usage`'s fields cannot misread old files.
_SAVED_USAGE = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "known",
)
_NO_LATENCY = Latency()


def answer_fields(response: ChatResponse) -> tuple[Any, ...] | None:
    """``response`` as a tuple of plain values (str, numbers, None, and the tool calls as
    dicts): what `stored_answer` keeps. None when ``response`` carries more than that (a
    latency, a raw payload, call ids: not what a cache stores, so kept as the object), or
    when it is not a `ChatResponse` (a test's stand-in)."""
    r = response
    if (
        type(r) is not ChatResponse
        or r.raw is not None
        or r.latency != _NO_LATENCY
        or r.cache_status != "none"
        or r.attempts != 1
        or r.call_id is not None
        or r.trace_id is not None
    ):
        return None
    usage = r.usage
    tool_calls = tuple(dict(c) for c in r.tool_calls) if r.tool_calls is not None else None
    return (
        r.text,
        r.finish_reason,
        r.provider,
        r.model,
        r.cost_usd,
        r.response_id,
        tuple(getattr(usage, name) for name in _SAVED_USAGE),
        tool_calls,
        r.simulated,
    )


def answer_from_fields(fields: tuple[Any, ...]) -> ChatResponse:
    """The answer `answer_fields` flattened (equal to the one given)."""
    text, finish, provider, model, cost, response_id, usage, tool_calls, simulated = fields
    return ChatResponse(
        text=text,
        finish_reason=finish,
        usage=Usage(**dict(zip(_SAVED_USAGE, usage, strict=True))),
        provider=provider,
        model=model,
        cost_usd=cost,
        response_id=response_id,
        tool_calls=tool_calls,
        simulated=simulated,
    )


def save_entries(folder: Path, embedder: str, entries: list[SemanticEntry]) -> Path:
    """Write ``entries`` (made with the embedder named ``embedder``) to ``folder``, created
    if needed, through temporary files renamed into place."""
    meta = {
        "version": FORMAT_VERSION,
        "embedder": embedder,
        "dim": int(entries[0].vector.shape[0]) if entries else None,
        "entries": [_entry_to_json(e) for e in entries],
    }
    vectors = np.stack([e.vector for e in entries]) if entries else np.zeros((0, 0), np.float32)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash mid-save leaves the previous save readable.
        np.save(folder / "vectors.tmp.npy", vectors, allow_pickle=False)
        (folder / "entries.json.tmp").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(folder / "vectors.tmp.npy", folder / "vectors.npy")
        os.replace(folder / "entries.json.tmp", folder / "entries.json")
    except OSError as exc:
        raise StoreError(
            f"cannot save the semantic cache to {folder}: {exc}",
            hint="pass a writable directory",
        ) from exc
    return folder


def read_saved(
    folder: Path, embedder: str
) -> Iterator[tuple[str, str, np.ndarray, ChatResponse, float, float | None]]:
    """The entries `save_entries` wrote to ``folder`` as (partition, text, vector, answer,
    created, expires); a save made with another embedder or format is a `ConfigError`."""
    try:
        meta = json.loads((folder / "entries.json").read_text(encoding="utf-8"))
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"cannot load a semantic cache from {folder}: {exc}",
            hint="pass a directory written by SemanticCache.save",
        ) from exc
    if meta.get("version") != FORMAT_VERSION or meta.get("embedder") != embedder:
        raise ConfigError(
            f"the semantic cache in {folder} was saved with embedder "
            f"{meta.get('embedder')!r} (format {meta.get('version')}), not "
            f"{embedder!r} (format {FORMAT_VERSION})",
            hint="load it with the same embedder; vectors of different models do not compare",
        )
    for item, vector in zip(meta["entries"], vectors, strict=True):
        response = _response_from_json(item["response"])
        yield item["partition"], item["text"], vector, response, item["created"], item["expires"]


def _entry_to_json(entry: SemanticEntry) -> dict[str, Any]:
    r = entry.response
    response: dict[str, Any] = {name: getattr(r, name) for name in _SAVED_FIELDS}
    response["usage"] = [getattr(r.usage, name) for name in _SAVED_USAGE]
    response["tool_calls"] = [dict(c) for c in r.tool_calls] if r.tool_calls else None
    response["simulated"] = r.simulated
    return {
        "partition": entry.partition,
        "text": entry.text,
        "created": entry.created,
        "expires": entry.expires,
        "response": response,
    }


def _response_from_json(data: dict[str, Any]) -> ChatResponse:
    fields = {name: data[name] for name in _SAVED_FIELDS}
    tool_calls = data["tool_calls"]
    return ChatResponse(
        usage=Usage(**dict(zip(_SAVED_USAGE, data["usage"], strict=True))),
        tool_calls=tuple(tool_calls) if tool_calls else None,
        simulated=data["simulated"],
        **fields,
    )
