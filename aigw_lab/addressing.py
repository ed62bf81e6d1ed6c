"""What a caller may put where the gateway builds URLs, headers and upstream bodies.

Anything a client (an HTTP client of ``aigw-lab serve``) or a ``Gateway.chat`` caller sends
is checked here before it can reach a provider's URL, a header or a body field that decides
what is charged:

- model names (`check_model_name`): the characters `MODEL_NAME_CHARS` in ``/``-separated
  segments, none of them empty, ``.`` or ``..``; at most `MAX_MODEL_NAME_LENGTH` characters.
  So ``@cf/meta/llama-3.1-8b-instruct``, ``accounts/fireworks/models/x`` and
  ``meta-llama/Llama-3.1-8B-Instruct:free`` pass, and ``../../d1/database/ID/query``,
  ``m?x=1``, ``m#f``, ``m%2e``, names with whitespace or control characters do not: they are
  refused, never encoded, since any of them could change which endpoint a path names;
- fields passed through to a provider (`EXTRA_FIELDS`): a documented allowlist per wire
  format. Fields that decide what a call costs or how it is counted (token limits, ``n``,
  ``stream``, ``stream_options``, ``service_tier``...) are never passed through: the gateway
  sets them itself (see docs/serving.md, "What clients can and cannot change");
- per-request Cloudflare AI Gateway headers (`check_cf_aig_header`): a documented list of
  names, printable ASCII values.

This module is in the lowest layer (it imports only `aigw_lab.errors`), so `ChatRequest`
creation, the codecs and the transport all use the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from aigw_lab.errors import ConfigError, InvalidRequestError

__all__ = [
    "MODEL_NAME_CHARS",
    "MAX_MODEL_NAME_LENGTH",
    "MAX_OUTPUT_TOKENS",
    "EXTRA_FIELDS",
    "ALL_EXTRA_FIELDS",
    "CF_AIG_REQUEST_HEADERS",
    "check_model_name",
    "model_path",
    "check_path_segment",
    "check_extra",
    "check_cf_aig_header",
    "check_url_path",
]

#: The characters a model name (or a ``provider/model`` address) may use, as documented.
MODEL_NAME_CHARS = "letters A-Z a-z, digits 0-9, and . _ - : @ / (no .. segments)"
#: The longest model name or address accepted.
MAX_MODEL_NAME_LENGTH = 256
#: The largest ``max_tokens`` a request may ask for: no model answers with more, and it
#: bounds the budget's estimate (a client cannot overflow it with an absurd integer).
MAX_OUTPUT_TOKENS = 1_000_000

_MODEL = re.compile(r"[A-Za-z0-9._:@/-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_HEADER_NAME = re.compile(r"[a-z0-9-]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")

_OPENAI_FIELDS = frozenset(
    (
        "response_format", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs",
        "top_logprobs", "parallel_tool_calls", "reasoning_effort", "verbosity",
        "prompt_cache_key", "safety_identifier",
    )
)  # fmt: skip

#: Body fields a codec passes through from a request's ``extra``, per wire format. Anything
#: else in ``extra`` is an `InvalidRequestError` naming the field. Left out on purpose:
#: fields the gateway interprets (``model``, ``messages``, ``stream``, ``stream_options``,
#: ``max_tokens``, ``max_completion_tokens``, ``n``, ``service_tier``, ...), fields that add
#: charges the token usage does not show (``web_search_options``, ``audio``, ``modalities``,
#: ``mcp_servers``, ``container``) and fields that store data in the provider's account
#: (``store``, ``metadata``).
EXTRA_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "openai": _OPENAI_FIELDS,
        # OpenAI-compatible servers (vLLM, Ollama, Together...) and Workers AI's compatible
        # endpoint also read the common sampling extensions.
        "openai-compatible": _OPENAI_FIELDS | {"top_k", "min_p", "repetition_penalty"},
        "anthropic": frozenset(("top_k", "thinking")),
        "workers-ai": frozenset(
            (
                "top_k",
                "repetition_penalty",
                "frequency_penalty",
                "presence_penalty",
                "response_format",
            )
        ),
    }
)
#: Every field some wire format passes through: what ``ChatRequest.create`` accepts in
#: ``extra`` (the codec of the target then checks its own list).
ALL_EXTRA_FIELDS: frozenset[str] = frozenset().union(*EXTRA_FIELDS.values())

#: ``cf-aig-*`` headers a request may set through ``metadata["cf_aig"]`` (without the
#: prefix). Not among them: ``authorization`` (the gateway's credential) and
#: ``custom-cost`` (what Cloudflare counts for the call).
CF_AIG_REQUEST_HEADERS: frozenset[str] = frozenset(
    (
        "cache-ttl", "skip-cache", "cache-key", "metadata", "collect-log", "event-id",
        "request-timeout", "max-attempts", "retry-delay", "backoff",
    )
)  # fmt: skip
_MAX_HEADER_VALUE = 8192


def check_model_name(name: Any, *, what: str = "model") -> str:
    """``name`` if it is a well-formed model name or ``provider/model`` address, else an
    `InvalidRequestError` saying which rule it breaks and naming the allowed characters."""
    hint = f"model names use {MODEL_NAME_CHARS}, e.g. @cf/meta/llama-3.1-8b-instruct"
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"{what} must be a non-empty string, got {name!r}", hint=hint)
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise InvalidRequestError(
            f"{what} is {len(name)} characters long, more than {MAX_MODEL_NAME_LENGTH}",
            hint=hint,
        )
    if _MODEL.fullmatch(name) is None:
        bad = next(c for c in name if _MODEL.fullmatch(c) is None)
        raise InvalidRequestError(
            f"{what} {_shown(name)} contains the character {bad!r}, which model names "
            "cannot contain",
            hint=hint,
        )
    if name[0] not in "./" and name[-1] != "/" and "//" not in name and "/." not in name:
        return name  # no segment can be empty, "." or "..": the common case, decided fast
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidRequestError(
                f"{what} {_shown(name)} has an empty, '.' or '..' path segment", hint=hint
            )
    return name


def model_path(name: str) -> str:
    """``name`` checked and percent-encoded for use as the last segments of a URL path
    (its ``/`` stay separators, as Workers AI's ``/ai/run/@cf/...`` expects)."""
    return quote(check_model_name(name), safe="/@:")


def check_path_segment(value: Any, *, what: str) -> str:
    """A configured value that goes into a URL path as one segment (a Cloudflare account id,
    an AI Gateway id): letters, digits, ``.``, ``_``, ``-``; not ``.`` or ``..``."""
    if (
        not isinstance(value, str)
        or _SEGMENT.fullmatch(value) is None
        or value in (".", "..")
        or len(value) > MAX_MODEL_NAME_LENGTH
    ):
        raise ConfigError(
            f"{what} = {_shown(str(value))} cannot be used in a URL path",
            hint="use letters, digits, '.', '_' and '-' only (as Cloudflare shows it)",
        )
    return value


def check_extra(extra: Mapping[str, Any], allowed: Iterable[str], *, where: str) -> None:
    """Raise `InvalidRequestError` naming the first field of ``extra`` not in ``allowed``."""
    allowed = allowed if isinstance(allowed, frozenset) else frozenset(allowed)
    for key in extra:
        if key not in allowed:
            raise InvalidRequestError(
                f"the field {_shown(str(key))} is not passed to {where}",
                hint="fields passed through to this API: "
                + ", ".join(sorted(allowed))
                + " (see docs/serving.md, 'What clients can and cannot change')",
            )


def check_cf_aig_header(name: str, value: str, *, per_request: bool) -> None:
    """Check one ``cf-aig-*`` header: a lower-case token name (one of
    `CF_AIG_REQUEST_HEADERS` when ``per_request``) and a printable-ASCII value."""
    short = name.removeprefix("cf-aig-")
    if _HEADER_NAME.fullmatch(short) is None or (
        per_request and short not in CF_AIG_REQUEST_HEADERS
    ):
        allowed = ", ".join(sorted(CF_AIG_REQUEST_HEADERS))
        message = f"AI Gateway header {_shown(name)} cannot be set"
        if per_request:
            raise InvalidRequestError(message + " per request", hint=f"use one of {allowed}")
        raise ConfigError(message, hint="header names use a-z, 0-9 and '-'")
    if len(value) > _MAX_HEADER_VALUE or _PRINTABLE_ASCII.fullmatch(value) is None:
        message = (
            f"the value of AI Gateway header {name} is not printable ASCII of at most "
            f"{_MAX_HEADER_VALUE} characters"
        )
        hint = "drop control characters, line breaks and non-ASCII text from the value"
        if per_request:
            raise InvalidRequestError(message, hint=hint)
        raise ConfigError(message, hint=hint)


def check_url_path(path: str, *, provider: str) -> None:
    """The last line of defence before a request leaves: a URL path with a query, fragment,
    percent sign, dot segment, empty segment, backslash, whitespace or control character is
    refused (`InvalidRequestError`), whatever built it."""
    if "?" in path or "#" in path or "%" in path or _PRINTABLE_ASCII.fullmatch(path) is None:
        bad = True
    elif " " in path or "//" in path or "\\" in path:
        bad = True
    else:
        bad = any(segment in (".", "..") for segment in path.split("/"))
    if bad:
        raise InvalidRequestError(
            f"refusing to send a request for {provider!r} to the path {_shown(path)}",
            hint=f"model names use {MODEL_NAME_CHARS}",
        )


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short and with control characters escaped
    (it may come from a client and end up in a log line)."""
    return repr(text if len(text) <= 80 else text[:77] + "...")
