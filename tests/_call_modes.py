"""One call in any of the four call modes (chat, achat, stream, astream), for tests that
hold a stage to the same behaviour in each; and a provider whose streams break after text."""

from __future__ import annotations

import asyncio
from typing import Any

from aigw_lab.errors import ProviderServerError, StreamInterruptedError
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import TextDelta

MODES = ("chat", "achat", "stream", "astream")
STREAM_MODES = ("stream", "astream")


def call_in_mode(gw: Any, mode: str, address: str, prompt: str = "hi") -> tuple[Any, list[str]]:
    """Run one call to ``address`` in ``mode`` (async modes on a fresh event loop): the final
    response and the texts the caller received (a stream read to its end)."""
    if mode == "chat":
        response = gw.chat(address, prompt)
        return response, [response.text]
    if mode == "stream":
        stream = gw.stream(address, prompt)
        texts = list(stream)
        return stream.response, texts
    if mode not in ("achat", "astream"):
        raise ValueError(f"unknown call mode {mode!r}")

    async def run() -> tuple[Any, list[str]]:
        if mode == "achat":
            response = await gw.achat(address, prompt)
            return response, [response.text]
        stream = gw.astream(address, prompt)
        texts = [text async for text in stream]
        return stream.response, texts

    return asyncio.run(run())


def read_until_error(gw: Any, mode: str, address: str, received: list[str]) -> None:
    """Stream ``address`` in ``mode`` (a stream mode), appending each text to ``received``
    as it arrives, so a test sees what got out before an error."""
    if mode == "stream":
        for text in gw.stream(address, "hi"):
            received.append(text)
        return

    async def consume() -> None:
        async for text in gw.astream(address, "hi"):
            received.append(text)

    asyncio.run(consume())


class CutAfterText(MockProvider):
    """Streams some text, then breaks (a stream interrupted after delivering text); a chat
    call to it fails with a server error."""

    def chat(self, request):
        self.requests.append(request)
        raise ProviderServerError("down", provider=self.name, model=request.model, status=500)

    async def achat(self, request):
        return self.chat(request)

    def stream(self, request):
        self.requests.append(request)
        yield TextDelta("partial ")
        raise StreamInterruptedError(
            "cut",
            partial_text="partial ",
            text_delivered=True,
            provider=self.name,
            model=request.model,
        )

    async def astream(self, request):
        for event in self.stream(request):
            yield event
