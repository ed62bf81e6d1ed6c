"""Where a `Budget` keeps its accounts and reservations: the `BudgetStore` protocol and
`MemoryBudgetStore`, the store of one process.

The budget's logic (which limits a call counts against, the estimate, seeding from the call
log, what a call is charged) stays in `aigw_lab.gateway.budget`; a store only keeps the
state, and each of its operations is atomic on its own, so a store shared by several
processes (Redis, issue 14) can replace the memory one without touching that logic. A store
serves one budget: its keys are ``(limit index, owner)`` in that budget's list of limits.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from aigw_lab.gateway.budget_limits import _SLACK_USD, _Account, _row

__all__ = ["BudgetKey", "BudgetStore", "MemoryBudgetStore", "Refused", "Reservation"]

#: One budget: the index of its `Limit` in the budget's limits and, for scoped limits, the
#: tenant, user or experiment it counts for (None for a gateway-wide limit).
BudgetKey = tuple[int, str | None]


class Refused(NamedTuple):
    """The account that did not fit a call's estimate, with its spend and reservations as
    the check saw them (what the refusal's message reports)."""

    account: _Account
    spent: float
    reserved: float


class Reservation:
    """The estimate one call holds on its budgets until it is settled (exactly once): the
    ticket a budget's admission hands to its settlement. ``usd`` is what was reserved."""

    __slots__ = ("accounts", "generations", "usd", "settled")

    def __init__(self, accounts: list[_Account], usd: float) -> None:
        self.accounts = accounts
        # The period each account was in at admission: a call settled after a calendar
        # rollover counts in its own period (where the call log's timestamp puts it).
        self.generations = [account.generation for account in accounts]
        self.usd = usd
        self.settled = False


class BudgetStore(Protocol):
    """The state of one budget's accounts. Every method is atomic on its own; none raises
    a refusal (the budget builds its errors from what `reserve` returns)."""

    def missing(self, keys: Sequence[BudgetKey]) -> list[BudgetKey]:
        """The keys among ``keys`` that have no account yet (a hint: `open` decides)."""
        ...

    def open(self, accounts: Sequence[tuple[BudgetKey, _Account]]) -> None:
        """Add these freshly built (and seeded) accounts; a key that has an account by now
        keeps it: when two calls race to open one account, the first to finish wins."""
        ...

    def reserve(self, keys: Sequence[BudgetKey], usd: float, now: float) -> Any:
        """Bring each account of ``keys`` (all open) to ``now``; if ``usd`` fits every one
        of them, reserve it on all and return the reservation (the store's own kind, like
        `Reservation`, with ``usd``: what it holds), else reserve nothing and return
        `Refused` for the first account it does not fit."""
        ...

    def settle(self, reservation: Any, cost: float, now: float) -> None:
        """Replace ``reservation`` by the call's ``cost`` (0: nothing counted). Only the
        first settlement of a reservation counts."""
        ...

    def snapshot(
        self, now: float, fixed: Sequence[tuple[BudgetKey, _Account]]
    ) -> list[dict[str, Any]]:
        """One row (`budget_limits._row`) per open account, brought to ``now``, and one for
        each key of ``fixed`` that has none (shown as given, not opened)."""
        ...


class MemoryBudgetStore:
    """Accounts in a dictionary, changed under one lock: concurrent calls of one process
    (threads or asyncio tasks) cannot jointly overshoot a limit by their estimates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[BudgetKey, _Account] = {}

    def missing(self, keys: Sequence[BudgetKey]) -> list[BudgetKey]:
        accounts = self._accounts  # a lookup needs no lock; `open` re-checks under it
        return [key for key in keys if key not in accounts]

    def open(self, accounts: Sequence[tuple[BudgetKey, _Account]]) -> None:
        with self._lock:
            for key, account in accounts:
                self._accounts.setdefault(key, account)

    def reserve(self, keys: Sequence[BudgetKey], usd: float, now: float) -> Reservation | Refused:
        with self._lock:
            accounts = [self._accounts[key] for key in keys]
            for account in accounts:
                account.roll(now)
                used = account.spent + account.reserved
                limit = account.limit.usd
                if used >= limit or used + usd > limit + _SLACK_USD:
                    return Refused(account, account.spent, account.reserved)
            for account in accounts:
                account.reserved += usd
                account.in_flight += 1
            return Reservation(accounts, usd)

    def settle(self, reservation: Reservation, cost: float, now: float) -> None:
        if reservation.settled:
            return
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

    def snapshot(
        self, now: float, fixed: Sequence[tuple[BudgetKey, _Account]]
    ) -> list[dict[str, Any]]:
        with self._lock:
            accounts = dict(self._accounts)
            for key, account in fixed:
                accounts.setdefault(key, account)
            rows = []
            for account in accounts.values():
                account.roll(now)
                rows.append(_row(account))
        return rows
