"""Frozen request and response types shared by every provider, the gateway and the call log.

A `ChatRequest` is provider-neutral: each provider codec turns it into its own wire format.
A `ChatResponse` is what every provider returns, normalised (finish reasons, token usage with
its details, latency broken into its parts), with the raw provider payload kept for debugging.
A `Score` is a scorer's verdict on one response (here, below the scorers, so that the call
log's store records scores without importing them).

Values with several fields of one type are built by keyword only (`ChatRequest` and `Score`
after their first two fields): ``Usage(input_tokens=10, output_tokens=5)``, never
``Usage(10, 5)``, so that no call can fill a neighbouring field by mistake.

Token counting follows the OpenTelemetry GenAI conventions: ``input_tokens`` counts *all*
input tokens, including those read from or written to the provider's prompt cache; the
cache counts are details inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from aigw_lab._frozen import fast_init
from aigw_lab.addressing import ALL_EXTRA_FIELDS, MAX_OUTPUT_TOKENS, check_extra, check_model_name
from aigw_lab.errors import InvalidRequestError

# Re-exported: gateway/records.py writes labels with LOG_JSON; tests compare the fast path.
from aigw_lab.request_json import LOG_JSON  # noqa: F401
from aigw_lab.request_json import REQUEST_JSON as _JSON
from aigw_lab.request_json import encode_labels as _encode_labels
from aigw_lab.request_json import plain_request_json as _plain_request_json

__all__ = [
    "Role",
    "FinishReason",
    "CacheStatus",
    "ContentPart",
    "Message",
    "ChatRequest",
    "Usage",
    "UNKNOWN_USAGE",
    "Latency",
    "ChatResponse",
    "TextDelta",
    "StreamEnd",
    "StreamEvent",
    "FINISH_REASONS",
    "Score",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))

#: Finish reasons normalised across providers.
#: ``stop``: natural end or a stop sequence; ``length``: max_tokens reached; ``tool_calls``:
#: the model asks for a tool; ``content_filter``: cut by the provider's filter; ``error``:
#: the provider reported an error mid-answer; ``unknown``: the provider sent something else
#: (the original value stays in the raw payload).
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "unknown"]
FINISH_REASONS: frozenset[str] = frozenset(
    ("stop", "length", "tool_calls", "content_filter", "error", "unknown")
)

#: ``miss``: looked up, not found; ``hit``: served from a cache; ``bypass``: the cache was
#: skipped on purpose; ``none``: no cache configured; ``upstream_hit``: the provider or an
#: upstream gateway (Cloudflare AI Gateway) says it served from its cache.
CacheStatus = Literal["none", "miss", "hit", "bypass", "upstream_hit"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One part of a multi-part message: ``type`` is ``"text"`` or a provider part type
    (``"image_url"``, ``"image"``, ...); non-text parts keep their payload in ``data``."""

    type: str
    text: str | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def to_dict(self) -> dict[str, Any]:
        if self.type == "text":
            return {"type": "text", "text": self.text or ""}
        return {"type": self.type, **dict(self.data)}


@fast_init
@dataclass(frozen=True, slots=True)
class Message:
    """A chat message. ``content`` is plain text or a tuple of `ContentPart`.

    ``tool_calls`` (assistant) and ``tool_call_id`` (tool) pass tool use through in the
    OpenAI shape: ``{"id", "type": "function", "function": {"name", "arguments"}}``.
    """

    role: Role
    content: str | tuple[ContentPart, ...]
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] | None = None

    @property
    def text(self) -> str:
        """The message's text, with the text parts of a multi-part message joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")

    def to_dict(self) -> dict[str, Any]:
        """The message in the neutral (OpenAI-shaped) JSON form used by the call log."""
        if (
            type(self.content) is str
            and self.name is None
            and self.tool_call_id is None
            and self.tool_calls is None
        ):
            return {"role": self.role, "content": self.content}  # the common case, kept cheap
        out: dict[str, Any] = {"role": self.role}
        out["content"] = (
            self.content if isinstance(self.content, str) else [p.to_dict() for p in self.content]
        )
        if self.name is not None:
            out["name"] = self.name
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.tool_calls is not None:
            out["tool_calls"] = [dict(tc) for tc in self.tool_calls]
        return out

    @classmethod
    def coerce(cls, value: Message | Mapping[str, Any], index: int = 0) -> Message:
        """Build a Message from a Message or an OpenAI-style dict; clear error if malformed."""
        if isinstance(value, Message):
            return value
        if type(value) is dict and len(value) == 2:
            # The common case, {"role": ..., "content": "text"}, without the general checks.
            role = value.get("role")
            content = value.get("content")
            if type(content) is str and role in ROLES:
                return cls(role, content)
        if not isinstance(value, Mapping):
            raise InvalidRequestError(
                f"message {index} is a {type(value).__name__}, not a message",
                hint='pass messages as dicts like {"role": "user", "content": "Hello"}',
            )
        role = value.get("role")
        if role not in ROLES:
            raise InvalidRequestError(
                f"message {index} has role {role!r}",
                hint=f"use one of {sorted(ROLES)}",
            )
        content = value.get("content")
        if content is None and role == "assistant" and value.get("tool_calls"):
            content = ""
        if isinstance(content, str):
            parts: str | tuple[ContentPart, ...] = content
        elif isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
            parts = tuple(_coerce_part(p, index, j) for j, p in enumerate(content))
        else:
            raise InvalidRequestError(
                f"message {index} ({role}) has content of type {type(content).__name__}",
                hint="content must be a string or a list of parts like "
                '{"type": "text", "text": "..."}',
            )
        tool_calls = value.get("tool_calls")
        return cls(
            role=role,
            content=parts,
            name=value.get("name"),
            tool_call_id=value.get("tool_call_id"),
            tool_calls=tuple(tool_calls) if tool_calls else None,
        )


def _coerce_part(part: Any, index: int, j: int) -> ContentPart:
    if isinstance(part, ContentPart):
        return part
    if isinstance(part, str):
        return ContentPart("text", part)
    if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
        raise InvalidRequestError(
            f"message {index}, part {j} is not a content part",
            hint='use {"type": "text", "text": "..."} or a provider part with a "type" key',
        )
    if part["type"] == "text":
        if not isinstance(part.get("text"), str):
            raise InvalidRequestError(
                f"message {index}, part {j} is a text part without a string 'text'",
                hint='write {"type": "text", "text": "..."}',
            )
        return ContentPart("text", part["text"])
    data = {k: v for k, v in part.items() if k != "type"}
    return ContentPart(part["type"], None, MappingProxyType(data))


@fast_init
@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A provider-neutral chat completion request.

    ``model`` is either ``"provider/model"`` (resolved by a `Gateway`) or a bare model name
    (when calling a provider directly), in the characters `aigw_lab.addressing` allows.
    ``extra`` passes provider-specific body fields through unchanged (for example
    ``{"top_k": 40}``), only those of the target format's allowlist
    (`aigw_lab.addressing.EXTRA_FIELDS`); they are part of the request's identity.
    ``user`` and ``tenant`` identify who the call is for (logged, used by limits and caches);
    ``tags`` and ``metadata`` are free-form labels that go to the log.
    """

    model: str
    messages: tuple[Message, ...]
    # The rest by name only: neighbours share types (temperature/top_p, user/tenant), so a
    # positional call that skipped one would put values in the wrong fields silently.
    _: KW_ONLY
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    tools: tuple[Mapping[str, Any], ...] | None = None
    tool_choice: Any = None
    user: str | None = None
    tenant: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    experiment_id: str | None = None
    timeout: float | None = None
    # `labels_json`'s text. Not a constructor argument: `replace` (which may change the
    # labels) leaves the copy without it.
    _labels_json: tuple[str | None, str | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def create(
        cls,
        model: str,
        messages: str | Iterable[Message | Mapping[str, Any]],
        *,
        system: str | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tags: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatRequest:
        """Build and validate a request from friendly Python values.

        ``messages`` may be a prompt string (one user message) or a list of dicts/Messages;
        ``system`` prepends a system message.
        """
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequestError(
                f"model must be a non-empty string, got {model!r}",
                hint='address models as "provider/model", e.g. "sim/sim-small"',
            )
        check_model_name(model)
        if extra:
            # Fields no wire format passes through (token limits, stream options, n...)
            # are refused here, before any budget or limit sees the request.
            check_extra(extra, ALL_EXTRA_FIELDS, where="any provider (extra)")
        if isinstance(messages, str):
            msgs: list[Message] = [Message("user", messages)]
        else:
            try:
                items = list(messages)
            except TypeError:
                raise InvalidRequestError(
                    f"messages is a {type(messages).__name__}",
                    hint="pass a prompt string or a list of message dicts",
                ) from None
            msgs = [Message.coerce(m, i) for i, m in enumerate(items)]
        if system is not None:
            msgs.insert(0, Message("system", system))
        if not msgs:
            raise InvalidRequestError("messages is empty", hint="pass at least one user message")
        unknown = set(params) - _SCALAR_PARAMS
        if unknown:
            raise InvalidRequestError(
                f"unknown request parameter(s): {', '.join(sorted(unknown))}",
                hint="provider-specific fields go in extra={...}; known parameters are "
                + ", ".join(sorted(_SCALAR_PARAMS)),
            )
        if isinstance(stop, str):
            stop = (stop,)
        req = cls(
            model=model,
            messages=tuple(msgs),
            stop=tuple(stop) if stop else None,
            tools=tuple(tools) if tools else None,
            tags=MappingProxyType(dict(tags)) if tags else _EMPTY,
            metadata=MappingProxyType(dict(metadata)) if metadata else _EMPTY,
            extra=MappingProxyType(dict(extra)) if extra else _EMPTY,
            **params,
        )
        if tags or metadata:
            # Labels are written to the log after the upstream answered; one the log cannot
            # encode (a cycle, nesting past the recursion limit) would then lose a paid call's
            # row, so it is refused here, before anything is sent. The text is kept.
            req.labels_json()
        req.validate()
        return req

    def labels_json(self) -> tuple[str | None, str | None]:
        """``(tags, metadata)`` as the call log's JSON text (None when empty), for the spool's
        start frame and the row: encoded once per request, by `create` (the labels as they
        were then) or at the first call."""
        found = self._labels_json
        if found is None:
            tags, metadata = self.tags, self.metadata
            found = (
                _encode_labels("tags", tags) if tags else None,
                _encode_labels("metadata", metadata) if metadata else None,
            )
            object.__setattr__(self, "_labels_json", found)  # a cache: any thread may fill it
        return found

    def validate(self) -> None:
        """Check value ranges; raises `InvalidRequestError` naming the bad field."""
        if self.temperature is not None and not (0.0 <= self.temperature <= 2.0):
            raise InvalidRequestError(
                f"temperature={self.temperature} is out of range", hint="use 0.0 to 2.0"
            )
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise InvalidRequestError(f"top_p={self.top_p} is out of range", hint="use (0, 1]")
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or not 1 <= self.max_tokens <= MAX_OUTPUT_TOKENS
        ):
            raise InvalidRequestError(
                f"max_tokens={_short_repr(self.max_tokens)} is invalid",
                hint=f"use a positive integer of at most {MAX_OUTPUT_TOKENS:,}",
            )

    @property
    def provider_name(self) -> str | None:
        """The provider part of a ``provider/model`` address, if any."""
        head, sep, _ = self.model.partition("/")
        return head if sep else None

    @property
    def system_text(self) -> str | None:
        """All system messages' text joined, for APIs with a top-level system prompt."""
        texts = [m.text for m in self.messages if m.role == "system"]
        return "\n\n".join(texts) if texts else None

    def params_dict(self) -> dict[str, Any]:
        """The generation parameters that are set, in neutral names."""
        out: dict[str, Any] = {}
        for name in ("temperature", "top_p", "max_tokens", "seed", "tool_choice"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.stop:
            out["stop"] = list(self.stop)
        if self.tools:
            out["tools"] = [dict(t) for t in self.tools]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The whole request as JSON-ready data (the form stored in the call log)."""
        out: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in self.messages],
        }
        out.update(self.params_dict())
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    def to_json(self) -> str:
        """`to_dict` as compact JSON text (the call log's ``request_json``).

        The common request (text messages, numeric parameters, no tools or extras) is
        written directly, without building the dict and running the encoder: it is on the
        calling thread of every logged call, where this costs a fifth of the encoder's time.
        Anything else goes through the encoder; the text is the same either way (tested).
        """
        return _plain_request_json(self) or _JSON.encode(self.to_dict())


def _short_repr(value: Any) -> str:
    """``repr(value)`` for an error message, safe for integers too long to print."""
    if isinstance(value, int) and not -(10**18) < value < 10**18:
        return f"<an integer of {value.bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_SCALAR_PARAMS = frozenset(
    (
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "tool_choice",
        "user",
        "tenant",
        "experiment_id",
        "timeout",
    )
)


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token usage. ``input_tokens`` includes cached input (read and written);
    ``reasoning_tokens`` is part of ``output_tokens``.

    ``known`` is False when the provider did not report the usage (a stream without its
    usage chunk, an answer without ``usage``): the counts are then 0 but mean "unknown",
    so the call is logged with cost NULL and budgets charge it at its estimate
    (`UNKNOWN_USAGE` is that value)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    known: bool = True

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            known=self.known and other.known,
        )


#: The usage of an answer whose provider reported none.
UNKNOWN_USAGE = Usage(known=False)


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Where the time of a call went, in milliseconds.

    ``ttfb_ms``: request sent to first response byte (headers); ``ttft_ms``: to the first
    text token (streaming), or equal to total for a non-streamed answer; ``total_ms``: the
    whole call as the caller saw it; ``upstream_ms``: time spent waiting on the provider;
    ``overhead_ms``: the gateway's own share, total minus upstream.
    """

    total_ms: float = 0.0
    ttfb_ms: float | None = None
    ttft_ms: float | None = None
    upstream_ms: float | None = None

    @property
    def overhead_ms(self) -> float | None:
        if self.upstream_ms is None:
            return None
        return max(0.0, self.total_ms - self.upstream_ms)


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatResponse:
    """A normalised chat completion.

    ``cost_usd`` is None when the price of the model is unknown (never a made-up number).
    ``simulated`` is True for answers from the simulated fleet or a test double.
    ``call_id`` is this attempt's row in the call log and ``trace_id`` the logical call's
    (shared by its retries and fallbacks); both are set by the gateway.
    """

    text: str
    finish_reason: FinishReason
    usage: Usage
    provider: str
    model: str
    latency: Latency = Latency()
    cost_usd: float | None = None
    cache_status: CacheStatus = "none"
    attempts: int = 1
    response_id: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    raw: Any = field(default=None, repr=False)  # the provider's payload: long, kept out of repr
    simulated: bool = False
    call_id: str | None = None
    trace_id: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of streamed text."""

    text: str


@fast_init
@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of a stream: the whole response, usage included."""

    response: ChatResponse


StreamEvent = TextDelta | StreamEnd


@dataclass(frozen=True, slots=True)
class Score:
    """One scorer's verdict on one response.

    ``label`` is a short categorical verdict when there is one (``"correct"``, ``"A"``,
    ``"invalid_json"``); ``comment`` free text (a judge's rationale); ``details`` anything else
    worth keeping (JSON-serialisable). ``judge_trace_id`` links an LLM judge's own logged
    calls. ``kind`` is where the score came from: ``"scorer"``, ``"judge"``, ``"recorded"``
    or ``"feedback"``.
    """

    scorer: str
    value: float | None
    # The rest by name only: label, comment and judge_trace_id are all optional strings, so
    # a positional call that skipped one would shift the others silently.
    _: KW_ONLY
    label: str | None = None
    comment: str | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    judge_trace_id: str | None = None
    kind: str = "scorer"
