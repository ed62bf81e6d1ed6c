"""What an experiment will cost, before it runs.

Each unit's input tokens are estimated the way the gateway's budgets do it
(`aigw_lab.gateway.budget_limits.estimate_input_tokens`: characters / 4 plus a few tokens per
message). Its output tokens come from the best source at hand
(`aigw_lab.experiments.expected_output`): the replayed answer of a replay provider, the
model's earlier answers to the item in the call log, the item's reference answer scaled by
the model's logged answer/reference ratio, the model's mean logged answer on the dataset, the
reference answer as it is, the model's mean answer in the log, else the request's
``max_tokens`` or `DEFAULT_OUTPUT_TOKENS` (256). A replay's own input tokens are used too.
Prices come from the gateway's price book, unit by unit. Scorers' own calls (an LLM judge)
are not in the estimate. `CostEstimate.output_sources` says how many units each source
estimated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import AigwError, ConfigError
from aigw_lab.experiments.expected_output import (
    DEFAULT_OUTPUT_TOKENS,
    OUTPUT_SOURCES,
    OutputExpectations,
)
from aigw_lab.experiments.records import done_units, spent_usd
from aigw_lab.gateway.budget_limits import estimate_input_tokens
from aigw_lab.gateway.records import EXPERIMENT_KEY
from aigw_lab.sim.replay import ReplayProvider
from aigw_lab.types import ChatRequest, Usage

if TYPE_CHECKING:
    from aigw_lab.experiments.experiment import Experiment, Unit
    from aigw_lab.gateway import Gateway

__all__ = ["CostEstimate", "DEFAULT_OUTPUT_TOKENS", "OUTPUT_SOURCES", "estimate_cost"]

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """The expected cost of an experiment's units.

    ``usd`` sums the targets whose price is known; ``unpriced_targets`` lists the others
    (their units are counted in ``units`` but not in ``usd``). ``per_target_usd`` holds each
    target's estimate (None when unpriced). ``spent_usd`` is what earlier runs of the
    experiment already spent (from the log), so ``spent_usd + usd`` is what the experiment
    would cost in all. ``output_sources`` counts the units whose output tokens each source
    (`OUTPUT_SOURCES`) estimated, e.g. ``{"reference": 72, "recorded": 24}``.
    """

    units: int
    input_tokens: int
    output_tokens: int
    usd: float
    per_target_usd: Mapping[str, float | None]
    unpriced_targets: tuple[str, ...] = ()
    spent_usd: float = 0.0
    skipped_units: int = 0
    output_sources: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    @property
    def total_usd(self) -> float:
        """Earlier runs' spend plus this estimate."""
        return self.spent_usd + self.usd

    def describe(self) -> str:
        """One human line, e.g. ``"96 units to send, ~4.7k input + ~1.1k output tokens
        (output from: 96 reference answers): estimated $0.0123"``."""
        text = (
            f"{self.units} units to send, ~{_k(self.input_tokens)} input + "
            f"~{_k(self.output_tokens)} output tokens{self._sources()}: "
            f"estimated ${self.usd:.4f}"
        )
        if self.skipped_units:
            text += f" ({self.skipped_units} units already done, ${self.spent_usd:.4f} spent)"
        if self.unpriced_targets:
            text += f"; no price known for {', '.join(self.unpriced_targets)}"
        return text

    def describe_sources(self) -> str:
        """Where the output tokens came from, e.g. ``"output from: 96 reference answers"``
        ("" when no unit was estimated)."""
        parts = [
            f"{self.output_sources[name]} {_SOURCE_WORDS[name]}"
            for name in OUTPUT_SOURCES
            if self.output_sources.get(name)
        ]
        return f"output from: {', '.join(parts)}" if parts else ""

    def _sources(self) -> str:
        described = self.describe_sources()
        return f" ({described})" if described else ""


_SOURCE_WORDS = {
    "recorded": "replayed answers",
    "log_item": "logged answers to the item",
    "reference_log": "reference answers x the model's logged ratio",
    "log_dataset": "at the model's mean logged answer on this dataset",
    "reference": "reference answers",
    "log_model": "at the model's mean logged answer",
    "max_tokens": "at max_tokens",
    "default": f"at the default {DEFAULT_OUTPUT_TOKENS} tokens",
}


def estimate_cost(
    gateway: Gateway,
    experiment: Experiment,
    *,
    resume: bool = False,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> CostEstimate:
    """Estimate what running ``experiment`` through ``gateway`` will cost.

    With ``resume=True`` (and a gateway with a log) units already done are left out and what
    the experiment spent so far is filled in, i.e. the estimate of what a resumed run sends.
    ``output_tokens`` is what a unit is assumed to answer when no source knows better and
    the request sets no ``max_tokens``.
    """
    units: Iterable[Unit] = experiment.units()
    spent = 0.0
    skipped = 0
    log = gateway.log
    if resume and log is not None:
        done = done_units(log, experiment.id)
        all_units = list(units)
        units = [u for u in all_units if u.key not in done]
        skipped = len(all_units) - len(units)
        spent = spent_usd(log, experiment.id)
    estimate = estimate_units(gateway, experiment, units, output_tokens=output_tokens)
    return CostEstimate(
        units=estimate.units,
        input_tokens=estimate.input_tokens,
        output_tokens=estimate.output_tokens,
        usd=estimate.usd,
        per_target_usd=estimate.per_target_usd,
        unpriced_targets=estimate.unpriced_targets,
        spent_usd=spent,
        skipped_units=skipped,
        output_sources=estimate.output_sources,
    )


def estimate_units(
    gateway: Gateway,
    experiment: Experiment,
    units: Iterable[Unit],
    *,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> CostEstimate:
    """The estimate of these units only (the runner passes the ones it will send)."""
    if isinstance(output_tokens, bool) or not isinstance(output_tokens, int) or output_tokens < 1:
        raise ConfigError(
            f"output_tokens={output_tokens!r} is not a positive whole number of tokens",
            hint="pass the output tokens to assume per call when nothing better is known, "
            f"e.g. {DEFAULT_OUTPUT_TOKENS}",
        )
    targets = {t.label: _TargetInfo.of(gateway, t, experiment.params) for t in experiment.targets}
    expectations = OutputExpectations(
        log=gateway.log,
        addresses=[t.address for t in targets.values() if t.address is not None],
        items=experiment.dataset.items,
        dataset_name=experiment.dataset.name,
        default=output_tokens,
    )
    per_target: dict[str, float | None] = {}
    sources: dict[str, int] = {}
    in_total = out_total = count = 0
    for unit in units:
        count += 1
        name = unit.target.label
        info = targets.get(name) or _TargetInfo.of(gateway, unit.target, experiment.params)
        usage, stated_usd, source = _unit_usage(info, unit, expectations, experiment.id)
        sources[source] = sources.get(source, 0) + 1
        in_total += usage.input_tokens
        out_total += usage.output_tokens
        so_far = per_target.setdefault(name, 0.0)
        if so_far is not None:
            # Priced per unit, not per target's summed tokens: tiered prices are not linear.
            usd = stated_usd if stated_usd is not None else _price(gateway, info, usage)
            per_target[name] = None if usd is None else so_far + usd
    unpriced = tuple(name for name, usd in per_target.items() if usd is None)
    return CostEstimate(
        units=count,
        input_tokens=in_total,
        output_tokens=out_total,
        usd=sum(v for v in per_target.values() if v is not None),
        per_target_usd=MappingProxyType(per_target),
        unpriced_targets=unpriced,
        output_sources=MappingProxyType(
            {name: sources[name] for name in OUTPUT_SOURCES if name in sources}
        ),
    )


@dataclass(frozen=True, slots=True)
class _TargetInfo:
    """What the estimate needs of a target, worked out once: its request params, its
    ``(provider, model)`` when the address names a configured provider's model (None for a
    routing policy, say), and the provider's replay lookup when it is a replay."""

    params: Mapping[str, Any]
    address: tuple[str, str] | None
    replayed: Any = None

    @classmethod
    def of(cls, gateway: Gateway, target: Any, defaults: Mapping[str, Any]) -> _TargetInfo:
        params = target.request_params(defaults)
        try:
            provider, model = gateway.resolve(target.model)
        except AigwError:
            return cls(params, None)
        if provider not in gateway.provider_names:
            return cls(params, None)  # a policy: no provider, no price of its own
        try:
            found = gateway.provider(provider)
            # Only a replay knows what it would answer without being called.
            replayed = found.replayed_usage if isinstance(found, ReplayProvider) else None
        except AigwError:  # a provider that cannot be built (a missing key): no replay
            replayed = None
        return cls(params, (provider, model), replayed)


def _unit_usage(
    info: _TargetInfo, unit: Unit, expectations: OutputExpectations, experiment_id: str
) -> tuple[Usage, float | None, str]:
    """The unit's expected usage, the cost a replay states for it (None: price the usage),
    and where its output tokens came from."""
    item = unit.item
    provider, model = info.address if info.address is not None else (None, None)
    if info.replayed is not None and model is not None:
        # The request as the runner sends it (the replay may match on the item id it carries).
        try:
            request = ChatRequest.create(
                model,
                item.messages(),
                metadata={EXPERIMENT_KEY: {"item_id": item.id}},
                experiment_id=experiment_id,
                **info.params,
            )
        except AigwError:  # the run will report it; the estimate falls back to the others
            found = None
        else:
            found = info.replayed(request)
        if found is not None:
            usage, stated = found
            return usage, stated, "recorded"
    request = ChatRequest(model=unit.target.model, messages=item.messages())
    tokens, source = expectations.expect(provider, model, item, info.params)
    return Usage(input_tokens=estimate_input_tokens(request), output_tokens=tokens), None, source


def _price(gateway: Gateway, info: _TargetInfo, usage: Usage) -> float | None:
    # An address that is not a configured provider's model (a routing policy, say) has no
    # price of its own: it counts as unpriced.
    if info.address is None:
        return None
    provider, model = info.address
    # No warning: nothing was sent, and the estimate names what it could not price.
    return gateway.prices.cost(provider, model, usage, warn=False)


def _k(tokens: int) -> str:
    return f"{tokens / 1000:.1f}k" if tokens >= 1000 else str(tokens)
