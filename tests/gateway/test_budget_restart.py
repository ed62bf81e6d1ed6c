"""After a restart, budgets are seeded from the call log with what the running gateway
charged, in every call mode: a call whose usage never came (no usage reported, a stream
closed or cut off after it began answering) counts at its estimate, as it did live, never
at 0 (issue 9 §2); a call that failed before answering counts 0; a known cost counts itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import ProviderServerError
from aigw_lab.gateway.budget import Budget, Limit
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import FunctionProvider
from aigw_lab.types import ChatRequest, ChatResponse, StreamEvent, TextDelta, Usage

# Output only is priced: an estimate is max_tokens * 1000 / 1e6 USD (0.2 for 200 tokens),
# a known cost output_tokens * 1000 / 1e6.
OUTPUT_ONLY = Price(input_per_mtok=0.0, output_per_mtok=1000.0)
NOW = 1_750_000_000.0


def clock() -> float:
    return NOW


def answer(output_tokens: int, text: str = "ok") -> ChatResponse:
    return ChatResponse(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=0, output_tokens=output_tokens),
        provider="mock",
        model="m1",
    )


def make_gateway(log, provider, budget) -> Gateway:
    return Gateway(
        [provider], log=log, prices={"mock/m1": OUTPUT_ONLY}, middleware=[budget], clock=clock
    )


def row(budget: Budget, name: str) -> dict:
    (found,) = [r for r in budget.snapshot() if r["budget"] == name]
    return found


LIMITS = [Limit("gateway", 100.0, "day"), Limit("tenant", 50.0, "day", id="acme")]
MODES = ("chat", "achat", "stream", "astream")


class CutOff(FunctionProvider):
    """Streams two words of its answer, then the connection breaks (a 502)."""

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        yield TextDelta("two ")
        yield TextDelta("words")
        raise ProviderServerError("upstream went away", status=502)

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        for piece in ("two ", "words"):
            await asyncio.sleep(0)
            yield TextDelta(piece)
        raise ProviderServerError("upstream went away", status=502)


def no_usage(request: ChatRequest) -> ChatResponse:
    return ChatResponse(
        text="an answer",
        finish_reason="stop",
        usage=Usage(known=False),
        provider="mock",
        model="m1",
    )


def refused(request: ChatRequest) -> ChatResponse:
    raise ProviderServerError("overloaded", status=503)


async def call(gateway, mode: str, *, close_early: bool = False) -> None:
    """One call in ``mode``; a stream is read to its end, or closed after its first delta."""
    kwargs = {"max_tokens": 200, "tenant": "acme"}
    if mode == "chat":
        gateway.chat("mock/m1", "hi", **kwargs)
    elif mode == "achat":
        await gateway.achat("mock/m1", "hi", **kwargs)
    elif mode == "stream":
        with gateway.stream("mock/m1", "hi", **kwargs) as stream:
            for _ in stream:
                if close_early:
                    break
    else:
        async with gateway.astream("mock/m1", "hi", **kwargs) as stream:
            async for _ in stream:
                if close_early:
                    break


SCENARIOS = {
    # name: (provider, modes, close_early, raises, what the call counts live)
    "known cost": (lambda: FunctionProvider(lambda r: answer(100), "mock"), MODES, False, False),
    "no usage reported": (lambda: FunctionProvider(no_usage, "mock"), MODES, False, False),
    "stream closed early": (
        lambda: FunctionProvider(lambda r: answer(100, "one two three"), "mock"),
        ("stream", "astream"),
        True,
        False,
    ),
    "stream cut off": (
        lambda: CutOff(lambda r: answer(100), "mock"),
        ("stream", "astream"),
        False,
        True,
    ),
    "failed before answering": (lambda: FunctionProvider(refused, "mock"), MODES, False, True),
}
CASES = [(name, mode) for name, spec in SCENARIOS.items() for mode in spec[1]]


@pytest.mark.parametrize(("scenario", "mode"), CASES)
def test_a_restart_seeds_what_the_running_gateway_charged(tmp_path, scenario, mode):
    make_provider, _, close_early, raises = SCENARIOS[scenario]
    path = tmp_path / "calls.duckdb"
    with CallLog(path) as first_log:
        budget = Budget(LIMITS, clock=clock)
        gateway = make_gateway(first_log, make_provider(), budget)
        for _ in range(3):
            try:
                asyncio.run(call(gateway, mode, close_early=close_early))
            except ProviderServerError:
                assert raises
        live = {name: row(budget, name)["spent_usd"] for name in ("gateway/day", "tenant:acme/day")}
        gateway.close()
    if scenario == "failed before answering":
        assert live["gateway/day"] == 0.0
    else:
        assert live["gateway/day"] > 0.0  # at cost, or at the estimate when usage is unknown
    with CallLog(path) as second_log:
        restarted = Budget(LIMITS, log=second_log, clock=clock)
        # A budget opens its accounts on first use; this one only reads them.
        gateway = make_gateway(second_log, FunctionProvider(lambda r: answer(0), "mock"), restarted)
        gateway.chat("mock/m1", "warm", tenant="acme", max_tokens=1)
        seeded = {
            name: row(restarted, name)["spent_usd"] for name in ("gateway/day", "tenant:acme/day")
        }
        gateway.close()
    assert seeded == pytest.approx(live)


def test_rows_written_before_the_column_still_seed_at_their_cost(tmp_path):
    # A log from before migration 8: budget_usd is NULL, so each row counts its cost.
    path = tmp_path / "calls.duckdb"
    with CallLog(path) as log:
        gateway = make_gateway(
            log,
            FunctionProvider(lambda r: answer(100), "mock"),
            Budget(LIMITS, clock=clock),
        )
        gateway.chat("mock/m1", "hi", tenant="acme", max_tokens=200)
        gateway.close()
        log.flush()
        log.execute("UPDATE calls SET budget_usd = NULL")
        cost = log.execute("SELECT sum(cost_usd) FROM calls")[0][0]
    assert cost == pytest.approx(0.1)
    with CallLog(path) as log:
        restarted = Budget(LIMITS, log=log, clock=clock)
        gateway = make_gateway(log, FunctionProvider(lambda r: answer(0), "mock"), restarted)
        gateway.chat("mock/m1", "warm", tenant="acme", max_tokens=1)
        assert row(restarted, "gateway/day")["spent_usd"] == pytest.approx(cost)
        gateway.close()


_DIES_IN_FLIGHT = """
import os, sys
from aigw_lab import Gateway, Price
from aigw_lab.gateway.budget import Budget, Limit
from aigw_lab.testing.fakes import FunctionProvider

def die(request):
    os._exit(9)  # the process ends while the call is in flight, as kill -9 would end it

gateway = Gateway(
    [FunctionProvider(die, "mock", models=("m1",))],
    log=sys.argv[1],
    prices={"mock/m1": Price(input_per_mtok=0.0, output_per_mtok=1000.0)},
    middleware=[Budget([Limit("gateway", 100.0, "day")])],
)
gateway.chat("mock/m1", "hi", max_tokens=200)
"""


def test_a_call_in_flight_at_a_crash_is_seeded_at_its_estimate(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "calls.duckdb"
    ended = subprocess.run([sys.executable, "-c", _DIES_IN_FLIGHT, str(path)], timeout=120)
    assert ended.returncode == 9
    with CallLog(path) as log:  # replays the spool: the start without an end
        (found,) = log.execute("SELECT status, cost_usd, budget_usd FROM calls")
        assert found[:2] == ("interrupted", None)
        assert found[2] == pytest.approx(0.2)  # 200 output tokens allowed at $1000/Mtok
        restarted = Budget([Limit("gateway", 100.0, "day")], log=log)
        gateway = Gateway(
            [FunctionProvider(lambda r: answer(0), "mock")],
            log=log,
            prices={"mock/m1": OUTPUT_ONLY},
            middleware=[restarted],
        )
        gateway.chat("mock/m1", "warm", max_tokens=1)
        assert row(restarted, "gateway/day")["spent_usd"] == pytest.approx(0.2)
        gateway.close()
