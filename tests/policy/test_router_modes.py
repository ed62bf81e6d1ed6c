"""The route stage in every call mode (chat, achat, stream, astream): its hooks are written
once for asyncio and the sync ones generated (`aigw_lab.policy._async.route`), and the
multi-target policies answer through one generated pair (`aigw_lab.policy._async.chains`).
Also: the gateway wires a route stage without importing `aigw_lab.policy`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from aigw_lab.errors import (
    AllAttemptsFailedError,
    ConfigError,
    InvalidRequestError,
    ProviderServerError,
    StreamInterruptedError,
    UnknownModelError,
)
from aigw_lab.gateway import Gateway
from aigw_lab.gateway.middleware import Middleware
from aigw_lab.gateway.reliability import Retry
from aigw_lab.gateway.route import RouteStage
from aigw_lab.policy import Cascade, CascadeStep, FallbackChain, PolicyRouter, Rules
from aigw_lab.policy.cascade import SelfConsistency
from aigw_lab.providers.base import Price
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import FunctionProvider, MockProvider
from tests._call_modes import (
    MODES,
    STREAM_MODES,
    CutAfterText,
    call_in_mode,
    read_until_error,
)

CHEAP = "cheap/small"
STRONG = "strong/big"
PRICES = {CHEAP: Price(1.0, 2.0), STRONG: Price(10.0, 30.0)}


@pytest.fixture
def log(new_log_path):
    with CallLog(new_log_path) as call_log:
        yield call_log


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def make(log, *policies, cheap=None, strong=None, middleware=()):
    cheap = cheap or FunctionProvider(lambda r: "cheap answer", "cheap")
    strong = strong or FunctionProvider(lambda r: "strong answer", "strong")
    return Gateway(
        [cheap, strong], log=log, prices=PRICES, policies=list(policies), middleware=middleware
    )


def rows(log):
    log.flush()
    return log.query(
        "SELECT trace_id, provider_name, attempt, status, fallback_from, tags_json, stream, "
        "cost_usd FROM calls ORDER BY timestamp, attempt"
    )


def tag(tags_json):
    return json.loads(tags_json).get("aigw_policy")


def test_a_single_decision_policy_routes_and_tags_in_every_mode(log, mode):
    gw = make(log, Rules("r", [({"keywords": ["prove"]}, STRONG)], default=CHEAP))
    response, texts = call_in_mode(gw, mode, "r", "prove it")
    assert "".join(texts) == "strong answer" and response.provider == "strong"
    table = rows(log)
    assert list(table.provider_name) == ["strong"] and tag(table.tags_json[0]) == "r"
    assert bool(table.stream[0]) == (mode in STREAM_MODES)


def test_a_fallback_chain_moves_on_under_one_trace_in_every_mode(log, mode):
    cheap = MockProvider("cheap").enqueue(ProviderServerError("down", provider="cheap"))
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap)
    response, texts = call_in_mode(gw, mode, "safe")
    assert "".join(texts) == "strong answer" and response.provider == "strong"
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong"]
    assert table.fallback_from[1] == CHEAP and table.trace_id.nunique() == 1
    assert [tag(t) for t in table.tags_json] == ["safe", "safe"]


def test_a_fallback_chain_retries_each_target_first_in_every_mode(log, mode):
    cheap = MockProvider("cheap").enqueue(
        ProviderServerError("down", provider="cheap"), ProviderServerError("down", provider="c")
    )
    retry = Retry(max_attempts=2, base_delay=0.0, sleep=lambda s: None)
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap, middleware=[retry])
    response, _ = call_in_mode(gw, mode, "safe")
    assert response.provider == "strong"
    assert list(rows(log).provider_name) == ["cheap", "cheap", "strong"]


def test_every_target_of_a_chain_failing_in_every_mode(log, mode):
    cheap = MockProvider("cheap").enqueue(ProviderServerError("down", provider="cheap"))
    strong = MockProvider("strong").enqueue(ProviderServerError("down", provider="strong"))
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap, strong=strong)
    expected = ProviderServerError if mode in STREAM_MODES else AllAttemptsFailedError
    # A stream raises the last target's own error; a call lists every target's.
    with pytest.raises(expected):
        call_in_mode(gw, mode, "safe")
    assert list(rows(log).status) == ["error", "error"]


def test_a_chain_never_moves_on_from_an_invalid_request_in_every_mode(log, mode):
    cheap = MockProvider("cheap").enqueue(InvalidRequestError("bad"))
    strong = MockProvider("strong")
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap, strong=strong)
    with pytest.raises(InvalidRequestError):
        call_in_mode(gw, mode, "safe")
    assert strong.requests == []


def test_a_cascade_escalates_and_costs_every_step_in_every_mode(log, mode):
    cascade = Cascade(
        "frugal",
        [CascadeStep(CHEAP, lambda q, r: 0.0, 0.5), CascadeStep(STRONG)],
    )
    gw = make(log, cascade)
    response, texts = call_in_mode(gw, mode, "frugal")
    assert texts == ["strong answer"]  # a stream replays the accepted answer as one delta
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong"]
    assert response.cost_usd == pytest.approx(table.cost_usd.sum())
    assert list(table.status) == ["ok", "ok"]  # drained streams are not logged cancelled


def test_a_self_consistency_cascade_samples_through_the_gateway_in_every_mode(log, mode):
    answers = iter(["42", "42", "41"])
    cheap = FunctionProvider(lambda r: next(answers), "cheap")
    cascade = Cascade(
        "sc",
        [CascadeStep(CHEAP, SelfConsistency(k=3, answer="number"), 0.6), CascadeStep(STRONG)],
    )
    gw = make(log, cascade, cheap=cheap)
    response, texts = call_in_mode(gw, mode, "sc")
    assert texts == ["42"] and response.provider == "cheap"  # 2 of 3 agree: accepted
    assert list(rows(log).provider_name) == ["cheap"] * 3


@pytest.mark.parametrize("mode", STREAM_MODES)
def test_a_policy_stream_never_repeats_text_already_delivered(log, mode):
    strong = MockProvider("strong")
    gw = make(
        log,
        FallbackChain("safe", [CHEAP, STRONG]),
        cheap=CutAfterText("cheap"),
        strong=strong,
    )
    received = []
    with pytest.raises(StreamInterruptedError):
        read_until_error(gw, mode, "safe", received)
    assert received == ["partial "] and strong.requests == []


def test_an_abandoned_async_policy_stream_closes_its_attempt(log):
    cheap = MockProvider("cheap").enqueue("one two three")
    gw = make(log, Rules("r", [], default=CHEAP), cheap=cheap)

    async def run():
        stream = gw.astream("r", "hi")
        iterator = stream.__aiter__()
        assert await iterator.__anext__() == "one "
        await iterator.aclose()
        await stream.aclose()

    asyncio.run(run())
    assert list(rows(log).status) == ["cancelled"]


def test_an_unknown_policy_is_named_in_every_mode(log, mode):
    gw = make(log, Rules("r", [], default=CHEAP))
    with pytest.raises(UnknownModelError, match="no routing policy named 'nope'"):
        call_in_mode(gw, mode, "policy/nope")


def test_other_calls_pass_the_route_stage_untouched_in_every_mode(log, mode):
    cheap = MockProvider("cheap")
    gw = make(log, Rules("r", [], default=STRONG), cheap=cheap)
    response, _ = call_in_mode(gw, mode, CHEAP)
    assert response.provider == "cheap" and dict(cheap.requests[0].tags) == {}


class CountingStage(Middleware):
    """A route stage written to the gateway's protocol alone (not a PolicyRouter): it
    answers every call to ``policy/NAME`` by sending it to one fixed target."""

    kind = "route"

    def __init__(self, names, target):
        self.policies = {name: None for name in names}
        self.target = target
        self.bound = None

    def add(self, policies):
        self.policies.update(policies)

    def bind(self, gateway):
        self.bound = gateway

    def policy_provider(self, gateway):
        return MockProvider("policy", models=tuple(self.policies))

    def handle(self, ctx, call_next):
        if ctx.provider_name == "policy":
            ctx.provider_name, ctx.model = self.target.split("/")
        return call_next(ctx)


def test_the_gateway_takes_any_route_stage_through_its_protocol(log):
    stage = CountingStage(["mine"], CHEAP)
    assert isinstance(stage, RouteStage) and not isinstance(stage, PolicyRouter)
    gw = make(log, middleware=[stage])
    assert stage.bound is gw and gw.resolve("mine") == ("policy", "mine")
    assert gw.chat("mine", "hi").provider == "cheap"
    assert gw.list_models()["policy"] == ("mine",)


def test_policies_are_asked_for_their_route_stage():
    built = []

    class MyStage(PolicyRouter):
        def __init__(self, policies):
            built.append(sorted(policies))
            super().__init__(policies)

    class MyRules(Rules):
        @staticmethod
        def route_stage(policies):
            return MyStage(policies)

    gw = make(None, MyRules("r", [], default=CHEAP), Rules("s", [], default=STRONG))
    assert built == [["r", "s"]]
    assert [type(m) for m in gw.middleware] == [MyStage]


def test_an_object_that_is_not_a_policy_is_refused():
    with pytest.raises(ConfigError, match="is a dict, not a Policy"):
        Gateway([MockProvider("cheap")], log=None, policies={"p": {"kind": "rules"}})


def test_a_gateway_without_policies_never_imports_the_policy_package():
    # A plain Middleware's kind is "route" too: the gateway looks for a route stage among
    # them without importing the policy package.
    code = (
        "import sys\n"
        "from aigw_lab import Gateway, Retry\n"
        "from aigw_lab.gateway.middleware import Middleware\n"
        "from aigw_lab.testing.fakes import MockProvider\n"
        "gw = Gateway([MockProvider('m')], log=None, middleware=[Middleware(), Retry()])\n"
        "gw.chat('m/x', 'hi')\n"
        "print(sorted(m for m in sys.modules if m.startswith('aigw_lab.policy')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
