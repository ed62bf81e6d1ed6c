"""Helpers shared by the simulated fleet's tests."""

from __future__ import annotations

from typing import Any

import httpx

from aigw_lab.sim.fleet import SimulatedFleet


class SleepRecorder:
    """Stands in for time.sleep / asyncio.sleep and records every requested duration."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

    async def async_(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_fleet(**kwargs: Any) -> SimulatedFleet:
    """A fleet whose sleeps are recorded, never slept (kwargs override the defaults)."""
    recorder = SleepRecorder()
    kwargs.setdefault("time_scale", 0.0)
    kwargs.setdefault("sleep", recorder)
    kwargs.setdefault("async_sleep", recorder.async_)
    return SimulatedFleet(**kwargs)


def client_for(fleet: SimulatedFleet) -> httpx.Client:
    return httpx.Client(transport=fleet.transport(), base_url="http://sim.test")


def chat_body(model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]
