"""Which HTTP front ``aigw-lab serve`` runs (issue 14 §3): our own protocol on httptools'
parser ("aigw", aigw_lab.server.h1) when httptools is installed (a core dependency), else
uvicorn's h11 protocol; uvicorn's httptools protocol on request. Each has the
connection guards of aigw_lab.server.limits (tests/server/test_slow_clients.py runs every
guard on all three)."""

from __future__ import annotations

import importlib.util

import httpx
import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.server import BackgroundServer, GatewayApp
from aigw_lab.server.limits import guarded_protocol, resolve_http
from aigw_lab.server.runner import uvicorn_config
from aigw_lab.server_limits import ServerLimits

HAS_HTTPTOOLS = importlib.util.find_spec("httptools") is not None


def installed(*names: str):
    return lambda name: object() if name in names else None


def test_auto_takes_our_protocol_when_httptools_is_installed_else_h11() -> None:
    assert resolve_http("auto", installed("httptools")) == "aigw"
    assert resolve_http("auto", installed()) == "h11"
    assert resolve_http("h11", installed("httptools")) == "h11"
    assert resolve_http("httptools", installed("httptools")) == "httptools"


@pytest.mark.parametrize("http", ["httptools", "aigw"])
def test_httptools_asked_for_but_missing_names_the_install_command(http: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_http(http, installed())
    assert "fast-serve" in str(caught.value.hint)


def test_an_unknown_parser_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown HTTP implementation"):
        resolve_http("granian", installed("httptools"))


@pytest.mark.skipif(not HAS_HTTPTOOLS, reason="httptools is not installed")
def test_the_server_runs_our_protocol_by_default_and_uvicorns_on_request() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from aigw_lab.server.h1 import _H1Protocol

    app = GatewayApp(Gateway.simulated_fleet(time_scale=0.0, log=None), None)
    default = uvicorn_config(app, None, log_level="warning", lifespan="off")
    assert issubclass(default.http, _H1Protocol)
    assert default.http.max_connections == ServerLimits().max_connections
    assert default.http.max_header_bytes == ServerLimits().max_header_bytes
    asked = uvicorn_config(app, None, log_level="warning", lifespan="off", http="httptools")
    assert issubclass(asked.http, HttpToolsProtocol)
    app.gateway.close()


@pytest.mark.parametrize("http", ["httptools", "h11", "aigw"])
def test_the_busy_answer_is_not_bound_to_the_protocol(http: str) -> None:
    """A plain function as ``busy_app`` stays a function on the class (a method would get
    the protocol as its scope)."""
    if http != "h11" and not HAS_HTTPTOOLS:
        pytest.skip("httptools is not installed")

    async def busy(scope, receive, send):  # pragma: no cover - only compared
        pass

    protocol = guarded_protocol(ServerLimits(), busy, http)
    assert protocol.__new__(protocol).busy_app is busy  # read through an instance


@pytest.mark.parametrize("http", ["httptools", "h11", "aigw"])
def test_a_call_is_served_over_each_front(http: str) -> None:
    if http != "h11" and not HAS_HTTPTOOLS:
        pytest.skip("httptools is not installed")
    gateway = Gateway.simulated_fleet(time_scale=0.0, log=None)
    body = {"model": "sim-openai/sim-nano", "messages": [{"role": "user", "content": "hi"}]}
    with BackgroundServer(GatewayApp(gateway, None), http=http) as server:
        with httpx.Client(base_url=server.url) as client:
            answers = [client.post("/v1/chat/completions", json=body) for _ in range(3)]
    gateway.close()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.json()["choices"][0]["message"]["content"] for a in answers)


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_answers_carry_no_server_banner(http: str) -> None:
    """uvicorn's ``server: uvicorn`` is off: one header less per answer, no banner."""
    gateway = Gateway.simulated_fleet(time_scale=0.0, log=None)
    with BackgroundServer(GatewayApp(gateway, None), http=http) as server:
        answer = httpx.get(f"{server.url}/health")
    gateway.close()
    assert answer.status_code == 200 and "server" not in answer.headers
    assert "date" in answer.headers


def test_a_request_without_key_or_user_is_served_as_parsed() -> None:
    """Without a key and a body ``user`` nothing about the caller changes: the parsed request
    itself goes to the gateway (no copy per call); with either, a copy carries them."""
    from aigw_lab.server.app import _for_client
    from aigw_lab.server.auth import ClientIdentity
    from aigw_lab.types import ChatRequest

    request = ChatRequest.create("sim-openai/sim-nano", "hi")
    assert _for_client(request, None) is request
    keyed = _for_client(request, ClientIdentity("team-a", tenant="t"))
    assert (keyed.tenant, keyed.user, keyed.tags["aigw_key"]) == ("t", "team-a", "team-a")
    with_user = ChatRequest.create("sim-openai/sim-nano", "hi", user="u")
    assert _for_client(with_user, None).user is None
    assert _for_client(with_user, None).metadata["client_user"] == "u"
    assert _for_client(with_user, None, trust_client_user=True) is with_user


def test_forwarded_headers_are_not_trusted_or_rewritten() -> None:
    """uvicorn's proxy-headers middleware is off: no middleware hop per request, and a
    client's X-Forwarded-For never becomes the request's client address."""
    seen: list[object] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append(scope.get("client"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn_config(app, ServerLimits(), log_level="warning", lifespan="off")
    assert config.proxy_headers is False
    with BackgroundServer(app, lifespan="off") as server:
        httpx.get(server.url, headers={"x-forwarded-for": "203.0.113.9"})
    assert seen and seen[0][0] == "127.0.0.1"
