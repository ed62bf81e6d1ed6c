"""The models of the simulated fleet: prices, context windows, latency and quality profiles,
fault knobs, and the approximate tokenizer every simulated count comes from.

Nothing here describes a real model. The numbers are invented so that the fleet has the
shape of a real market (cheap models are fast and weak, big ones slow, pricey and strong,
and each has a category it is unusually good at) and give routing and caching experiments
something to learn. See ``docs/simulated_fleet.md`` for the tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.providers.base import Price

__all__ = [
    "CATEGORIES",
    "DIFFICULTY_LOGIT_SHIFT",
    "FAULT_KINDS",
    "FaultRates",
    "LatencyProfile",
    "SimModel",
    "DEFAULT_MODELS",
    "SIM_PROVIDERS",
    "approx_tokens",
    "token_pieces",
]

#: Task categories of the bundled dataset, in the order the docs list them.
CATEGORIES: tuple[str, ...] = (
    "arithmetic",
    "factual_qa",
    "multiple_choice",
    "classification",
    "extraction",
    "summarisation",
)

#: A model's accuracy profile gives the probability of a correct answer on a *medium* item;
#: easy and hard items shift it on the logit scale by these amounts, so a strong model stays
#: strong on hard items and a weak one is not hopeless on easy ones.
DIFFICULTY_LOGIT_SHIFT: Mapping[str, float] = MappingProxyType(
    {"easy": 1.2, "medium": 0.0, "hard": -1.2}
)

#: Fault kinds, in the order the per-call draw walks them.
#: ``rate_limited``: HTTP 429 with ``Retry-After``; ``server_error``: HTTP 500; ``unavailable``:
#: HTTP 503; ``overloaded``: HTTP 529 ``overloaded_error`` in the Anthropic format (503 in
#: the others, which have no 529); ``timeout``: no answer until the client gives up;
#: ``truncated``: a stream cut before its final event (a non-streamed body cut in half);
#: ``malformed``: HTTP 200 with a body that is not valid JSON (a broken event in a stream).
FAULT_KINDS: tuple[str, ...] = (
    "rate_limited",
    "server_error",
    "unavailable",
    "overloaded",
    "timeout",
    "truncated",
    "malformed",
)

# One token piece: optional leading whitespace, then a run of at most 6 letters, a run of at
# most 3 digits (numbers split in threes, as common BPE vocabularies do), or one other
# character. Compiled once; the simulator counts and streams with it.
_PIECE = re.compile(r"\s*(?:[^\W\d_]{1,6}|\d{1,3}|[^\s])")


def token_pieces(text: str) -> list[str]:
    """Split ``text`` into the simulator's tokens; joined, they give ``text`` back exactly.

    The rule (about 4 characters a token on English prose): a word of up to 6 letters is one
    token, longer words take one per 6 letters, numbers one per 3 digits, punctuation one
    each; whitespace rides with the token after it.
    """
    pieces = _PIECE.findall(text)
    if not pieces:
        return [text] if text else []
    consumed = sum(map(len, pieces))
    if consumed < len(text):  # trailing whitespace: keep it on the last token
        pieces[-1] += text[consumed:]
    return pieces


def approx_tokens(text: str) -> int:
    """How many tokens the simulator counts in ``text`` (see `token_pieces`)."""
    return len(_PIECE.findall(text))


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    """How long a simulated model takes, in unscaled seconds.

    Time to first token is lognormal (median ``ttft_median_s``, shape ``ttft_sigma``) plus
    prompt processing at ``prefill_tokens_per_s``; with probability ``outlier_prob`` a call
    is a slow outlier, its TTFT multiplied by ``outlier_factor`` (the heavy tail real APIs
    show). Output then arrives at ``tokens_per_s``, jittered per call by a lognormal factor
    of shape ``tps_jitter``.
    """

    ttft_median_s: float
    ttft_sigma: float
    tokens_per_s: float
    outlier_prob: float = 0.02
    outlier_factor: float = 6.0
    prefill_tokens_per_s: float = 8000.0
    tps_jitter: float = 0.15

    @property
    def ttft_mean_s(self) -> float:
        """Mean TTFT of a short prompt, outliers included (for the docs' tables)."""
        base = self.ttft_median_s * math.exp(self.ttft_sigma**2 / 2)
        return base * (1 - self.outlier_prob + self.outlier_prob * self.outlier_factor)


@dataclass(frozen=True, slots=True)
class SimModel:
    """One simulated model.

    ``accuracy`` maps each task category to the probability of a correct answer on a medium
    item of the bundled dataset (see `DIFFICULTY_LOGIT_SHIFT`); ``verbosity`` scales the
    length of the filler text it writes for prompts it does not recognise.
    """

    id: str
    provider: str
    api_format: str
    price: Price
    context_window: int
    latency: LatencyProfile
    accuracy: Mapping[str, float]
    verbosity: float = 1.0
    description: str = ""

    def p_correct(self, category: str, difficulty: str) -> float:
        """Probability of a correct answer for an item of this category and difficulty."""
        p = self.accuracy.get(category, 0.5)
        shift = DIFFICULTY_LOGIT_SHIFT.get(difficulty, 0.0)
        if p <= 0.0 or p >= 1.0 or shift == 0.0:
            return p
        logit = math.log(p / (1 - p)) + shift
        return 1 / (1 + math.exp(-logit))


def _acc(**by_category: float) -> Mapping[str, float]:
    if set(by_category) != set(CATEGORIES):
        raise ValueError(f"an accuracy profile needs exactly the categories {CATEGORIES}")
    return MappingProxyType(by_category)


#: Simulated provider names and the wire format each speaks.
SIM_PROVIDERS: Mapping[str, str] = MappingProxyType(
    {"sim-openai": "openai", "sim-anthropic": "anthropic", "sim-workers": "workers-ai"}
)

#: The default fleet. Prices are USD per million tokens.
DEFAULT_MODELS: tuple[SimModel, ...] = (
    SimModel(
        id="sim-nano",
        provider="sim-openai",
        api_format="openai",
        price=Price(0.05, 0.20),
        context_window=16_384,
        latency=LatencyProfile(0.20, 0.35, 190.0),
        accuracy=_acc(
            arithmetic=0.35,
            factual_qa=0.50,
            multiple_choice=0.55,
            classification=0.80,
            extraction=0.55,
            summarisation=0.45,
        ),
        verbosity=0.6,
        description="tiny and fast; fine for sentiment, poor at maths",
    ),
    SimModel(
        id="sim-small",
        provider="sim-openai",
        api_format="openai",
        price=Price(0.40, 1.60),
        context_window=128_000,
        latency=LatencyProfile(0.35, 0.40, 120.0),
        accuracy=_acc(
            arithmetic=0.65,
            factual_qa=0.70,
            multiple_choice=0.72,
            classification=0.86,
            extraction=0.85,
            summarisation=0.68,
        ),
        verbosity=0.9,
        description="mid-price all-rounder; an extraction specialist",
    ),
    SimModel(
        id="sim-large",
        provider="sim-openai",
        api_format="openai",
        price=Price(2.50, 10.00),
        context_window=128_000,
        latency=LatencyProfile(0.80, 0.45, 60.0, outlier_prob=0.03, outlier_factor=5.0),
        accuracy=_acc(
            arithmetic=0.90,
            factual_qa=0.86,
            multiple_choice=0.88,
            classification=0.90,
            extraction=0.90,
            summarisation=0.84,
        ),
        verbosity=1.2,
        description="large and strong everywhere, slow and expensive",
    ),
    SimModel(
        id="sim-haikuish",
        provider="sim-anthropic",
        api_format="anthropic",
        price=Price(0.80, 4.00),
        context_window=200_000,
        latency=LatencyProfile(0.45, 0.40, 100.0),
        accuracy=_acc(
            arithmetic=0.55,
            factual_qa=0.68,
            multiple_choice=0.70,
            classification=0.88,
            extraction=0.75,
            summarisation=0.85,
        ),
        verbosity=1.0,
        description="small; summarises as well as the large models",
    ),
    SimModel(
        id="sim-sonnetish",
        provider="sim-anthropic",
        api_format="anthropic",
        price=Price(3.00, 15.00),
        context_window=200_000,
        latency=LatencyProfile(1.00, 0.45, 50.0, outlier_prob=0.03, outlier_factor=5.0),
        accuracy=_acc(
            arithmetic=0.84,
            factual_qa=0.92,
            multiple_choice=0.90,
            classification=0.91,
            extraction=0.88,
            summarisation=0.92,
        ),
        verbosity=1.3,
        description="the strongest at facts and summaries, and the priciest",
    ),
    SimModel(
        id="sim-llamaish-8b",
        provider="sim-workers",
        api_format="workers-ai",
        price=Price(0.03, 0.12),
        context_window=8_192,
        latency=LatencyProfile(0.25, 0.60, 150.0, outlier_prob=0.05, outlier_factor=8.0),
        accuracy=_acc(
            arithmetic=0.30,
            factual_qa=0.55,
            multiple_choice=0.45,
            classification=0.78,
            extraction=0.40,
            summarisation=0.40,
        ),
        verbosity=0.8,
        description="cheapest; small context, jittery latency with a heavy tail",
    ),
    SimModel(
        id="sim-llamaish-70b",
        provider="sim-workers",
        api_format="workers-ai",
        price=Price(0.30, 0.90),
        context_window=32_768,
        latency=LatencyProfile(0.55, 0.55, 70.0, outlier_prob=0.04, outlier_factor=6.0),
        accuracy=_acc(
            arithmetic=0.80,
            factual_qa=0.72,
            multiple_choice=0.75,
            classification=0.84,
            extraction=0.70,
            summarisation=0.70,
        ),
        verbosity=1.0,
        description="open-weights-style 70B: near-top arithmetic at a low price",
    ),
)


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Per-call probabilities of each fault kind (see `FAULT_KINDS`); their sum is at most 1.

    ``retry_after_s`` is the range of whole seconds a 429 asks the client to wait.
    """

    rate_limited: float = 0.0
    server_error: float = 0.0
    unavailable: float = 0.0
    overloaded: float = 0.0
    timeout: float = 0.0
    truncated: float = 0.0
    malformed: float = 0.0
    retry_after_s: tuple[int, int] = (1, 5)

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ConfigError(
                    f"fault rate {kind}={rate!r} is not a probability",
                    hint="give each fault rate as a number from 0.0 to 1.0",
                )
        if self.total > 1.0 + 1e-9:
            raise ConfigError(
                f"fault rates add up to {self.total:.3f}, more than 1",
                hint="lower the rates so that at most every call fails",
            )
        low, high = self.retry_after_s
        if not 0 <= low <= high:
            raise ConfigError(
                f"retry_after_s={self.retry_after_s!r} is not a (low, high) range",
                hint="use two whole seconds, low <= high, e.g. (1, 5)",
            )

    @property
    def total(self) -> float:
        """Probability that a call gets any fault."""
        return sum(getattr(self, kind) for kind in FAULT_KINDS)

    @classmethod
    def uniform(cls, total: float) -> FaultRates:
        """``total`` probability of a fault, split evenly over every kind."""
        share = total / len(FAULT_KINDS)
        return cls(**{kind: share for kind in FAULT_KINDS})

    @classmethod
    def coerce(cls, value: FaultRates | Mapping[str, Any] | None) -> FaultRates:
        """Build from ``None`` (no faults), a `FaultRates`, or a mapping of kind to rate.

        A mapping may hold ``"fault_rate"`` (split evenly, as `uniform`) overridden by
        individual kinds, and ``"retry_after_s"``.
        """
        if value is None:
            return cls()
        if isinstance(value, FaultRates):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"faults must be a mapping of fault kind to rate, not {type(value).__name__}",
                hint='write faults = {"rate_limited": 0.05, "timeout": 0.01}',
            )
        allowed = {f.name for f in fields(cls)} | {"fault_rate"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown fault kind(s): {', '.join(unknown)}",
                hint=f"use fault_rate or any of {', '.join(FAULT_KINDS)}",
            )
        base = cls.uniform(float(value["fault_rate"])) if "fault_rate" in value else cls()
        rates = {kind: getattr(base, kind) for kind in FAULT_KINDS}
        rates.update({k: float(v) for k, v in value.items() if k in FAULT_KINDS})
        if "retry_after_s" in value:
            low, high = value["retry_after_s"]
            return cls(**rates, retry_after_s=(int(low), int(high)))
        return cls(**rates)

    def pick(self, u: float) -> str | None:
        """The fault for a uniform draw ``u`` in [0, 1), or None for a clean call."""
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self, kind)
            if u < edge:
                return kind
        return None
