"""Spending limits in USD, enforced before a request is sent: the `Budget` middleware.

    gateway = Gateway(providers, log=log, middleware=[
        Budget(
            [
                Limit("gateway", 500.0, "month"),              # everything together
                Limit("tenant", 50.0, "month", id="acme"),     # one tenant
                Limit("user", 2.0, "day"),                     # each user (no id: a default)
                Limit("experiment", 10.0, "total", id="exp-42"),
                Limit("tenant", 5.0, 3600, id="acme"),         # rolling window of an hour
            ],
            log=log,                                           # spend survives restarts
        ),
    ])
    budget.snapshot()   # [{"budget": "tenant:acme/month", "spent_usd": ..., ...}, ...]

Before a call goes out, its cost is *estimated* (input tokens from the prompt's length, at
`CHARS_PER_TOKEN` characters a token, plus the request's ``max_tokens`` or a default output
allowance, at the model's price) and *reserved* against every budget that applies to it. A
call whose estimate does not fit what a budget has left is refused with
`BudgetExceededError`, and nothing is sent. When the call ends, the reservation is replaced
by the call's actual cost (``response.cost_usd``; a cache hit costs 0), or by its estimate
when the cost is unknown (the provider reported no usage: never 0), or released if the
call failed. Each reservation is one atomic operation of the budget's store
(`aigw_lab.gateway.budget_store`; in memory, under one lock), so concurrent calls (threads
or asyncio tasks) cannot jointly overshoot a limit by their estimates.

Calendar periods (``"day"``, ``"month"``) start at midnight UTC; ``"total"`` never resets;
a number is a rolling window of that many seconds. See ``docs/budgets.md``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from aigw_lab.errors import BudgetExceededError, ConfigError
from aigw_lab.gateway.budget_limits import (  # split out for size
    _REQUEST_FIELDS,
    BUDGETS_TABLE,
    CHARS_PER_TOKEN,
    DEFAULT_OUTPUT_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    SCOPES,
    CostEstimate,
    Limit,
    _Account,
    _attach,
    _refusal,
    _seed,
    charged_usd,
    estimate_cost,
    estimate_input_tokens,
)
from aigw_lab.gateway.budget_store import BudgetKey, BudgetStore, MemoryBudgetStore, Refused
from aigw_lab.gateway.middleware import CallContext, Primitive
from aigw_lab.gateway.primitive import PROCEED, Outcome, Proceed, Verdict, Work
from aigw_lab.pricing import UnknownPriceWarning
from aigw_lab.tokens import TokenCounter
from aigw_lab.types import ChatRequest

if TYPE_CHECKING:
    from aigw_lab.store import CallLog

__all__ = [
    "Budget",
    "Limit",
    "CostEstimate",
    "estimate_cost",
    "estimate_input_tokens",
    "CHARS_PER_TOKEN",
    "MESSAGE_OVERHEAD_TOKENS",
    "DEFAULT_OUTPUT_TOKENS",
]


class Budget(Primitive):
    """Spending limits for a gateway (kind ``"budget"``, the outermost stage).

    ``limits``: `Limit` objects or mappings in the shape of `Limit.from_mapping`. ``log``: a
    `CallLog` whose ``calls`` table seeds each budget's spend so far in its current period
    (so limits survive restarts), ``"gateway"`` to use the log of the gateway the call goes
    through (skipped for an in-memory log, which holds nothing from before), or None.
    ``default_output_tokens``: the output allowance of a request without ``max_tokens``.
    ``unknown_price``: what to do with a call to a model without a known price:
    ``"allow"`` (admit it with an estimate of 0 and warn once per model; its actual cost, if
    the provider reports one, is still counted) or ``"refuse"``. ``tokenizer``: how input
    tokens are counted before the call: ``"auto"`` (tiktoken for OpenAI models when its
    encoding is cached on disk, the 4-characters-a-token estimate otherwise; see
    `aigw_lab.tokens`) or ``"estimate"`` (always the estimate). ``clock``: wall-clock
    seconds since the epoch (calendar periods need wall time), injectable for tests.
    ``store``: where the accounts and reservations live (a `BudgetStore` serving this
    budget alone; default a new `MemoryBudgetStore`, this process's memory).

    A sans-IO primitive (`aigw_lab.gateway.middleware.Primitive`): ``admit`` estimates the
    call, opens the accounts it counts against (asking the driver to run the log query that
    seeds them as `Work`, off the event loop in async modes) and reserves the estimate or
    raises the refusal; ``settle`` charges what the call cost (`charged_usd`). The gateway's
    drivers do the rest in each call mode.
    """

    kind = "budget"

    def __init__(
        self,
        limits: Iterable[Limit | Mapping[str, Any]],
        *,
        log: CallLog | Literal["gateway"] | None = None,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        unknown_price: Literal["allow", "refuse"] = "allow",
        tokenizer: Literal["auto", "estimate"] = "auto",
        clock: Callable[[], float] = time.time,
        store: BudgetStore | None = None,
    ) -> None:
        built = [
            item if isinstance(item, Limit) else Limit.from_mapping(item, f"budgets.limit #{i}")
            for i, item in enumerate(limits, 1)
        ]
        seen: set[tuple[str, str | None, str | float]] = set()
        for limit in built:
            key = (limit.scope, limit.id, limit.period)
            if key in seen:
                raise ConfigError(
                    f"budget {limit.name(limit.id)} is given twice",
                    hint="keep one limit per scope, id and period",
                )
            seen.add(key)
        tokens = default_output_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ConfigError(
                f"default_output_tokens={tokens!r} is invalid", hint="use a positive integer"
            )
        if unknown_price not in ("allow", "refuse"):
            raise ConfigError(
                f"unknown_price={unknown_price!r} is invalid", hint='use "allow" or "refuse"'
            )
        if tokenizer not in ("auto", "estimate"):
            raise ConfigError(
                f"tokenizer={tokenizer!r} is invalid", hint='use "auto" or "estimate"'
            )
        if log is not None and log != "gateway" and not hasattr(log, "execute"):
            raise ConfigError(
                f"budget log must be a CallLog, 'gateway' or None, got {log!r}",
                hint="pass the CallLog the gateway writes to",
            )
        operations = ("missing", "open", "reserve", "settle", "snapshot")
        if store is not None and not all(callable(getattr(store, op, None)) for op in operations):
            raise ConfigError(
                f"budget store must be a BudgetStore, got {store!r}",
                hint="pass a MemoryBudgetStore (aigw_lab.gateway.budget_store) or an object "
                f"with the BudgetStore methods {', '.join(operations)}",
            )
        self.limits: tuple[Limit, ...] = tuple(built)
        self.default_output_tokens = default_output_tokens
        self.unknown_price = unknown_price
        self.tokenizer = tokenizer
        self._tokens = TokenCounter(use_tiktoken=tokenizer == "auto")
        self._log = log
        self._clock = clock
        self._store: BudgetStore = MemoryBudgetStore() if store is None else store
        # A store that waits on the network (Redis): the drivers run this off the loop.
        self.io = getattr(self._store, "io", None)
        self._warned: set[str] = set()
        # Which limits apply to a call, found by dictionary lookups rather than a scan.
        self._gateway_keys = [(i, None) for i, lim in enumerate(built) if lim.scope == "gateway"]
        self._own: dict[tuple[str, str], list[int]] = {}
        self._defaults: dict[str, list[int]] = {}
        for i, lim in enumerate(built):
            if lim.scope == "gateway":
                continue
            if lim.id is None:
                self._defaults.setdefault(lim.scope, []).append(i)
            else:
                self._own.setdefault((lim.scope, lim.id), []).append(i)
        scoped = {scope for scope, _ in self._own} | set(self._defaults)
        self._fields = tuple((s, f) for s, f in _REQUEST_FIELDS if s in scoped)

    @classmethod
    def from_config(
        cls,
        settings: Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.time,
        log: CallLog | Literal["gateway"] | None = None,
        store: BudgetStore | None = None,
    ) -> Budget:
        """Build from a ``[budgets]`` table::

            [budgets]
            default_output_tokens = 1024   # optional
            unknown_price = "allow"        # or "refuse"
            tokenizer = "auto"             # or "estimate" (see aigw_lab.tokens)
            seed_from_log = true           # seed spend from the gateway's call log

            [[budgets.limit]]
            scope = "tenant"
            id = "acme"
            usd = 50
            period = "month"

        ``log`` overrides ``seed_from_log`` with a specific `CallLog`; ``store``: where
        the accounts live (``[state]``'s shared store; default this process's memory).
        """
        BUDGETS_TABLE.validate(settings, "[budgets]")
        entries = settings.get("limit", ())
        if log is None and settings.get("seed_from_log", True):
            log = "gateway"
        return cls(
            entries,
            log=log,
            default_output_tokens=settings.get("default_output_tokens", DEFAULT_OUTPUT_TOKENS),
            unknown_price=settings.get("unknown_price", "allow"),
            tokenizer=settings.get("tokenizer", "auto"),
            clock=clock,
            store=store,
        )

    def describe(self) -> Mapping[str, Any]:
        return {
            "kind": self.kind,
            "type": type(self).__name__,
            "limits": [lim.name(lim.id) for lim in self.limits],
        }

    def __repr__(self) -> str:
        return f"<Budget {[lim.name(lim.id) for lim in self.limits]}>"

    # --- the primitive ------------------------------------------------------------------

    def admit(self, ctx: CallContext, state: Any) -> Verdict:
        """Reserve the call's estimate on every budget it counts against, or raise
        `BudgetExceededError`. An account not open yet is seeded from the call log first:
        that query is returned as `Work` (the driver runs it, then asks again with the
        accounts it built)."""
        if state is None:
            keys = self._keys(ctx.request)
            if not keys:
                return PROCEED
            estimate = self._estimate(ctx)
            missing = self._store.missing(keys)
            if missing:
                log = self._seed_log(ctx)
                if log is not None:  # a query flushes the log: blocking work
                    return Work(partial(self._seeded, keys, estimate, log))
                self._store.open(self._build(missing, None))
        else:
            keys, estimate, built = state
            self._store.open(built)
        return Proceed(self._reserve(keys, estimate, ctx))

    def settle(self, ctx: CallContext, ticket: Any, outcome: Outcome) -> None:
        """Replace the call's reservation by what it is charged (`charged_usd`): its cost
        when known; when unknown its estimate if the upstream began answering, else 0."""
        response = outcome.response
        cost = None if response is None else response.cost_usd
        charged = charged_usd(ticket.usd, cost, answered=outcome.answered)
        self._store.settle(ticket, charged, self._clock())

    # --- for notebooks --------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """One row per budget in use (and every limit with an id or gateway-wide, used or
        not): ``budget``, ``scope``, ``id``, ``period``, ``limit_usd``, ``spent_usd``,
        ``reserved_usd``, ``remaining_usd``, ``in_flight`` and ``resets_at`` (a UTC datetime
        for calendar periods, else None). ``pandas.DataFrame(budget.snapshot())`` makes a
        table of it."""
        fixed = [(i, lim.id) for i, lim in enumerate(self.limits) if lim.id is not None]
        fixed += self._gateway_keys
        if self._log != "gateway":  # "gateway": seeded on the first call, when its log is known
            self._store.open(self._build(fixed, self._log))  # type: ignore[arg-type]
        now = self._clock()
        unopened = [(key, _Account(self.limits[key[0]], key[1], now)) for key in fixed]
        rows = self._store.snapshot(now, unopened)
        order = {scope: i for i, scope in enumerate(SCOPES)}
        rows.sort(key=lambda r: (order[r["scope"]], r["id"] or "", str(r["period"])))
        return rows

    # --- internals ------------------------------------------------------------------------

    def _keys(self, request: ChatRequest) -> list[BudgetKey]:
        """The budgets (limit index, id) that a call with ``request`` counts against."""
        keys = list(self._gateway_keys)
        for scope, field in self._fields:
            owner = getattr(request, field)
            if owner is None:
                continue
            indexes = self._own.get((scope, owner)) or self._defaults.get(scope, ())
            keys.extend((i, owner) for i in indexes)
        return keys

    def _estimate(self, ctx: CallContext) -> CostEstimate:
        # Build the provider first, so its own errors (a missing key, an unknown provider)
        # come before any verdict about a price the estimate might not find.
        ctx.gateway.provider(ctx.provider_name)
        estimate = estimate_cost(
            ctx.request,
            ctx.recorder.prices,
            ctx.provider_name,
            ctx.model,
            default_output_tokens=self.default_output_tokens,
            counter=self._tokens,
        )
        if estimate.usd is not None:
            return estimate
        address = ctx.address
        if self.unknown_price == "refuse":
            raise _attach(
                BudgetExceededError(
                    f"{address}: refused before sending: no price is known for this model, so "
                    "its cost cannot be checked against the budgets (unknown_price = "
                    '"refuse")',
                    hint=f'add a price under [prices."{address}"] in the config (or '
                    'Gateway(prices=...)), or set unknown_price = "allow" in [budgets]',
                ),
                budget=None,
                limit_usd=None,
                spent_usd=None,
                reserved_usd=None,
                estimate_usd=None,
            )
        if address not in self._warned:
            self._warned.add(address)
            warnings.warn(
                f"no price is known for {address}: budgets admit its calls with a cost "
                "estimate of 0 USD (and count only a cost the provider reports). Add a price "
                f'under [prices."{address}"], or set unknown_price = "refuse" in [budgets]',
                UnknownPriceWarning,
                stacklevel=2,
            )
        return estimate._replace(usd=0.0)

    def _seed_log(self, ctx: CallContext) -> CallLog | None:
        log = self._log
        if log == "gateway":
            log = ctx.recorder.log
            # An in-memory log holds only this process's calls, which this budget has seen.
            if log is None or str(getattr(log, "path", "")) == ":memory:":
                return None
        return log  # type: ignore[return-value]

    def _seeded(self, keys: list[BudgetKey], estimate: CostEstimate, log: CallLog) -> _Seeded:
        """The `Work` of an admission: the accounts of ``keys`` still missing, seeded."""
        return _Seeded(keys, estimate, self._build(keys, log))

    def _build(
        self, keys: list[BudgetKey], log: CallLog | None
    ) -> list[tuple[BudgetKey, _Account]]:
        """New accounts for those of ``keys`` that have none yet, with the spend so far of
        their current period read from ``log``. The queries run outside the store's lock;
        when two calls race to open one account, the first to finish wins (`open`)."""
        now = self._clock()
        built = []
        for key in self._store.missing(keys):
            account = _Account(self.limits[key[0]], key[1], now)
            if log is not None:
                _seed(account, log, now)
            built.append((key, account))
        return built

    def _reserve(self, keys: list[BudgetKey], estimate: CostEstimate, ctx: CallContext) -> Any:
        usd = estimate.usd or 0.0
        held = self._store.reserve(keys, usd, self._clock())
        if type(held) is Refused:
            raise _refusal(held.account, held.spent, held.reserved, estimate, ctx.address)
        # The rows of this call record what they count from it (``budget_usd``), so seeding
        # after a restart charges what this gateway charged.
        ctx.budget_estimate_usd = usd
        return held


class _Seeded(NamedTuple):
    """What an admission's seeding `Work` hands back to ``admit``."""

    keys: list[BudgetKey]
    estimate: CostEstimate
    built: list[tuple[BudgetKey, _Account]]
