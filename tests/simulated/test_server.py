"""The ASGI app behind ``aigw-lab simulate``: pacing, hangs, lifespan, routing."""

from __future__ import annotations

import asyncio

import httpx

from aigw_lab.sim.fleet import SimulatedFleet
from aigw_lab.sim_server import BackgroundServer, SimulatorApp

from .helpers import SleepRecorder, chat_body, sse_data


def test_server_paces_streams_with_the_fleets_async_sleep() -> None:
    recorder = SleepRecorder()
    fleet = SimulatedFleet(time_scale=1.0, async_sleep=recorder.async_)
    with BackgroundServer(fleet) as server, httpx.Client(timeout=5.0) as client:
        response = client.post(
            f"{server.url}/v1/chat/completions",
            json=chat_body("sim-nano", "Tell me about tides", stream=True, max_tokens=6),
        )
    assert sse_data(response.text)[-1] == "[DONE]"
    assert len(recorder.calls) == 1 + 6  # before the headers, then before each token
    assert all(seconds > 0 for seconds in recorder.calls)


def test_a_hang_ends_in_504_when_the_client_never_gives_up() -> None:
    fleet = SimulatedFleet(time_scale=0.0, faults={"timeout": 1.0}, hang_s=0.05)
    with BackgroundServer(fleet) as server, httpx.Client(timeout=5.0) as client:
        response = client.post(
            f"{server.url}/v1/messages",
            json={
                "model": "sim-haikuish",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
    assert response.status_code == 504
    assert response.headers["x-aigw-simulated"] == "true"


def test_routing_over_http(clean_server: BackgroundServer) -> None:
    with httpx.Client(timeout=5.0) as client:
        assert client.get(f"{clean_server.url}/v1/models").json()["object"] == "list"
        missing = client.post(f"{clean_server.url}/v1/embeddings", json={})
        assert missing.status_code == 404
        assert "no simulated endpoint" in missing.json()["error"]["message"]


async def test_lifespan_messages_are_answered() -> None:
    incoming = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        incoming.put_nowait({"type": kind})
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await SimulatorApp(SimulatedFleet()).__call__({"type": "lifespan"}, incoming.get, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
