"""The lean upstream transport's pool and wire handling (`aigw_lab.providers.lean`,
``[gateway] transport = "lean"``), sync and async, against a raw loopback server: keep-alive
reuse, ``Connection: close``, a server closing an idle connection, errors closing their
connection, Content-Length, chunked and close-delimited bodies, each timeout as httpx's
exception, a slow answer never blocking other connections, TLS, and the fallbacks."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from aigw_lab.errors import ConfigError, MissingExtraError, ProviderTimeoutError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import HttpClients, PoolSettings, ProviderSpec
from aigw_lab.providers.lean import LeanTransport
from aigw_lab.providers.lean_async import AsyncLeanTransport
from aigw_lab.testing.fake_upstream import FakeUpstream

from .raw_upstream import Answer, RawUpstream, chunked, ok

pytest.importorskip("httptools", reason="the lean transport needs the fast-serve extra")


@pytest.fixture
def raw() -> Iterator[RawUpstream]:
    with RawUpstream() as server:
        yield server


def limits(n: int = 4, keep: int | None = None) -> httpx.Limits:
    return httpx.Limits(max_connections=n, max_keepalive_connections=keep or n)


async def apost(client: httpx.AsyncClient, url: str, **kw: object) -> httpx.Response:
    return await client.post(url, content=b"{}", **kw)  # type: ignore[arg-type]


# -- reuse and closing ------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(raw: RawUpstream) -> None:
    raw.add(Answer(ok()), Answer(chunked(b"a", b"b")), Answer(ok(b"3")))
    lean = LeanTransport(limits())
    with httpx.Client(transport=lean) as client:
        bodies = [client.post(raw.url + "/x", content=b"{}").content for _ in range(3)]
        assert (lean.open_connections, lean.idle_connections) == (1, 1)
    assert bodies == [b'{"ok":1}', b"ab", b"3"]
    assert raw.accepted == 1
    assert lean.open_connections == 0  # closing the transport closed the idle one


async def test_async_keep_alive_reuses_one_connection(raw: RawUpstream) -> None:
    raw.add(Answer(ok()), Answer(chunked(b"a", b"b")), Answer(ok(b"3")))
    lean = AsyncLeanTransport(limits())
    async with httpx.AsyncClient(transport=lean) as client:
        bodies = [(await apost(client, raw.url + "/x")).content for _ in range(3)]
        assert (lean.open_connections, lean.idle_connections) == (1, 1)
    assert bodies == [b'{"ok":1}', b"ab", b"3"]
    assert raw.accepted == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_connection_close_is_not_reused(raw: RawUpstream, mode: str) -> None:
    raw.add(Answer(ok(headers="connection: close\r\n"), close=True), Answer(ok(b"2")))
    bodies = _post_twice(raw, mode)
    assert bodies == [b'{"ok":1}', b"2"]
    assert raw.accepted == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_close_delimited_body_is_read_to_the_end(raw: RawUpstream, mode: str) -> None:
    raw.add(Answer(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it", close=True))
    raw.add(Answer(ok(b"2")))
    assert _post_twice(raw, mode) == [b"all of it", b"2"]
    assert raw.accepted == 2  # never reused: its end was the connection's end


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_server_closing_an_idle_connection_is_noticed(raw: RawUpstream, mode: str) -> None:
    # The server closes after answering without saying so; the next request must not be
    # sent on the dead connection.
    raw.add(Answer(ok(), close=True), Answer(ok(b"2")))
    assert _post_twice(raw, mode, pause=True) == [b'{"ok":1}', b"2"]
    assert raw.accepted == 2


def _post_twice(raw: RawUpstream, mode: str, *, pause: bool = False) -> list[bytes]:
    """Two requests in a row; with ``pause``, the second waits until the server's close of
    the first connection has reached this side."""

    def wait_closed() -> None:
        if pause:
            probe = threading.Event()
            probe.wait(0.3)  # the FIN crosses loopback in microseconds

    if mode == "sync":
        lean = LeanTransport(limits())
        with httpx.Client(transport=lean) as client:
            first = client.post(raw.url + "/x", content=b"{}").content
            wait_closed()
            second = client.post(raw.url + "/x", content=b"{}").content
            return [first, second]

    async def run() -> list[bytes]:
        async with httpx.AsyncClient(transport=AsyncLeanTransport(limits())) as client:
            first = (await apost(client, raw.url + "/x")).content
            if pause:
                await asyncio.sleep(0.3)
            second = (await apost(client, raw.url + "/x")).content
            return [first, second]

    return asyncio.run(run())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_malformed_answer_is_a_protocol_error_and_frees_its_slot(
    raw: RawUpstream, mode: str
) -> None:
    raw.add(Answer(b"HTTP/1.1 2x0 NOPE\r\n\r\n"), Answer(ok(b"2")))
    if mode == "sync":
        lean = LeanTransport(limits(1))
        with httpx.Client(transport=lean) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                client.post(raw.url + "/x", content=b"{}")
            assert lean.open_connections == 0
            assert client.post(raw.url + "/x", content=b"{}").content == b"2"
    else:

        async def run() -> None:
            lean = AsyncLeanTransport(limits(1))
            async with httpx.AsyncClient(transport=lean) as client:
                with pytest.raises(httpx.RemoteProtocolError):
                    await apost(client, raw.url + "/x")
                assert lean.open_connections == 0
                assert (await apost(client, raw.url + "/x")).content == b"2"

        asyncio.run(run())
    assert raw.accepted == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_cut_body_is_a_protocol_error(raw: RawUpstream, mode: str) -> None:
    raw.add(Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", close=True))
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        _post_twice(raw, mode)


def test_an_abandoned_stream_closes_its_connection(raw: RawUpstream) -> None:
    raw.add(Answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n"))
    raw.add(Answer(ok(b"2")))
    lean = LeanTransport(limits(1))
    with httpx.Client(transport=lean) as client:
        with client.stream("POST", raw.url + "/x", content=b"{}") as response:
            assert next(response.iter_bytes()) == b"a"
        assert lean.open_connections == 0  # half-read: closed, never reused
        assert client.post(raw.url + "/x", content=b"{}").content == b"2"
    assert raw.accepted == 2


async def test_async_stream_yields_each_chunk_as_it_arrives(raw: RawUpstream) -> None:
    first = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n"
    raw.add(Answer(first))
    lean = AsyncLeanTransport(limits(1))
    async with httpx.AsyncClient(transport=lean) as client:
        async with client.stream("POST", raw.url + "/x", content=b"{}") as response:
            parts = response.aiter_bytes()
            # The first chunk arrives though the body's end never does.
            assert await asyncio.wait_for(parts.__anext__(), 10) == b"a"
    assert lean.open_connections == 0


# -- timeouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_slow_answer_is_a_read_timeout(raw: RawUpstream, mode: str) -> None:
    hold = threading.Event()
    raw.add(Answer(ok(), hold=hold))
    timeout = httpx.Timeout(5.0, read=0.2)
    try:
        with pytest.raises(httpx.ReadTimeout):
            if mode == "sync":
                with httpx.Client(transport=LeanTransport(limits()), timeout=timeout) as client:
                    client.post(raw.url + "/x", content=b"{}")
            else:

                async def run() -> None:
                    lean = AsyncLeanTransport(limits())
                    async with httpx.AsyncClient(transport=lean, timeout=timeout) as client:
                        await apost(client, raw.url + "/x")

                asyncio.run(run())
    finally:
        hold.set()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_full_pool_is_a_pool_timeout(raw: RawUpstream, mode: str) -> None:
    hold = threading.Event()
    raw.add(Answer(ok(), hold=hold))
    timeout = httpx.Timeout(10.0, pool=0.2)
    try:
        if mode == "sync":
            lean = LeanTransport(limits(1))
            with httpx.Client(transport=lean, timeout=timeout) as client:
                first = threading.Thread(
                    target=client.post, args=(raw.url + "/x",), kwargs={"content": b"{}"}
                )
                first.start()
                _until(lambda: len(raw.requests) == 1)
                with pytest.raises(httpx.PoolTimeout):
                    client.post(raw.url + "/x", content=b"{}")
                hold.set()
                first.join(10)
        else:

            async def run() -> None:
                lean = AsyncLeanTransport(limits(1))
                async with httpx.AsyncClient(transport=lean, timeout=timeout) as client:
                    first = asyncio.create_task(apost(client, raw.url + "/x"))
                    while len(raw.requests) < 1:
                        await asyncio.sleep(0.01)
                    with pytest.raises(httpx.PoolTimeout):
                        await apost(client, raw.url + "/x")
                    hold.set()
                    assert (await first).status_code == 200

            asyncio.run(run())
    finally:
        hold.set()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_server_that_never_reads_is_a_write_timeout(mode: str) -> None:
    with RawUpstream(read_bodies=False) as raw:
        body = b"x" * (64 << 20)  # far more than both sockets' buffers
        timeout = httpx.Timeout(10.0, write=0.2)
        with pytest.raises(httpx.WriteTimeout):
            if mode == "sync":
                with httpx.Client(transport=LeanTransport(limits()), timeout=timeout) as c:
                    c.post(raw.url + "/x", content=body)
            else:

                async def run() -> None:
                    lean = AsyncLeanTransport(limits())
                    async with httpx.AsyncClient(transport=lean, timeout=timeout) as c:
                        await c.post(raw.url + "/x", content=body)

                asyncio.run(run())


def test_a_refused_connection_is_a_connect_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with httpx.Client(transport=LeanTransport(limits())) as client:
        with pytest.raises(httpx.ConnectError):
            client.post(f"http://127.0.0.1:{port}/x", content=b"{}")

    async def run() -> None:
        async with httpx.AsyncClient(transport=AsyncLeanTransport(limits())) as client:
            await apost(client, f"http://127.0.0.1:{port}/x")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(run())


async def test_a_connect_that_hangs_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def never(*args: object, **kwargs: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(loop, "create_connection", never)
    timeout = httpx.Timeout(5.0, connect=0.1)
    async with httpx.AsyncClient(transport=AsyncLeanTransport(limits()), timeout=timeout) as c:
        with pytest.raises(httpx.ConnectTimeout):
            await apost(c, "http://127.0.0.1:9/x")


def test_a_sync_connect_that_times_out_is_a_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow(*args: object, **kwargs: object) -> None:
        raise TimeoutError("timed out")  # what socket.create_connection raises

    monkeypatch.setattr(socket, "create_connection", slow)
    with httpx.Client(transport=LeanTransport(limits())) as client:
        with pytest.raises(httpx.ConnectTimeout):
            client.post("http://127.0.0.1:9/x", content=b"{}")


# -- concurrency ------------------------------------------------------------------------------


def test_a_slow_answer_never_blocks_other_connections(raw: RawUpstream) -> None:
    hold = threading.Event()
    raw.add(Answer(ok(b"slow"), hold=hold), *(Answer(ok(b"fast")) for _ in range(5)))
    lean = LeanTransport(limits(2))
    results: list[bytes] = []
    with httpx.Client(transport=lean) as client:
        slow = threading.Thread(
            target=lambda: results.append(client.post(raw.url + "/x", content=b"{}").content)
        )
        slow.start()
        _until(lambda: len(raw.requests) == 1)
        # Five answers through the other connection while the slow one is still held.
        fast = [client.post(raw.url + "/x", content=b"{}").content for _ in range(5)]
        assert not hold.is_set() and results == []
        hold.set()
        slow.join(10)
    assert fast == [b"fast"] * 5 and results == [b"slow"]
    assert raw.accepted == 2


async def test_async_slow_answer_never_blocks_other_connections(raw: RawUpstream) -> None:
    hold = threading.Event()
    raw.add(Answer(ok(b"slow"), hold=hold), *(Answer(ok(b"fast")) for _ in range(5)))
    async with httpx.AsyncClient(transport=AsyncLeanTransport(limits(2))) as client:
        slow = asyncio.create_task(apost(client, raw.url + "/x"))
        while len(raw.requests) < 1:
            await asyncio.sleep(0.01)
        fast = [(await apost(client, raw.url + "/x")).content for _ in range(5)]
        assert not slow.done()
        hold.set()
        assert (await slow).content == b"slow"
    assert fast == [b"fast"] * 5
    assert raw.accepted == 2


def test_many_threads_share_the_pool_within_its_limit(raw: RawUpstream) -> None:
    lean = LeanTransport(limits(3))
    seen: list[int] = []
    errors: list[BaseException] = []
    with httpx.Client(transport=lean) as client:

        def work() -> None:
            try:
                for _ in range(15):
                    assert client.post(raw.url + "/x", content=b"{}").status_code == 200
                    seen.append(lean.open_connections)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert len(raw.requests) == 120 and max(seen) <= 3 and raw.accepted <= 3


async def test_cancelled_waiters_do_not_strand_the_pool(raw: RawUpstream) -> None:
    hold = threading.Event()
    raw.add(Answer(ok(), hold=hold))
    lean = AsyncLeanTransport(limits(1))
    async with httpx.AsyncClient(transport=lean) as client:
        first = asyncio.create_task(apost(client, raw.url + "/x"))
        while len(raw.requests) < 1:
            await asyncio.sleep(0.01)
        waiters = [asyncio.create_task(apost(client, raw.url + "/x")) for _ in range(3)]
        await asyncio.sleep(0.05)
        waiters[0].cancel()
        waiters[1].cancel()
        hold.set()
        assert (await first).status_code == 200
        assert (await waiters[2]).status_code == 200
        assert lean.open_connections == 1


def test_an_idle_connection_past_its_expiry_is_replaced(raw: RawUpstream) -> None:
    now = [0.0]
    lean = LeanTransport(
        httpx.Limits(max_connections=2, keepalive_expiry=5.0), clock=lambda: now[0]
    )
    with httpx.Client(transport=lean) as client:
        client.post(raw.url + "/x", content=b"{}")
        now[0] = 4.0
        client.post(raw.url + "/x", content=b"{}")
        assert raw.accepted == 1
        now[0] = 9.5
        client.post(raw.url + "/x", content=b"{}")
    assert raw.accepted == 2


# -- hostile input, TLS, wiring ---------------------------------------------------------------


def test_a_header_value_with_a_line_break_is_refused(raw: RawUpstream) -> None:
    with httpx.Client(transport=LeanTransport(limits())) as client:
        with pytest.raises(httpx.LocalProtocolError):
            client.post(raw.url + "/x", content=b"{}", headers={"x-a": "1\r\nx-b: 2"})
    assert raw.requests == []


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def test_https_origins_are_verified_and_reused(tmp_path: Path) -> None:
    server_ctx, client_ctx = _self_signed(tmp_path)
    with RawUpstream(tls=server_ctx) as raw:
        raw.add(Answer(ok(b"1")), Answer(ok(b"2")))
        with httpx.Client(transport=LeanTransport(limits(), ssl_context=client_ctx)) as c:
            assert [c.post(raw.url + "/x", content=b"{}").content for _ in range(2)] == [
                b"1",
                b"2",
            ]

        async def run() -> bytes:
            lean = AsyncLeanTransport(limits(), ssl_context=client_ctx)
            async with httpx.AsyncClient(transport=lean) as client:
                return (await apost(client, raw.url + "/x")).content

        assert asyncio.run(run()) == b"{}"
        assert raw.accepted == 2
        # Without the certificate, the default context refuses the origin.
        with httpx.Client(transport=LeanTransport(limits())) as c:
            with pytest.raises(httpx.ConnectError):
                c.post(raw.url + "/x", content=b"{}")


def test_pool_settings_name_the_transport() -> None:
    assert PoolSettings().transport == "auto"
    assert PoolSettings().uses_lean()  # httptools is installed here ([dev] has fast-serve)
    assert not PoolSettings(shards=4).uses_lean()  # shards are httpx pools
    assert not PoolSettings(transport="httpx").uses_lean()
    with pytest.raises(ConfigError, match="transport"):
        PoolSettings(transport="curl")
    with pytest.raises(ConfigError, match="httpx transport only"):
        PoolSettings(transport="lean", shards=4)


def test_http_clients_use_the_lean_transport_unless_a_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    clients = HttpClients(pool=PoolSettings(transport="lean"))
    assert isinstance(clients.sync()._transport, LeanTransport)
    clients.close()
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    proxied = HttpClients(pool=PoolSettings(transport="lean"))
    assert isinstance(proxied.sync()._transport, httpx.HTTPTransport)
    proxied.close()


def test_the_config_key_gives_a_gateway_the_lean_transport(tmp_path: Path) -> None:
    with FakeUpstream() as fake:
        path = tmp_path / "aigw.toml"
        path.write_text(
            f'[gateway]\nlog = false\ntransport = "lean"\npool_timeout = 0.3\n\n'
            f'[providers.up]\nkind = "openai-compatible"\nbase_url = "{fake.url}/v1"\n'
        )
        fake.reply_json(_ANSWER)
        gateway = Gateway.from_config(path)
        try:
            assert gateway.chat("up/m", "hi").text == "ok"
            assert isinstance(gateway._clients.sync()._transport, LeanTransport)
        finally:
            gateway.close()
        path.write_text(path.read_text().replace('"lean"', '"h2"'))
        with pytest.raises(ConfigError, match="transport"):
            Gateway.from_config(path)


def test_a_gateway_over_the_lean_pool_fails_fast_when_it_is_full() -> None:
    hold = threading.Event()
    with RawUpstream() as raw:
        raw.add(Answer(ok(_BODY), hold=hold))
        spec = ProviderSpec("up", "openai-compatible", base_url=raw.url + "/v1")
        pool = PoolSettings(max_connections=1, pool_timeout=0.2, transport="lean")
        gateway = Gateway([spec], log=None, pool=pool)
        try:
            first = threading.Thread(target=gateway.chat, args=("up/m", "a"))
            first.start()
            _until(lambda: len(raw.requests) == 1)
            with pytest.raises(ProviderTimeoutError):
                gateway.chat("up/m", "b")
            hold.set()
            first.join(10)
        finally:
            hold.set()
            gateway.close()


_ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}  # fmt: skip
_BODY = __import__("json").dumps(_ANSWER).encode()


def _until(done: object, limit: float = 10.0) -> None:
    """Wait (bounded) until ``done()`` holds: a sync point, not a timed assertion."""
    step = threading.Event()
    waited = 0.0
    while not done():  # type: ignore[operator]
        if waited > limit:
            raise AssertionError("the server never saw the request")
        step.wait(0.01)
        waited += 0.01


def test_without_httptools_the_lean_transport_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "httptools", None)  # as if not installed
    with pytest.raises(MissingExtraError, match="fast-serve") as caught:
        PoolSettings(transport="lean")
    assert "aigw-lab[fast-serve]" in (caught.value.hint or "")
    with pytest.raises(MissingExtraError):
        LeanTransport()
    path = tmp_path / "aigw.toml"
    path.write_text(
        '[gateway]\nlog = false\ntransport = "lean"\n\n'
        '[providers.up]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    with pytest.raises(ConfigError, match=r"\[gateway\]: transport = \"lean\" needs httptools"):
        Gateway.from_config(path)


def test_a_head_request_goes_to_httpx_own_transport(raw: RawUpstream) -> None:
    # A HEAD answer announces a body it does not carry; httpx's transport knows that.
    raw.add(Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"))
    lean = LeanTransport(limits())
    with httpx.Client(transport=lean) as client:
        response = client.head(raw.url + "/x")
        assert (response.status_code, response.content) == (200, b"")
        assert lean.open_connections == 0  # the lean pool never saw it


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_streamed_request_body_goes_chunked(raw: RawUpstream, mode: str) -> None:
    raw.add(Answer(ok(b"1")), Answer(ok(b"2")))
    if mode == "sync":

        def parts() -> Iterator[bytes]:
            yield b'{"a":'
            yield b"1}"

        with httpx.Client(transport=LeanTransport(limits())) as client:
            first = client.post(raw.url + "/x", content=parts()).content
            second = client.post(raw.url + "/x", content=b"{}").content
    else:

        async def aparts() -> AsyncIterator[bytes]:
            yield b'{"a":'
            yield b"1}"

        async def run() -> tuple[bytes, bytes]:
            async with httpx.AsyncClient(transport=AsyncLeanTransport(limits())) as client:
                one = (await client.post(raw.url + "/x", content=aparts())).content
                return one, (await apost(client, raw.url + "/x")).content

        first, second = asyncio.run(run())
    assert (first, second) == (b"1", b"2")
    assert raw.bodies == [b'5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n']
    assert b"transfer-encoding: chunked" in raw.requests[0][1].lower()
    assert raw.accepted == 1  # the connection carried the next request as well


def test_auto_without_httptools_takes_httpx_without_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default works on a light install: no httptools means httpx's own transport."""
    monkeypatch.setitem(__import__("sys").modules, "httptools", None)  # as if not installed
    pool = PoolSettings()
    assert pool.transport == "auto" and not pool.uses_lean()
    clients = HttpClients(pool=pool)
    try:
        assert clients._lean(async_=False) is None and clients._lean(async_=True) is None
    finally:
        clients.close()


def test_auto_with_httptools_builds_the_lean_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)  # a proxy keeps httpx's transport
    clients = HttpClients(pool=PoolSettings())
    try:
        assert isinstance(clients._lean(async_=False), LeanTransport)
    finally:
        clients.close()
