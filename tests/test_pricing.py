import warnings

import pytest

from aigw_lab.pricing import PriceBook, UnknownPriceWarning, cost_of
from aigw_lab.providers.base import Price
from aigw_lab.types import Usage


def test_cost_of_bills_cached_input_at_its_own_rates():
    price = Price(
        input_per_mtok=1.0, output_per_mtok=4.0, cache_read_per_mtok=0.1, cache_write_per_mtok=1.25
    )
    usage = Usage(
        input_tokens=1_000, output_tokens=500, cache_read_tokens=200, cache_write_tokens=100
    )
    expected = (700 * 1.0 + 200 * 0.1 + 100 * 1.25 + 500 * 4.0) / 1e6
    assert cost_of(price, usage) == pytest.approx(expected)


def test_cache_rates_default_to_input_rate():
    price = Price(2.0, 8.0)
    assert cost_of(
        price, Usage(input_tokens=100, output_tokens=10, cache_read_tokens=50)
    ) == pytest.approx((100 * 2 + 10 * 8) / 1e6)


def test_override_beats_known_beats_genai_prices():
    book = PriceBook(
        {"p/a": Price(1, 1)},
        price_ids={"p": "openai"},
        known={"p": lambda model: Price(5, 5) if model in ("a", "b") else None},
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert book.cost("p", "a", usage) == pytest.approx(1.0)
    assert book.cost("p", "b", usage) == pytest.approx(5.0)
    # gpt-4o-mini comes from the genai-prices database, offline: 0.15 USD per M input tokens.
    assert book.cost("p", "gpt-4o-mini", usage) == pytest.approx(0.15)


def test_genai_prices_for_anthropic_and_workers_ai_with_cache_details():
    book = PriceBook(price_ids={"a": "anthropic", "cf": "cloudflare"})
    price = book.price("a", "claude-3-5-haiku-latest")
    assert price is not None and price.cache_read_per_mtok < price.input_per_mtok
    assert (
        book.cost(
            "cf", "@cf/meta/llama-3.1-8b-instruct", Usage(input_tokens=1000, output_tokens=500)
        )
        > 0
    )


def test_unknown_model_costs_none_and_warns_once():
    book = PriceBook(price_ids={"p": "openai"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            book.cost(
                "p", "model-that-does-not-exist-xyz", Usage(input_tokens=10, output_tokens=10)
            )
            is None
        )
        assert (
            book.cost(
                "p", "model-that-does-not-exist-xyz", Usage(input_tokens=10, output_tokens=10)
            )
            is None
        )
    unknown = [w for w in caught if issubclass(w.category, UnknownPriceWarning)]
    assert len(unknown) == 1
    assert "[prices" in str(unknown[0].message)


def test_set_override_replaces_a_cached_price():
    book = PriceBook(use_genai_prices=False, known={"p": lambda m: Price(1, 1)})
    assert book.cost("p", "m", Usage(input_tokens=1_000_000, output_tokens=0)) == pytest.approx(1.0)
    book.set_override("p", "m", Price(3, 3))
    assert book.cost("p", "m", Usage(input_tokens=1_000_000, output_tokens=0)) == pytest.approx(3.0)


def test_tiered_prices_fall_back_to_genai_prices_arithmetic():
    from genai_prices import Usage as GPUsage
    from genai_prices import calc_price

    book = PriceBook(price_ids={"g": "google"})
    usage = Usage(input_tokens=300_000, output_tokens=1_000)
    expected = float(
        calc_price(
            GPUsage(input_tokens=300_000, output_tokens=1_000),
            model_ref="gemini-2.5-pro",
            provider_id="google",
        ).total_price
    )
    assert book.cost("g", "gemini-2.5-pro", usage) == pytest.approx(expected)
    assert book.price("g", "gemini-2.5-pro") is None  # tiered: no single per-token price
