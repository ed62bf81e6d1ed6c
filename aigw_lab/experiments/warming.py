"""Cache warming: fill a gateway's exact and semantic caches before traffic comes, from a
dataset or from the most frequent prompts of a call log, with the cost shown first.

    plan = plan_warming(gateway, log=gateway.log, top=100)   # reads; sends nothing
    print(plan)                                              # prompts, free/paid, estimate
    report = warm(plan, gateway, max_cost_usd=1.00)          # fills the caches

Each prompt is answered, in order of cost: already cached (nothing to do); free, from the
answer the exact cache already holds (for the semantic cache) or from the log's own upstream
answer to that request on that target; else paid, by a call through the gateway (budgets,
rate limits, retries and the log apply; the call skips the caches and the answer is then
added to each) or, with ``method="batch"``, by `aigw_lab.batch.submit_batch` at the batch
price. Paid calls are tagged ``aigw_role = 'warm'``. Entries are added under the key and
partition a live call computes (`ExactCache.add`, `SemanticCache.add`), so a warmed prompt
is then a hit in every call mode. See docs/caching.md, "Warming".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from aigw_lab.batch import submit_batch
from aigw_lab.batch.apis import api_for
from aigw_lab.datasets.items import Dataset
from aigw_lab.errors import AigwError, BudgetExceededError, ConfigError
from aigw_lab.experiments.estimate import CostEstimate
from aigw_lab.experiments.expected_output import DEFAULT_OUTPUT_TOKENS
from aigw_lab.experiments.warming_estimate import estimate_entries, stand_in_item
from aigw_lab.experiments.warming_sources import (
    WARM_ROLE,
    WARM_TAG,
    load_dataset,
    prompt_text,
    top_prompts,
)
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.store.calllog import CallLog
from aigw_lab.types import ChatRequest, ChatResponse

if TYPE_CHECKING:
    from aigw_lab.gateway import Gateway

__all__ = [
    "WARM_ROLE",
    "WARM_TAG",
    "WarmingEntry",
    "WarmingPlan",
    "WarmingReport",
    "plan_warming",
    "warm",
]

Method = Literal["call", "batch"]
_METHODS = ("call", "batch")
_CACHES = ("exact", "semantic")
_SHOWN = 10  # prompts a printed plan lists
_BYPASSED = "not for the semantic cache (sampled, tools or images)"


@dataclass(frozen=True, slots=True, kw_only=True)
class WarmingEntry:
    """One prompt to warm: ``request`` (bare model name) to ``provider``/``model``; ``count``
    the ok calls that asked it (1 for a dataset item); ``in_exact``/``in_semantic`` whether
    that cache already answers it (None: that cache is not warmed, or the semantic cache
    would bypass this request); ``answer`` a known answer that costs no call and ``answer_from``
    where it is (``"exact cache"`` or ``"log"``); the estimate of a paid call otherwise."""

    request: ChatRequest
    provider: str
    model: str
    count: int
    in_exact: bool | None
    in_semantic: bool | None
    answer: ChatResponse | None = None
    answer_from: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    estimate_usd: float | None = None

    @property
    def address(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def status(self) -> Literal["cached", "free", "call"]:
        """``cached``: nothing to fill; ``free``: filled from ``answer``; ``call``: paid."""
        if self.in_exact is not False and self.in_semantic is not False:
            return "cached"
        return "free" if self.answer is not None else "call"


@dataclass(frozen=True, slots=True, kw_only=True)
class WarmingPlan:
    """What `warm` would do, worked out without sending anything: the ``entries`` (most
    frequent first), the ``caches`` warmed, the ``method`` of paid calls, and ``estimate``,
    the cost of those calls (a `CostEstimate`: tokens, dollars, and where the expected output
    tokens came from). ``source`` describes where the prompts came from; ``skipped`` counts
    log rows left out by reason. ``print(plan)`` shows it."""

    source: str
    entries: tuple[WarmingEntry, ...]
    caches: tuple[str, ...]
    method: Method
    estimate: CostEstimate
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: The prompts came from a log: an item's "reference" is then the latest logged answer
    #: to it by any model, which the printed basis says.
    from_log: bool = False

    def count(self, status: str) -> int:
        """How many entries have ``status`` (``cached``, ``free``, ``call``)."""
        return sum(1 for e in self.entries if e.status == status)

    def describe(self) -> str:
        how = "one batch job per target at the batch price" if self.method == "batch" else (
            "calls through the gateway"
        )  # fmt: skip
        lines = [
            f"warming plan: {len(self.entries)} prompts from {self.source}",
            f"  caches: {', '.join(self.caches)}",
            f"  already cached: {self.count('cached')}; free (no call): {self.count('free')}; "
            f"to call: {self.count('call')} ({how})",
            f"  cost: {self._cost()}" if self.estimate.units else "  cost: $0 (nothing to call)",
        ]
        if self.skipped:
            parts = ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())
            lines.append(f"  log rows left out: {parts}")
        for entry in self.entries[:_SHOWN]:
            price = "" if entry.status != "call" else _usd(entry.estimate_usd)
            what = entry.answer_from if entry.status == "free" else entry.status
            lines.append(
                f"  {entry.count:>6}x  {entry.address}  {what}{price}  "
                f"{_short(prompt_text(entry.request))}"
            )
        if len(self.entries) > _SHOWN:
            lines.append(f"  ... and {len(self.entries) - _SHOWN} more")
        return "\n".join(lines)

    __str__ = describe

    def _cost(self) -> str:
        text = self.estimate.describe()
        if self.from_log:
            text = text.replace(" reference answers", " answers logged to the prompt by any model")
        if self.method == "batch":
            text += " at the batch price"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class WarmingReport:
    """What `warm` did: entries added to each cache, prompts answered without a call
    (``free``), paid calls that answered (``called``) or failed (``failed``, with the first
    few ``errors``), calls not made because the budget would have been exceeded
    (``refused``), and what the paid calls cost."""

    exact_filled: int
    semantic_filled: int
    free: int
    called: int
    failed: int
    refused: int
    cost_usd: float
    errors: tuple[str, ...] = ()

    def describe(self) -> str:
        text = (
            f"warmed: {self.exact_filled} exact and {self.semantic_filled} semantic entries "
            f"added; {self.free} answers free, {self.called} paid calls (${self.cost_usd:.4f})"
        )
        if self.failed:
            text += f", {self.failed} failed ({'; '.join(self.errors)})"
        if self.refused:
            text += f"; {self.refused} calls not made (over the budget, or free answers only)"
        return text

    __str__ = describe


def plan_warming(
    gateway: Gateway,
    *,
    dataset: Dataset | str | None = None,
    log: Any = None,
    top: int | None = None,
    target: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    tenant: str | None = None,
    user: str | None = None,
    params: Mapping[str, Any] | None = None,
    caches: Sequence[str] | None = None,
    method: Method = "call",
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> WarmingPlan:
    """Plan warming ``gateway``'s caches; nothing is sent (the semantic cache embeds each
    prompt to see whether it already answers it).

    From a ``dataset`` (a `Dataset`, ``"bundled:NAME"``, ``"recorded:NAME"`` or a ``.jsonl``
    path; its first ``top`` items) sent to ``target`` with request ``params``, in the
    namespace of ``tenant`` or ``user`` (none: the shared one); or from ``log`` (a `CallLog`,
    the path of a DuckDB call log, or ``True`` for the gateway's own): its ``top`` most
    frequent requests among ok live calls between ``since`` and ``until``, each to its own
    target unless ``target`` is given, each in its own tenant's namespace (``tenant`` keeps
    one tenant's calls). ``caches``: ``"exact"`` and/or ``"semantic"`` (default: those the
    gateway has). ``method``: ``"call"`` or ``"batch"`` for paid answers.
    """
    if (dataset is None) == (log is None or log is False):
        raise ConfigError(
            "warming needs one source: a dataset or a call log",
            hint="pass dataset=... (with target=...) or log=... (with top=N)",
        )
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ConfigError(f"top={top!r} is not a positive whole number", hint="e.g. top=100")
    if method not in _METHODS:
        raise ConfigError(f"method={method!r} is unknown", hint='use "call" or "batch"')
    exact, semantic, chosen = _caches(gateway, caches)
    to = gateway.resolve(target) if target is not None else None
    skipped: dict[str, int]
    if dataset is not None:
        if to is None:
            raise ConfigError(
                "warming from a dataset needs a target",
                hint='pass target="provider/model" (the model whose answers to cache)',
            )
        if params is not None and (
            not isinstance(params, Mapping) or "model" in params or "messages" in params
        ):
            raise ConfigError(
                f"params={params!r} is not a table of request fields",
                hint='pass e.g. params={"temperature": 0, "max_tokens": 200} (the target '
                "and the dataset give the model and messages)",
            )
        fields = dict(params or {})
        fields.update({k: v for k, v in (("tenant", tenant), ("user", user)) if v is not None})
        data = load_dataset(dataset)
        items = data.items[:top] if top is not None else data.items
        found = [
            (ChatRequest.create(to[1], list(item.messages()), **fields), to, 1, None, item)
            for item in items
        ]
        source, skipped, dataset_name = f"dataset {data.name!r} to {to[0]}/{to[1]}", {}, data.name
    else:
        if top is None:
            raise ConfigError("warming from a log needs top=N", hint="e.g. top=100")
        read, source = _open_log(gateway, log)
        try:
            prompts = top_prompts(read, top, target=to, since=since, until=until, tenant=tenant)
        finally:
            if read is not log and read is not gateway.log:
                read.close()
        found = [
            (p.request, (p.provider, p.model), p.count, p.answer,
             stand_in_item(p.key, p.request, p.any_answer_text))
            for p in prompts.prompts
        ]  # fmt: skip
        source = (
            f"{source}: the top {len(found)} of {prompts.distinct} distinct requests in "
            f"{prompts.ok_rows} ok calls"
        )
        skipped, dataset_name = dict(prompts.skipped), None
    entries = []
    for request, (provider, model), count, logged, item in found:
        in_exact = None if exact is None else exact.lookup(request, provider=provider, model=model)
        in_semantic = None
        if semantic is not None and _semantic_takes(semantic, request):
            in_semantic = semantic.lookup(request, provider=provider, model=model) is not None
        elif exact is None:  # only the semantic cache is warmed, and it would bypass this
            skipped[_BYPASSED] = skipped.get(_BYPASSED, 0) + 1
            continue
        answer, answer_from = None, None
        if in_exact is not None:
            answer, answer_from = in_exact, "exact cache"
        elif logged is not None and logged.finish_reason in ("stop", "tool_calls", "length"):
            answer, answer_from = logged, "log"
        entries.append(
            (
                WarmingEntry(
                    request=request,
                    provider=provider,
                    model=model,
                    count=count,
                    in_exact=None if exact is None else in_exact is not None,
                    in_semantic=in_semantic,
                    answer=answer,
                    answer_from=answer_from,
                ),
                item,
            )
        )
    if method == "batch":  # a target without a batch API fails now, not after the plan
        for address in sorted({(e.provider, e.model) for e, _ in entries if e.status == "call"}):
            api_for(gateway, *address)
    priced, estimate = estimate_entries(gateway, entries, method, dataset_name, output_tokens)
    return WarmingPlan(
        source=source,
        entries=tuple(priced),
        caches=chosen,
        method=method,
        estimate=estimate,
        skipped=MappingProxyType(skipped),
        from_log=dataset is None,
    )


def warm(
    plan: WarmingPlan,
    gateway: Gateway,
    *,
    max_cost_usd: float | None = None,
    free_only: bool = False,
    poll_interval: float = 30.0,
    sleep: Callable[[float], Any] = time.sleep,
) -> WarmingReport:
    """Carry out ``plan`` on ``gateway`` (the one it was planned for) and report.

    ``max_cost_usd``: the most the paid calls may cost. A plan whose estimate is over it,
    or that has unpriced calls, is refused before anything is sent (`BudgetExceededError`);
    while warming, a call is not made once the spend so far plus its estimate would pass it
    (counted as ``refused``). None: no limit beyond the plan. ``free_only``: fill only what
    costs no call (the paid entries count as ``refused``). ``poll_interval`` and
    ``sleep``: how a batch job is waited for (``method="batch"``).
    """
    exact, semantic, _ = _caches(gateway, plan.caches)
    paid = [e for e in plan.entries if e.status == "call"]
    if max_cost_usd is not None and not free_only:
        if (
            isinstance(max_cost_usd, bool)
            or not isinstance(max_cost_usd, (int, float))
            or not (max_cost_usd >= 0)
        ):
            raise ConfigError(
                f"max_cost_usd={max_cost_usd!r} is not an amount of dollars", hint="e.g. 1.0"
            )
        unpriced = [e.address for e in paid if e.estimate_usd is None]
        if unpriced:
            raise BudgetExceededError(
                f"warming would call {', '.join(sorted(set(unpriced)))}, whose price is unknown, "
                f"so its cost cannot be held under ${max_cost_usd:.4f}",
                hint="add [prices] for the target, or warm without max_cost_usd",
            )
        if paid and plan.estimate.usd > max_cost_usd:
            raise BudgetExceededError(
                f"warming is estimated at ${plan.estimate.usd:.4f}, over max_cost_usd "
                f"${max_cost_usd:.4f}; nothing was sent",
                hint="raise the budget, or warm fewer prompts (a lower top)",
            )
    filled = _Filled(exact, semantic)
    free = 0
    for entry in plan.entries:
        if entry.status == "free" and entry.answer is not None:
            filled.add(entry, entry.answer)
            free += 1
    if free_only:
        paid_result: tuple[int, int, int, float, list[str]] = (0, 0, len(paid), 0.0, [])
    elif plan.method == "batch":
        paid_result = _batch(gateway, paid, filled, poll_interval=poll_interval, sleep=sleep)
    else:
        paid_result = _calls(gateway, paid, filled, max_cost_usd)
    called, failed, refused, cost, errors = paid_result
    return WarmingReport(
        exact_filled=filled.exact,
        semantic_filled=filled.semantic,
        free=free,
        called=called,
        failed=failed,
        refused=refused,
        cost_usd=cost,
        errors=tuple(errors[:3]),
    )


# --- the steps ---------------------------------------------------------------------------


class _Filled:
    """Adds answers to the caches a plan warms, counting what each took."""

    def __init__(self, exact: ExactCache | None, semantic: SemanticCache | None) -> None:
        self._exact, self._semantic = exact, semantic
        self.exact = self.semantic = 0

    def add(self, entry: WarmingEntry, answer: ChatResponse) -> None:
        where = {"provider": entry.provider, "model": entry.model}
        if self._exact is not None and entry.in_exact is False:
            self.exact += self._exact.add(entry.request, answer, **where)
        if self._semantic is not None and entry.in_semantic is False:
            self.semantic += self._semantic.add(entry.request, answer, **where)


def _tagged(entry: WarmingEntry) -> ChatRequest:
    """The paid call's request: addressed to its target, tagged as warming, and skipping
    the caches (so a similar prompt warmed a moment ago cannot answer it in the semantic
    cache; the answer is added to each cache under this request's own key after)."""
    request = entry.request
    return replace(
        request,
        model=entry.address,
        tags=MappingProxyType({**request.tags, WARM_TAG: WARM_ROLE}),
        metadata=MappingProxyType({**request.metadata, "cache": {"skip": True}}),
    )


def _calls(
    gateway: Gateway, paid: list[WarmingEntry], filled: _Filled, max_cost_usd: float | None
) -> tuple[int, int, int, float, list[str]]:
    called = failed = 0
    spent = 0.0
    errors: list[str] = []
    for index, entry in enumerate(paid):
        if max_cost_usd is not None and spent + (entry.estimate_usd or 0.0) > max_cost_usd:
            return called, failed, len(paid) - index, spent, errors
        try:
            response = gateway.chat(_tagged(entry))
        except BudgetExceededError as exc:  # the gateway's own budget: stop, as it says
            errors.append(exc.message)
            return called, failed + 1, len(paid) - index - 1, spent, errors
        except AigwError as exc:
            failed += 1
            errors.append(exc.message)
            continue
        called += 1
        cost = response.cost_usd if response.cost_usd is not None else entry.estimate_usd
        spent += cost or 0.0
        filled.add(entry, response)
    return called, failed, 0, spent, errors


def _batch(
    gateway: Gateway,
    paid: list[WarmingEntry],
    filled: _Filled,
    *,
    poll_interval: float,
    sleep: Callable[[float], Any],
) -> tuple[int, int, int, float, list[str]]:
    called = failed = 0
    spent = 0.0
    errors: list[str] = []
    by_target: dict[str, list[WarmingEntry]] = {}
    for entry in paid:
        by_target.setdefault(entry.address, []).append(entry)
    for address, entries in by_target.items():
        requests = [replace(_tagged(e), metadata=e.request.metadata) for e in entries]
        job = submit_batch(gateway, address, requests, sleep=sleep)
        job.wait(poll_interval=poll_interval)
        for entry, result in zip(entries, job.results(), strict=True):
            if isinstance(result, AigwError):
                failed += 1
                errors.append(result.message)
                continue
            called += 1
            spent += result.cost_usd or 0.0
            filled.add(entry, result)
    return called, failed, 0, spent, errors


def _caches(
    gateway: Gateway, names: Sequence[str] | None
) -> tuple[ExactCache | None, SemanticCache | None, tuple[str, ...]]:
    """The gateway's exact and semantic caches that ``names`` asks to warm."""
    exact = next((m for m in gateway.middleware if isinstance(m, ExactCache)), None)
    semantic = next((m for m in gateway.middleware if isinstance(m, SemanticCache)), None)
    have = {"exact": exact, "semantic": semantic}
    if names is None:
        names = [name for name in _CACHES if have[name] is not None]
        if not names:
            raise ConfigError(
                "this gateway has no cache to warm",
                hint="add an ExactCache (config: a [cache] table) or a SemanticCache",
            )
    chosen = tuple(dict.fromkeys(names))
    for name in chosen:
        if name not in _CACHES:
            raise ConfigError(f"cache {name!r} is unknown", hint='use "exact" and/or "semantic"')
        if have[name] is None:
            raise ConfigError(
                f"this gateway has no {name} cache to warm",
                hint="add one to its middleware (config: [cache] / [semantic_cache])",
            )
    if not chosen:
        raise ConfigError("no cache to warm was named", hint='pass caches=["exact"]')
    return (
        exact if "exact" in chosen else None,
        semantic if "semantic" in chosen else None,
        chosen,
    )


def _semantic_takes(cache: SemanticCache, request: ChatRequest) -> bool:
    """Whether a live call of ``request`` would look up (and fill) ``cache``: as
    `SemanticCache` decides, sampled requests, tools and images bypass it by default."""
    if request.temperature and not cache.allow_sampled:
        return False
    if request.tools and not cache.allow_tools:
        return False
    return all(
        isinstance(m.content, str) or all(p.type == "text" for p in m.content)
        for m in request.messages
    )


def _open_log(gateway: Gateway, log: Any) -> tuple[Any, str]:
    """Something `top_prompts` reads, and how to name it."""
    if log is True:
        if gateway.log is None:
            raise ConfigError(
                "this gateway has no call log to warm from", hint="pass log= a .duckdb file"
            )
        return gateway.log, f"the call log {gateway.log.path}"
    if hasattr(log, "rows_written"):  # a CallLog
        return log, f"the call log {log.path}"
    if isinstance(log, (str, bytes)) or hasattr(log, "__fspath__"):
        return CallLog.snapshot(log), f"the call log {log}"
    if hasattr(log, "execute") and hasattr(log, "close"):  # a DuckDB connection (a snapshot)
        return log, "the call log"
    raise ConfigError(
        f"log={log!r} is not a call log",
        hint="pass a CallLog, a .duckdb path, a DuckDB connection, or True",
    )


def _usd(value: float | None) -> str:
    if value is None:
        return " (unpriced)"
    return f" ~${value:.6f}" if value < 0.01 else f" ~${value:.4f}"


def _short(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return repr(line if len(line) <= width else line[: width - 3] + "...")
