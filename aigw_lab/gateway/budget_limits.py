"""The parts of budgets that are not the primitive: `Limit`, the cost estimate, the
per-budget accounts with their calendar or rolling periods, seeding spend from the call
log, and the refusal message. `aigw_lab.gateway.budget` holds the `Budget` primitive;
`aigw_lab.gateway.budget_store` keeps its accounts."""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from aigw_lab.addressing import MAX_OUTPUT_TOKENS
from aigw_lab.config_schema import Key, Table
from aigw_lab.errors import BudgetExceededError, ConfigError, InvalidRequestError
from aigw_lab.store.sanitize import sanitize_text
from aigw_lab.tokens import CHARS_PER_TOKEN as TOKENS_CHARS_PER_TOKEN
from aigw_lab.types import ChatRequest, Usage

if TYPE_CHECKING:
    from aigw_lab.pricing import PriceBook
    from aigw_lab.store import CallLog
    from aigw_lab.tokens import TokenCounter

__all__ = [
    "Limit",
    "CostEstimate",
    "estimate_cost",
    "estimate_input_tokens",
    "CHARS_PER_TOKEN",
    "MESSAGE_OVERHEAD_TOKENS",
    "DEFAULT_OUTPUT_TOKENS",
    "charged_usd",
]

Scope = Literal["gateway", "tenant", "user", "experiment"]
#: Scopes in the order budgets are checked and listed.
SCOPES: tuple[str, ...] = ("gateway", "tenant", "user", "experiment")
CALENDAR_PERIODS: tuple[str, ...] = ("day", "month", "total")

#: The input estimate without a tokenizer: this many characters of prompt make one token (a
#: rough rule that holds for English with the common BPE tokenizers).
CHARS_PER_TOKEN = TOKENS_CHARS_PER_TOKEN
#: Tokens added per message for the chat format's own framing (role markers and the like).
MESSAGE_OVERHEAD_TOKENS = 4
#: Output tokens assumed for a request without ``max_tokens``.
DEFAULT_OUTPUT_TOKENS = 1024

# Sums of float estimates drift by ulps; a call that fits exactly must not be refused.
_SLACK_USD = 1e-9
_DAY_SECONDS = 86_400
# request field holding each scope's id
_REQUEST_FIELDS: tuple[tuple[str, str], ...] = (
    ("tenant", "tenant"),
    ("user", "user"),
    ("experiment", "experiment_id"),
)
_LOG_COLUMNS: Mapping[str, str] = {
    "tenant": "tenant_id",
    "user": "user_id",
    "experiment": "experiment_id",
}
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_LIMIT_EXAMPLE = 'e.g. scope = "tenant", id = "acme", usd = 50, period = "month"'
#: One ``[[budgets.limit]]``; `Limit` checks the values (for Python callers too).
LIMIT_TABLE = Table(
    keys=(
        Key(
            name="scope",
            required=True,
            what='"gateway", "tenant", "user" or "experiment"',
            hint=_LIMIT_EXAMPLE,
        ),
        Key(name="id", what="a non-empty string", doc="whose budget (none: each one's)"),
        Key(name="usd", required=True, what="a number of dollars >= 0", hint=_LIMIT_EXAMPLE),
        Key(
            name="period",
            what="a calendar period or a number of seconds",
            doc='"month" (default), "day", "total", ... or a rolling window',
        ),
    ),
    hint='e.g. [[budgets.limit]] scope = "tenant", id = "acme", usd = 50',
)
#: ``[budgets]`` (docs/budgets.md); `Budget` checks the values of the other keys.
BUDGETS_TABLE = Table(
    keys=(
        Key(
            name="limit",
            types=(list, tuple),
            array=True,
            table=LIMIT_TABLE,
            what="an array of tables",
            hint='write each limit as [[budgets.limit]] scope = "tenant", id = "acme", usd = 50',
        ),
        Key(
            name="default_output_tokens",
            what="a positive integer",
            doc="output tokens assumed when a call sets no max_tokens",
        ),
        Key(
            name="unknown_price",
            what='"allow" or "refuse"',
            doc='a model without a price: "allow" (default) or "refuse"',
        ),
        Key(
            name="seed_from_log",
            types=(bool,),
            what="true or false",
            doc="seed spend from the gateway's call log",
        ),
        Key(
            name="tokenizer",
            what='"auto" or "estimate"',
            doc='"auto": tiktoken when cached, else 4 characters a token; "estimate"',
        ),
    )
)


@dataclass(frozen=True, slots=True)
class Limit:
    """One spending limit: at most ``usd`` dollars per ``period`` for ``scope``.

    ``scope`` is ``"gateway"`` (every call together), ``"tenant"``, ``"user"`` or
    ``"experiment"`` (matched against the request's ``tenant``, ``user`` and
    ``experiment_id``). ``id`` names the one tenant/user/experiment it is for; without an
    ``id`` it is the *default*: every id of that scope without a limit of its own gets its
    own budget of that size. ``period`` is ``"day"`` or ``"month"`` (calendar, UTC),
    ``"total"`` (never resets), or a number of seconds (a rolling window).
    """

    scope: Scope
    usd: float
    period: str | float = "month"
    id: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(
                f"budget scope {self.scope!r} is unknown", hint=f"use one of {list(SCOPES)}"
            )
        if (
            isinstance(self.usd, bool)
            or not isinstance(self.usd, (int, float))
            or not (0 <= self.usd < math.inf)
        ):
            raise ConfigError(
                f"budget usd={self.usd!r} is invalid", hint="use a number of dollars >= 0"
            )
        period = self.period
        if isinstance(period, str):
            if period not in CALENDAR_PERIODS:
                raise ConfigError(
                    f"budget period {period!r} is unknown",
                    hint=f"use one of {list(CALENDAR_PERIODS)} or a rolling window in seconds",
                )
        elif (
            isinstance(period, bool)
            or not isinstance(period, (int, float))
            or not (0 < period < math.inf)
        ):
            raise ConfigError(
                f"budget period {period!r} is invalid",
                hint=f"use one of {list(CALENDAR_PERIODS)} or a number of seconds > 0",
            )
        if self.scope == "gateway" and self.id is not None:
            raise ConfigError(
                f"a gateway-wide budget has no id (got id={self.id!r})",
                hint='drop the id, or use scope = "tenant", "user" or "experiment"',
            )
        if self.id is not None and (not isinstance(self.id, str) or not self.id):
            raise ConfigError(f"budget id {self.id!r} is invalid", hint="use a non-empty string")

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any], where: str = "budgets.limit") -> Limit:
        """Build from one ``[[budgets.limit]]`` table: ``scope``, ``usd``, optional ``id``
        and ``period`` (default ``"month"``)."""
        LIMIT_TABLE.validate(entry, f"[{where}]")
        return cls(entry["scope"], entry["usd"], entry.get("period", "month"), entry.get("id"))

    @property
    def rolling(self) -> bool:
        return not isinstance(self.period, str)

    def name(self, owner: str | None) -> str:
        """A short stable name such as ``tenant:acme/month`` or ``gateway/3600s``."""
        who = self.scope if owner is None else f"{self.scope}:{owner}"
        period = self.period if isinstance(self.period, str) else f"{self.period:g}s"
        return f"{who}/{period}"

    def title(self, owner: str | None) -> str:
        """How an error message names the budget."""
        if self.scope == "gateway":
            who = "gateway-wide budget"
        elif self.id is None:
            who = f"{self.scope} {owner!r} budget (the default per-{self.scope} limit)"
        else:
            who = f"{self.scope} {owner!r} budget"
        if self.period == "total":
            per = "in total"
        elif self.rolling:
            per = f"per rolling {self.period:g} seconds"
        else:
            per = f"per {self.period} (UTC)"
        return f"{who} of {_usd(self.usd)} {per}"


class CostEstimate(NamedTuple):
    """What a call is expected to cost before it is sent; ``usd`` is None when the model's
    price is unknown."""

    input_tokens: int
    output_tokens: int
    usd: float | None


def estimate_input_tokens(request: ChatRequest, counter: TokenCounter | None = None) -> int:
    """Input tokens of ``request``: its text (message text, tool calls and tool definitions
    as JSON) counted by ``counter`` (tiktoken for OpenAI models when its encoding is cached,
    see `aigw_lab.tokens`), or without one at `CHARS_PER_TOKEN` characters a token, rounded
    up; plus `MESSAGE_OVERHEAD_TOKENS` per message. Non-text parts are not counted."""
    parts = [message.text for message in request.messages]
    for message in request.messages:
        if message.tool_calls:
            parts.append(_JSON.encode([dict(c) for c in message.tool_calls]))
    if request.tools:
        parts.append(_JSON.encode([dict(t) for t in request.tools]))
    overhead = MESSAGE_OVERHEAD_TOKENS * len(request.messages)
    if counter is None:
        return -(-sum(map(len, parts)) // CHARS_PER_TOKEN) + overhead
    return counter.count("\n".join(parts), request.model) + overhead


def estimate_cost(
    request: ChatRequest,
    prices: PriceBook,
    provider: str,
    model: str,
    *,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    counter: TokenCounter | None = None,
) -> CostEstimate:
    """The cost of sending ``request`` to ``provider/model``, assuming the whole output
    allowance is used (``max_tokens``, else ``default_output_tokens``) and no prompt-cache
    discount. ``counter`` counts the input (see `estimate_input_tokens`)."""
    if counter is not None and request.model != model:
        request = replace(request, model=model)  # count with the target model's tokenizer
    input_tokens = estimate_input_tokens(request, counter)
    limit = request.max_tokens
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_OUTPUT_TOKENS
    ):
        # A request built without ChatRequest.create skips its checks: the arithmetic
        # below must still never see an absurd number (or overflow a float).
        raise InvalidRequestError(
            f"max_tokens is not an integer from 1 to {MAX_OUTPUT_TOKENS:,}",
            hint="lower max_tokens; the budget estimates the call as if all of it is used",
        )
    output_tokens = limit or default_output_tokens
    usd = prices.cost(
        provider, model, Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    )
    return CostEstimate(input_tokens, output_tokens, usd)


class _Account:
    """Spend and reservations of one budget (a `Limit` and, for scoped limits, its id).
    Changed only by its budget's store (`aigw_lab.gateway.budget_store`)."""

    __slots__ = ("limit", "owner", "spent", "reserved", "in_flight", "generation", "ends", "events")

    def __init__(self, limit: Limit, owner: str | None, now: float) -> None:
        self.limit = limit
        self.owner = owner
        self.spent = 0.0
        self.reserved = 0.0
        self.in_flight = 0
        # Bumped at each calendar rollover: a call admitted in an earlier period is settled
        # into that period (where the call log's timestamp puts it), not into this one.
        self.generation = 0
        self.ends = math.inf
        # Rolling windows only: (time, cost) of finished calls, oldest first.
        self.events: deque[tuple[float, float]] | None = None
        if limit.rolling:
            self.events = deque()
        else:
            self.ends = _calendar_bounds(limit.period, now)[1]  # type: ignore[arg-type]

    def roll(self, now: float) -> None:
        """Bring the account to ``now``: start a new calendar period, or let spend older
        than the rolling window drop out."""
        events = self.events
        if events is None:
            if now >= self.ends:
                self.generation += 1
                self.spent = 0.0
                self.ends = _calendar_bounds(self.limit.period, now)[1]  # type: ignore[arg-type]
            return
        horizon = now - self.limit.period  # type: ignore[operator]
        while events and events[0][0] <= horizon:
            self.spent -= events.popleft()[1]
        if not events:
            self.spent = 0.0  # no float residue once the window is empty

    def add(self, cost: float, now: float) -> None:
        self.spent += cost
        if self.events is not None:
            self.events.append((now, cost))

    def resets_at(self) -> datetime | None:
        if self.events is not None or self.ends == math.inf:
            return None
        return datetime.fromtimestamp(self.ends, UTC)


def _calendar_bounds(period: str, now: float) -> tuple[float, float]:
    """Start and end (epoch seconds) of the UTC calendar period holding ``now``."""
    if period == "total":
        return -math.inf, math.inf
    if period == "day":
        start = now - now % _DAY_SECONDS  # POSIX days are exactly 86 400 s long
        return start, start + _DAY_SECONDS
    day = datetime.fromtimestamp(now, UTC)
    start_dt = datetime(day.year, day.month, 1, tzinfo=UTC)
    end_dt = datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=UTC)
    return start_dt.timestamp(), end_dt.timestamp()


def charged_usd(estimate: float, cost: float | None, *, answered: bool) -> float:
    """What a call counts against its budgets, given the ``estimate`` it was admitted with:
    its ``cost`` when known; when unknown, the estimate if the upstream began answering (it
    generated, and bills for it, but the usage never arrived: never a free call because the
    usage was left out), else 0 (refused, failed to connect). Without a price the estimate is
    0 under ``unknown_price = "allow"``, which counts only a cost the provider reports. The
    `Budget` middleware settles calls with this, and each log row records it (``budget_usd``)
    so seeding after a restart counts the same."""
    if cost is not None:
        return cost
    return estimate if answered else 0.0


# Spend is read from the calls table and from rows the database refused (dead-lettered with
# their cost, tenant, user, experiment and time as real columns): a paid call counts even if
# its row could not be stored. Each row counts what the running gateway's budgets counted for
# it (``budget_usd``: the estimate when the usage is unknown), or, in rows written before
# that column or without a budget, its cost.
_SPEND = "coalesce(budget_usd, cost_usd) AS cost_usd"
_SPEND_ROWS = (
    f'(SELECT "timestamp", {_SPEND}, tenant_id, user_id, experiment_id FROM calls '
    f'UNION ALL SELECT "timestamp", {_SPEND}, tenant_id, user_id, experiment_id '
    "FROM calls_dead_letter)"
)


def _seed(account: _Account, log: CallLog, now: float) -> None:
    """Load an account's spend in its current period from the log (``calls`` and
    ``calls_dead_letter``). A log whose rows cannot be written yet is read as it is, never
    raised into the call that opened the account (`CallLog.health` reports it)."""
    limit = account.limit
    clauses = ["cost_usd IS NOT NULL"]
    params: list[Any] = []
    column = _LOG_COLUMNS.get(limit.scope)
    if column is not None:
        clauses.append(f"{column} = ?")
        params.append(sanitize_text(account.owner))  # as the log stored it
    if limit.rolling:
        clauses.append('"timestamp" > ?')
        params.append(datetime.fromtimestamp(now - limit.period, UTC))  # type: ignore[operator]
        # Per second, rounded up: a row stays in the window until its whole second has left.
        rows = log.execute(
            f'SELECT ceil(epoch("timestamp")) AS t, sum(cost_usd) FROM {_SPEND_ROWS} WHERE '
            + " AND ".join(clauses)
            + " GROUP BY t ORDER BY t",
            params,
            strict=False,
        )
        for t, cost in rows:
            if cost:
                account.add(float(cost), float(t))
        return
    start, end = _calendar_bounds(limit.period, now)  # type: ignore[arg-type]
    if start != -math.inf:
        clauses.append('"timestamp" >= ? AND "timestamp" < ?')
        params += [datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)]
    rows = log.execute(
        f"SELECT coalesce(sum(cost_usd), 0) FROM {_SPEND_ROWS} WHERE " + " AND ".join(clauses),
        params,
        strict=False,
    )
    account.spent = float(rows[0][0])


def _refusal(
    account: _Account, spent: float, reserved: float, estimate: CostEstimate, address: str
) -> BudgetExceededError:
    limit = account.limit
    left = max(0.0, limit.usd - spent - reserved)
    usd = estimate.usd or 0.0
    resets_at = account.resets_at()
    if resets_at is not None:
        wait = f"wait until it resets at {resets_at:%Y-%m-%d %H:%M} UTC"
    elif limit.rolling:
        wait = f"wait for spend to leave its rolling {limit.period:g}-second window"
    else:
        wait = "a total budget never resets"
    if reserved:
        in_flight = f", {_usd(reserved)} reserved by {account.in_flight} call(s) in flight"
    else:
        in_flight = ""
    error = BudgetExceededError(
        f"{address}: refused before sending: the {limit.title(account.owner)} would be "
        f"exceeded: {_usd(spent)} spent{in_flight}, {_usd(left)} left, and this call is "
        f"estimated at {_usd(usd)} ({estimate.input_tokens} input tokens estimated + "
        f"{estimate.output_tokens} output tokens allowed)",
        hint=f"{wait}; lower max_tokens (the estimate assumes all of it is used), or raise "
        f"this limit ({limit.name(account.owner)}) in [[budgets.limit]]",
    )
    return _attach(
        error,
        budget=limit.name(account.owner),
        limit_usd=limit.usd,
        spent_usd=spent,
        reserved_usd=reserved,
        estimate_usd=usd,
    )


def _attach(error: BudgetExceededError, **details: Any) -> BudgetExceededError:
    # BudgetExceededError's signature is a fixed contract; the figures ride along as
    # attributes (they survive pickling with the instance's __dict__).
    error.__dict__.update(details)
    return error


def _row(account: _Account) -> dict[str, Any]:
    limit = account.limit
    return {
        "budget": limit.name(account.owner),
        "scope": limit.scope,
        "id": account.owner,
        "period": limit.period,
        "limit_usd": limit.usd,
        "spent_usd": account.spent,
        "reserved_usd": account.reserved,
        "remaining_usd": max(0.0, limit.usd - account.spent - account.reserved),
        "in_flight": account.in_flight,
        "resets_at": account.resets_at(),
    }


def _usd(value: float) -> str:
    """Dollars with two to six decimals: ``$0.10``, ``$0.304``, ``$0.00001``."""
    whole, _, cents = f"{value:,.6f}".partition(".")
    return f"${whole}.{cents.rstrip('0').ljust(2, '0')}"
