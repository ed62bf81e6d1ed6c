"""The providers one gateway can call, by name: `ProviderSpec` objects (built on first use,
so a missing API key only matters for the provider that needs it) and ready `Provider`
objects, and what the gateway asks about each (kind, known models, own prices, wire format,
simulated), without building a provider that needs a key.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from aigw_lab.errors import ConfigError, UnknownModelError, UnknownProviderError
from aigw_lab.gateway.reliability import Fallbacks, check_fallback_targets
from aigw_lab.providers.base import HttpClients, Price, Provider, ProviderSpec
from aigw_lab.providers.base_provider import traits
from aigw_lab.providers.kinds import ProviderKind
from aigw_lab.providers.registry import build_provider, default_registry
from aigw_lab.types import ChatRequest

if TYPE_CHECKING:
    from aigw_lab.gateway.middleware import CallContext, Middleware

__all__ = ["Targets", "choices_hint", "with_model"]


class Targets:
    """A gateway's providers by name (``specs`` and built or ready ``providers``)."""

    def __init__(
        self,
        items: Iterable[ProviderSpec | Provider],
        *,
        clients: HttpClients,
        env: Mapping[str, str] | None,
    ) -> None:
        self.specs: dict[str, ProviderSpec] = {}
        self.providers: dict[str, Provider] = {}
        for item in items:
            name = item.name
            if name in self.specs or name in self.providers:
                raise ConfigError(
                    f"provider name {name!r} is used twice", hint="give each provider its own name"
                )
            if isinstance(item, ProviderSpec):
                self.specs[name] = item
            else:
                self.providers[name] = item
        self._clients = clients
        self._env = env
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return sorted({*self.specs, *self.providers})

    def provider(self, name: str) -> Provider:
        """The provider called ``name``, built on first use."""
        found = self.providers.get(name)
        if found is not None:
            return found
        spec = self.specs.get(name)
        if spec is None:
            raise UnknownProviderError(
                f"unknown provider {name!r}",
                hint=choices_hint(name, self.names, "configured providers"),
            )
        with self._lock:
            found = self.providers.get(name)
            if found is None:
                found = build_provider(spec, self._clients, env=self._env)
                self.providers[name] = found
        return found

    def target(self, ctx: CallContext) -> tuple[Provider, ChatRequest]:
        """The provider and request of the context's current target (the attempt's)."""
        provider = self.provider(ctx.provider_name)
        known = self.known_models(ctx.provider_name)
        if known and ctx.model not in known:
            raise UnknownModelError(
                f"{ctx.provider_name} has no model {ctx.model!r}",
                hint=choices_hint(ctx.model, list(known), f"models of {ctx.provider_name}"),
            )
        request = ctx.request
        if request.model != ctx.model:
            request = with_model(request, ctx.model)
        return provider, request

    def built(self) -> list[Provider]:
        """The providers built here from specs (ready ones are their owners' to close)."""
        return [p for name, p in list(self.providers.items()) if name in self.specs]

    def kind(self, name: str) -> ProviderKind | None:
        """The kind of the configured provider ``name`` (None: a provider passed in ready-made,
        or a spec naming no known kind, which fails when it is built)."""
        spec = self.specs.get(name)
        return default_registry().find(spec.kind) if spec is not None else None

    @staticmethod
    def price_id(spec: ProviderSpec) -> str | None:
        """The genai-prices provider id of ``spec``: its own, else its kind's."""
        kind = default_registry().find(spec.kind)
        return spec.price_provider_id or (kind.price_provider_id if kind is not None else None)

    def known_models(self, name: str) -> tuple[str, ...]:
        spec = self.specs.get(name)
        if spec is not None and spec.models:
            return spec.models
        provider = self.providers.get(name)
        if provider is None and spec is not None:
            kind = self.kind(name)
            if kind is None or not kind.local:
                return ()
            provider = self.provider(name)  # needs no key; it knows its models
        return traits(provider).models if provider is not None else ()

    def own_price(self, name: str, model: str) -> Price | None:
        """A provider's own price for a model, for providers that know it (the simulated
        fleet, replays of recorded data): `BaseProvider.price_for`."""
        provider = self.providers.get(name)
        if provider is None:
            kind = self.kind(name)
            if kind is None or not kind.local:
                return None
            # Priced before its first call (a budget's estimate): build it now, since the
            # price book remembers an unknown price for good.
            provider = self.provider(name)
        return traits(provider).price_for(model)

    def api_format(self, name: str) -> str | None:
        provider = self.providers.get(name)
        return traits(provider).api_format if provider is not None else None

    def is_simulated(self, name: str) -> bool:
        provider = self.providers.get(name)
        if provider is not None:
            return traits(provider).simulated
        kind = self.kind(name)
        return kind is not None and kind.simulated

    def check_fallbacks(
        self, middleware: Iterable[Middleware], default_provider: str | None
    ) -> None:
        """Fallback targets of a `Retry` given in Python must name providers (and models)
        this gateway has, as ``[fallbacks]`` in a config file must: a typo would otherwise
        show itself only in the outage the fallback was meant for."""
        # Any middleware may hold fallbacks (a custom retry does not have to).
        fallbacks = [
            found
            for m in middleware
            if isinstance(found := getattr(m, "fallbacks", None), Fallbacks)
            and (found.chains or found.default or found.context_windows)
        ]
        if not fallbacks:
            return

        # Models only where known without building a provider (None: any model name): a
        # spec's from its kind, as a config's [fallbacks] are checked; a ready-made
        # provider's (the policies' pseudo-provider among them) from the provider.
        known: dict[str, tuple[str, ...] | None] = {}
        for name in self.names:
            spec = self.specs.get(name)
            if spec is not None:
                known[name] = default_registry().known_models(spec)
            else:
                known[name] = tuple(getattr(self.providers[name], "models", ()) or ()) or None
        for found in fallbacks:
            check_fallback_targets(found, known, default_provider=default_provider)


def with_model(request: ChatRequest, model: str) -> ChatRequest:
    """``dataclasses.replace(request, model=model)`` at about a third of its cost (it runs on
    every call: the request names ``provider/model``, the provider gets ``model``). The
    same value because `ChatRequest` has no ``__post_init__`` and its one field
    ``init=False`` is the labels' encoded text, which the copy may keep: its tags and
    metadata are the original's (tests/gateway/test_with_model.py checks this, and equality
    with ``replace``)."""
    copy = _new(ChatRequest)
    for name in ChatRequest.__slots__:
        _set(copy, name, getattr(request, name))
    _set(copy, "model", model)
    return copy


_new = object.__new__
_set = object.__setattr__  # a frozen dataclass's fields are set this way by its own __init__


def choices_hint(name: str, choices: list[str], what: str) -> str:
    """A hint listing ``choices`` (the closest to ``name`` first, if one is close)."""
    close = difflib.get_close_matches(name, choices, n=1)
    listed = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:12]) + ", ..."
    prefix = f"did you mean {close[0]!r}? " if close else ""
    return f"{prefix}{what}: {listed}"
