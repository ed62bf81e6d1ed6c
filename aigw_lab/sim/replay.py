"""`ReplayProvider`: a provider that answers with what real models answered before, from a
`RecordedDataset` (published recordings with quality labels) or from a call log.

    rec = load_routellm("gsm8k")
    gw = Gateway(providers=[ReplayProvider(rec)], log="calls.duckdb")
    gw.chat("replay/gpt-4-1106-preview", rec.items[5].prompt)  # GPT-4's recorded answer

What is real: the output texts and their labels (``response.raw["recorded"]["score"]``), or,
from a call log, the logged responses with their usage and cost. What is not: latency (a
replay answers at once unless a ``latency_ms`` function is given) and, for recorded datasets,
token counts (estimates, ceil(characters / 4)) and so costs (estimated tokens times list
prices, applied by the gateway's normal pricing through `ReplayProvider.price_for`).

Unknown models and unknown prompts are typed errors (`UnknownModelError`,
`InvalidRequestError`) that the gateway logs like any failed call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.datasets.recordings import RECORDINGS, load_recording
from aigw_lab.errors import AigwError, ConfigError, InvalidRequestError, UnknownModelError
from aigw_lab.providers.base import Price, ProviderSpec
from aigw_lab.providers.base_provider import BaseProvider
from aigw_lab.store.calllog import open_readonly_snapshot
from aigw_lab.types import (
    ChatRequest,
    ChatResponse,
    Latency,
    Usage,
)

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset
    from aigw_lab.store import CallLog

__all__ = [
    "RECORDINGS",
    "ReplayProvider",
    "build_replay_provider",
    "load_recording",
    "replay_key",
]

# The request metadata key under which experiments pass their coordinates (item_id, ...):
# the same key as aigw_lab.gateway.records.EXPERIMENT_KEY, not imported so that this module
# does not pull in the gateway.
_EXPERIMENT_KEY = "aigw_experiment"
_PREVIEW_CHARS = 80


def _normalise(text: str) -> str:
    return " ".join(text.split())


def replay_key(request: ChatRequest) -> tuple[str, str]:
    """How a recorded-dataset replay matches a request to an item: the system prompt and
    the last user message, whitespace-normalised (case kept)."""
    last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
    return _normalise(request.system_text or ""), _normalise(last_user)


def _preview(request: ChatRequest) -> str:
    text = replay_key(request)[1]
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


@dataclass(frozen=True, slots=True)
class _Answer:
    """One replayable answer, whatever its source."""

    text: str
    usage: Usage
    cost_usd: float | None
    raw: Mapping[str, Any]
    simulated: bool
    response_id: str
    finish_reason: str = "stop"
    tool_calls: tuple[Mapping[str, Any], ...] | None = None


class _RecordedAnswers:
    """Answers from a `RecordedDataset`, matched by prompt (or by the experiment's item id)."""

    def __init__(self, recorded: RecordedDataset, placeholder: str | None) -> None:
        self.recorded = recorded
        self.placeholder = placeholder
        self.models = recorded.models
        self.simulated = False
        self._items = {item.id: item for item in recorded.items}
        self._by_key: dict[tuple[str, str], str] = {}
        for item in recorded.items:
            key = (_normalise(item.system or ""), _normalise(item.prompt))
            # Some sources repeat a prompt under several ids (MMLU, across subjects): the
            # first item in dataset order answers it, unless the experiment names its item.
            self._by_key.setdefault(key, item.id)

    def price_for(self, model: str) -> Price | None:
        return self.recorded.prices.get(model)

    def answer(self, provider: str, request: ChatRequest) -> _Answer:
        model = request.model
        if model not in self.models:
            raise UnknownModelError(
                f"{provider}: the recording {self.recorded.name!r} has no model {model!r}",
                hint=f"use one of: {', '.join(self.models)}",
            )
        key = replay_key(request)
        item_id = self._experiment_item(request, key) or self._by_key.get(key)
        if item_id is None:
            raise InvalidRequestError(
                f"no item of {self.recorded.name!r} has the prompt {_preview(request)!r}",
                provider=provider,
                model=model,
                hint="a replay only answers the recording's own prompts (system prompt and "
                "last user message, whitespace-normalised); send item.prompt of one of its items",
            )
        if not self.recorded.has_outcome(item_id, model):
            raise InvalidRequestError(
                f"the recording has no answer of {model!r} to item {item_id!r}",
                provider=provider,
                model=model,
                hint="use a model that answered this item (RecordedDataset.has_outcome)",
            )
        outcome = self.recorded.outcome(item_id, model)
        text = outcome.output if outcome.output is not None else self.placeholder
        if text is None:
            raise InvalidRequestError(
                f"the recording {self.recorded.name!r} kept only the label of {model!r} on "
                f"item {item_id!r}, not its output text",
                provider=provider,
                model=model,
                hint="pass ReplayProvider(..., placeholder='') to answer such items with a "
                "placeholder text (the recorded label is still in response.raw)",
            )
        # A model with a list price is priced by the gateway from the (estimated) usage;
        # otherwise the recording's own cost, if it has one (RouterBench's), is returned.
        cost = None if model in self.recorded.prices else outcome.cost_usd
        return _Answer(
            text=text,
            usage=Usage(
                input_tokens=outcome.input_tokens or 0, output_tokens=outcome.output_tokens or 0
            ),
            cost_usd=cost,
            raw={
                "recorded": {
                    "item_id": item_id,
                    "model": model,
                    "score": outcome.score,
                    "source": self.recorded.source,
                }
            },
            simulated=False,
            response_id=f"replay:{item_id}:{model}",
        )

    def _experiment_item(self, request: ChatRequest, key: tuple[str, str]) -> str | None:
        coordinates = request.metadata.get(_EXPERIMENT_KEY)
        item_id = coordinates.get("item_id") if isinstance(coordinates, Mapping) else None
        item = self._items.get(item_id) if isinstance(item_id, str) else None
        # Trusted only when the prompt is that item's: a stale id must not answer another one.
        if item is not None and key == (_normalise(item.system or ""), _normalise(item.prompt)):
            return item.id
        return None


def _identity(request_json: str) -> str | None:
    """A request's identity for call-log replay: its logged JSON without the model (the
    messages and every output-affecting parameter), keys sorted. None for a row logged
    without its request (``[log] bodies = "hash"``: a digest string, not an object)."""
    data = json.loads(request_json)
    if not isinstance(data, dict):
        return None
    data.pop("model", None)
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


_LOG_FIELDS = (
    "provider_name",
    "request_model",
    "request_json",
    "response_text",
    "finish_reason",
    "tool_calls_json",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "cost_usd",
    "simulated",
    "call_id",
    "trace_id",
)


class _LoggedAnswers:
    """Answers from the ok rows of a call log, keyed by model and request identity."""

    def __init__(self, rows: list[tuple[Any, ...]], source: str, by_provider: bool) -> None:
        self.source = source
        self._answers: dict[str, dict[str, _Answer]] = {}
        all_simulated = bool(rows)
        for row in rows:  # oldest first: a later identical request's answer wins
            call = dict(zip(_LOG_FIELDS, row, strict=True))
            provider, model = call["provider_name"], call["request_model"]
            key = f"{provider}/{model}" if by_provider else model
            cost = call["cost_usd"]
            tool_calls = call["tool_calls_json"]
            identity = _identity(call["request_json"])
            if identity is None:
                continue  # hashed body: nothing to match a request against
            all_simulated = all_simulated and bool(call["simulated"])
            self._answers.setdefault(key, {})[identity] = _Answer(
                text=call["response_text"] or "",
                usage=Usage(
                    input_tokens=call["input_tokens"] or 0,
                    output_tokens=call["output_tokens"] or 0,
                    cache_read_tokens=call["cache_read_input_tokens"] or 0,
                    cache_write_tokens=call["cache_creation_input_tokens"] or 0,
                    reasoning_tokens=call["reasoning_tokens"] or 0,
                ),
                cost_usd=None if cost is None or cost != cost else float(cost),
                raw={
                    "replayed": {
                        "call_id": call["call_id"],
                        "trace_id": call["trace_id"],
                        "provider": provider,
                        "model": model,
                        "source": source,
                    }
                },
                simulated=bool(call["simulated"]),
                response_id=f"replay:{call['call_id']}",
                finish_reason=call["finish_reason"] or "stop",
                tool_calls=tuple(json.loads(tool_calls)) if tool_calls else None,
            )
        self.models = tuple(self._answers)
        self.simulated = all_simulated

    def price_for(self, model: str) -> Price | None:
        return None  # each answer carries the cost that was logged for it

    def answer(self, provider: str, request: ChatRequest) -> _Answer:
        logged = self._answers.get(request.model)
        if logged is None:
            raise UnknownModelError(
                f"{provider}: the call log {self.source} has no ok calls of {request.model!r}",
                hint="use one of: " + (", ".join(self.models) or "(the log has no ok calls)"),
            )
        found = logged.get(_identity(request.to_json()))
        if found is None:
            raise InvalidRequestError(
                f"no earlier identical request to {request.model!r} was answered in "
                f"{self.source} (last user message {_preview(request)!r})",
                provider=provider,
                model=request.model,
                hint="a call-log replay answers only requests logged before with the same "
                "messages and output-affecting parameters (temperature, top_p, max_tokens, "
                f"stop, seed, tools, extra); {len(logged)} distinct requests are logged for "
                "this model",
            )
        return found


class ReplayProvider(BaseProvider):
    """A `Provider` answering from recorded real outputs (see the module docstring).

    Build it from a `RecordedDataset` (``ReplayProvider(recorded)``) or from a call log
    (`from_call_log`). ``latency_ms(request)`` gives a delay in milliseconds to wait before
    answering (default: none; replayed latency is never a measurement); ``sleep`` and
    ``async_sleep`` are injectable for tests. ``placeholder`` answers the items whose
    recording kept only a label (RouteLLM MMLU); without it they are an error.

    It writes only ``chat`` and ``achat``: `BaseProvider` streams their answer in word-sized
    pieces (after any ``latency_ms`` delay) and releases nothing on close.
    """

    def __init__(
        self,
        recorded: RecordedDataset,
        *,
        name: str = "replay",
        latency_ms: Callable[[ChatRequest], float] | None = None,
        placeholder: str | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        async_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._init(_RecordedAnswers(recorded, placeholder), name, latency_ms, sleep, async_sleep)

    def _init(
        self,
        answers: _RecordedAnswers | _LoggedAnswers,
        name: str,
        latency_ms: Callable[[ChatRequest], float] | None,
        sleep: Callable[[float], Any],
        async_sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        self.name = name
        self._answers = answers
        #: The model names this replay answers (the gateway checks requests against them).
        self.models: tuple[str, ...] = answers.models
        #: False for recorded real outputs; for a call log, True only if every logged
        #: answer was simulated.
        self.simulated = answers.simulated
        self._latency_ms = latency_ms
        self._sleep = sleep
        self._async_sleep = async_sleep

    @classmethod
    def from_call_log(
        cls,
        log: str | Path | CallLog,
        *,
        provider: str | None = None,
        name: str = "replay",
        latency_ms: Callable[[ChatRequest], float] | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        async_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> ReplayProvider:
        """A replay of a call log (a `CallLog` or the path of a ``.duckdb`` file, read from a
        snapshot copy so a running writer is not disturbed): a request gets the logged ok
        answer of an earlier identical request (the latest, if several), with its logged
        usage and cost. Cache hits (attempt 0) are not replayed.

        Models are named ``"<provider>/<model>"`` as logged (call
        ``"replay/sim-openai/sim-small"``), or by the bare model name when ``provider``
        restricts the replay to one provider's calls.
        """
        sql = (
            f"SELECT {', '.join(_LOG_FIELDS)} FROM calls WHERE status = 'ok' AND attempt >= 1 "
            "AND request_json IS NOT NULL"
            # Rows cut to [log] max_body_chars hold a JSON string there: not replayable.
            " AND json_type(request_json) = 'OBJECT'"
            " AND (tool_calls_json IS NULL OR json_type(tool_calls_json) = 'ARRAY')"
            + (" AND provider_name = ?" if provider is not None else "")
            + " ORDER BY timestamp, call_id"
        )
        params = [provider] if provider is not None else None
        if isinstance(log, (str, Path)):
            source = str(log)
            conn = open_readonly_snapshot(log)
            try:
                rows = conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        else:
            source = str(log.path)
            rows = log.execute(sql, params)
        replay = cls.__new__(cls)
        replay._init(
            _LoggedAnswers(rows, source, provider is None), name, latency_ms, sleep, async_sleep
        )
        return replay

    def __repr__(self) -> str:
        return f"ReplayProvider({self.name!r}, {len(self.models)} models)"

    def price_for(self, model: str) -> Price | None:
        """The model's list price (recorded datasets), for the gateway's price book."""
        return self._answers.price_for(model)

    def replayed_usage(self, request: ChatRequest) -> tuple[Usage, float | None] | None:
        """The usage of the answer this replay would give ``request`` and the cost it
        states (None: the gateway prices the usage), or None when it has no answer to it.
        For cost estimates: nothing is sent, waited for or logged."""
        try:
            answer = self._answers.answer(self.name, request)
        except AigwError:
            return None
        return answer.usage, answer.cost_usd

    # --- answering ------------------------------------------------------------------------

    def _response(self, request: ChatRequest, answer: _Answer, waited_ms: float) -> ChatResponse:
        return ChatResponse(
            text=answer.text,
            finish_reason=answer.finish_reason,  # type: ignore[arg-type]
            usage=answer.usage,
            provider=self.name,
            model=request.model,
            latency=Latency(total_ms=waited_ms, upstream_ms=waited_ms),
            cost_usd=answer.cost_usd,
            response_id=answer.response_id,
            tool_calls=answer.tool_calls,
            raw=answer.raw,
            simulated=answer.simulated,
        )

    def _delay_ms(self, request: ChatRequest) -> float:
        return float(self._latency_ms(request)) if self._latency_ms is not None else 0.0

    def chat(self, request: ChatRequest) -> ChatResponse:
        answer = self._answers.answer(self.name, request)
        delay = self._delay_ms(request)
        if delay > 0:
            self._sleep(delay / 1000.0)
        return self._response(request, answer, delay)

    async def achat(self, request: ChatRequest) -> ChatResponse:
        answer = self._answers.answer(self.name, request)
        delay = self._delay_ms(request)
        if delay > 0:
            await self._async_sleep(delay / 1000.0)
        return self._response(request, answer, delay)


def build_replay_provider(spec: ProviderSpec) -> ReplayProvider:
    """The replay a ``kind = "replay"`` provider spec describes: ``options.recorded`` (a name
    in `RECORDINGS` or a RouterBench pickle) or ``options.call_log`` (a DuckDB call log)."""
    recorded = spec.options.get("recorded")
    call_log = spec.options.get("call_log")
    if (recorded is None) == (call_log is None):
        raise ConfigError(
            f"provider {spec.name!r}: a replay needs exactly one of recorded or call_log",
            hint='e.g. recorded = "arena_bench", or call_log = "earlier_run.duckdb"',
        )
    if call_log is not None:
        return ReplayProvider.from_call_log(str(call_log), name=spec.name)
    return ReplayProvider(
        load_recording(str(recorded)),
        name=spec.name,
        placeholder=spec.options.get("placeholder"),
    )
