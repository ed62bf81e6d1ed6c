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
call failed. Reservations are taken under one lock, so concurrent calls (threads or asyncio
tasks) cannot jointly overshoot a limit by their estimates.

Calendar periods (``"day"``, ``"month"``) start at midnight UTC; ``"total"`` never resets;
a number is a rolling window of that many seconds. See ``docs/budgets.md``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from aigw_lab.errors import BudgetExceededError, ConfigError
from aigw_lab.gateway.budget_limits import (  # split out for size
    _REQUEST_FIELDS,
    _SLACK_USD,
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
    _Reservation,
    _row,
    _seed,
    charged_usd,
    estimate_cost,
    estimate_input_tokens,
)
from aigw_lab.gateway.middleware import (
    AsyncNext,
    AsyncStreamNext,
    CallContext,
    Middleware,
    Next,
    StreamNext,
)
from aigw_lab.pricing import UnknownPriceWarning
from aigw_lab.tokens import TokenCounter
from aigw_lab.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent

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


class Budget(Middleware):
    """Spending limits for a gateway (kind ``"budget"``, the outermost middleware).

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
        self.limits: tuple[Limit, ...] = tuple(built)
        self.default_output_tokens = default_output_tokens
        self.unknown_price = unknown_price
        self.tokenizer = tokenizer
        self._tokens = TokenCounter(use_tiktoken=tokenizer == "auto")
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[tuple[int, str | None], _Account] = {}
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

        ``log`` overrides ``seed_from_log`` with a specific `CallLog`.
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
        )

    def describe(self) -> Mapping[str, Any]:
        return {
            "kind": self.kind,
            "type": type(self).__name__,
            "limits": [lim.name(lim.id) for lim in self.limits],
        }

    def __repr__(self) -> str:
        return f"<Budget {[lim.name(lim.id) for lim in self.limits]}>"

    # --- hooks ----------------------------------------------------------------------------

    def handle(self, ctx: CallContext, call_next: Next) -> ChatResponse:
        keys = self._keys(ctx.request)
        if not keys:
            return call_next(ctx)
        estimate = self._estimate(ctx)
        self._open(keys, ctx)
        reservation = self._reserve(keys, estimate, ctx)
        try:
            response = call_next(ctx)
        except BaseException:
            self._settle(reservation, 0.0)
            raise
        self._settle(reservation, charged_usd(reservation.usd, response.cost_usd, answered=True))
        return response

    async def ahandle(self, ctx: CallContext, call_next: AsyncNext) -> ChatResponse:
        keys = self._keys(ctx.request)
        if not keys:
            return await call_next(ctx)
        reservation = await self._areserve(keys, ctx)
        try:
            response = await call_next(ctx)
        except BaseException:
            self._settle(reservation, 0.0)
            raise
        self._settle(reservation, charged_usd(reservation.usd, response.cost_usd, answered=True))
        return response

    def handle_stream(self, ctx: CallContext, call_next: StreamNext) -> Iterator[StreamEvent]:
        keys = self._keys(ctx.request)
        if not keys:
            yield from call_next(ctx)
            return
        estimate = self._estimate(ctx)
        self._open(keys, ctx)
        reservation = self._reserve(keys, estimate, ctx)
        events: Iterator[StreamEvent] | None = None
        answered = False
        try:
            events = call_next(ctx)
            for event in events:
                answered = True
                if type(event) is StreamEnd:
                    self._settle(
                        reservation,
                        charged_usd(reservation.usd, event.response.cost_usd, answered=True),
                    )
                yield event
        finally:
            # Failed before answering: nothing is counted. Broken or closed by the caller
            # after the upstream began answering: a paid call of unknown usage, counted at
            # its estimate. Close the inner stream now so it is logged at once.
            self._settle(reservation, charged_usd(reservation.usd, None, answered=answered))
            close = getattr(events, "close", None)
            if close is not None:
                close()

    async def ahandle_stream(  # type: ignore[override]
        self, ctx: CallContext, call_next: AsyncStreamNext
    ) -> AsyncIterator[StreamEvent]:
        keys = self._keys(ctx.request)
        if not keys:
            async for event in call_next(ctx):
                yield event
            return
        reservation = await self._areserve(keys, ctx)
        events: AsyncIterator[StreamEvent] | None = None
        answered = False
        try:
            events = call_next(ctx)
            async for event in events:
                answered = True
                if type(event) is StreamEnd:
                    self._settle(
                        reservation,
                        charged_usd(reservation.usd, event.response.cost_usd, answered=True),
                    )
                yield event
        finally:
            self._settle(reservation, charged_usd(reservation.usd, None, answered=answered))
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

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
            self._open_with(fixed, self._log)  # type: ignore[arg-type]
        now = self._clock()
        rows = []
        with self._lock:
            accounts = dict(self._accounts)
            for key in fixed:
                if key not in accounts:
                    accounts[key] = _Account(self.limits[key[0]], key[1], now)
            for account in accounts.values():
                account.roll(now)
                rows.append(_row(account))
        order = {scope: i for i, scope in enumerate(SCOPES)}
        rows.sort(key=lambda r: (order[r["scope"]], r["id"] or "", str(r["period"])))
        return rows

    # --- internals ------------------------------------------------------------------------

    def _keys(self, request: ChatRequest) -> list[tuple[int, str | None]]:
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
            ctx.gateway.prices,
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
            log = ctx.gateway.log
            # An in-memory log holds only this process's calls, which this budget has seen.
            if log is None or str(getattr(log, "path", "")) == ":memory:":
                return None
        return log  # type: ignore[return-value]

    def _open(self, keys: list[tuple[int, str | None]], ctx: CallContext) -> None:
        missing = [key for key in keys if key not in self._accounts]
        if missing:
            self._open_with(missing, self._seed_log(ctx))

    async def _areserve(self, keys: list[tuple[int, str | None]], ctx: CallContext) -> _Reservation:
        estimate = self._estimate(ctx)
        missing = [key for key in keys if key not in self._accounts]
        if missing:
            log = self._seed_log(ctx)
            if log is None:
                self._open_with(missing, None)
            else:  # a query flushes the log: not on the event loop
                await asyncio.to_thread(self._open_with, missing, log)
        return self._reserve(keys, estimate, ctx)

    def _open_with(self, keys: list[tuple[int, str | None]], log: CallLog | None) -> None:
        """Create the accounts for ``keys`` that do not exist yet, with the spend so far of
        their current period read from ``log``. The query runs outside the lock; when two
        calls race to open one account, the first to finish wins."""
        now = self._clock()
        built = []
        for key in keys:
            if key in self._accounts:
                continue
            account = _Account(self.limits[key[0]], key[1], now)
            if log is not None:
                _seed(account, log, now)
            built.append((key, account))
        with self._lock:
            for key, account in built:
                self._accounts.setdefault(key, account)

    def _reserve(
        self, keys: list[tuple[int, str | None]], estimate: CostEstimate, ctx: CallContext
    ) -> _Reservation:
        usd = estimate.usd or 0.0
        now = self._clock()
        with self._lock:
            accounts = [self._accounts[key] for key in keys]
            for account in accounts:
                account.roll(now)
                used = account.spent + account.reserved
                limit = account.limit.usd
                if used >= limit or used + usd > limit + _SLACK_USD:
                    refused = (account, account.spent, account.reserved)
                    break
            else:
                for account in accounts:
                    account.reserved += usd
                    account.in_flight += 1
                # The rows of this call record what they count from it (``budget_usd``),
                # so seeding after a restart charges what this gateway charged.
                ctx.budget_estimate_usd = usd
                return _Reservation(accounts, usd)
        raise _refusal(*refused, estimate, ctx.address)

    def _settle(self, reservation: _Reservation, cost: float) -> None:
        """Replace a call's reservation by its actual ``cost`` (0 for a failed call). Only
        the first settlement of a reservation counts."""
        if reservation.settled:
            return
        now = self._clock()
        with self._lock:
            if reservation.settled:
                return
            reservation.settled = True
            for account, generation in zip(
                reservation.accounts, reservation.generations, strict=True
            ):
                account.in_flight -= 1
                # With nothing in flight the reservation is exactly 0, float residue or not.
                account.reserved = account.reserved - reservation.usd if account.in_flight else 0.0
                if cost and generation == account.generation:
                    account.add(cost, now)
