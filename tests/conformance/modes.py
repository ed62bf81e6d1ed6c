"""The four call modes behind one adapter, so each invariant is written once.

A `Mode` makes a call the way a caller of that mode does and reports what the caller saw
(`Seen`): the text pieces in order, the final response, the error. ``abandon`` walks away
from a stream after its first text; ``cancel`` stops a call while the upstream holds it:
an async task is cancelled (``task.cancel()``), a sync caller is interrupted (the upstream
raises ``KeyboardInterrupt``, as Ctrl-C would inside the call).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aigw_lab.gateway import Gateway
from aigw_lab.types import ChatResponse

from .doubles import Step, Upstream, interrupt

__all__ = ["MODES", "Mode", "Seen", "no_gc"]

PROMPT = "Say four words please"


@dataclass
class Seen:
    """What one caller saw: ``pieces`` of text (one, the whole text, for plain calls), the
    final ``response`` (None if the call did not end normally), the ``error`` raised."""

    pieces: list[str] = field(default_factory=list)
    response: ChatResponse | None = None
    error: BaseException | None = None
    #: What an ``abandon`` check returned.
    checked: Any = None
    #: The abandoned stream object itself, so that nothing but its close can have ended it.
    handle: Any = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@contextmanager
def no_gc() -> Iterator[None]:
    """Keep the garbage collector out: what happens here happens because the gateway did it,
    not because a finaliser ran."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Mode:
    """One call mode: ``chat``, ``achat``, ``stream`` or ``astream``."""

    name: str

    @property
    def is_async(self) -> bool:
        return self.name.startswith("a")

    @property
    def streams(self) -> bool:
        return self.name.endswith("stream")

    def __str__(self) -> str:
        return self.name

    # --- one whole call -------------------------------------------------------------------

    def call(self, gw: Gateway, model: str, prompt: str = PROMPT, **params: Any) -> Seen:
        """Make one call and consume it fully; errors are caught into `Seen.error`."""
        if self.is_async:
            return asyncio.run(self.acall(gw, model, prompt, **params))
        seen = Seen()
        try:
            if self.streams:
                stream = gw.stream(model, prompt, **params)
                with stream:
                    for piece in stream:
                        seen.pieces.append(piece)
                seen.response = stream.response
            else:
                seen.response = gw.chat(model, prompt, **params)
                seen.pieces.append(seen.response.text)
        except Exception as exc:  # noqa: BLE001 - the caller's view is what is checked
            seen.error = exc
        return seen

    async def acall(self, gw: Gateway, model: str, prompt: str = PROMPT, **params: Any) -> Seen:
        """`call` inside a running loop (async modes only)."""
        seen = Seen()
        try:
            if self.streams:
                stream = gw.astream(model, prompt, **params)
                async with stream:
                    async for piece in stream:
                        seen.pieces.append(piece)
                seen.response = stream.response
            else:
                seen.response = await gw.achat(model, prompt, **params)
                seen.pieces.append(seen.response.text)
        except Exception as exc:  # noqa: BLE001
            seen.error = exc
        return seen

    # --- walking away ---------------------------------------------------------------------

    def abandon(
        self,
        gw: Gateway,
        model: str,
        prompt: str = PROMPT,
        *,
        check: Callable[[], Any] | None = None,
        **params: Any,
    ) -> Seen:
        """Read the first text of a stream, then close it (stream modes only). ``check`` runs
        right after the close returns, while the stream object is still referenced and (in
        async mode) its event loop still runs, with the garbage collector off: what it sees
        was done by the close itself, not by a finaliser or the loop's shutdown of
        unfinished generators. Its result is `Seen.checked`."""
        assert self.streams, "only a stream can be abandoned"
        seen = Seen()
        if self.is_async:

            async def run() -> None:
                stream = gw.astream(model, prompt, **params)
                async for piece in stream:
                    seen.pieces.append(piece)
                    break
                await stream.aclose()
                if check is not None:
                    seen.checked = check()
                seen.handle = stream  # referenced as long as the caller keeps `seen`

            with no_gc():
                asyncio.run(run())
            return seen
        with no_gc():
            stream = gw.stream(model, prompt, **params)
            for piece in stream:
                seen.pieces.append(piece)
                break
            stream.close()
            if check is not None:
                seen.checked = check()
            seen.handle = stream
        return seen

    def cancel(self, gw: Gateway, upstream: Upstream, model: str, **params: Any) -> Seen:
        """Stop a call while the upstream holds it: a cancelled task (async modes) or an
        interrupt inside the call (sync modes). Returns what the caller saw."""
        if self.is_async:
            upstream.script(Step(hold=True))
            return asyncio.run(self._cancel_task(gw, upstream, model, **params))
        upstream.script(Step(fail=interrupt))
        seen = Seen()
        try:
            self.call_raising(gw, model, **params)
        except KeyboardInterrupt as exc:
            seen.error = exc
        return seen

    def call_raising(self, gw: Gateway, model: str, prompt: str = PROMPT, **params: Any) -> None:
        """A sync call that lets every exception through (``call`` keeps only `Exception`)."""
        if self.streams:
            with gw.stream(model, prompt, **params) as stream:
                for _ in stream:
                    pass
        else:
            gw.chat(model, prompt, **params)

    async def _cancel_task(
        self, gw: Gateway, upstream: Upstream, model: str, **params: Any
    ) -> Seen:
        upstream.entered.clear()
        task = asyncio.ensure_future(self._araise(gw, model, **params))
        await upstream.await_entered()
        task.cancel()
        seen = Seen()
        try:
            await task
        except asyncio.CancelledError as exc:
            seen.error = exc
        except Exception as exc:  # noqa: BLE001 - reported, so the test names it
            seen.error = exc
        upstream.release()
        return seen

    async def _araise(self, gw: Gateway, model: str, prompt: str = PROMPT, **params: Any) -> None:
        if self.streams:
            async with gw.astream(model, prompt, **params) as stream:
                async for _ in stream:
                    pass
        else:
            await gw.achat(model, prompt, **params)


MODES = tuple(Mode(name) for name in ("chat", "achat", "stream", "astream"))
