"""Cost accounting: the USD price of a call from its token usage.

Prices come, in this order, from: an explicit override (the config's ``[prices]`` table or the
provider's own ``prices``; Cloudflare calls these custom costs), a provider that knows its own
prices (the simulated fleet, a replay of recorded data), and the genai-prices database, which
works offline. A model whose price is unknown gets cost ``None`` and one `UnknownPriceWarning`,
never a made-up number. A call whose provider reported no usage (``Usage.known`` False) is
also priced ``None`` (without a warning): its cost is unknown, not zero.

Resolved prices are cached per (provider, model), so pricing a call costs a dictionary lookup
and a few multiplications, not a database search.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from aigw_lab.providers.base import Price
from aigw_lab.types import Usage

__all__ = ["PriceBook", "UnknownPriceWarning", "cost_of"]


class UnknownPriceWarning(UserWarning):
    """No price is known for a model, so its calls are logged with cost NULL."""


def cost_of(price: Price, usage: Usage) -> float:
    """USD cost of ``usage`` at ``price``; cached input is billed at its own rates when set.

    ``usage.input_tokens`` includes cache reads and writes (OpenTelemetry semantics), so the
    uncached part is what remains after taking them out.
    """
    cache_read = usage.cache_read_tokens
    cache_write = usage.cache_write_tokens
    uncached = max(0, usage.input_tokens - cache_read - cache_write)
    input_rate = price.input_per_mtok
    read_rate = input_rate if price.cache_read_per_mtok is None else price.cache_read_per_mtok
    write_rate = input_rate if price.cache_write_per_mtok is None else price.cache_write_per_mtok
    return (
        uncached * input_rate
        + cache_read * read_rate
        + cache_write * write_rate
        + usage.output_tokens * price.output_per_mtok
    ) / 1_000_000


# A resolved entry: a Price (fast path), a callable computing cost (genai-prices fallback for
# tiered prices), or None (unknown).
_Resolved = Price | Callable[[Usage], float] | None


class PriceBook:
    """Resolves and caches model prices for one gateway.

    ``overrides`` maps ``"provider/model"`` to a `Price`; ``price_ids`` maps a provider name
    to its genai-prices provider id (its kind's `ProviderKind.price_provider_id` unless the
    config sets ``price_provider_id``; ``None`` means: let genai-prices guess from the model name
    or the ``api_urls``); ``known`` maps a provider name to a function giving that provider's
    own price for a model (the simulated fleet uses it).
    """

    def __init__(
        self,
        overrides: Mapping[str, Price] | None = None,
        *,
        price_ids: Mapping[str, str | None] | None = None,
        api_urls: Mapping[str, str | None] | None = None,
        known: Mapping[str, Callable[[str], Price | None]] | None = None,
        use_genai_prices: bool = True,
    ) -> None:
        self._overrides = dict(overrides or {})
        self._price_ids = dict(price_ids or {})
        self._api_urls = dict(api_urls or {})
        self._known = dict(known or {})
        self._use_genai_prices = use_genai_prices
        self._cache: dict[tuple[str, str], _Resolved] = {}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def set_override(self, provider: str, model: str, price: Price) -> None:
        """Set or replace one model's price (takes effect for the next call)."""
        with self._lock:
            self._overrides[f"{provider}/{model}"] = price
            self._cache.pop((provider, model), None)

    def price(self, provider: str, model: str) -> Price | None:
        """The per-token price used for this model, or None when unknown or tiered."""
        resolved = self._resolve(provider, model)
        return resolved if isinstance(resolved, Price) else None

    def cost(self, provider: str, model: str, usage: Usage, *, warn: bool = True) -> float | None:
        """USD cost of a call, or None when the model's price is unknown or the provider
        did not report the usage (``usage.known`` False): an unknown cost, never 0.

        An unknown price gives one `UnknownPriceWarning` per model, on the first call that
        needed it; ``warn=False`` is for pricing what has not been sent (an experiment's cost
        estimate says which targets it could not price in its own words)."""
        if not usage.known:
            return None
        resolved = self._cache.get((provider, model), _MISSING)
        if resolved is _MISSING:
            resolved = self._resolve(provider, model)
        if resolved is None:
            if warn and (provider, model) not in self._warned:
                self._warn_unknown(provider, model)
            return None
        if isinstance(resolved, Price):
            return cost_of(resolved, usage)
        return resolved(usage)

    def _resolve(self, provider: str, model: str) -> _Resolved:
        key = (provider, model)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        resolved: _Resolved = self._overrides.get(f"{provider}/{model}")
        if resolved is None and provider in self._known:
            resolved = self._known[provider](model)
        if resolved is None and self._use_genai_prices:
            resolved = _from_genai_prices(
                model, self._price_ids.get(provider), self._api_urls.get(provider)
            )
        with self._lock:
            self._cache[key] = resolved
        return resolved

    def _warn_unknown(self, provider: str, model: str) -> None:
        with self._lock:
            if (provider, model) in self._warned:
                return
            self._warned.add((provider, model))
        warnings.warn(
            f"no price known for {provider}/{model}: its calls are logged with cost NULL. "
            "Add a price under [prices] in the config, e.g. "
            f'[prices."{provider}/{model}"] input_per_mtok = 0.5, output_per_mtok = 1.5',
            UnknownPriceWarning,
            stacklevel=4,
        )


_MISSING: Any = object()


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return _TIERED  # a tiered price object: not a single number


_TIERED: Any = object()


def _from_genai_prices(model: str, provider_id: str | None, api_url: str | None) -> _Resolved:
    """Look a model up in genai-prices (offline data shipped with the package)."""
    try:
        # lazy: genai-prices (with pydantic) loads in ~0.2 s; only an unknown price needs it
        from genai_prices import Usage as GPUsage
        from genai_prices import calc_price
    except ImportError:  # pragma: no cover - genai-prices is a dependency
        return None
    kwargs: dict[str, Any] = {}
    if provider_id:
        kwargs["provider_id"] = provider_id
    elif api_url:
        kwargs["provider_api_url"] = api_url
    try:
        found = calc_price(GPUsage(input_tokens=0, output_tokens=0), model_ref=model, **kwargs)
    except LookupError:
        return None
    except Exception:  # genai-prices raises its own errors for unknown models/providers
        return None
    mp = found.model_price
    rates = [
        _as_float(getattr(mp, name, None))
        for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    ]
    if any(r is _TIERED for r in rates) or rates[0] is None or rates[1] is None:
        # Tiered or partial prices: let genai-prices do the arithmetic for each call.
        def tiered(usage: Usage) -> float:
            calc = mp.calc_price(
                GPUsage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=usage.cache_read_tokens or None,
                    cache_write_tokens=usage.cache_write_tokens or None,
                )
            )
            return float(calc["total_price"] if isinstance(calc, dict) else calc.total_price)

        return tiered
    return Price(rates[0], rates[1], rates[2], rates[3])
