"""Fixtures for the experiment tests: a small dataset, fake providers, gateways over a real
DuckDB file, and scorers of our own (the tests do not depend on aigw_lab.scorers' scorers)."""

from __future__ import annotations

import asyncio

import pytest

from aigw_lab.datasets import Dataset
from aigw_lab.gateway import Gateway
from aigw_lab.providers.base import Price
from aigw_lab.scorers.base import Score, Scorer
from aigw_lab.testing.fakes import FunctionProvider
from aigw_lab.types import ChatRequest, ChatResponse, Usage

#: Output priced at $1 a token, input free: a unit's cost is its output token count in USD.
DOLLAR_PER_TOKEN = Price(input_per_mtok=0.0, output_per_mtok=1_000_000.0)


def small_dataset(n: int = 5, name: str = "tiny", *, references: bool = True) -> Dataset:
    """``n`` items ``What is i + i?``; ``references=False`` leaves out the reference answers
    (so the cost estimate cannot use them and falls back to ``max_tokens``)."""
    return Dataset.from_records(
        name,
        [
            {
                "id": f"q{i}",
                "prompt": f"What is {i} + {i}?",
                "reference": str(2 * i) if references else None,
                "category": "arithmetic" if i % 2 else "other",
                "difficulty": "easy",
            }
            for i in range(n)
        ],
        source="test",
    )


def answer_sum(request: ChatRequest) -> str:
    """The right answer to a ``What is i + i?`` prompt: one short token."""
    words = request.messages[-1].text.split()
    return str(2 * int(words[2]))


class ReferenceMatch(Scorer):
    """1.0 when the reference is in the answer."""

    name = "match"

    def score(self, item, response):
        return Score(self.name, float(str(item.reference) in response.text), label="checked")


class Exploding(Scorer):
    name = "exploding"

    def score(self, item, response):
        raise ValueError(f"cannot grade {item.id}")


class AsyncCounting(FunctionProvider):
    """A fake whose async calls really yield, counting how many are in flight at once."""

    def __init__(self, function=answer_sum, name: str = "fake") -> None:
        super().__init__(function, name)
        self.in_flight = 0
        self.max_in_flight = 0

    async def achat(self, request: ChatRequest) -> ChatResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return self._respond(request)
        finally:
            self.in_flight -= 1


def fixed_response(text: str, output_tokens: int = 1) -> ChatResponse:
    return ChatResponse(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=5, output_tokens=output_tokens),
        provider="fake",
        model="m",
    )


@pytest.fixture
def db(tmp_path):
    return tmp_path / "experiments.duckdb"


@pytest.fixture
def make_gateway(db):
    """Gateways over ``provider`` (an answer_sum fake by default), logging to ``db``; all
    closed at the end of the test."""
    made: list[Gateway] = []

    def make(provider=None, **kwargs) -> Gateway:
        provider = provider or FunctionProvider(answer_sum, "fake")
        kwargs.setdefault("prices", {"fake/m": DOLLAR_PER_TOKEN, "fake/other": DOLLAR_PER_TOKEN})
        gateway = Gateway([provider], log=str(db), **kwargs)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()
