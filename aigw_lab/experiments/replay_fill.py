"""Filling a `ReplayMatrix`'s empty cells through provider batch APIs, at batch prices, after
showing what it will cost.

    plan = plan_fill(matrix, gateway, targets=["sim-openai/sim-large"])
    print(plan.describe())        # cells per target, tokens, $ at batch and at live prices
    result = fill(plan, gateway, max_cost_usd=0.50)   # refuses a larger estimate
    result.matrix                 # the matrix read again: the cells are filled

`plan_fill` sends nothing. Each empty cell becomes one request: the prompt's conversation
with the sampling parameters of its latest logged request. A target whose provider has a
batch API (`aigw_lab.batch`: OpenAI, Anthropic, the in-process simulated fleet's formats)
is filled with one `submit_batch` job; any other target is left out, or sent call by call
through the gateway at live prices with ``live_fallback=True``. Output tokens are estimated
from the target's own logged answers in the matrix, else from the other targets' answers to
the same prompt, else the request's ``max_tokens``, else `DEFAULT_OUTPUT_TOKENS`; input
tokens as the budgets count them. Every answer is logged like any call (batch rows carry the
``aigw_batch`` tag and the batch price), so reading the log again shows the cells filled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.batch import BATCH_DISCOUNT, BatchJob, submit_batch
from aigw_lab.batch.apis import api_for
from aigw_lab.errors import AigwError, BudgetExceededError, ConfigError
from aigw_lab.experiments.expected_output import DEFAULT_OUTPUT_TOKENS
from aigw_lab.gateway.budget_limits import estimate_input_tokens
from aigw_lab.types import ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from aigw_lab.experiments.replay_matrix import ReplayMatrix
    from aigw_lab.gateway import Gateway

__all__ = ["TargetFill", "FillPlan", "FillResult", "plan_fill", "fill", "FILL_TAG"]

#: Tag on every request a fill sends (value: "replay-matrix"), beside the batch's own tag.
FILL_TAG = "aigw_fill"
#: Where a cell's output-token estimate came from.
OUTPUT_SOURCES = ("target", "prompt", "max_tokens", "default")


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetFill:
    """One target's part of a plan: the prompts of its empty cells and what they would cost.

    ``via`` is ``"batch"`` (its provider has a batch API), ``"live"`` (no batch API, sent
    call by call with ``live_fallback``) or ``"none"`` (left out: ``reason`` says why).
    ``batch_usd``/``live_usd`` are the estimate at the batch and live price (None when the
    target has no price); ``usd`` what this plan would pay (the batch price via a batch).
    """

    target: str
    prompt_ids: tuple[str, ...]
    via: str
    reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    batch_usd: float | None = None
    live_usd: float | None = None
    output_sources: Mapping[str, int] = field(default_factory=dict)

    @property
    def usd(self) -> float | None:
        if self.via == "none":
            return 0.0
        return self.batch_usd if self.via == "batch" else self.live_usd


@dataclass(frozen=True, slots=True, kw_only=True)
class FillPlan:
    """What `fill` would send: per target (`TargetFill`), and in total."""

    matrix: ReplayMatrix
    parts: tuple[TargetFill, ...]
    discount: float = BATCH_DISCOUNT

    @property
    def cells(self) -> int:
        """Cells this plan sends a request for."""
        return sum(len(p.prompt_ids) for p in self.parts if p.via != "none")

    @property
    def usd(self) -> float | None:
        """The estimate of what the plan pays (None when a sent target has no price)."""
        values = [p.usd for p in self.parts]
        return None if any(v is None for v in values) else sum(v or 0.0 for v in values)

    @property
    def live_usd(self) -> float | None:
        """The same cells at live prices, for comparison."""
        values = [p.live_usd for p in self.parts if p.via != "none"]
        return None if any(v is None for v in values) else sum(v or 0.0 for v in values)

    @property
    def unpriced(self) -> tuple[str, ...]:
        return tuple(p.target for p in self.parts if p.via != "none" and p.usd is None)

    def to_frame(self) -> Any:
        """One row per target: cells, via, tokens, estimate at batch and live prices."""
        # lazy: pandas loads in ~0.3 s; only the table needs it
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "target": p.target,
                    "cells": len(p.prompt_ids),
                    "via": p.via,
                    "input_tokens": p.input_tokens,
                    "output_tokens": p.output_tokens,
                    "batch_usd": p.batch_usd,
                    "live_usd": p.live_usd,
                    "reason": p.reason,
                }
                for p in self.parts
            ]
        ).set_index("target")

    def describe(self) -> str:
        """The estimate as a person reads it before saying yes."""
        lines = []
        for p in self.parts:
            if p.via == "none":
                lines.append(f"  {p.target}: {len(p.prompt_ids)} empty cells left out: {p.reason}")
                continue
            sources = ", ".join(f"{n} {k}" for k, n in p.output_sources.items() if n)
            lines.append(
                f"  {p.target}: {len(p.prompt_ids)} cells via {p.via}, ~{p.input_tokens} input "
                f"+ ~{p.output_tokens} output tokens (output from: {sources}): "
                f"${_usd(p.batch_usd)} at batch prices, ${_usd(p.live_usd)} live"
            )
        total = (
            f"{self.cells} cells to fill: estimated ${_usd(self.usd)} "
            f"(${_usd(self.live_usd)} at live prices); nothing has been sent"
        )
        if self.unpriced:
            total += f"; no price known for {', '.join(self.unpriced)}"
        return "\n".join([total, *lines])


@dataclass(frozen=True, slots=True, kw_only=True)
class FillResult:
    """What `fill` did: the batch jobs, cells answered and failed, what they cost (as
    logged), the targets not sent for the budget, and the matrix read again."""

    plan: FillPlan
    jobs: tuple[BatchJob, ...]
    filled: int
    failed: int
    cost_usd: float
    skipped: tuple[str, ...]
    matrix: ReplayMatrix
    errors: tuple[AigwError, ...] = ()


def plan_fill(
    matrix: ReplayMatrix,
    gateway: Gateway,
    targets: Iterable[str] | None = None,
    *,
    live_fallback: bool = False,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    discount: float = BATCH_DISCOUNT,
) -> FillPlan:
    """The plan to fill ``matrix``'s empty cells of ``targets`` (default: all its targets)
    through ``gateway``, with its estimated cost at batch and live prices. Sends nothing.

    A target must name a provider of ``gateway`` (``provider/model``), else a `ConfigError`
    lists them. ``live_fallback`` sends the cells of targets without a batch API through
    ``gateway.chat`` at live prices instead of leaving them out.
    """
    if isinstance(output_tokens, bool) or not isinstance(output_tokens, int) or output_tokens < 1:
        raise ConfigError(
            f"output_tokens={output_tokens!r} is not a positive whole number",
            hint=f"pass the output tokens to assume when nothing better is known, e.g. "
            f"{DEFAULT_OUTPUT_TOKENS}",
        )
    if not 0 < discount <= 1:
        raise ConfigError(f"discount={discount!r}", hint="a share of the live price, e.g. 0.5")
    columns = list(matrix.targets if targets is None else _targets(targets))
    for target in columns:
        provider, _, _ = target.partition("/")
        if provider not in gateway.provider_names:
            raise ConfigError(
                f"target {target!r} is not a provider/model of this gateway",
                hint=f"name targets as provider/model; providers: "
                f"{', '.join(gateway.provider_names)}",
            )
    empty: dict[str, list[str]] = {t: [] for t in columns}
    for prompt_id, target in matrix.empty_cells(columns):
        empty[target].append(prompt_id)
    parts = tuple(
        _plan_target(matrix, gateway, t, empty[t], live_fallback, output_tokens, discount)
        for t in columns
        if empty[t]
    )
    return FillPlan(matrix=matrix, parts=parts, discount=discount)


def fill(
    plan: FillPlan,
    gateway: Gateway,
    *,
    max_cost_usd: float,
    poll_interval: float = 30.0,
    timeout: float | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> FillResult:
    """Send ``plan``: one batch job per batch target (waited for, polling every
    ``poll_interval`` seconds with the injected ``sleep``/``clock``), live calls for live
    targets; every answer is logged by the gateway; return the matrix read again.

    Refuses (`BudgetExceededError`, nothing sent) when the plan's estimate exceeds
    ``max_cost_usd`` or a target has no price; stops before a target whose estimate would
    take the logged spend so far past it (listed in ``skipped``).
    """
    if isinstance(max_cost_usd, bool) or not isinstance(max_cost_usd, (int, float)):
        raise ConfigError(f"max_cost_usd={max_cost_usd!r}", hint="pass a number of dollars")
    if not max_cost_usd >= 0:
        raise ConfigError(f"max_cost_usd={max_cost_usd!r}", hint="pass a number of dollars >= 0")
    if plan.unpriced:
        raise BudgetExceededError(
            f"cannot check the fill against max_cost_usd: no price known for "
            f"{', '.join(plan.unpriced)}",
            hint="configure prices for those models, or leave those targets out",
        )
    estimate = plan.usd or 0.0
    if estimate > max_cost_usd:
        raise BudgetExceededError(
            f"filling {plan.cells} cells is estimated at ${estimate:.4f}, over "
            f"max_cost_usd=${max_cost_usd:.4f}; nothing was sent",
            hint="raise max_cost_usd, or plan fewer targets (plan_fill(..., targets=[...]))",
        )
    if gateway.log is None:
        raise ConfigError(
            "the gateway logs nothing, so a fill would fill no cell",
            hint="fill through a gateway with a call log (log=...)",
        )
    items = {item.id: item for item in plan.matrix.prompts.items}
    jobs: list[BatchJob] = []
    errors: list[AigwError] = []
    skipped: list[str] = []
    spent = 0.0
    filled = failed = 0
    for part in plan.parts:
        if part.via == "none":
            continue
        if spent + (part.usd or 0.0) > max_cost_usd:
            skipped.append(part.target)
            continue
        requests = [_request(items[p], part.target) for p in part.prompt_ids]
        if part.via == "batch":
            job = submit_batch(
                gateway, part.target, requests, discount=plan.discount, sleep=sleep, clock=clock
            )
            jobs.append(job)
            job.wait(poll_interval=poll_interval, timeout=timeout)
            results: list[ChatResponse | AigwError] = list(job.results())
        else:
            results = [_live(gateway, r) for r in requests]
        for result in results:
            if isinstance(result, ChatResponse):
                filled += 1
                spent += result.cost_usd or 0.0
            else:
                failed += 1
                errors.append(result)
    gateway.log.flush()
    return FillResult(
        plan=plan,
        jobs=tuple(jobs),
        filled=filled,
        failed=failed,
        cost_usd=spent,
        skipped=tuple(skipped),
        matrix=plan.matrix.reload(gateway.log),
        errors=tuple(errors),
    )


# --- helpers ----------------------------------------------------------------------------------


def _targets(targets: Iterable[str]) -> list[str]:
    if isinstance(targets, str):
        targets = targets.split(",")
    found = [str(t).strip() for t in targets if str(t).strip()]
    if not found:
        raise ConfigError("no targets to fill", hint="name targets as provider/model")
    return list(dict.fromkeys(found))


def _plan_target(
    matrix: ReplayMatrix,
    gateway: Gateway,
    target: str,
    prompt_ids: list[str],
    live_fallback: bool,
    default_tokens: int,
    discount: float,
) -> TargetFill:
    provider, _, model = target.partition("/")
    via, reason = "batch", ""
    try:
        api_for(gateway, provider, model)
    except AigwError as exc:
        via, reason = ("live", "") if live_fallback else ("none", exc.message)
    items = {item.id: item for item in matrix.prompts.items}
    cells = matrix.cells
    own = cells.loc[cells["target"] == target, "output_tokens"].dropna()
    own_mean = float(own.mean()) if len(own) else None
    by_prompt = cells.groupby("prompt_id")["output_tokens"].mean().dropna().to_dict()
    sources = dict.fromkeys(OUTPUT_SOURCES, 0)
    tokens_in = tokens_out = 0
    live_usd: float | None = 0.0
    for prompt_id in prompt_ids:
        item = items[prompt_id]
        request = _request(item, target)
        max_tokens = item.metadata.get("params", {}).get("max_tokens")
        if own_mean is not None:
            out, source = own_mean, "target"
        elif prompt_id in by_prompt:
            out, source = by_prompt[prompt_id], "prompt"
        elif isinstance(max_tokens, int):
            out, source = max_tokens, "max_tokens"
        else:
            out, source = default_tokens, "default"
        sources[source] += 1
        usage = Usage(input_tokens=estimate_input_tokens(request), output_tokens=round(out))
        tokens_in += usage.input_tokens
        tokens_out += usage.output_tokens
        # Priced per request: tiered prices are not linear in summed tokens.
        usd = gateway.prices.cost(provider, model, usage, warn=False)
        live_usd = None if usd is None or live_usd is None else live_usd + usd
    return TargetFill(
        target=target,
        prompt_ids=tuple(prompt_ids),
        via=via,
        reason=reason,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        batch_usd=None if live_usd is None or via == "live" else live_usd * discount,
        live_usd=live_usd,
        output_sources=MappingProxyType(sources),
    )


def _request(item: Any, target: str) -> ChatRequest:
    params = dict(item.metadata.get("params") or {})
    tags = {FILL_TAG: "replay-matrix"}
    if item.category:
        tags["category"] = item.category
    return ChatRequest.create(target, item.messages(), tags=tags, **params)


def _live(gateway: Gateway, request: ChatRequest) -> ChatResponse | AigwError:
    try:
        return gateway.chat(request)
    except AigwError as exc:
        return exc


def _usd(value: float | None) -> str:
    return "?" if value is None else f"{value:.4f}"
