"""The one place where aigw_lab talks HTTP to a provider.

A provider adapter is two parts kept apart (as in pydantic-ai): a pure `Codec`
(`aigw_lab.providers.codec`) that knows a wire format and nothing about sockets, and
`HttpProvider`, which owns the exchange: URL and auth headers, timeouts, timing, and mapping
every httpx exception and every error status into `aigw_lab.errors` exactly once. The same
codec therefore serves a provider's own API and a Cloudflare AI Gateway in front of it; only
the base URL and headers change.

The exchanges themselves (chat, stream and send, each sync and async) are written once for
asyncio in `aigw_lab.providers._async.exchange`; the sync ones are generated from it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from importlib.util import find_spec
from types import MappingProxyType
from typing import Any

import httpx

from aigw_lab.addressing import check_url_path
from aigw_lab.errors import (
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    ProviderError,
    ProviderTimeoutError,
)
from aigw_lab.providers._async import exchange as _async_exchange
from aigw_lab.providers._sync import exchange as _sync_exchange
from aigw_lab.providers.base import HttpClients
from aigw_lab.providers.base_provider import BaseProvider
from aigw_lab.providers.codec import (
    ERROR_EXPLANATIONS,
    Codec,
    Decoded,
    ErrorDetail,
    UpstreamErrorEvent,
    WireFormatError,
    error_for_status,
    parse_retry_after,
)
from aigw_lab.providers.codecs import get_codec
from aigw_lab.providers.lean_direct import DirectRequest, RequestHead, direct_timeouts
from aigw_lab.providers.stream_run import DECODE_ERRORS
from aigw_lab.types import (
    CacheStatus,
    ChatRequest,
    ChatResponse,
    Latency,
)

__all__ = ["HttpProvider", "Codec", "get_codec", "error_for_status", "parse_retry_after"]

_EMPTY: Mapping[str, str] = MappingProxyType({})
#: `HttpProvider._heads` has no entry for a path yet (None is an entry: that path takes
#: httpx's client).
_NO_HEAD: Any = object()
#: How much of an error body an error keeps, for debugging.
MAX_ERROR_BODY = 2000


# --- the HTTP exchange --------------------------------------------------------------------

# Headers whose values are credentials, never echoed into errors: any "authorization"
# (including cf-aig-authorization), "api-key" (x-api-key), "token" or "secret" header, but
# not settings that merely contain "key" (cf-aig-cache-key).
_SECRET_HEADER = re.compile(r"authorization|api[-_]?key|token|secret", re.IGNORECASE)
_BEARER_PREFIX = "bearer "
# The JSON encoding httpx applies to json= bodies.
_JSON_BODY = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# Set by a Cloudflare AI Gateway: HIT when it answered from its cache.
_CACHE_STATUS_HEADER = "cf-aig-cache-status"
# Digits enough for an integer orjson cannot hold exactly (2**64 has 20), looked for in a
# body with every digit mapped to "0" (twenty "0" in a row: twenty digits in a row).
_DIGITS_ONLY = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 20
# Bounds the parsed-URL cache of a provider whose paths vary per model (Workers AI).
_MAX_CACHED_URLS = 256


class HttpProvider(BaseProvider):
    """A `Provider` that speaks one wire format (its `Codec`) over HTTP at ``base_url``.

    ``headers`` carry authentication and anything else every call needs (Cloudflare AI
    Gateway ``cf-aig-*`` headers); they never appear in errors. ``timeout`` is the read
    timeout in seconds (a request's own ``timeout`` overrides it), ``connect_timeout`` the
    time allowed to open a connection. The HTTP clients are shared and belong to their
    owner (a `Gateway`), so `close` leaves them open.
    """

    def __init__(
        self,
        name: str,
        codec: Codec,
        base_url: str,
        *,
        clients: HttpClients,
        headers: Mapping[str, str] = _EMPTY,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        simulated: bool = False,
    ) -> None:
        self.name = name
        self.codec = codec
        self.base_url = base_url.rstrip("/")
        self.simulated = simulated
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._clients = clients
        self._headers = {**codec.headers, **headers}
        self._default_timeout = httpx.Timeout(timeout, connect=connect_timeout).as_dict()
        self._secrets = _secret_values(self._headers)
        # Configured body headers win over the ones httpx derives; _build's fast path,
        # which sets them itself, is only for providers that configure none.
        self._encodes_json = not any(
            name.lower() in ("content-length", "content-type") for name in self._headers
        )
        # Parsed URLs by their text: httpx takes ~7 us to parse one, and a provider only
        # ever posts to a few URLs (one per model for Workers AI).
        self._urls: dict[str, httpx.URL] = {}
        # The direct path's request heads by URL (None: not for the direct path), and its
        # timeouts with the pool wait capped as HttpClients' request hook caps it.
        self._heads: dict[str, RequestHead | None] = {}
        self._loads = json_loads()
        self._pool_timeout = clients.pool.pool_timeout
        self._direct_timeout = direct_timeouts(self._default_timeout, self._pool_timeout)

    @property
    def api_format(self) -> str:
        return self.codec.api_format

    def __repr__(self) -> str:
        return f"HttpProvider({self.name!r}, {self.api_format!r}, {self.base_url!r})"

    # -- the Provider protocol, and other exchanges with the same provider (its batch API) --
    # One function per call mode, written once for asyncio (`_async/exchange.py`) with the
    # sync ones generated from it: taken here as methods, so no call pays an extra frame.

    chat = _sync_exchange.chat
    achat = _async_exchange.achat
    stream = _sync_exchange.stream
    astream = _async_exchange.astream
    send = _sync_exchange.send
    asend = _async_exchange.asend

    def malformed_error(
        self, request: ChatRequest, status: int | None, text: str, exc: Exception
    ) -> MalformedResponseError:
        """The error for an answer to ``request`` that does not follow the wire format."""
        return self._malformed(request, status, text, exc)

    def upstream_event_error(
        self, request: ChatRequest, event: UpstreamErrorEvent, text: str
    ) -> ProviderError:
        """The error for an error object the provider sent as (part of) an answer."""
        return self._event_error(request, event, text)

    def close(self) -> None:
        """Nothing to release: the HTTP clients belong to their `HttpClients` owner."""

    async def aclose(self) -> None:
        """Nothing to release: the HTTP clients belong to their `HttpClients` owner."""

    # -- shared steps ------------------------------------------------------------------------

    def _send_target(self, url: str) -> str:
        """The absolute URL of a `send` to ``url``, refused unless it lies under base_url."""
        path = url
        if url.startswith(("http://", "https://")):
            if not url.startswith(self.base_url + "/"):
                raise InvalidRequestError(
                    f"refusing to send {self.name!r}'s credentials to a URL outside its "
                    f"base_url {self.base_url!r}",
                    hint="use a path relative to the provider's base_url",
                )
            path = url[len(self.base_url) :]
        check_url_path(path, provider=self.name)
        return self.base_url + path

    def _build(
        self,
        client: httpx.Client | httpx.AsyncClient,
        request: ChatRequest,
        *,
        stream: bool,
        direct: bool = False,
    ) -> httpx.Request | DirectRequest:
        """The request for ``request``: with ``direct`` (the client runs over the lean
        transport) a `DirectRequest` for the transport itself when it can be one (no
        per-request headers, no configured body headers, an http(s) URL), else httpx's."""
        encoded = self.codec.encode(request, stream=stream)
        # The timeout goes in as httpx's own extension dict, which build_request would
        # otherwise rebuild from a Timeout on every call.
        timeout = (
            self._default_timeout
            if request.timeout is None
            else httpx.Timeout(request.timeout, connect=self.connect_timeout).as_dict()
        )
        path = encoded.path
        try:
            if direct and not encoded.headers and self._encodes_json:
                # A path with a head was checked by `_url` before its head was built.
                head = self._heads.get(path, _NO_HEAD)
                if head is _NO_HEAD:
                    head = self._head(client, path, self._url(path))
                if head is not None:
                    content = _JSON_BODY.encode(encoded.body).encode()
                    timeouts = (
                        self._direct_timeout
                        if request.timeout is None
                        else direct_timeouts(timeout, self._pool_timeout)
                    )
                    return head.request(content, timeouts)
            return self._build_request(client, self._url(path), encoded, timeout)
        except UnicodeEncodeError as exc:
            # A lone surrogate (U+D800-U+DFFF) in a message: no UTF-8 body can carry it.
            raise InvalidRequestError(
                "the request holds text that is not valid Unicode (a lone surrogate, "
                f"{exc.object[exc.start : exc.end]!r}); it cannot be sent",
                hint="remove or replace the character (text.encode('utf-8', 'replace') "
                "shows where it is)",
            ) from None

    def _build_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        url: httpx.URL,
        encoded: Any,
        timeout: Any,
    ) -> httpx.Request:
        if encoded.headers or not self._encodes_json:
            return client.build_request(
                "POST",
                url,
                json=encoded.body,
                headers={**self._headers, **encoded.headers},
                extensions={"timeout": timeout},
            )
        # The common case: encode the body here with one reused encoder (json= builds a
        # new one per call), giving the same bytes and the same two headers, in the same
        # order, that json= would add.
        content = _JSON_BODY.encode(encoded.body).encode()
        headers = {
            **self._headers,
            "Content-Length": str(len(content)),
            "Content-Type": "application/json",
        }
        return client.build_request(
            "POST", url, content=content, headers=headers, extensions={"timeout": timeout}
        )

    def _head(
        self, client: httpx.Client | httpx.AsyncClient, path: str, url: httpx.URL
    ) -> RequestHead | None:
        """The direct path's request head for ``url`` (at ``path``; built once per URL, as
        the client would write it), or None when that URL takes httpx's client: also when
        a header cannot be sent, so the client's transport raises that as it always did."""
        try:
            return self._heads[path]
        except KeyError:
            pass
        try:
            head = RequestHead.build(client.headers, url, self._headers)
        except httpx.LocalProtocolError:
            head = None
        if len(self._heads) < _MAX_CACHED_URLS:
            self._heads[path] = head
        return head

    def _url(self, path: str) -> httpx.URL:
        text = self.base_url + path
        url = self._urls.get(text)
        if url is None:
            # Checked once per distinct URL (then cached): whatever a codec built, no path
            # with a query, fragment, '%', dot segment or control character leaves here.
            check_url_path(path, provider=self.name)
            url = httpx.URL(text)
            if len(self._urls) < _MAX_CACHED_URLS:
                self._urls[text] = url
        return url

    def _complete(
        self,
        request: ChatRequest,
        response: httpx.Response,
        body: bytes,
        started: float,
        sent: float,
        headers_at: float,
    ) -> ChatResponse:
        finished = time.perf_counter()
        if response.status_code >= 400:
            raise self._status_error(request, response, body)
        payload = self._parse_json(request, response, body)
        decoded = self._decode(request, response, payload)
        total = (time.perf_counter() - started) * 1000.0
        latency = Latency(
            total_ms=total,
            ttfb_ms=(headers_at - sent) * 1000.0,
            ttft_ms=total,
            upstream_ms=(finished - sent) * 1000.0,
        )
        return self._response(request, response, decoded, latency)

    def _decode(self, request: ChatRequest, response: httpx.Response, payload: Any) -> Decoded:
        try:
            return self.codec.decode(payload, request)
        except UpstreamErrorEvent as event:
            raise self._event_error(request, event, response.text) from None
        except DECODE_ERRORS as exc:
            raise self._malformed(request, response.status_code, response.text, exc) from exc

    def _response(
        self, request: ChatRequest, response: httpx.Response, decoded: Decoded, latency: Latency
    ) -> ChatResponse:
        return ChatResponse(
            text=decoded.text,
            finish_reason=decoded.finish_reason,
            usage=decoded.usage,
            provider=self.name,  # provider
            model=decoded.model or request.model,
            latency=latency,
            cost_usd=None,  # cost_usd: priced by the gateway
            cache_status=_cache_status(response),
            attempts=1,  # attempts
            response_id=decoded.response_id,
            tool_calls=decoded.tool_calls,
            raw=decoded.raw,
            simulated=self.simulated,
        )

    def _parse_json(self, request: ChatRequest, response: httpx.Response, body: bytes) -> Any:
        try:
            return self._loads(body)
        except ValueError as exc:
            text = body.decode("utf-8", "replace")
            raise self._malformed(request, response.status_code, text, exc) from exc

    def _status_error(
        self, request: ChatRequest, response: httpx.Response, body: bytes
    ) -> ProviderError:
        text = body.decode("utf-8", "replace")
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = None
        detail = self.codec.parse_error(response.status_code, payload)
        if detail.message is None and payload is None and text.strip():
            detail = ErrorDetail(
                message=_first_line(text), error_class=detail.error_class, code=detail.code
            )
        return error_for_status(
            response.status_code,
            self._redact_detail(detail),
            provider=self.name,
            model=request.model,
            body=self._redact(text[:MAX_ERROR_BODY]),
            headers=response.headers,
        )

    def _event_error(
        self, request: ChatRequest, event: UpstreamErrorEvent, text: str
    ) -> ProviderError:
        detail = self.codec.parse_error(event.status, event.payload)
        return error_for_status(
            event.status,
            self._redact_detail(detail),
            provider=self.name,
            model=request.model,
            body=self._redact(text[:MAX_ERROR_BODY]),
        )

    def _malformed(
        self, request: ChatRequest, status: int | None, text: str, exc: Exception
    ) -> MalformedResponseError:
        reason = str(exc) if isinstance(exc, WireFormatError) else f"{type(exc).__name__}: {exc}"
        return MalformedResponseError(
            f"the answer does not follow the {self.api_format} format ({reason}) (retryable)",
            provider=self.name,
            model=request.model,
            status=status,
            body=self._redact(text[:MAX_ERROR_BODY]),
            hint=ERROR_EXPLANATIONS[MalformedResponseError][1],
        )

    def _transport_error(self, exc: httpx.HTTPError, request: ChatRequest) -> ProviderError:
        where = self.base_url
        if isinstance(exc, httpx.TimeoutException):
            phase = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "waiting for"
            return ProviderTimeoutError(
                f"timed out {phase} {where} (retryable)",
                provider=self.name,
                model=request.model,
                hint=ERROR_EXPLANATIONS[ProviderTimeoutError][1],
            )
        reason = self._redact(str(exc)) or type(exc).__name__
        return NetworkError(
            f"the connection to {where} failed (retryable): {reason}",
            provider=self.name,
            model=request.model,
            hint="check base_url and that the server is up and reachable",
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _redact_detail(self, detail: ErrorDetail) -> ErrorDetail:
        if detail.message is None or not self._secrets:
            return detail
        return ErrorDetail(
            message=self._redact(detail.message), error_class=detail.error_class, code=detail.code
        )


def json_loads(find: Callable[[str], Any] | None = None) -> Callable[[bytes], Any]:
    """The JSON parser of answers: orjson's when it is installed (the ``fast-serve``
    extra), handing what it refuses (NaN, integers beyond 64 bits, lone surrogates, UTF-16)
    to `json.loads`, so every body parses to the value `json.loads` gives and a body
    neither accepts is its `ValueError`; else `json.loads`. ``find`` is
    `importlib.util.find_spec` unless given."""
    if (find or find_spec)("orjson") is None:
        return json.loads
    # lazy: optional (the fast-serve extra); about 3x faster than json.loads on an answer
    import orjson

    loads, refused = orjson.loads, orjson.JSONDecodeError

    def parse(body: bytes) -> Any:
        # orjson reads an integer beyond 64 bits as a float: 20 digits in a row go to
        # json.loads (also inside a string, which only costs the faster parser). Found by
        # mapping every digit to "0" (a regex search cost more than orjson's parse).
        if _LONG_RUN in body.translate(_DIGITS_ONLY):
            return json.loads(body)
        try:
            return loads(body)
        except refused:
            return json.loads(body)

    return parse


def _cache_status(response: httpx.Response) -> CacheStatus:
    headers = response.headers
    # `in` first: on httpx.Headers a missing name costs `get` twice as much (a KeyError
    # raised inside), and most answers do not come through a Cloudflare AI Gateway.
    if _CACHE_STATUS_HEADER not in headers:
        return "none"
    status = headers.get(_CACHE_STATUS_HEADER)
    return "upstream_hit" if status is not None and status.upper() == "HIT" else "none"


def _secret_values(headers: Mapping[str, str]) -> tuple[str, ...]:
    secrets: list[str] = []
    for name, value in headers.items():
        if not value or _SECRET_HEADER.search(name) is None:
            continue
        secrets.append(value)
        if value.lower().startswith(_BEARER_PREFIX):
            token = value[len(_BEARER_PREFIX) :].strip()
            if token:
                secrets.append(token)
    # Longest first, so a bearer header is replaced whole before its token.
    return tuple(sorted(set(secrets), key=len, reverse=True))


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]
