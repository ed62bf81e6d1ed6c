"""``bench_peers.py``'s "raw direct" side: the least any client over the lean transport's
direct path (`aigw_lab.providers.lean_direct`) must do, the gateway's baseline with
``--transport lean``/``auto``. Kept apart so bench_peers.py stays under ~600 lines."""

from __future__ import annotations

import json


class RawDirect:
    """The least any client over the lean transport's direct path must do
    (`aigw_lab.providers.lean_direct`): the request head built once, the JSON body encoded
    per call, the transport's ``fetch``/``open`` called with no client around it, the JSON
    answer parsed. The gateway's baseline with ``--transport lean``/``auto``: its added CPU
    over this is its own work, never a cheaper client's saving."""

    name = "raw direct"

    def __init__(self, base_url: str, model: str, messages: list[dict[str, str]]) -> None:
        import httpx  # lazy: the server process never needs it

        from aigw_lab.providers.lean import LeanTransport  # lazy: only --transport lean/auto
        from aigw_lab.providers.lean_async import AsyncLeanTransport  # lazy: as above
        from aigw_lab.providers.lean_direct import RequestHead  # lazy: as above

        self.model, self.messages = model, messages
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        url = httpx.URL(f"{base_url}/chat/completions")
        head = RequestHead.build(httpx.Client().headers, url, {"authorization": "Bearer bench-key"})
        assert head is not None
        self.head = head
        self.timeouts = {"connect": 10.0, "read": 60.0, "write": 60.0, "pool": 5.0}
        self.transport = LeanTransport(limits)
        self.atransport: AsyncLeanTransport | None = None
        self.atransport_type = AsyncLeanTransport
        self.limits = limits

    def _request(self, stream: bool = False) -> object:
        body: dict[str, object] = {"model": self.model, "messages": self.messages}
        body["max_tokens"] = 16
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return self.head.request(content, self.timeouts)

    def call(self) -> str:
        answer = self.transport.fetch(self._request())
        return json.loads(answer.content)["choices"][0]["message"]["content"]

    async def acall(self) -> str:
        if self.atransport is None:  # one per event loop, made inside it
            self.atransport = self.atransport_type(self.limits)
        answer = await self.atransport.fetch(self._request())
        return json.loads(answer.content)["choices"][0]["message"]["content"]

    def stream(self) -> str:
        parts = []
        response = self.transport.open(self._request(stream=True))
        try:
            buffer = b""
            for piece in response.iter_bytes():
                buffer += piece
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.startswith(b"data: ") or line == b"data: [DONE]":
                        continue
                    for choice in json.loads(line[6:])["choices"]:
                        parts.append(choice["delta"].get("content") or "")
        finally:
            response.close()
        return "".join(parts)

    def end_round(self) -> None:
        """Nothing owed at a round's end."""

    async def aclose(self) -> None:
        if self.atransport is not None:
            await self.atransport.aclose()

    def close(self) -> None:
        self.transport.close()
