"""Shared pieces of the bad-row tests (issue 9 section 3): a gateway over a mock provider
with a priced model, and a schema whose ``calls`` table refuses chosen rows."""

from __future__ import annotations

from datetime import UTC, datetime

from aigw_lab import Gateway, Price
from aigw_lab.store import CallLog
from aigw_lab.store.schema import MIGRATIONS, Migration
from aigw_lab.types import ChatResponse, Usage

SURROGATE = "\ud800"
# Output only is priced: a reply of n output tokens costs n / 1000 USD.
PRICE = Price(input_per_mtok=0.0, output_per_mtok=1000.0)
T0 = datetime(2025, 6, 15, 12, 0, tzinfo=UTC).timestamp()


def reply(text: str, output_tokens: int = 10, **more) -> ChatResponse:
    return ChatResponse(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=0, output_tokens=output_tokens),
        provider="mock",
        model="m1",
        **more,
    )


def gateway(log, provider, *middleware, **kwargs) -> Gateway:
    return Gateway(
        [provider],
        log=log,
        prices={f"{provider.name}/m1": PRICE},
        middleware=list(middleware),
        clock=lambda: T0,
        **kwargs,
    )


def calls(log: CallLog, columns: str = "call_id") -> list[tuple]:
    return log.execute(f"SELECT {columns} FROM calls ORDER BY rowid")


def refusing_migrations(check: str) -> tuple[Migration, ...]:
    """The released migrations with a ``calls`` table that has a CHECK constraint: a row
    DuckDB itself refuses (a real ConstraintException at insert time)."""
    first = MIGRATIONS[0]
    body = first.apply.rstrip().removesuffix(")") + f",\n    CHECK ({check})\n)"
    return (Migration(1, first.name, body), *MIGRATIONS[1:])
