"""`BaseProvider`: a provider class with a default for everything but answering, so a provider
that is not an HTTP API (a replay, a function, a test double, a plugin's in-process model)
writes two methods, ``chat`` and ``achat``, instead of the six of the `Provider` protocol.

It also declares what the gateway may ask a provider beyond the protocol: the models it
serves (``models``), its own price for one (``price_for``), the wire format it speaks
(``api_format``) and whether its answers are simulated (``simulated``). `traits` gives those
facts for any provider, including objects written only to the protocol.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from aigw_lab.providers.base import Price
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, TextDelta

__all__ = ["BaseProvider", "ProviderTraits", "traits", "word_pieces"]

# Streamed pieces: a word with the whitespace around it, so the pieces join to the text.
_PIECE = re.compile(r"\s*\S+\s*")


def word_pieces(text: str) -> list[str]:
    """``text`` in word-sized pieces that join back to exactly ``text``."""
    pieces = _PIECE.findall(text)
    return pieces if pieces else ([text] if text else [])


class ProviderTraits(Protocol):
    """What the gateway asks of a provider besides answering."""

    @property
    def name(self) -> str: ...

    @property
    def simulated(self) -> bool: ...

    @property
    def models(self) -> tuple[str, ...]: ...

    @property
    def api_format(self) -> str | None: ...

    def price_for(self, model: str) -> Price | None: ...


class BaseProvider:
    """A `Provider` with defaults: subclasses set ``name`` and write `chat` and `achat`.

    - `stream` / `astream` answer with `chat` / `achat`, then hand the text out in
      word-sized `TextDelta` pieces (`pieces`) and end with the `StreamEnd`; override them
      for a provider that really streams.
    - `achat` calls `chat` unless overridden: fine for a provider that answers at once,
      wrong for one that blocks (it would block the event loop).
    - `close` / `aclose` release nothing.
    - ``models`` (default: none known, any model name is sent), ``price_for`` (default:
      None, the gateway's price book decides), ``api_format`` (default None) and
      ``simulated`` (default False) are what the gateway reads about it.
    """

    name: str
    simulated: bool = False
    models: tuple[str, ...] = ()
    api_format: str | None = None

    def chat(self, request: ChatRequest) -> ChatResponse:
        """The answer to ``request``; raise an `aigw_lab.errors` error on failure."""
        raise NotImplementedError(f"{type(self).__name__} must define chat()")

    async def achat(self, request: ChatRequest) -> ChatResponse:
        """The answer to ``request`` in async code (default: `chat`, called directly)."""
        return self.chat(request)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """`TextDelta` pieces of `chat`'s answer, then exactly one `StreamEnd`."""
        response = self.chat(request)
        for piece in self.pieces(response.text):
            yield TextDelta(piece)
        yield StreamEnd(response)

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """`TextDelta` pieces of `achat`'s answer, then exactly one `StreamEnd`."""
        response = await self.achat(request)
        for piece in self.pieces(response.text):
            yield TextDelta(piece)
        yield StreamEnd(response)

    def pieces(self, text: str) -> list[str]:
        """How a streamed answer is cut (default: `word_pieces`)."""
        return word_pieces(text)

    def price_for(self, model: str) -> Price | None:
        """This provider's own price for ``model`` (USD per million tokens), or None."""
        return None

    def close(self) -> None:
        """Release what the provider holds (default: nothing)."""

    async def aclose(self) -> None:
        """Release what the provider holds, from async code (default: `close`)."""
        self.close()


class _ProtocolOnly:
    """The traits of a provider written only to the `Provider` protocol (not a
    `BaseProvider`): what it declares, else the defaults of `BaseProvider`."""

    __slots__ = ("_provider",)

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    @property
    def name(self) -> str:
        return str(self._provider.name)

    @property
    def simulated(self) -> bool:
        return bool(getattr(self._provider, "simulated", False))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(getattr(self._provider, "models", ()) or ())

    @property
    def api_format(self) -> str | None:
        return getattr(self._provider, "api_format", None)

    def price_for(self, model: str) -> Price | None:
        price_for = getattr(self._provider, "price_for", None)
        return price_for(model) if price_for is not None else None


def traits(provider: Any) -> ProviderTraits:
    """``provider``'s traits: itself for a `BaseProvider` (every built-in provider is one),
    else a view reading them with `BaseProvider`'s defaults, so providers written to the
    protocol alone (before `BaseProvider` existed, or a `Gateway` used as a provider) keep
    working."""
    if isinstance(provider, BaseProvider):
        return provider
    return _ProtocolOnly(provider)
