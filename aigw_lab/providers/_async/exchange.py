"""The HTTP exchanges of an `HttpProvider`, one function per call mode, written once for
asyncio; the sync ones (`aigw_lab.providers._sync.exchange`) are generated from this file by
``.ci/unasync.py``. `HttpProvider` takes these functions as its methods (their first
parameter is the provider), so a call costs no extra frame.

Only the waiting differs between the modes: which shared client sends, and whether reading
the answer is awaited. Building the request, timing, decoding, and mapping every httpx
error and error status into `aigw_lab.errors` are the provider's shared steps, called
alike from both, so errors are still mapped in one place.
"""

# unasync: async_=sync, aread=read, aiter_bytes=iter_bytes, asend=send, AsyncClient=Client
# unasync: async_lean=sync_lean, lean_async=lean, AsyncLeanTransport=LeanTransport

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from aigw_lab.providers.lean_direct import DirectRequest
from aigw_lab.providers.stream_run import StreamRun
from aigw_lab.types import ChatRequest, ChatResponse, StreamEvent

if TYPE_CHECKING:
    from aigw_lab.providers.lean_async import AsyncLeanTransport
    from aigw_lab.providers.transport import HttpProvider

__all__ = ["achat", "astream", "asend"]


def _prepare(
    provider: HttpProvider, request: ChatRequest, *, stream: bool
) -> tuple[float, httpx.AsyncClient, AsyncLeanTransport | None, Any, float]:
    """When the call started, the shared client of this mode, its lean transport when the
    call may skip the client (`aigw_lab.providers.lean_direct`), the request built for it
    (a `DirectRequest` for that transport, else an `httpx.Request`), and when it was ready
    to send (the gateway's own time before the exchange)."""
    started = time.perf_counter()
    clients = provider._clients
    client = clients.async_()
    lean = clients.async_lean()
    built = provider._build(client, request, stream=stream, direct=lean is not None)
    return started, client, lean, built, time.perf_counter()


async def achat(provider: HttpProvider, request: ChatRequest) -> ChatResponse:
    """Send one request and wait for the whole answer."""
    started, client, lean, http_request, sent = _prepare(provider, request, stream=False)
    if lean is not None and type(http_request) is DirectRequest:
        try:
            answer = await lean.fetch(http_request)
        except httpx.HTTPError as exc:
            raise provider._transport_error(exc, request) from exc
        return provider._complete(request, answer, answer.content, started, sent, answer.headers_at)
    try:
        response = await client.send(http_request, stream=True)
        try:
            headers_at = time.perf_counter()
            body = await response.aread()
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise provider._transport_error(exc, request) from exc
    return provider._complete(request, response, body, started, sent, headers_at)


async def astream(provider: HttpProvider, request: ChatRequest) -> AsyncIterator[StreamEvent]:
    """Yield `TextDelta` events as text arrives, then one `StreamEnd`. Closing the stream
    early closes the HTTP response (its connection goes back to the pool)."""
    started, client, lean, http_request, sent = _prepare(provider, request, stream=True)
    try:
        if lean is not None and type(http_request) is DirectRequest:
            response: Any = await lean.open(http_request)
        else:
            response = await client.send(http_request, stream=True)
    except httpx.HTTPError as exc:
        raise provider._transport_error(exc, request) from exc
    try:
        run = StreamRun(provider, request, response, started, sent)
        if run.error_body_expected:
            try:
                body = await response.aread()
            except httpx.HTTPError as exc:
                raise provider._transport_error(exc, request) from exc
            for event in run.from_whole_body(body):
                yield event
            return
        try:
            async for chunk in response.aiter_bytes():
                for delta in run.feed(chunk):
                    run.delivered = True
                    yield delta
        except httpx.HTTPError as exc:
            raise run.interrupted(exc) from exc
        yield run.end()
    finally:
        await response.aclose()


async def asend(
    provider: HttpProvider, method: str, url: str, *, on_behalf_of: ChatRequest, **kwargs: Any
) -> httpx.Response:
    """One authenticated HTTP exchange with this provider besides chat (``url`` absolute
    or relative to ``base_url``; ``kwargs`` go to httpx), with this provider's headers,
    timeouts, shared pool and error mapping: an error status or a transport failure
    raises the `aigw_lab.errors` type a chat call would, naming ``on_behalf_of``'s
    model, with keys redacted. The URL must lie under ``base_url``, on a path without a
    query, fragment, ``%`` or dot segment (ids from a resumed job's dict end up in it),
    else `InvalidRequestError`: this provider's key goes nowhere else."""
    target = provider._send_target(url)
    timeout = httpx.Timeout(provider.timeout, connect=provider.connect_timeout)
    try:
        response = await provider._clients.async_().request(
            method, target, headers=provider._headers, timeout=timeout, **kwargs
        )
    except httpx.HTTPError as exc:
        raise provider._transport_error(exc, on_behalf_of) from exc
    if response.status_code >= 400:
        raise provider._status_error(on_behalf_of, response, response.content)
    return response
