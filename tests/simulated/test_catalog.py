"""The fleet's catalog: tokenizer, model profiles, fault-rate knobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.sim.catalog import (
    CATEGORIES,
    DEFAULT_MODELS,
    FAULT_KINDS,
    SIM_PROVIDERS,
    FaultRates,
    approx_tokens,
    token_pieces,
)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello, world!",
        "  leading and trailing  ",
        "internationalisation 1234567 x\ny\n",
        "naïve café — ok?",
        "a_b__c",
        "\n\n",
    ],
)
def test_token_pieces_rebuild_the_text_and_match_the_count(text: str) -> None:
    pieces = token_pieces(text)
    assert "".join(pieces) == text
    assert len(pieces) == approx_tokens(text) or (text.isspace() and pieces == [text])


def test_tokenizer_rules() -> None:
    assert token_pieces("The cat sat.") == ["The", " cat", " sat", "."]
    # long words: one token per 6 letters; numbers: one per 3 digits
    assert token_pieces("extraordinary") == ["extrao", "rdinar", "y"]
    assert token_pieces("1234567") == ["123", "456", "7"]


def test_fleet_has_every_category_and_a_market_shape() -> None:
    assert 6 <= len(DEFAULT_MODELS) <= 8
    assert {m.provider for m in DEFAULT_MODELS} == set(SIM_PROVIDERS)
    for model in DEFAULT_MODELS:
        assert model.id.startswith("sim-")
        assert set(model.accuracy) == set(CATEGORIES)
        assert model.api_format == SIM_PROVIDERS[model.provider]
    # Within each provider, pricier models are slower and better on average.
    for provider in SIM_PROVIDERS:
        family = sorted(
            (m for m in DEFAULT_MODELS if m.provider == provider),
            key=lambda m: m.price.output_per_mtok,
        )
        for cheap, dear in zip(family, family[1:], strict=False):
            assert cheap.latency.tokens_per_s > dear.latency.tokens_per_s
            assert cheap.latency.ttft_median_s < dear.latency.ttft_median_s
            mean = lambda m: sum(m.accuracy.values()) / len(m.accuracy)  # noqa: E731
            assert mean(cheap) < mean(dear)


def test_specialists_beat_pricier_generalists_somewhere() -> None:
    """Routing has something to learn: some category's best value is not the priciest."""
    by_id = {m.id: m for m in DEFAULT_MODELS}
    assert (
        by_id["sim-haikuish"].accuracy["summarisation"]
        > by_id["sim-large"].accuracy["summarisation"]
    )
    assert (
        by_id["sim-llamaish-70b"].accuracy["arithmetic"] > by_id["sim-small"].accuracy["arithmetic"]
    )
    assert by_id["sim-small"].accuracy["extraction"] > by_id["sim-haikuish"].accuracy["extraction"]


def test_difficulty_shifts_accuracy_monotonically() -> None:
    for model in DEFAULT_MODELS:
        for category in CATEGORIES:
            easy, medium, hard = (model.p_correct(category, d) for d in ("easy", "medium", "hard"))
            assert easy > medium > hard
            assert medium == model.accuracy[category]


def test_fault_rates_coerce_and_pick() -> None:
    rates = FaultRates.coerce({"fault_rate": 0.7, "timeout": 0.0})
    assert rates.rate_limited == pytest.approx(0.1)
    assert rates.timeout == 0.0
    assert rates.total == pytest.approx(0.6)
    assert rates.pick(0.05) == "rate_limited"
    assert rates.pick(0.65) is None
    order = FaultRates(**{k: 0.1 for k in FAULT_KINDS})
    assert [order.pick(0.1 * i + 0.05) for i in range(len(FAULT_KINDS))] == list(FAULT_KINDS)
    assert FaultRates.coerce(None).total == 0.0
    assert FaultRates.coerce({"retry_after_s": [2, 3]}).retry_after_s == (2, 3)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"rate_limt": 0.1}, "unknown fault kind"),
        ({"timeout": 1.5}, "not a probability"),
        ({"timeout": 0.6, "server_error": 0.6}, "more than 1"),
        ([0.1], "must be a mapping"),
        ({"retry_after_s": (5, 1)}, "range"),
    ],
)
def test_fault_rates_reject_bad_settings(bad: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        FaultRates.coerce(bad)  # type: ignore[arg-type]


def test_docs_tables_match_the_catalog() -> None:
    """docs/simulated_fleet.md restates the catalog; this keeps the two from drifting."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "simulated_fleet.md").read_text(
        encoding="utf-8"
    )
    for m in DEFAULT_MODELS:
        lat = m.latency
        rows = [
            f"| `{m.id}` | `{m.provider}` ({m.api_format}) | {m.price.input_per_mtok:.2f} | "
            f"{m.price.output_per_mtok:.2f} | {m.context_window:,} | {m.description} |",
            f"| `{m.id}` | {lat.ttft_median_s:.2f} | {lat.ttft_sigma:.2f} | "
            f"{lat.outlier_prob:.0%} at x{lat.outlier_factor:g} | {lat.ttft_mean_s:.2f} | "
            f"{lat.tokens_per_s:g} |",
            f"| `{m.id}` | "
            + " | ".join(
                f"{m.p_correct(c, 'easy'):.2f} / **{m.accuracy[c]:.2f}** / "
                f"{m.p_correct(c, 'hard'):.2f}"
                for c in CATEGORIES
            )
            + " |",
        ]
        for row in rows:
            assert row in docs, row
