"""What an experiment will cost, before it runs.

Each unit's input tokens are estimated the way the gateway's budgets do it
(`aigw_lab.gateway.budget_limits.estimate_input_tokens`: characters / 4 plus a few tokens per
message), and its output is assumed to be the request's ``max_tokens`` when set, else
`DEFAULT_OUTPUT_TOKENS` (256: the bundled datasets ask for short answers; set ``max_tokens``
in the experiment's params for a bound rather than a guess). Prices come from the gateway's
price book. Scorers' own calls (an LLM judge) are not in the estimate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.gateway.budget_limits import estimate_input_tokens
from aigw_lab.types import ChatRequest, Usage

if TYPE_CHECKING:
    from aigw_lab.experiments.experiment import Experiment, Unit
    from aigw_lab.gateway import Gateway

__all__ = ["CostEstimate", "DEFAULT_OUTPUT_TOKENS", "estimate_cost"]

#: Output tokens assumed per call when the request sets no ``max_tokens``.
DEFAULT_OUTPUT_TOKENS = 256


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """The expected cost of an experiment's units.

    ``usd`` sums the targets whose price is known; ``unpriced_targets`` lists the others
    (their units are counted in ``units`` but not in ``usd``). ``per_target_usd`` holds each
    target's estimate (None when unpriced). ``spent_usd`` is what earlier runs of the
    experiment already spent (from the log), so ``spent_usd + usd`` is what the experiment
    would cost in all.
    """

    units: int
    input_tokens: int
    output_tokens: int
    usd: float
    per_target_usd: Mapping[str, float | None]
    unpriced_targets: tuple[str, ...] = ()
    spent_usd: float = 0.0
    skipped_units: int = 0

    @property
    def total_usd(self) -> float:
        """Earlier runs' spend plus this estimate."""
        return self.spent_usd + self.usd

    def describe(self) -> str:
        """One human line, e.g. ``"96 units, ~41k input + 24k output tokens: ~$0.0123"``."""
        text = (
            f"{self.units} units to send, ~{_k(self.input_tokens)} input + "
            f"~{_k(self.output_tokens)} output tokens: estimated ${self.usd:.4f}"
        )
        if self.skipped_units:
            text += f" ({self.skipped_units} units already done, ${self.spent_usd:.4f} spent)"
        if self.unpriced_targets:
            text += f"; no price known for {', '.join(self.unpriced_targets)}"
        return text


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
    """
    from aigw_lab.experiments.records import done_units, spent_usd

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
    )


def estimate_units(
    gateway: Gateway,
    experiment: Experiment,
    units: Iterable[Unit],
    *,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> CostEstimate:
    """The estimate of these units only (the runner passes the ones it will send)."""
    params_of: dict[str, dict[str, Any]] = {}
    per_target: dict[str, float | None] = {}
    in_total = out_total = count = 0
    for unit in units:
        count += 1
        name = unit.target.label
        params = params_of.get(name)
        if params is None:
            params = params_of[name] = unit.target.request_params(experiment.params)
            per_target[name] = 0.0
        request = ChatRequest(model=unit.target.model, messages=unit.item.messages())
        usage = Usage(estimate_input_tokens(request), params.get("max_tokens") or output_tokens)
        in_total += usage.input_tokens
        out_total += usage.output_tokens
        so_far = per_target[name]
        if so_far is not None:
            # Priced per unit, not per target's summed tokens: tiered prices are not linear.
            usd = _price(gateway, unit.target.model, usage)
            per_target[name] = None if usd is None else so_far + usd
    unpriced = tuple(name for name, usd in per_target.items() if usd is None)
    return CostEstimate(
        units=count,
        input_tokens=in_total,
        output_tokens=out_total,
        usd=sum(v for v in per_target.values() if v is not None),
        per_target_usd=MappingProxyType(per_target),
        unpriced_targets=unpriced,
    )


def _price(gateway: Gateway, address: str, usage: Usage) -> float | None:
    # An address that is not "provider/model" of a configured provider (a routing policy,
    # say) has no price of its own: it counts as unpriced.
    provider, sep, model = address.partition("/")
    if not sep or provider not in gateway.provider_names:
        return None
    return gateway.prices.cost(provider, model, usage)


def _k(tokens: int) -> str:
    return f"{tokens / 1000:.1f}k" if tokens >= 1000 else str(tokens)
