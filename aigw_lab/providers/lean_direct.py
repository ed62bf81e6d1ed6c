"""The lean transport's direct path: a provider's chat request sent as pre-built bytes and its
answer read into a small response object, without httpx's client around the transport.

Why: with the lean transport, httpx's ``AsyncClient.send`` around it (the `httpx.Request` and
`httpx.Response` models, header normalisation, cookies, the event hook, ``aread``/``aclose``)
had become the largest piece of ``serve``'s CPU per request (docs/performance.md, "The
upstream client without httpx's client, session 9"). A provider posts the same headers to
the same few URLs on every call, so their bytes are built once per URL (`RequestHead`) and
each call only adds its Content-Length and body (`DirectRequest`).

What is kept: the request bytes are those httpx's client wrote for the same call (the same
headers in the same order, checked once per URL as the lean transport checks each request:
no CR, LF or NUL anywhere), every timeout of the request's httpx timeout dict (``connect``,
``read``, ``write``, and ``pool`` capped by the pool's ``pool_timeout`` as `HttpClients`'
request hook did), the pool and its limits, and every failure raised as the httpx
exception the transport raised before, so ``HttpProvider._transport_error`` maps it in the
one place it always has. An answer with a ``Content-Encoding`` is decoded by httpx, as
before. What is not kept: httpx's client keeps a cookie jar, so cookies an upstream set were
sent back on every later call of any tenant; the direct path keeps none.

Only a gateway's own client over the lean transport takes this path (`HttpClients.async_lean`
and `sync_lean`): an injected client or transport, a proxy in the environment, httpx's
transport, a codec adding per-request headers and any other exchange (`HttpProvider.send`)
keep httpx's client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from aigw_lab.providers.lean_wire import ResponseReader, origin_of, request_head

__all__ = ["RequestHead", "DirectRequest", "LeanResponse", "LeanHeaders", "direct_timeouts"]

_CONTENT_LENGTH = b"content-length"


def direct_timeouts(timeout: Mapping[str, Any], pool_timeout: float) -> dict[str, Any]:
    """``timeout`` (httpx's timeout dict) with its pool wait capped by ``pool_timeout``,
    as `HttpClients`' request hook caps it for httpx's client."""
    current = timeout.get("pool")
    if current is not None and current <= pool_timeout:
        return dict(timeout)
    return {**timeout, "pool": pool_timeout}


class DirectRequest:
    """One request ready for the lean transport: its origin (scheme, host, port), every
    byte to write (head and body), and httpx's timeout dict (pool already capped)."""

    __slots__ = ("origin", "data", "timeouts")

    def __init__(
        self, *, origin: tuple[bytes, bytes, int], data: bytes, timeouts: Mapping[str, Any]
    ) -> None:
        self.origin = origin
        self.data = data
        self.timeouts = timeouts


class RequestHead:
    """The request line and headers of a JSON POST to one URL, built once: everything but
    the Content-Length value, which `request` fills in per body."""

    __slots__ = ("origin", "_prefix", "_suffix")

    def __init__(self, *, origin: tuple[bytes, bytes, int], prefix: bytes, suffix: bytes) -> None:
        self.origin = origin
        self._prefix = prefix
        self._suffix = suffix

    @classmethod
    def build(
        cls, client_headers: httpx.Headers, url: httpx.URL, headers: Mapping[str, str]
    ) -> RequestHead | None:
        """The head httpx's client would write for a JSON POST of ``headers`` to ``url``
        (its own ``client_headers`` first, Host before all, ``Content-Length`` and
        ``Content-Type`` last, as `HttpProvider` orders them); None for a URL the lean
        transport does not speak to directly (not http or https). A CR, LF or NUL in any
        header or the target is `httpx.LocalProtocolError`, as the transport raises it."""
        if url.raw_scheme not in (b"http", b"https"):
            return None
        merged = httpx.Headers(client_headers)
        merged.update({**headers, "Content-Length": "0", "Content-Type": "application/json"})
        built = httpx.Request("POST", url, headers=merged)
        head, chunked = request_head(built)
        raw = built.headers.raw
        lengths = [i for i, (name, _) in enumerate(raw) if name.lower() == _CONTENT_LENGTH]
        if chunked or len(lengths) != 1:
            return None
        # ``head`` was checked whole above; split it around the one Content-Length value.
        at = lengths[0]
        line = head.split(b"\r\n", 1)[0] + b"\r\n"
        before = b"".join(b"%s: %s\r\n" % pair for pair in raw[:at])
        after = b"".join(b"%s: %s\r\n" % pair for pair in raw[at + 1 :])
        name = raw[at][0]
        prefix = line + before + name + b": "
        suffix = b"\r\n" + after + b"\r\n"
        if prefix + b"0" + suffix != head:  # pragma: no cover - request_head's own format
            return None
        return cls(origin=origin_of(url), prefix=prefix, suffix=suffix)

    def request(self, content: bytes, timeouts: Mapping[str, Any]) -> DirectRequest:
        """The request carrying ``content`` as its body."""
        data = b"".join((self._prefix, b"%d" % len(content), self._suffix, content))
        return DirectRequest(origin=self.origin, data=data, timeouts=timeouts)


def _text(value: bytes) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")


class LeanHeaders(Mapping[str, str]):
    """An answer's headers, read-only and case-insensitive as `httpx.Headers` reads them
    (several values of one name joined by ", "), kept as the raw pairs parsed: nothing is
    normalised unless asked for. ``names`` (the lower-cased names, as the transport's
    reader collected them; built here if not given) answers a name that is absent, the
    common question (is there a ``cf-aig-cache-status``?), with one set lookup."""

    __slots__ = ("raw", "_names")

    def __init__(
        self, raw: list[tuple[bytes, bytes]], names: frozenset[bytes] | None = None
    ) -> None:
        self.raw = raw
        self._names = frozenset(name.lower() for name, _ in raw) if names is None else names

    def _values(self, key: str) -> list[bytes]:
        name = key.lower().encode("latin-1", "replace")
        if name not in self._names:
            return []
        return [value for raw_name, value in self.raw if raw_name.lower() == name]

    def get(self, key: str, default: Any = None) -> Any:
        values = self._values(key) if isinstance(key, str) else ()
        if not values:
            return default
        return ", ".join(_text(value) for value in values)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._values(key))

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for name, _ in self.raw:
            seen.setdefault(_text(name).lower(), None)
        return iter(seen)

    def __len__(self) -> int:
        return len(self._names)

    def multi_items(self) -> list[tuple[str, str]]:
        return [(_text(name).lower(), _text(value)) for name, value in self.raw]


class LeanResponse:
    """An answer read by the direct path: ``status_code``, ``headers`` (`LeanHeaders`),
    ``headers_at`` (``time.perf_counter()`` when its head arrived) and either the whole
    body (``content``) or a body still on its connection (``stream``, read with
    ``iter_bytes``/``read`` or ``aiter_bytes``/``aread``; ``close``/``aclose`` gives the
    connection back). It answers what `HttpProvider` and `StreamRun` ask of an
    `httpx.Response`."""

    __slots__ = ("status_code", "headers", "headers_at", "content", "_stream")

    def __init__(
        self,
        *,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        headers_at: float,
        content: bytes = b"",
        stream: Any = None,
        names: frozenset[bytes] | None = None,
    ) -> None:
        self.status_code = status
        self.headers = LeanHeaders(raw_headers, names)
        self.headers_at = headers_at
        self.content = content
        self._stream = stream

    @property
    def text(self) -> str:
        """The body as text, decoded as httpx decodes it (the charset of Content-Type)."""
        # ``content`` is decoded already: httpx must not undo a Content-Encoding again.
        raw = [pair for pair in self.headers.raw if pair[0].lower() != b"content-encoding"]
        return httpx.Response(self.status_code, headers=raw, content=self.content).text

    def iter_bytes(self) -> Iterator[bytes]:
        yield from self._stream

    def read(self) -> bytes:
        self.content = b"".join(self._stream)
        return self.content

    def close(self) -> None:
        self._stream.close()

    async def aiter_bytes(self) -> Any:
        async for part in self._stream:
            yield part

    async def aread(self) -> bytes:
        self.content = b"".join([part async for part in self._stream])
        return self.content

    async def aclose(self) -> None:
        await self._stream.aclose()


def whole_answer(reader: ResponseReader, headers_at: float, parts: list[bytes]) -> LeanResponse:
    """The answer ``reader`` read whole (its body in ``parts``), Content-Encoding undone."""
    body = b"".join(parts)
    if reader.encoded:
        body = decoded(reader.status, reader.headers, body)
    return LeanResponse(
        status=reader.status,
        raw_headers=reader.headers,
        names=reader.names,
        headers_at=headers_at,
        content=body,
    )


def streamed_answer(
    reader: ResponseReader, headers_at: float, body: Any
) -> LeanResponse | httpx.Response:
    """The answer whose head ``reader`` read, its ``body`` still on the connection; an
    encoded body comes as an `httpx.Response`, which decodes it."""
    if reader.encoded:
        return reader.response(body)
    return LeanResponse(
        status=reader.status,
        raw_headers=reader.headers,
        names=reader.names,
        headers_at=headers_at,
        stream=body,
    )


def decoded(status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """``body`` with its Content-Encoding undone by httpx (`httpx.DecodingError` if it
    cannot be)."""
    return httpx.Response(status, headers=raw_headers, content=body).content
