"""The HTTP gateway as a plain ASGI application: `GatewayApp`.

Routes (see docs/serving.md):

- ``POST /v1/chat/completions``: OpenAI Chat Completions, JSON or SSE;
- ``POST /v1/messages``: Anthropic Messages, JSON or SSE;
- ``GET /v1/models``: every model address and policy name, in OpenAI's list shape (in
  Anthropic's when the request has an ``anthropic-version`` header);
- ``GET /health``: ``{"status": "ok"}``, without authentication, for load balancers;
- ``GET /metrics``: Prometheus metrics when the gateway has a `MetricsSink` (``[metrics]``),
  with a gateway key unless ``[metrics] require_key = false``.

The request's ``model`` is passed to the `Gateway` unchanged: a ``provider/model`` address or
a routing policy's name; the gateway applies its caches, limits, fallbacks and policies and
logs the call with the calling key's tenant and user.

A streamed answer waits for its first text (or its end) before sending the response
headers, so a call refused before any text (a rate limit, a budget, an unknown model, an
upstream error after every fallback) still gets its proper HTTP status; an error after the
first text is an error event in the stream's own format.

Client input never makes a 5xx: the body is parsed by `safe_json.parse_body` (depth,
number bounds, UTF-8 and surrogates checked), read within ``limits.body_timeout`` (408
past it), and response headers never carry raw client bytes. Past
``limits.max_requests_in_flight`` a request is answered 503 with Retry-After. Anything
unexpected is logged and answered 500 in the caller's format (see docs/serving.md).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aigw_lab.errors import InvalidRequestError
from aigw_lab.gateway.metrics_sink import MetricsSink, find_metrics
from aigw_lab.server import anthropic_api, openai_api
from aigw_lab.server.auth import NEEDS_BODY, ClientIdentity, KeyRing
from aigw_lab.server.errors import (
    HttpError,
    anthropic_error,
    error_headers,
    http_error,
    log_unexpected,
    openai_error,
)
from aigw_lab.server.fast_json import json_encoder, stdlib_dumps
from aigw_lab.server.safe_json import parse_body
from aigw_lab.server_limits import ServerLimits
from aigw_lab.types import ChatRequest, ChatResponse

if TYPE_CHECKING:
    from aigw_lab.gateway.gateway import Gateway

__all__ = ["GatewayApp", "MAX_BODY_BYTES", "served_models"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Largest request body accepted by default (images travel inline as base64).
MAX_BODY_BYTES = ServerLimits().max_body_bytes

_JSON_TYPE = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]

# path -> (method, endpoint)
_ROUTES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "/v1/chat/completions": ("POST", "openai"),
        "/chat/completions": ("POST", "openai"),
        "/v1/messages": ("POST", "anthropic"),
        "/v1/models": ("GET", "models"),
        "/models": ("GET", "models"),
        "/health": ("GET", "health"),
        "/metrics": ("GET", "metrics"),
    }
)


class GatewayApp:
    """ASGI application serving one `Gateway` over HTTP.

    ``keys``: the gateway keys clients must present; ``None`` turns authentication off (the
    CLI allows that only with ``--no-auth``). ``close_gateway``: close the gateway (flushing
    its call log) when the server shuts down. ``limits``: timeouts and limits
    (`ServerLimits`; the app applies the body timeout, the body size and JSON depth limits
    and the cap on requests in flight; the server running it applies the others);
    ``max_body_bytes`` overrides ``limits.max_body_bytes``. ``metrics``: what ``/metrics``
    serves (default: the gateway's `MetricsSink` among its extra sinks, if any).
    ``on_started``: called once the lifespan startup (the warm-up) has succeeded, before the
    server accepts connections (``aigw-lab serve`` freezes the garbage collector's objects
    there; a library app leaves the process's GC alone).
    """

    def __init__(
        self,
        gateway: Gateway,
        keys: KeyRing | None,
        *,
        close_gateway: bool = False,
        max_body_bytes: int | None = None,
        limits: ServerLimits | None = None,
        trust_client_user: bool = False,
        metrics: MetricsSink | None = None,
        on_started: Callable[[], object] | None = None,
    ) -> None:
        self.gateway = gateway
        self.on_started = on_started
        self.metrics = metrics if metrics is not None else find_metrics(gateway.recorder.sinks)
        self.trust_client_user = trust_client_user
        self.keys = keys
        self.close_gateway = close_gateway
        self.limits = limits or ServerLimits()
        self.max_body_bytes = max_body_bytes or self.limits.max_body_bytes
        self.in_flight = 0  # requests being served (all on the server's one event loop)
        # orjson when installed (fast-serve): the answers' bodies, the hot path's encoding
        self._encode = json_encoder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._guarded(scope, receive, send)

    async def busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The answer when the server is at a limit: 503 with Retry-After, in the caller's
        format, closing the connection (the connection cap's ASGI app)."""
        if scope["type"] == "http":
            await _send_error(send, _api_of(scope), self._busy_error(), [_CLOSE])

    def _busy_error(self) -> HttpError:
        return HttpError(
            "busy",
            "the gateway is at its limit of connections or requests in flight; retry after "
            "the Retry-After delay",
            retry_after=self.limits.retry_after,
        )

    # --- requests -------------------------------------------------------------------------

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`_http` within the in-flight cap, with a last resort for bugs: logged, and a 500
        in the caller's format if no answer has started yet."""
        if self.in_flight >= self.limits.max_requests_in_flight and scope["path"] != "/health":
            await _send_error(send, _api_of(scope), self._busy_error())
            return
        started = False

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        self.in_flight += 1
        try:
            await self._http(scope, receive, tracked)
        except Exception as exc:
            log_unexpected(exc)
            if not started:
                error = HttpError("internal", "internal error in the gateway; see its log")
                await _send_error(send, _api_of(scope), error, [_CLOSE])
        finally:
            self.in_flight -= 1

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        headers = dict(scope["headers"])
        anthropic_client = b"anthropic-version" in headers
        # _api_of's rule, on the dict already built (it scans the header list otherwise)
        api = "anthropic" if anthropic_client or path.startswith("/v1/messages") else "openai"
        route = _ROUTES.get(path)
        if route is None:
            error = HttpError("not_found", f"no endpoint at {path}; see docs/serving.md")
            await _send_error(send, api, error)
            return
        method, endpoint = route
        if scope["method"] != method:
            message = f"{scope['method']} is not allowed on {path}; use {method}"
            allow = [(b"allow", method.encode())]
            await _send_error(send, api, HttpError("method_not_allowed", message), allow)
            return
        if endpoint == "health":
            await _send_json(send, 200, self._health())
            return
        if endpoint == "metrics":
            await self._metrics(scope, headers, send, api)
            return
        identity = self._authenticate(scope, headers)
        if isinstance(identity, HttpError):
            await _send_error(send, api, identity)
            return
        if endpoint == "models":
            await self._models(send, anthropic_shape=anthropic_client)
            return
        body = await _read_body(receive, self.max_body_bytes, self.limits.body_timeout)
        if isinstance(body, HttpError):
            # The rest of the body is unread: the connection cannot carry another request.
            await _send_error(send, api, body, [_CLOSE])
            return
        if body is None:  # the client went away
            return
        if identity is NEEDS_BODY:  # a signed request: its signature covers the body
            identity = self._authenticate(scope, headers, body)
            if isinstance(identity, HttpError):
                await _send_error(send, api, identity)
                return
        try:
            payload = parse_body(body, max_depth=self.limits.max_json_depth)
            if not isinstance(payload, dict):
                raise InvalidRequestError("the request body is not a JSON object")
            if endpoint == "openai":
                call: Any = openai_api.parse_chat_request(payload)
            else:
                call = anthropic_api.parse_messages_request(payload)
        except Exception as exc:  # an InvalidRequestError naming the field, mostly
            await _send_error(send, api, http_error(exc))
            return
        request = _for_client(call.request, identity, trust_client_user=self.trust_client_user)
        if call.stream:
            await self._stream(send, receive, api, request, call)
        else:
            await self._complete(send, api, request)

    def _health(self) -> dict[str, Any]:
        """``/health`` (no key needed): ``{"status": "ok"}``, or ``"degraded"`` with the call
        log's state while it cannot write (calls are still served, their rows kept and
        retried). Only the state: counts and errors are for operators (`Gateway.log_health`)."""
        health = self.gateway.log_health()
        if health is None or health.ok:
            return {"status": "ok"}
        return {"status": "degraded", "log": health.state}

    def _authenticate(
        self, scope: Scope, headers: Mapping[bytes, bytes], body: bytes | None = None
    ) -> ClientIdentity | HttpError | object | None:
        """The caller's identity, an `HttpError` (401) naming the fix, or `NEEDS_BODY` for a
        signed request whose body is still to be read (a GET has none)."""
        if self.keys is None:
            return None
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        result = self.keys.authenticate(
            headers,
            scope["method"],
            target.decode("latin-1"),
            b"" if body is None and scope["method"] == "GET" else body,
        )
        if isinstance(result, str):
            return HttpError("authentication", result)
        return result

    async def _metrics(
        self, scope: Scope, headers: Mapping[bytes, bytes], send: Send, api: str
    ) -> None:
        """``/metrics``: the metrics sink's Prometheus text (404 naming the fix without one)."""
        if self.metrics is None:
            message = "no metrics on this server; add [metrics] enabled = true to its config"
            await _send_error(send, api, HttpError("not_found", message))
            return
        if self.metrics.require_key:
            identity = self._authenticate(scope, headers)
            if isinstance(identity, HttpError):
                await _send_error(send, api, identity)
                return
        body, content_type = self.metrics.exposition()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _models(self, send: Send, *, anthropic_shape: bool) -> None:
        render = anthropic_api.models_list if anthropic_shape else openai_api.models_list
        await _send_json(send, 200, render(served_models(self.gateway)))

    async def _complete(self, send: Send, api: str, request: ChatRequest) -> None:
        try:
            response = await self.gateway.achat(request)
        except Exception as exc:
            await _send_error(send, api, http_error(exc))
            return
        if api == "openai":
            body = openai_api.render_completion(response)
        else:
            body = anthropic_api.render_message(response)
        await _send_json(send, 200, body, _response_headers(response), self._encode)

    async def _stream(
        self, send: Send, receive: Receive, api: str, request: ChatRequest, call: Any
    ) -> None:
        try:
            stream = self.gateway.astream(request)
        except Exception as exc:
            await _send_error(send, api, http_error(exc))
            return
        # A client that hangs up cancels this task, wherever it waits (for the first text
        # too), so the upstream call stops at once; the gateway logs it as cancelled.
        hung_up = asyncio.Event()
        task = asyncio.current_task()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, hung_up, task))
        started = False
        try:
            texts = stream.__aiter__()
            try:
                first: str | None = await anext(texts)
            except StopAsyncIteration:
                first = None
            except Exception as exc:  # refused or failed before any text: a proper status
                await _send_error(send, api, http_error(exc))
                return
            encoder = self._stream_encoder(api, request, call)
            headers = list(_SSE_HEADERS)
            if self.gateway.simulated:
                headers.append((b"x-aigw-simulated", b"true"))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            started = True
            try:
                await _send_chunk(send, encoder.start() + (encoder.text(first) if first else b""))
                async for text in texts:
                    await _send_chunk(send, encoder.text(text))
                response: ChatResponse | None = stream.response
                if response is not None:
                    await _send_chunk(send, encoder.end(response))
            except Exception as exc:  # the status is sent: the error goes in the stream
                await _send_chunk(send, encoder.error(http_error(exc)))
        except asyncio.CancelledError:
            if not hung_up.is_set():
                raise  # the server is shutting down, not the client leaving
            if task is not None:
                task.uncancel()
        finally:
            watcher.cancel()
            await stream.aclose()  # a stream the client abandoned is logged as cancelled
            if started and not hung_up.is_set():
                await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _stream_encoder(api: str, request: ChatRequest, call: Any) -> Any:
        if api == "openai":
            return openai_api.OpenAIChunks(
                f"chatcmpl-{_stream_id()}", request.model, include_usage=call.include_usage
            )
        return anthropic_api.AnthropicEvents(f"msg_{_stream_id()}", request.model)

    # --- lifecycle ------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Load what the first request would otherwise wait for (a learned policy's embedding
        model, a semantic cache's), off the event loop. Runs at lifespan startup, before
        uvicorn accepts connections, so ``/health`` answers only once policies route at full
        speed."""
        # lazy: the policy router loads the gateway (~0.1 s); importing the app alone skips it
        from aigw_lab.policy.router import warm_up_policies

        await asyncio.to_thread(warm_up_policies, self.gateway)
        for middleware in self.gateway.middleware:  # a semantic cache loads its embedder
            warm = getattr(middleware, "warm_up", None)
            if callable(warm):
                await asyncio.to_thread(warm)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.warm_up()
                    if self.on_started is not None:
                        self.on_started()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self.close_gateway:
                        await self.gateway.aclose()  # flushes and closes the call log
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def _for_client(
    request: ChatRequest, identity: ClientIdentity | None, *, trust_client_user: bool = False
) -> ChatRequest:
    """The request as the calling key's client makes it: the key's tenant (never one the
    client chose), its fixed user if it has one, and the key's name as tag ``aigw_key``.

    The body's ``user`` is the call's user only with ``trust_client_user`` (``[server]
    trust_client_user = true``) and a key that fixes none; otherwise per-user budgets and
    limits would be escapable by sending a new ``user`` per call. Untrusted, the key itself
    is the user (``user`` = the key's name: its calls share one per-user budget, failing
    closed), and without authentication there is no user. An untrusted body user is kept in
    the log's metadata as ``client_user``, where nothing keys on it."""
    client_user = request.user
    if identity is not None and identity.user is not None:
        user: str | None = identity.user
    elif trust_client_user:
        user = client_user
    else:
        user = identity.name if identity is not None else None
    metadata = request.metadata
    if client_user is not None and user != client_user:
        metadata = MappingProxyType({**metadata, "client_user": client_user})
    if identity is None:
        if user == client_user:
            return request  # nothing to change (no key, no body user): no copy to build
        return replace(request, user=user, metadata=metadata)
    return replace(
        request,
        tenant=identity.tenant,
        user=user,
        metadata=metadata,
        tags=MappingProxyType({**request.tags, "aigw_key": identity.name}),
    )


def served_models(gateway: Gateway) -> list[tuple[str, str]]:
    """``(model, owner)`` for every model clients may address: ``provider/model``
    addresses, and routing policies by their bare name."""
    # lazy: the policy router loads the gateway (~0.1 s); importing the app alone skips it
    from aigw_lab.policy.router import POLICY_PROVIDER

    models = []
    for provider, names in gateway.list_models().items():
        for name in names:
            if provider == POLICY_PROVIDER:
                models.append((name, "policy"))
            else:
                models.append((f"{provider}/{name}", provider))
    return models


def _stream_id() -> str:
    return uuid.uuid4().hex


_CLOSE = (b"connection", b"close")
# A header value sent as it is: visible ASCII and spaces inside, at most 256 characters.
_PLAIN_HEADER = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,254}[\x21-\x7e])?")
# What `quote` leaves alone in a header value: ASCII punctuation of model names.
_HEADER_SAFE = "/:@-._~+=,"


def header_value(text: str) -> bytes:
    """``text`` as a response header value: itself when it is plain visible ASCII, else
    percent-encoded (UTF-8; CR, LF, NUL and other controls included), at most 256
    bytes. A model name comes from the client or the upstream, and h11 would drop the
    connection, after a paid call, on a header value with CR, LF or NUL."""
    if _PLAIN_HEADER.fullmatch(text):
        return text.encode()
    return quote(text, safe=_HEADER_SAFE, errors="backslashreplace")[:256].encode()


def _api_of(scope: Scope) -> str:
    """The caller's API format: Anthropic's for its endpoint and for any request from an
    Anthropic client (which sends anthropic-version), else OpenAI's."""
    if scope["path"].startswith("/v1/messages"):
        return "anthropic"
    return "anthropic" if any(k == b"anthropic-version" for k, _ in scope["headers"]) else "openai"


def _response_headers(response: ChatResponse) -> list[tuple[bytes, bytes]]:
    """Where the answer came from, for operators: ids to find it in the call log."""
    headers = [
        (b"x-aigw-model", header_value(f"{response.provider}/{response.model}")),
        (b"x-aigw-cache", header_value(str(response.cache_status))),
    ]
    if response.trace_id:
        headers.append((b"x-aigw-trace-id", header_value(response.trace_id)))
    if response.call_id:
        headers.append((b"x-aigw-call-id", header_value(response.call_id)))
    if response.cost_usd is not None:
        headers.append((b"x-aigw-cost-usd", repr(response.cost_usd).encode()))
    if response.simulated:
        headers.append((b"x-aigw-simulated", b"true"))
    return headers


async def _read_body(receive: Receive, limit: int, timeout: float) -> bytes | HttpError | None:
    """The whole body, within ``limit`` bytes and ``timeout`` seconds; None if the client
    went away. The deadline is for the whole body, so a trickle cannot stretch it.

    The deadline is one timer that cancels this task, not ``asyncio.timeout``: the same
    guarantee for about half the CPU per request (the body is read on every call). The
    timer can only fire while ``receive`` waits (nothing else here awaits), so its
    cancellation always lands inside ``receive`` and is told apart by ``expired``."""
    body = bytearray()
    task = asyncio.current_task()
    expired: list[bool] = []
    timer = asyncio.get_running_loop().call_later(timeout, _expire, task, expired)
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                too_large = f"the request body is larger than {limit} bytes"
                return HttpError("request_too_large", too_large)
            if not message.get("more_body"):
                return bytes(body)
    except asyncio.CancelledError:
        if not expired or task is None or task.uncancel() > 0:
            raise  # not our deadline (shutdown, a hang-up), or cancelled again since
        return HttpError(
            "request_timeout",
            f"the request body did not arrive within {timeout:g} seconds "
            f"({len(body)} bytes received)",
        )
    finally:
        timer.cancel()


def _expire(task: asyncio.Task[Any] | None, expired: list[bool]) -> None:
    """`_read_body`'s deadline: mark it, and cancel the reading task."""
    if task is not None and not task.done():
        expired.append(True)
        task.cancel()


async def _watch_disconnect(
    receive: Receive, hung_up: asyncio.Event, task: asyncio.Task[Any] | None
) -> None:
    """Set ``hung_up`` and cancel ``task`` when the client closes the connection."""
    while (await receive())["type"] != "http.disconnect":
        pass
    hung_up.set()
    if task is not None:
        task.cancel()


async def _send_json(
    send: Send,
    status: int,
    body: Any,
    headers: list[tuple[bytes, bytes]] | None = None,
    encode: Callable[[Any], bytes] = stdlib_dumps,
) -> None:
    # Either encoder escapes a lone surrogate from an upstream's text (fast_json), so it
    # never fails the answer.
    encoded = encode(body)
    all_headers = [_JSON_TYPE, (b"content-length", str(len(encoded)).encode())]
    all_headers.extend(headers or ())
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": encoded})


async def _send_error(
    send: Send, api: str, error: HttpError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    status, body = openai_error(error) if api == "openai" else anthropic_error(error)
    await _send_json(send, status, body, error_headers(error) + (headers or []))


async def _send_chunk(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})
