"""Policies inside real Gateways: addressing, logging, tags, traces, budgets, caches,
streaming, async, the simulated fleet and experiments."""

from __future__ import annotations

import json

import pytest

from aigw_lab.errors import (
    BudgetExceededError,
    ConfigError,
    InvalidRequestError,
    ProviderServerError,
    RateLimitedError,
    UnknownModelError,
)
from aigw_lab.gateway import Gateway
from aigw_lab.gateway.budget import Budget
from aigw_lab.gateway.budget_limits import Limit
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.reliability import Retry
from aigw_lab.policy import (
    AdaptiveSplit,
    Cascade,
    CascadeStep,
    FallbackChain,
    PolicyRouter,
    Rules,
    WeightedSplit,
)
from aigw_lab.providers.base import Price
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import FunctionProvider, MockProvider

CHEAP = "cheap/small"
STRONG = "strong/big"
PRICES = {CHEAP: Price(1.0, 2.0), STRONG: Price(10.0, 30.0)}


@pytest.fixture
def log(new_log_path):
    """A real DuckDB call log, closed (so flushed) after the test."""
    with CallLog(new_log_path) as call_log:
        yield call_log


def by_keyword(name="cheap-or-strong"):
    return Rules(name, [({"keywords": ["prove"]}, STRONG)], default=CHEAP)


def make(log, *policies, cheap=None, strong=None, middleware=(), **kw):
    cheap = cheap or FunctionProvider(lambda r: "cheap answer", "cheap")
    strong = strong or FunctionProvider(lambda r: "strong answer", "strong")
    return Gateway(
        [cheap, strong],
        log=log,
        prices=PRICES,
        policies=list(policies),
        middleware=middleware,
        **kw,
    )


def rows(log, order="timestamp, attempt"):
    log.flush()
    return log.query(
        "SELECT trace_id, provider_name, request_model, attempt, fallback_from, error_type, "
        f"tags_json, stream, cache_status, cost_usd FROM calls ORDER BY {order}"
    )


def policy_tag(tags_json):
    return json.loads(tags_json).get("aigw_policy") if isinstance(tags_json, str) else None


def test_a_policy_is_addressed_by_name_and_by_policy_prefix(log):
    gw = make(log, by_keyword())
    assert gw.chat("cheap-or-strong", "prove it").text == "strong answer"
    assert gw.chat("policy/cheap-or-strong", "hello").text == "cheap answer"
    assert gw.chat(CHEAP, "direct").text == "cheap answer"
    table = rows(log)
    assert list(table.provider_name) == ["strong", "cheap", "cheap"]
    assert list(table.request_model) == ["big", "small", "small"]
    assert [policy_tag(t) for t in table.tags_json] == ["cheap-or-strong", "cheap-or-strong", None]
    assert table.trace_id.nunique() == 3  # one trace per client call
    assert gw.list_models()["policy"] == ("cheap-or-strong",)


def test_every_row_is_costed_at_the_real_target_and_the_response_names_it(log):
    gw = make(log, by_keyword())
    response = gw.chat("cheap-or-strong", "prove the lemma")
    assert (response.provider, response.model) == ("strong", "big")
    assert response.cost_usd == pytest.approx(rows(log).cost_usd[0])
    assert response.cost_usd > 0


def test_request_tags_are_kept_beside_the_policy_tag(log):
    strong = MockProvider("strong")
    gw = make(log, by_keyword(), strong=strong)
    gw.chat("cheap-or-strong", "prove", tags={"team": "a"})
    assert dict(strong.requests[0].tags) == {"team": "a", "aigw_policy": "cheap-or-strong"}
    assert strong.requests[0].model == "big"


def test_fallback_chain_logs_every_attempt_under_one_trace(log):
    cheap = MockProvider("cheap").enqueue(ProviderServerError("down", provider="cheap"))
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap)
    response = gw.chat("safe", "hi")
    assert response.text == "strong answer" and response.provider == "strong"
    table = rows(log)
    assert list(
        zip(
            table.provider_name,
            table.error_type.fillna(""),
            table.fallback_from.fillna(""),
            strict=True,
        )
    ) == [("cheap", "server_error", ""), ("strong", "", "cheap/small")]
    assert table.trace_id.nunique() == 1
    assert list(table.attempt) == [1, 2]


def test_fallback_chain_with_retry_middleware_retries_each_target_first(log):
    cheap = MockProvider("cheap").enqueue(
        RateLimitedError("slow", provider="cheap"), RateLimitedError("slow", provider="cheap")
    )
    retry = Retry(max_attempts=2, sleep=lambda s: None, base_delay=0.0)
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap, middleware=[retry])
    assert gw.chat("safe", "hi").provider == "strong"
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "cheap", "strong"]
    assert list(table.error_type.fillna("")) == ["rate_limited", "rate_limited", ""]
    assert gw.pipeline[:2] == ["route", "retry"]


def test_fallback_chain_never_falls_back_on_an_invalid_request(log):
    cheap = MockProvider("cheap").enqueue(InvalidRequestError("bad", provider="cheap"))
    strong = MockProvider("strong")
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap, strong=strong)
    with pytest.raises(InvalidRequestError):
        gw.chat("safe", "hi")
    assert strong.requests == []
    assert len(rows(log)) == 1


def test_cascade_logs_and_costs_every_step(log):
    cheap = FunctionProvider(lambda r: "not sure", "cheap")
    cascade = Cascade(
        "frugal",
        [
            CascadeStep(CHEAP, lambda req, resp: 0.0 if "not sure" in resp.text else 1.0, 0.5),
            CascadeStep(STRONG),
        ],
    )
    gw = make(log, cascade, cheap=cheap)
    response = gw.chat("frugal", "hard question")
    assert response.text == "strong answer"
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong"]
    assert table.trace_id.nunique() == 1
    assert [policy_tag(t) for t in table.tags_json] == ["frugal", "frugal"]
    assert response.cost_usd == pytest.approx(table.cost_usd.sum())  # the whole cascade's cost
    assert response.attempts == 2  # the attempt number within the trace


def test_stream_of_a_single_decision_policy_streams_the_chosen_target(log):
    gw = make(log, by_keyword())
    stream = gw.stream("cheap-or-strong", "prove that")
    assert "".join(stream) == "strong answer"
    assert stream.response.provider == "strong"
    table = rows(log)
    assert list(table.provider_name) == ["strong"] and bool(table.stream[0])
    assert policy_tag(table.tags_json[0]) == "cheap-or-strong"


def test_stream_of_a_fallback_chain_moves_on_before_any_text(log):
    cheap = MockProvider("cheap").enqueue(ProviderServerError("down", provider="cheap"))
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap)
    assert "".join(gw.stream("safe", "hi")) == "strong answer"
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong"]
    assert table.fallback_from[1] == CHEAP


def test_stream_of_a_cascade_replays_the_accepted_answer(log):
    cascade = Cascade("frugal", [CascadeStep(CHEAP, lambda q, r: 0.0, 0.5), CascadeStep(STRONG)])
    gw = make(log, cascade)
    stream = gw.stream("frugal", "q")
    assert list(stream) == ["strong answer"]  # one replayed delta
    assert stream.response.cost_usd == pytest.approx(rows(log).cost_usd.sum())
    assert list(rows(log).provider_name) == ["cheap", "strong"]


async def test_async_calls_and_streams(log):
    cheap = MockProvider("cheap").enqueue(ProviderServerError("down", provider="cheap"))
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), by_keyword(), cheap=cheap)
    assert (await gw.achat("safe", "hi")).provider == "strong"
    assert (await gw.achat("cheap-or-strong", "prove")).text == "strong answer"
    text = "".join([t async for t in gw.astream("cheap-or-strong", "hello")])
    assert text == "ok"
    cascade_gw = make(
        None, Cascade("c", [CascadeStep(CHEAP, lambda q, r: 1.0, 0.5), CascadeStep(STRONG)])
    )
    assert (await cascade_gw.achat("c", "q")).text == "cheap answer"
    assert [t async for t in cascade_gw.astream("c", "q")] == ["cheap answer"]
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong", "strong", "cheap"]


def test_a_budget_prices_a_policy_as_its_most_expensive_target(log):
    # 1000 output tokens: cheap costs $0.002, strong $0.03. The limit admits the cheap
    # target alone but not the policy, which may call the strong one.
    limit = Budget([Limit("gateway", 0.01, "day")])
    gw = make(log, by_keyword(), middleware=[limit])
    assert gw.chat(CHEAP, "x", max_tokens=1000).text == "cheap answer"
    with pytest.raises(BudgetExceededError):
        gw.chat("cheap-or-strong", "hello", max_tokens=1000)
    price = gw.prices.price("policy", "cheap-or-strong")
    assert price == Price(10.0, 30.0, 10.0, 10.0)


def test_the_cache_serves_a_policy_name_before_the_route_stage(log):
    calls = []
    gw = make(
        log,
        WeightedSplit("ab", {CHEAP: 1, STRONG: 1}, seed=0),
        cheap=FunctionProvider(lambda r: calls.append("c") or "cheap answer", "cheap"),
        strong=FunctionProvider(lambda r: calls.append("s") or "strong answer", "strong"),
        middleware=[ExactCache()],
    )
    first = gw.chat("ab", "same prompt", temperature=0)
    second = gw.chat("ab", "same prompt", temperature=0)
    assert second.text == first.text and len(calls) == 1
    table = rows(log)
    assert list(table.cache_status) == ["miss", "hit"]
    assert table.provider_name[1] == "policy"  # the hit is logged under the policy address


def test_non_policy_calls_pass_the_route_stage_untouched(log):
    cheap = MockProvider("cheap")
    gw = make(log, by_keyword(), cheap=cheap)
    gw.chat(CHEAP, "hi", tags={"t": "1"})
    assert dict(cheap.requests[0].tags) == {"t": "1"}


def test_construction_errors_name_the_problem():
    cheap = MockProvider("cheap")
    with pytest.raises(ConfigError, match="cannot resolve"):
        Gateway([cheap], log=None, policies=[Rules("r", [], "nowhere/x")])
    with pytest.raises(ConfigError, match="reserved"):
        Gateway([cheap, MockProvider("policy")], log=None, policies=[Rules("r", [], CHEAP)])
    with pytest.raises(ConfigError, match="used twice"):
        Gateway([cheap], log=None, policies=[Rules("r", [], CHEAP), Rules("r", [], CHEAP)])
    with pytest.raises(ConfigError, match="is a policy"):
        Gateway(
            [cheap],
            log=None,
            policies={"r": Rules("r", [], CHEAP), "s": Rules("s", [], "policy/r")},
        )
    with pytest.raises(ConfigError, match="no '/'"):
        Gateway([cheap], log=None, policies={"a/b": Rules("r", [], CHEAP)})


def test_unknown_policy_and_router_passed_as_middleware(log):
    router = PolicyRouter([by_keyword("a")])
    gw = make(log, by_keyword("b"), middleware=[router])
    assert gw.chat("a", "prove").provider == "strong"
    assert gw.chat("b", "hi").provider == "cheap"
    assert sorted(gw.list_models()["policy"]) == ["a", "b"]
    with pytest.raises(UnknownModelError):
        gw.chat("policy/zzz", "hi")


def test_a_policy_over_the_simulated_fleet(tmp_path):
    policy = Rules.by_category(
        "by-task",
        {"math": "sim-openai/sim-large"},
        default="sim-workers/sim-llamaish-8b",
    )
    with Gateway.simulated_fleet(
        time_scale=0, log=str(tmp_path / "c.duckdb"), policies=[policy]
    ) as gw:
        math = gw.chat("by-task", "What is 2 + 2?", tags={"category": "math"})
        chat = gw.chat("by-task", "Say hi")
        assert (math.provider, math.model) == ("sim-openai", "sim-large")
        assert chat.provider == "sim-workers"
        assert gw.simulated and math.simulated
        table = gw.query(
            "SELECT provider_name, request_model, cost_usd, simulated, "
            "json_extract_string(tags_json, '$.aigw_policy') AS policy FROM calls ORDER BY timestamp"
        )
    assert list(table.policy) == ["by-task", "by-task"]
    assert table.cost_usd.notna().all() and table.simulated.all()


def test_adaptive_split_learns_from_feedback_in_the_log(log):
    from aigw_lab.store.scores import record_feedback

    policy = AdaptiveSplit("ad", [CHEAP, STRONG], min_samples=5, seed=0)
    gw = make(log, policy)
    for _ in range(40):
        response = gw.chat("ad", "hi")
        # Users like the strong answers only.
        record_feedback(log, response.call_id, thumbs=response.provider == "strong")
    unrelated = gw.chat(CHEAP, "unrelated")
    record_feedback(log, unrelated.call_id, thumbs=True)  # not the policy's call: ignored
    policy.update_from_log(log)
    assert policy.stats[CHEAP].n + policy.stats[STRONG].n == 40
    assert policy.stats[CHEAP].mean == 0.0 and policy.stats[STRONG].mean == 1.0
    # The rebuild replaces the decisions' snapshot too (it was the uniform one): no waiting
    # for refresh_every more feedbacks.
    from aigw_lab.types import ChatRequest

    assert policy.probabilities(ChatRequest.create("ad", "hi"))[STRONG] > 0.9
    policy.update_from_log(log)  # idempotent: the log is the source of truth
    assert policy.stats[CHEAP].n + policy.stats[STRONG].n == 40


def test_a_policy_is_an_experiment_target(log):
    from aigw_lab.datasets import Dataset
    from aigw_lab.experiments import Experiment, Target, run_experiment
    from aigw_lab.scorers.base import Score, Scorer

    class Contains(Scorer):
        name = "contains"

        def score(self, item, response):
            return Score(self.name, float("strong" in response.text))

    dataset = Dataset.from_records(
        "tiny",
        [{"id": f"q{i}", "prompt": ("prove " if i % 2 else "") + f"item {i}"} for i in range(6)],
        source="test",
    )
    gw = make(log, by_keyword())
    result = run_experiment(
        gw,
        Experiment(
            "via policy", dataset, targets=[Target(model="cheap-or-strong")], scorers=[Contains()]
        ),
        progress=False,
    )
    assert result.completed == 6 and result.failed == 0
    table = rows(log)
    assert sorted(table.provider_name) == ["cheap"] * 3 + ["strong"] * 3
    assert {policy_tag(t) for t in table.tags_json} == {"cheap-or-strong"}
    assert result.cost_usd == pytest.approx(table.cost_usd.sum())
    frame = result.frame
    assert set(frame.target) == {"cheap-or-strong"}


def test_the_retargeted_request_carries_every_field():
    from dataclasses import fields, replace

    from aigw_lab.types import ChatRequest

    request = ChatRequest.create(
        "r",
        "hi",
        system="s",
        stop="x",
        tools=[{"type": "function", "function": {"name": "f"}}],
        tags={"t": "1"},
        metadata={"m": 1},
        extra={"top_k": 3},
        temperature=0.5,
        top_p=0.9,
        max_tokens=7,
        seed=1,
        tool_choice="auto",
        user="u",
        tenant="t",
        experiment_id="e",
        timeout=3.0,
    )
    router = PolicyRouter()
    copied = router._for_target("pol", request, "big")
    expected = replace(request, model="big", tags={"t": "1", "aigw_policy": "pol"})
    for f in fields(ChatRequest):
        assert getattr(copied, f.name) == getattr(expected, f.name), f.name


async def test_async_stream_of_a_fallback_chain_moves_on_before_any_text(log):
    cheap = MockProvider("cheap").enqueue(ProviderServerError("down", provider="cheap"))
    gw = make(log, FallbackChain("safe", [CHEAP, STRONG]), cheap=cheap)
    stream = gw.astream("safe", "hi")
    assert "".join([t async for t in stream]) == "strong answer"
    table = rows(log)
    assert list(table.provider_name) == ["cheap", "strong"]
    assert table.fallback_from[1] == CHEAP and table.trace_id.nunique() == 1


def test_closing_a_policy_stream_early_logs_the_attempt_as_cancelled(log):
    strong = FunctionProvider(lambda r: "many words in this answer", "strong")
    gw = make(log, by_keyword(), strong=strong)
    stream = gw.stream("cheap-or-strong", "prove")
    first = next(iter(stream))
    assert first
    stream.close()
    table = rows(log)
    assert list(table.error_type) == ["cancelled"] and table.provider_name[0] == "strong"
