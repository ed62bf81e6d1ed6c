"""The simulated provider fleet: the offline default of aigw_lab.

A `SimulatedFleet` answers chat requests as if it were several providers' models, over their
real HTTP wire formats (see `aigw_lab.sim.wire`): in-process through
`SimulatedTransport`, an httpx transport, or over the network through
`aigw_lab.sim_server`. Everything it produces is simulated and says so: model ids start
with ``sim-``, responses carry ``x-aigw-simulated: true``, OpenAI bodies have
``system_fingerprint: "aigw-simulated"``.

What a call gets is decided by `SimulatedFleet.plan`:

- Prompts of the bundled dataset (matched on normalised text of the last user message) get
  the reference answer with the model's probability for the item's category and difficulty,
  otherwise a plausible wrong answer. At temperature 0 (or unset) the draw for a
  (model, prompt) pair depends only on the seed, never on call order, so re-runs compare
  fairly; it is correlated across models through a per-item latent "hardness".
- Judge prompts built by `aigw_lab.scorers` get a simulated judge's grade
  (`aigw_lab.sim.judge`).
- Other prompts get fluent, deterministic filler text of a plausible length.
- Faults (429, 500, 503, 529, timeouts, truncated streams, malformed JSON) and latency
  (lognormal time to first token with slow outliers, then tokens at the model's speed) are
  drawn from a per-call generator seeded by ``(seed, call number)``: the same seed and the
  same request sequence give the same faults and timings.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import random
import re
import time
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from statistics import NormalDist
from types import MappingProxyType
from typing import Any

from aigw_lab.datasets import load_bundled
from aigw_lab.errors import ConfigError
from aigw_lab.providers.base import HttpClients, Price, ProviderSpec
from aigw_lab.providers.codec import Codec
from aigw_lab.providers.transport import HttpProvider, get_codec
from aigw_lab.sim.catalog import (
    DEFAULT_MODELS,
    SIM_PROVIDERS,
    FaultRates,
    SimModel,
    approx_tokens,
    token_pieces,
)
from aigw_lab.sim.judge import judge_reply
from aigw_lab.sim.transport import SimulatedTransport
from aigw_lab.sim.wire import SimCall, base_urls

__all__ = [
    "SimulatedFleet",
    "SimPlan",
    "SimCall",
    "SimulatedTransport",
    "SimulatedProvider",
    "build_simulated_provider",
    "fleet_specs",
    "simulated_price",
    "normalise_prompt",
]

#: How strongly correctness is shared across models on one item (0: independent models,
#: 1: every model right or wrong together). Marginal accuracies are unaffected.
ITEM_CORRELATION = 0.5
#: Per-message token overhead the simulator adds (role markers), as chat APIs do.
MESSAGE_OVERHEAD_TOKENS = 3

_NORMAL = NormalDist()
_SQRT_SHARED = math.sqrt(ITEM_CORRELATION)
_SQRT_OWN = math.sqrt(1 - ITEM_CORRELATION)


def normalise_prompt(text: str) -> str:
    """The form prompts are matched in: lower case, whitespace collapsed, ends trimmed."""
    return " ".join(text.lower().split())


def _unit(*parts: object) -> float:
    """A uniform number in (0, 1) determined by ``parts`` (stable across runs and machines)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def _seed_int(*parts: object) -> int:
    return int(_unit(*parts) * 2**53)


@dataclass(frozen=True, slots=True)
class SimPlan:
    """Everything the fleet decided about one call, before any wire format is applied.

    ``fault`` is None, one of `FAULT_KINDS`, or ``"context_length"``. ``finish`` is
    ``stop``, ``stop_sequence`` or ``length``. ``pieces`` are the answer's tokens as they
    are streamed; a truncated stream ends after ``cut_after`` of them. Times are unscaled
    seconds. ``item_id``/``correct`` say which dataset item matched and how it was answered.
    """

    model: SimModel
    fault: str | None
    text: str
    pieces: tuple[str, ...]
    finish: str
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    ttft_s: float
    tokens_per_s: float
    retry_after_s: int
    cut_after: int
    response_id: str
    created: int
    item_id: str | None = None
    correct: bool | None = None
    #: ``retry_after_s`` in real milliseconds (scaled by the fleet's ``time_scale``), sent as
    #: ``retry-after-ms`` so a client that honours it waits no longer than the simulation.
    retry_after_ms: int | None = None


class SimulatedFleet:
    """A seeded fleet of simulated models (see the module doc and docs/simulated_fleet.md).

    ``faults`` are per-call fault rates (a `FaultRates` or a mapping such as
    ``{"rate_limited": 0.05}``; ``"fault_rate"`` spreads a total evenly) and ``model_faults``
    overrides them per model id. ``models`` picks a subset of the default fleet by id, or
    passes `SimModel` objects. ``dataset`` replaces the bundled dataset (``[]``: recognise
    no prompt). Latency sleeps are real, multiplied by ``time_scale`` (0 disables them);
    ``sleep``/``async_sleep`` replace `time.sleep`/`asyncio.sleep`, for tests. A timeout
    fault hangs for the client's read timeout, or ``hang_s`` when it has none.
    """

    def __init__(
        self,
        seed: int = 0,
        time_scale: float = 1.0,
        faults: FaultRates | Mapping[str, Any] | None = None,
        *,
        models: Iterable[str | SimModel] | None = None,
        model_faults: Mapping[str, FaultRates | Mapping[str, Any]] | None = None,
        dataset: Sequence[Mapping[str, Any]] | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        async_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        hang_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(time_scale, (int, float)) or time_scale < 0:
            raise ConfigError(
                f"time_scale={time_scale!r} is invalid",
                hint="use 1.0 for real-time latency, a fraction to speed up, 0 for none",
            )
        self.seed = int(seed)
        self.time_scale = float(time_scale)
        self.faults = FaultRates.coerce(faults)
        self.sleep = sleep
        self.async_sleep = async_sleep
        self.hang_s = hang_s
        self._clock = clock
        self._models = _pick_models(models)
        unknown = sorted(set(model_faults or ()) - set(self._models))
        if unknown:
            raise ConfigError(
                f"model_faults names unknown model(s): {', '.join(unknown)}",
                hint=f"use ids of the fleet: {', '.join(self._models)}",
            )
        self._model_faults = {
            name: FaultRates.coerce(rates) for name, rates in (model_faults or {}).items()
        }
        self._dataset = dataset
        self._items: dict[str, Mapping[str, Any]] | None = None
        self._calls = itertools.count()

    # --- the fleet ------------------------------------------------------------------------

    @property
    def models(self) -> tuple[SimModel, ...]:
        """The fleet's models."""
        return tuple(self._models.values())

    def model(self, model_id: str) -> SimModel | None:
        """The model called ``model_id``, or None."""
        return self._models.get(model_id)

    def price(self, model_id: str) -> Price | None:
        """The model's price in USD per million tokens, or None if it is not in the fleet."""
        model = self._models.get(model_id)
        return model.price if model is not None else None

    def faults_for(self, model_id: str) -> FaultRates:
        """The fault rates that apply to calls of ``model_id``."""
        return self._model_faults.get(model_id, self.faults)

    def item_for(self, prompt: str) -> Mapping[str, Any] | None:
        """The dataset item whose prompt is ``prompt`` (after normalising), or None."""
        if self._items is None:
            items = self._dataset
            if items is None:
                items = load_bundled()
            self._items = {normalise_prompt(item["prompt"]): item for item in items}
        return self._items.get(normalise_prompt(prompt))

    def transport(self) -> SimulatedTransport:
        """An httpx transport (sync and async) that serves this fleet in-process."""
        return SimulatedTransport(self)

    def scaled(self, seconds: float) -> float:
        """Real seconds to sleep for ``seconds`` of simulated time."""
        return seconds * self.time_scale

    # --- deciding a call ------------------------------------------------------------------

    def plan(self, call: SimCall) -> SimPlan:
        """Decide everything about one call: answer, tokens, timing and fault.

        Each call takes the next number of the fleet's call sequence; its random draws come
        from a generator seeded by ``(seed, number)``, always consumed in the same order so
        that one call's outcome never shifts the next call's draws.
        """
        model = self._models[call.model]
        number = next(self._calls)
        rng = random.Random(_seed_int(self.seed, "call", number))
        u_fault, u_cut, z_call = rng.random(), rng.random(), rng.gauss(0.0, 1.0)
        lat = model.latency
        ttft = lat.ttft_median_s * math.exp(lat.ttft_sigma * rng.gauss(0.0, 1.0))
        if rng.random() < lat.outlier_prob:
            ttft *= lat.outlier_factor
        tokens_per_s = lat.tokens_per_s * math.exp(lat.tps_jitter * rng.gauss(0.0, 1.0))
        faults = self.faults_for(model.id)
        low, high = faults.retry_after_s
        retry_after = rng.randint(low, high)

        prompt = next((text for role, text in reversed(call.messages) if role == "user"), "")
        sampled = call.temperature is not None and call.temperature > 0
        item = self.item_for(prompt) if prompt else None
        correct: bool | None = None
        if item is not None:
            text, correct = self._answer(model, item, z_call if sampled else None)
        else:
            # A judge prompt of aigw_lab's scorers gets a judge's verdict, anything else filler.
            text = judge_reply(model, prompt, seed=self.seed, lookup=self.item_for) or (
                self._filler(model, prompt, rng.random() if sampled else None)
            )

        finish, stop_sequence = "stop", None
        first_stop = min(((text.find(s), s) for s in call.stop if s and s in text), default=None)
        if first_stop is not None:
            text, finish, stop_sequence = text[: first_stop[0]], "stop_sequence", first_stop[1]
        pieces = token_pieces(text)
        if call.max_tokens is not None and len(pieces) > call.max_tokens:
            pieces = pieces[: call.max_tokens]
            text, finish, stop_sequence = "".join(pieces), "length", None

        input_tokens = MESSAGE_OVERHEAD_TOKENS + sum(
            approx_tokens(content) + MESSAGE_OVERHEAD_TOKENS for _, content in call.messages
        )
        ttft += input_tokens / lat.prefill_tokens_per_s
        if input_tokens + (call.max_tokens or 0) > model.context_window:
            fault: str | None = "context_length"
        else:
            fault = faults.pick(u_fault)
        return SimPlan(
            model=model,
            fault=fault,
            text=text,
            pieces=tuple(pieces),
            finish=finish,
            stop_sequence=stop_sequence,
            input_tokens=input_tokens,
            output_tokens=len(pieces),
            ttft_s=ttft,
            tokens_per_s=tokens_per_s,
            retry_after_s=retry_after,
            cut_after=int(u_cut * len(pieces)),
            response_id=f"sim{self.seed:x}{number:08x}",
            created=int(self._clock()),
            item_id=item.get("id") if item is not None else None,
            correct=correct,
            retry_after_ms=round(self.scaled(retry_after) * 1000),
        )

    def _answer(
        self, model: SimModel, item: Mapping[str, Any], z_call: float | None
    ) -> tuple[str, bool]:
        """The model's answer to a dataset item and whether it is the reference.

        Correct when Phi(z) < p, where z mixes a per-item latent shared by all models with
        the model's own draw: hash-based at temperature 0, from the call at higher ones.
        Either way z is standard normal, so the marginal accuracy is exactly p.
        """
        key = normalise_prompt(item["prompt"])
        z_item = _NORMAL.inv_cdf(_unit(self.seed, "item", key))
        z_own = (
            z_call
            if z_call is not None
            else _NORMAL.inv_cdf(_unit(self.seed, "model", model.id, key))
        )
        p = model.p_correct(item.get("category", ""), item.get("difficulty", "medium"))
        correct = _NORMAL.cdf(_SQRT_SHARED * z_item + _SQRT_OWN * z_own) < p
        if correct:
            return _as_text(item["reference"]), True
        wrong = item.get("distractors") or []
        if not wrong:
            return "I am not sure.", False
        pick = int(_unit(self.seed, "wrong", model.id, key) * len(wrong))
        return _as_text(wrong[pick]), False

    def _filler(self, model: SimModel, prompt: str, u_call: float | None) -> str:
        """Fluent, deterministic text for a prompt the fleet does not recognise."""
        key = normalise_prompt(prompt)
        seed = _seed_int(self.seed, "filler", model.id, key, "" if u_call is None else u_call)
        return _filler_text(random.Random(seed), key, model.verbosity, approx_tokens(prompt))


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _pick_models(models: Iterable[str | SimModel] | None) -> dict[str, SimModel]:
    by_id = {m.id: m for m in DEFAULT_MODELS}
    if models is None:
        return dict(by_id)
    if isinstance(models, str):  # one model named on its own, not a list of letters
        models = [models]
    picked: dict[str, SimModel] = {}
    for entry in models:
        if isinstance(entry, SimModel):
            picked[entry.id] = entry
        elif entry in by_id:
            picked[entry] = by_id[entry]
        else:
            raise ConfigError(
                f"{entry!r} is not a model of the simulated fleet",
                hint=f"use some of: {', '.join(by_id)}",
            )
    if not picked:
        raise ConfigError("the simulated fleet was given no models", hint="name at least one")
    return picked


def simulated_price(model_id: str) -> Price | None:
    """The price of a default-fleet model, or None (for `PriceBook(known=...)`)."""
    for model in DEFAULT_MODELS:
        if model.id == model_id:
            return model.price
    return None


# --- filler text ----------------------------------------------------------------------------

_TOPIC_WORD = re.compile(r"[a-z][a-z-]{5,}")
_STOPWORDS = frozenset(
    "about above after again against their there these those which while would could should "
    "write explain tell please describe give using short simple brief words what where".split()
)
_OPENERS = (
    "Here is a short overview of {topic}.",
    "Good question about {topic}.",
    "Let me walk through {topic} step by step.",
    "There are a few things worth knowing about {topic}.",
)
_PLAIN_OPENERS = (  # for prompts without a usable topic word
    "Here is a short answer.",
    "Good question.",
    "Let me walk through it step by step.",
    "There are a few things worth knowing here.",
)
_SENTENCES = (
    "The main idea is simple once the moving parts have names.",
    "In practice, most of the effort goes into the details rather than the overall plan.",
    "A useful first step is to write down what you already know and what you still need.",
    "It helps to compare a few options side by side before committing to one.",
    "Small, repeatable experiments usually teach more than one large attempt.",
    "Keep an eye on cost and latency, because both tend to grow quietly over time.",
    "The right trade-off depends on how often the situation comes up and what a mistake costs.",
    "There is rarely a single right answer, but some answers are much better supported.",
    "Measure before and after each change, so that an improvement is real and not a guess.",
    "Most problems of this kind get easier once they are split into smaller questions.",
    "Context matters: what works well in one setting can fail in another.",
    "Concrete examples are the quickest way to check that the idea holds up.",
    "Write the assumptions down, since they are the first thing to revisit later.",
    "A simple approach makes a good baseline, and it is often good enough.",
    "When in doubt, prefer the option that is easiest to undo.",
    "The details of {topic} vary, but the general pattern holds in most cases.",
    "People often overlook how much the surrounding constraints shape {topic}.",
    "A clear goal makes it much easier to judge which approach fits.",
    "Edge cases deserve attention early, before they become expensive surprises.",
    "Feedback from real use is worth more than any amount of speculation.",
)
_CLOSERS = (
    "I hope this helps.",
    "Let me know if you would like more detail on {topic}.",
    "In short: start simple, measure, and iterate.",
)


def _filler_text(rng: random.Random, prompt: str, verbosity: float, prompt_tokens: int) -> str:
    words = [w for w in _TOPIC_WORD.findall(prompt) if w not in _STOPWORDS]
    topic = words[0] if words else "the subject"
    # About 100 tokens for a short question, more for a long prompt, times the model's
    # verbosity, with lognormal spread between prompts.
    target = (90 + 0.3 * min(prompt_tokens, 1000)) * verbosity * math.exp(rng.gauss(0.0, 0.35))
    target = max(20, min(int(target), 900))
    out = [rng.choice(_OPENERS if words else _PLAIN_OPENERS).format(topic=topic)]
    pool = list(_SENTENCES)
    rng.shuffle(pool)
    cycle = itertools.cycle(pool)
    tokens = approx_tokens(out[0])
    while tokens < target:
        sentence = next(cycle).format(topic=topic)
        out.append(sentence)
        tokens += approx_tokens(sentence) + 1
    out.append(rng.choice(_CLOSERS).format(topic=topic))
    return " ".join(out)


# --- the provider ---------------------------------------------------------------------------

_FORMATS = ("openai", "anthropic", "workers-ai")
# Base URLs of the in-process fleet: never resolved (the transport answers), but shaped like
# the real APIs' so that each codec builds the paths it would build against them.
_IN_PROCESS_BASE = {
    "openai": "http://simulated.aigw.invalid/v1",
    "anthropic": "http://simulated.aigw.invalid",
    "workers-ai": "http://simulated.aigw.invalid/client/v4/accounts/simulated/ai",
}


class SimulatedProvider(HttpProvider):
    """A simulated provider: an `HttpProvider` speaking one wire format to the fleet (through
    the in-process transport or a running simulator server) that also knows its models:
    their ids (`models`) and prices (`price_for`, which the gateway's price book asks).
    Everything it answers is simulated (``simulated`` is True)."""

    def __init__(
        self,
        name: str,
        codec: Codec,
        base_url: str,
        *,
        clients: HttpClients,
        models: Sequence[SimModel],
        fleet: SimulatedFleet | None,
        headers: Mapping[str, str] = MappingProxyType({}),
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            name,
            codec,
            base_url,
            clients=clients,
            headers=headers,
            timeout=timeout,
            connect_timeout=connect_timeout,
            simulated=True,
        )
        #: The fleet answering in-process, or None when a simulator server does.
        self.fleet = fleet
        self.models: tuple[str, ...] = tuple(m.id for m in models)
        self._prices = {m.id: m.price for m in models}

    def __repr__(self) -> str:
        where = "in-process" if self.fleet is not None else self.base_url
        return f"SimulatedProvider({self.name!r}, {self.api_format!r}, {where})"

    def price_for(self, model: str) -> Price | None:
        """The simulated model's price (USD per million tokens), or None if not ours."""
        return self._prices.get(model)


def build_simulated_provider(spec: ProviderSpec, clients: HttpClients) -> SimulatedProvider:
    """A provider of kind ``simulated``: the codec of ``spec.options["format"]`` talking to
    the fleet, in-process (a fleet built from the spec's ``seed``, ``time_scale``,
    ``faults`` and ``models`` options) or, when ``spec.base_url`` is set, over the network to
    a running ``aigw-lab simulate`` server through the shared ``clients``.

    Its models are ``options["models"]``, else ``spec.models``, else every fleet model whose
    home format is this one.
    """
    options = spec.options
    api_format = options.get("format") or SIM_PROVIDERS.get(spec.name)
    if api_format not in _FORMATS:
        raise ConfigError(
            f"simulated provider {spec.name!r} has format {api_format!r}",
            hint=f'set format to one of {", ".join(_FORMATS)}, e.g. format = "openai"',
        )
    wanted = (
        options.get("models")
        or spec.models
        or [m.id for m in DEFAULT_MODELS if m.api_format == api_format]
    )
    models = tuple(_pick_models(wanted).values())
    fleet: SimulatedFleet | None = None
    if spec.base_url:
        base_url, http_clients = spec.base_url, clients
    else:
        fleet = SimulatedFleet(
            seed=options.get("seed", 0),
            time_scale=options.get("time_scale", 1.0),
            faults=options.get("faults"),
            models=models,
        )
        transport = fleet.transport()
        http_clients = HttpClients(transport=transport, async_transport=transport)
        base_url = _IN_PROCESS_BASE[api_format]
    return SimulatedProvider(
        spec.name,
        get_codec(api_format),
        base_url,
        clients=http_clients,
        models=models,
        fleet=fleet,
        headers=dict(spec.headers),
        timeout=spec.timeout,
        connect_timeout=spec.connect_timeout,
    )


def fleet_specs(
    *,
    seed: int = 0,
    time_scale: float = 1.0,
    faults: FaultRates | Mapping[str, Any] | None = None,
    base_url: str | None = None,
) -> list[ProviderSpec]:
    """Provider specs for the whole fleet: ``sim-openai``, ``sim-anthropic`` and
    ``sim-workers``, each speaking its own wire format and serving its own models.

    They answer in-process, or from the simulator server at ``base_url`` (its root, e.g.
    ``http://127.0.0.1:8787``) when given.
    """
    urls: dict[str, str] = {}
    if base_url:
        urls = base_urls(base_url)
    specs = []
    for name, api_format in SIM_PROVIDERS.items():
        url = urls.get(api_format)
        if url is not None and api_format == "workers-ai":
            url = url.removesuffix("/run/{model}")
        specs.append(
            ProviderSpec(
                name=name,
                kind="simulated",
                base_url=url,
                models=tuple(m.id for m in DEFAULT_MODELS if m.api_format == api_format),
                options=MappingProxyType(
                    {"format": api_format, "seed": seed, "time_scale": time_scale, "faults": faults}
                ),
            )
        )
    return specs
