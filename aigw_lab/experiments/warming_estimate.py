"""The estimate of a warming plan's paid calls, worked out as an experiment's
(`aigw_lab.experiments.estimate`): input tokens from the text, output tokens from
`OutputExpectations` (the log's answers of that model, a reference answer, ...) or a
replay's own answer, priced by the gateway's price book, halved for a batch job."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from aigw_lab.batch import BATCH_DISCOUNT
from aigw_lab.datasets.items import DatasetItem
from aigw_lab.errors import AigwError
from aigw_lab.experiments.estimate import CostEstimate
from aigw_lab.experiments.expected_output import OUTPUT_SOURCES, OutputExpectations
from aigw_lab.experiments.warming_sources import prompt_text
from aigw_lab.gateway.budget_limits import estimate_input_tokens
from aigw_lab.sim.replay import ReplayProvider
from aigw_lab.types import ChatRequest, Usage

if TYPE_CHECKING:
    from aigw_lab.experiments.warming import WarmingEntry
    from aigw_lab.gateway import Gateway

__all__ = ["estimate_entries", "stand_in_item"]


def stand_in_item(key: str, request: ChatRequest, reference: str | None) -> DatasetItem:
    """A stand-in item for the output estimate: the logged answer on any target is the
    reference (its length is the best guess of the answer's)."""
    return DatasetItem(id=key, prompt=prompt_text(request) or "?", reference=reference)


def estimate_entries(
    gateway: Gateway,
    entries: list[tuple[WarmingEntry, DatasetItem]],
    method: str,
    dataset_name: str | None,
    output_tokens: int,
) -> tuple[list[WarmingEntry], CostEstimate]:
    """Each paid entry's expected tokens and cost (as an experiment's estimate works them
    out: `OutputExpectations`, a replay's own answer, the price book), and their sum."""
    discount = BATCH_DISCOUNT if method == "batch" else 1.0
    paid = [(e, item) for e, item in entries if e.status == "call"]
    expectations = OutputExpectations(
        log=gateway.log,
        addresses=[(e.provider, e.model) for e, _ in paid],
        items=[item for _, item in paid],
        dataset_name=dataset_name,
        default=output_tokens,
    )
    per_target: dict[str, float | None] = {}
    sources: dict[str, int] = {}
    priced: list[WarmingEntry] = []
    tokens_in = tokens_out = 0
    for entry, item in entries:
        if entry.status != "call":
            priced.append(entry)
            continue
        usage, stated, source = _usage(gateway, entry, item, expectations)
        sources[source] = sources.get(source, 0) + 1
        cost = stated if stated is not None else gateway.prices.cost(
            entry.provider, entry.model, usage, warn=False
        )  # fmt: skip
        usd = None if cost is None else cost * discount
        so_far = per_target.setdefault(entry.address, 0.0)
        per_target[entry.address] = None if so_far is None or usd is None else so_far + usd
        tokens_in += usage.input_tokens
        tokens_out += usage.output_tokens
        priced.append(
            replace(
                entry,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                estimate_usd=usd,
            )
        )
    estimate = CostEstimate(
        units=len(paid),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        usd=sum(v for v in per_target.values() if v is not None),
        per_target_usd=MappingProxyType(per_target),
        unpriced_targets=tuple(name for name, usd in per_target.items() if usd is None),
        output_sources=MappingProxyType({s: sources[s] for s in OUTPUT_SOURCES if s in sources}),
    )
    return priced, estimate


def _usage(
    gateway: Gateway, entry: WarmingEntry, item: DatasetItem, expectations: OutputExpectations
) -> tuple[Usage, float | None, str]:
    try:
        provider = gateway.provider(entry.provider)
    except AigwError:
        provider = None
    if isinstance(provider, ReplayProvider):
        found = provider.replayed_usage(entry.request)
        if found is not None:
            return found[0], found[1], "recorded"
    tokens, source = expectations.expect(
        entry.provider, entry.model, item, entry.request.params_dict()
    )
    usage = Usage(input_tokens=estimate_input_tokens(entry.request), output_tokens=tokens)
    return usage, None, source
