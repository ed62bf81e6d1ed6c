"""Cache warming (issue 12 §1): the plan and its cost before any call, answers the log already
holds used without a call, the budget refused, tenants kept apart, and warmed prompts then
served as hits in all four call modes (exact) and on a paraphrase (semantic), over real
DuckDB files and counting fake providers."""

from __future__ import annotations

import asyncio
import json

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab import Gateway, Price
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import AigwError, BudgetExceededError, ConfigError, StoreError
from aigw_lab.experiments.warming import WARM_ROLE, WARM_TAG, plan_warming, warm
from aigw_lab.gateway.cache import ExactCache
from aigw_lab.gateway.cache_stores import DuckDBStore
from aigw_lab.gateway.semantic_cache import SemanticCache
from aigw_lab.testing.fakes import FunctionProvider
from tests.experiments.conftest import small_dataset

MODES = ("chat", "achat", "stream", "astream")
PRICES = {"mock/m1": Price(1.0, 2.0), "mock/m2": Price(1.0, 2.0)}


class Counting(FunctionProvider):
    """Answers ``<prefix>: <prompt>`` and keeps every request it saw (``requests``)."""

    def __init__(self, prefix: str = "answer"):
        super().__init__(lambda r: f"{prefix}: {r.messages[-1].text}", name="mock")


def producer_log(path, calls):
    """A call log at ``path`` written by a cache-less gateway: ``calls`` are
    ``(prompt, params)`` pairs sent to ``mock/m1`` by a provider answering ``logged: ...``."""
    gw = Gateway([Counting("logged")], log=str(path), prices=PRICES)
    with gw:
        for prompt, params in calls:
            gw.chat(params.pop("model", "mock/m1"), prompt, **params)


def consumer(tmp_path, *, semantic=False, log=None, provider=None):
    provider = provider or Counting()
    middleware = [ExactCache(DuckDBStore(tmp_path / "cache.duckdb"))]
    if semantic:
        middleware.append(SemanticCache(HashingEmbedder(256), threshold=0.9))
    gw = Gateway([provider], log=log or ":memory:", prices=PRICES, middleware=middleware)
    return gw, provider


def call(gw, mode, prompt, **params):
    """One call in ``mode``; the final response."""
    if mode == "chat":
        return gw.chat("mock/m1", prompt, **params)
    if mode == "stream":
        stream = gw.stream("mock/m1", prompt, **params)
        list(stream)
        return stream.response

    async def run():
        if mode == "achat":
            return await gw.achat("mock/m1", prompt, **params)
        stream = gw.astream("mock/m1", prompt, **params)
        async for _ in stream:
            pass
        return stream.response

    return asyncio.run(run())


# --- the plan comes first, and sends nothing ---------------------------------------------------


def test_a_plan_and_its_estimate_send_nothing(tmp_path):
    gw, provider = consumer(tmp_path, semantic=True)
    with gw:
        plan = plan_warming(gw, dataset=small_dataset(4), target="mock/m1")
        text = str(plan)
        assert provider.requests == []
        assert gw.query("SELECT count(*) AS n FROM calls").n[0] == 0
        assert plan.count("call") == 4 and plan.estimate.units == 4
        assert "to call: 4" in text and "estimated $" in text
        assert "4 reference answers" in text  # the basis of the output estimate
        assert plan.estimate.usd > 0
        assert all(e.estimate_usd and e.estimate_usd > 0 for e in plan.entries)
        report = warm(plan, gw)
        assert len(provider.requests) == 4
        assert (report.called, report.exact_filled, report.semantic_filled) == (4, 4, 4)


def test_the_estimate_of_a_batch_is_at_the_batch_price(tmp_path):
    from aigw_lab import ProviderSpec
    from aigw_lab.testing.fake_batches import FakeBatches

    with FakeBatches(api_key="k") as fake:
        spec = ProviderSpec(
            "oa", "openai", base_url=fake.url + "/v1", api_key_env="K",
            prices={"gpt-x": Price(3.0, 15.0)},
        )  # fmt: skip
        with Gateway([spec], env={"K": "k"}, middleware=[ExactCache()]) as gw:
            calls = plan_warming(gw, dataset=small_dataset(3), target="oa/gpt-x")
            batch = plan_warming(gw, dataset=small_dataset(3), target="oa/gpt-x", method="batch")
        assert fake.requests == []
    assert batch.estimate.usd == pytest.approx(calls.estimate.usd * 0.5)
    assert "one batch job per target at the batch price" in str(batch)


# --- hits after warming --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_prompt_warmed_by_a_paid_call_is_then_an_exact_hit_in_every_mode(tmp_path, mode):
    gw, provider = consumer(tmp_path)
    with gw:
        params = {"system": "Be brief.", "temperature": 0, "max_tokens": 20}
        dataset = small_dataset(2)
        plan = plan_warming(gw, dataset=dataset, target="mock/m1", params=params)
        warm(plan, gw)
        sent = len(provider.requests)
        response = call(gw, mode, "What is 1 + 1?", **params)
        assert response.cache_status == "hit"
        assert response.text == "answer: What is 1 + 1?"
        assert len(provider.requests) == sent  # no upstream call
        # Another parameter is another request: the warmed entry does not answer it.
        assert call(gw, mode, "What is 1 + 1?", system="Be brief.").cache_status == "miss"


@pytest.mark.parametrize("mode", MODES)
def test_a_prompt_warmed_free_from_a_log_is_then_an_exact_hit_in_every_mode(tmp_path, mode):
    producer_log(
        tmp_path / "prod.duckdb",
        [("What is DuckDB?", {"temperature": 0, "stop": ["\n"], "user": "u1"})] * 3,
    )
    gw, provider = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, log=tmp_path / "prod.duckdb", top=5)
        [entry] = plan.entries
        assert (entry.count, entry.status, entry.answer_from) == (3, "free", "log")
        assert plan.estimate.units == 0 and "$0 (nothing to call)" in str(plan)
        report = warm(plan, gw)
        assert (report.free, report.called, report.exact_filled) == (1, 0, 1)
        response = call(gw, mode, "What is DuckDB?", temperature=0, stop=["\n"], user="u1")
        assert response.cache_status == "hit"
        assert response.text == "logged: What is DuckDB?"  # the log's answer, not a new one
        assert provider.requests == []  # nothing was called, ever


def test_a_warmed_semantic_cache_answers_a_paraphrase(tmp_path):
    gw, provider = consumer(tmp_path, semantic=True)
    with gw:
        data = small_dataset(1)
        data = type(data).from_records(
            "q", [{"id": "a", "prompt": "What is the capital city of France?"}]
        )
        warm(plan_warming(gw, dataset=data, target="mock/m1", caches=["semantic"]), gw)
        assert len(provider.requests) == 1
        response = gw.chat("mock/m1", "what is the capital city of france")
        assert response.cache_status == "hit"
        assert response.text == "answer: What is the capital city of France?"
        assert len(provider.requests) == 1
        rows = gw.query("SELECT cache_similarity FROM calls WHERE cache_status = 'hit'")
        assert 0.9 <= rows.cache_similarity[0] < 1.0


def test_the_exact_caches_answer_fills_the_semantic_cache_without_a_call(tmp_path):
    gw, provider = consumer(tmp_path, semantic=True)
    with gw:
        gw.chat("mock/m1", "What is 0 + 0?")  # now in both caches
        gw.middleware[-1].clear()  # the semantic cache lost it (a restart: it is in memory)
        plan = plan_warming(gw, dataset=small_dataset(1), target="mock/m1")
        [entry] = plan.entries
        assert (entry.in_exact, entry.in_semantic, entry.status) == (True, False, "free")
        assert entry.answer_from == "exact cache"
        report = warm(plan, gw)
        assert (report.semantic_filled, report.exact_filled, report.called) == (1, 0, 0)
        assert len(provider.requests) == 1


def test_what_is_cached_already_is_left_alone(tmp_path):
    gw, provider = consumer(tmp_path)
    with gw:
        warm(plan_warming(gw, dataset=small_dataset(3), target="mock/m1"), gw)
        again = plan_warming(gw, dataset=small_dataset(3), target="mock/m1")
        assert again.count("cached") == 3 and again.estimate.units == 0
        assert warm(again, gw).called == 0
        assert len(provider.requests) == 3


def test_each_paid_answer_is_its_own_not_a_similar_prompt_warmed_a_moment_before(tmp_path):
    # Paid warming calls skip the caches: otherwise the second prompt would be served the
    # first's answer by the semantic cache, and that answer stored under its exact key.
    gw, provider = consumer(tmp_path, semantic=True)
    with gw:
        data = small_dataset(1)
        data = type(data).from_records(
            "q",
            [
                {"id": "a", "prompt": "What is the capital city of France?"},
                {"id": "b", "prompt": "what is the capital city of france"},
            ],
        )
        report = warm(plan_warming(gw, dataset=data, target="mock/m1"), gw)
        assert (report.called, report.exact_filled, report.semantic_filled) == (2, 2, 2)
        assert len(provider.requests) == 2
        second = gw.chat("mock/m1", "what is the capital city of france")
        assert second.text == "answer: what is the capital city of france"


# --- the log as a source ---------------------------------------------------------------------------


def test_the_top_prompts_are_the_most_frequent_ok_live_requests(tmp_path):
    calls = (
        [("often", {})] * 4
        + [("sometimes", {})] * 2
        + [("once", {})]
        + [("judged", {"tags": {"aigw_role": "judge"}})] * 9
        + [("warmed", {"tags": {WARM_TAG: WARM_ROLE}})] * 9
    )
    producer_log(tmp_path / "prod.duckdb", calls)
    gw, _ = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, log=str(tmp_path / "prod.duckdb"), top=2)
    assert [(e.request.messages[-1].text, e.count) for e in plan.entries] == [
        ("often", 4),
        ("sometimes", 2),
    ]
    assert "the top 2 of 3 distinct requests in 7 ok calls" in plan.source


def test_a_time_window_bounds_the_calls_counted(tmp_path):
    producer_log(tmp_path / "prod.duckdb", [("early", {})] * 3)
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as con:
        con.execute("UPDATE calls SET \"timestamp\" = TIMESTAMPTZ '2020-01-01 00:00:00+00'")
    producer_log(tmp_path / "prod.duckdb", [("late", {})])
    gw, _ = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, log=tmp_path / "prod.duckdb", top=5, since="2021-01-01")
        older = plan_warming(gw, log=tmp_path / "prod.duckdb", top=5, until="2021-01-01")
    assert [e.request.messages[-1].text for e in plan.entries] == ["late"]
    assert [e.request.messages[-1].text for e in older.entries] == ["early"]


def test_rows_whose_bodies_the_log_did_not_keep_are_left_out_and_counted(tmp_path):
    producer_log(tmp_path / "prod.duckdb", [("secret", {})] * 2 + [("kept", {})])
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as con:
        con.execute(
            "UPDATE calls SET bodies = 'hash', request_json = '{\"messages\": "
            '[{"role": "user", "content": "sha256:ab"}]}\' '
            "WHERE request_json LIKE '%secret%'"
        )
    gw, _ = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, log=tmp_path / "prod.duckdb", top=5)
    assert [e.request.messages[-1].text for e in plan.entries] == ["kept"]
    assert plan.skipped == {"bodies not kept in full": 2}
    assert "log rows left out: 2 bodies not kept in full" in str(plan)


def test_a_target_given_warms_that_model_and_uses_only_its_own_logged_answers(tmp_path):
    producer_log(tmp_path / "prod.duckdb", [("q", {})] * 2 + [("q", {"model": "mock/m2"})])
    gw, provider = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, log=tmp_path / "prod.duckdb", top=5, target="mock/m2")
        [entry] = plan.entries
        assert (entry.address, entry.count, entry.status) == ("mock/m2", 3, "free")
        other = plan_warming(gw, log=tmp_path / "prod.duckdb", top=5, target="mock/m1")
        assert other.entries[0].status == "free"
        # A model the log never answered it on: a paid call, estimated from the logged answer.
        gw_plan = plan_warming(gw, dataset=small_dataset(1), target="mock/m1")
        assert gw_plan.entries[0].status == "call"
    assert provider.requests == []


def test_a_paid_call_for_a_logged_prompt_is_estimated_from_the_answer_another_model_gave(
    tmp_path,
):
    producer_log(tmp_path / "prod.duckdb", [("q " * 40, {"model": "mock/m2"})])
    gw, provider = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, log=tmp_path / "prod.duckdb", top=1, target="mock/m1")
    [entry] = plan.entries
    answer = "logged: " + ("q " * 40).strip()
    assert entry.status == "call"
    assert entry.output_tokens == -(-len(answer) // 4)  # its characters / 4, rounded up
    assert plan.estimate.output_sources == {"reference": 1}
    assert "output from: 1 answers logged to the prompt by any model" in str(plan)
    assert provider.requests == []


# --- tenants -----------------------------------------------------------------------------------------


def test_one_tenants_answer_is_never_warmed_into_anothers_namespace(tmp_path):
    producer_log(
        tmp_path / "prod.duckdb",
        [("the same words", {"tenant": "a"})] * 3 + [("only a asked", {"tenant": "a"})],
    )
    gw, provider = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, log=tmp_path / "prod.duckdb", top=10)
        assert {(e.request.tenant, e.status) for e in plan.entries} == {("a", "free")}
        warm(plan, gw)
        assert gw.chat("mock/m1", "the same words", tenant="a").cache_status == "hit"
        b = gw.chat("mock/m1", "the same words", tenant="b")
        shared = gw.chat("mock/m1", "the same words")
        assert (b.cache_status, shared.cache_status) == ("miss", "miss")
        assert b.text == "answer: the same words"  # b's own call, not a's logged answer
        assert len(provider.requests) == 2


def test_the_same_prompt_of_two_tenants_is_two_entries_each_with_its_own_answer(tmp_path):
    producer_log(tmp_path / "prod.duckdb", [("hi", {"tenant": "a"}), ("hi", {"tenant": "b"})])
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as con:
        con.execute("UPDATE calls SET response_text = 'for ' || tenant_id")
    gw, provider = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, log=tmp_path / "prod.duckdb", top=10)
        assert len(plan.entries) == 2
        warm(plan, gw)
        assert gw.chat("mock/m1", "hi", tenant="a").text == "for a"
        assert gw.chat("mock/m1", "hi", tenant="b").text == "for b"
        only_b = plan_warming(gw, log=tmp_path / "prod.duckdb", top=10, tenant="b")
        assert [e.request.tenant for e in only_b.entries] == ["b"]
    assert provider.requests == []


def test_a_dataset_can_be_warmed_into_one_tenants_namespace(tmp_path):
    gw, provider = consumer(tmp_path)
    with gw:
        warm(plan_warming(gw, dataset=small_dataset(1), target="mock/m1", tenant="a"), gw)
        assert gw.chat("mock/m1", "What is 0 + 0?", tenant="a").cache_status == "hit"
        assert gw.chat("mock/m1", "What is 0 + 0?").cache_status == "miss"


# --- paid calls: logged, tagged, within the budget --------------------------------------------------


def test_paid_warming_calls_are_logged_and_tagged_and_a_replan_does_not_count_them(tmp_path):
    gw, _ = consumer(tmp_path, log=str(tmp_path / "calls.duckdb"))
    with gw:
        report = warm(plan_warming(gw, dataset=small_dataset(3), target="mock/m1"), gw)
        rows = gw.query("SELECT tags_json, status, cost_usd FROM calls")
        assert len(rows) == 3 and set(rows.status) == {"ok"}
        assert all(json.loads(t)[WARM_TAG] == WARM_ROLE for t in rows.tags_json)
        assert report.cost_usd == pytest.approx(rows.cost_usd.sum())
        assert plan_warming(gw, log=True, top=10).entries == ()


def test_a_plan_over_the_budget_is_refused_before_any_call(tmp_path):
    gw, provider = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, dataset=small_dataset(4), target="mock/m1")
        with pytest.raises(BudgetExceededError, match="over max_cost_usd") as raised:
            warm(plan, gw, max_cost_usd=plan.estimate.usd / 2)
        assert "nothing was sent" in raised.value.message
        assert provider.requests == []
        assert len(gw.middleware[0].store) == 0


def test_warming_stops_before_a_call_that_would_pass_the_budget(tmp_path):
    # The answers are far longer than the estimate expects, so the spend runs ahead of it.
    provider = FunctionProvider(lambda r: "word " * 200, name="mock")
    gw, _ = consumer(tmp_path, provider=provider)
    with gw:
        plan = plan_warming(gw, dataset=small_dataset(5), target="mock/m1")
        budget = plan.estimate.usd * 1.01
        report = warm(plan, gw, max_cost_usd=budget)
    assert report.called == 1 and report.refused == 4
    assert len(provider.requests) == 1
    assert "4 calls not made (over the budget" in str(report)


@pytest.mark.filterwarnings("ignore::aigw_lab.pricing.UnknownPriceWarning")
def test_an_unpriced_target_cannot_be_held_to_a_budget(tmp_path):
    provider = Counting()
    gw = Gateway([provider], middleware=[ExactCache()])
    with gw:
        plan = plan_warming(gw, dataset=small_dataset(2), target="mock/m1")
        assert plan.estimate.unpriced_targets == ("mock/m1",)
        with pytest.raises(BudgetExceededError, match="price is unknown"):
            warm(plan, gw, max_cost_usd=10.0)
        assert provider.requests == []
        assert warm(plan, gw).called == 2  # without a budget, it goes


def test_a_failed_warming_call_is_counted_and_the_rest_go_on(tmp_path):
    def answer(request):
        if "1 + 1" in request.messages[-1].text:
            raise ConfigError("no")
        return "ok"

    gw, _ = consumer(tmp_path, provider=FunctionProvider(answer, name="mock"))
    with gw:
        report = warm(plan_warming(gw, dataset=small_dataset(3), target="mock/m1"), gw)
    assert (report.called, report.failed, report.exact_filled) == (2, 1, 2)


# --- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "needs one source"),
        ({"dataset": "bundled:mixed_v1", "log": True, "top": 1}, "needs one source"),
        ({"dataset": "bundled:mixed_v1"}, "needs a target"),
        ({"log": True}, "needs top=N"),
        ({"log": True, "top": 0}, "top=0 is not a positive"),
        ({"log": True, "top": True}, "top=True is not a positive"),
        ({"log": True, "top": "5"}, "top='5' is not a positive"),
        ({"dataset": "nope", "target": "mock/m1"}, "no bundled dataset named 'nope'"),
        ({"dataset": "", "target": "mock/m1"}, "is not a dataset name"),
        ({"log": 5, "top": 1}, "is not a call log"),
        ({"log": True, "top": 1, "caches": ["nope"]}, "cache 'nope' is unknown"),
        ({"log": True, "top": 1, "caches": ["semantic"]}, "no semantic cache"),
        ({"log": True, "top": 1, "method": "fax"}, "method='fax' is unknown"),
        ({"log": True, "top": 1, "since": "yesterday"}, "not an ISO date"),
        ({"dataset": "mixed_v1", "target": "mock/m1", "params": [1]}, "not a table of request"),
        ({"dataset": "mixed_v1", "target": "mock/m1", "params": {"model": "x"}}, "not a table"),
        (
            {"dataset": "mixed_v1", "target": "mock/m1", "params": {"temp": 1}},
            "unknown request parameter",
        ),
    ],
)
def test_hostile_arguments_are_typed_errors_naming_the_fix(tmp_path, kwargs, message):
    gw, provider = consumer(tmp_path)
    with gw, pytest.raises(AigwError, match=message) as raised:
        plan_warming(gw, **kwargs)
    assert raised.value.hint
    assert provider.requests == []


def test_a_batch_plan_for_a_target_without_a_batch_api_fails_before_any_call(tmp_path):
    gw, provider = consumer(tmp_path)
    with gw, pytest.raises(ConfigError, match="has no batch API"):
        plan_warming(gw, dataset=small_dataset(2), target="mock/m1", method="batch")
    assert provider.requests == []


def test_a_request_the_semantic_cache_would_bypass_is_left_out_when_only_it_is_warmed(
    tmp_path,
):
    gw, _ = consumer(tmp_path, semantic=True)
    with gw:
        sampled = plan_warming(
            gw,
            dataset=small_dataset(2),
            target="mock/m1",
            params={"temperature": 0.7},
            caches=["semantic"],
        )
        both = plan_warming(
            gw, dataset=small_dataset(2), target="mock/m1", params={"temperature": 0.7}
        )
    assert sampled.entries == ()
    assert sampled.skipped == {"not for the semantic cache (sampled, tools or images)": 2}
    assert [(e.in_exact, e.in_semantic) for e in both.entries] == [(False, None)] * 2


def test_a_duckdb_connection_is_a_log_too_and_is_left_open(tmp_path):
    producer_log(tmp_path / "prod.duckdb", [("q", {})] * 2)
    gw, _ = consumer(tmp_path)
    with gw, duckdb.connect(str(tmp_path / "prod.duckdb"), read_only=True) as con:
        plan = plan_warming(gw, log=con, top=3)
        assert [e.count for e in plan.entries] == [2]
        assert con.execute("SELECT 1").fetchone() == (1,)


def test_a_missing_log_file_is_a_store_error(tmp_path):
    gw, _ = consumer(tmp_path)
    with gw, pytest.raises(StoreError, match="no call log"):
        plan_warming(gw, log=tmp_path / "nope.duckdb", top=3)


def test_a_gateway_without_a_cache_has_nothing_to_warm():
    with Gateway([Counting()]) as gw, pytest.raises(ConfigError, match="no cache to warm"):
        plan_warming(gw, dataset=small_dataset(1), target="mock/m1")


def test_a_bad_budget_is_refused(tmp_path):
    gw, _ = consumer(tmp_path)
    with gw:
        plan = plan_warming(gw, dataset=small_dataset(1), target="mock/m1")
        for bad in (-1.0, float("nan"), "1", True):
            with pytest.raises(ConfigError, match="max_cost_usd"):
                warm(plan, gw, max_cost_usd=bad)


# --- batch ------------------------------------------------------------------------------------------


def test_batch_warming_fills_the_cache_at_the_batch_price_and_logs_each_request(tmp_path):
    from aigw_lab import ProviderSpec
    from aigw_lab.batch import BATCH_TAG
    from aigw_lab.testing.fake_batches import FakeBatches

    price = Price(input_per_mtok=3.0, output_per_mtok=15.0)
    slept = []
    with FakeBatches(api_key="k") as fake:
        spec = ProviderSpec(
            "oa", "openai", base_url=fake.url + "/v1", api_key_env="K", prices={"gpt-x": price}
        )
        gw = Gateway(
            [spec],
            env={"K": "k"},
            log=str(tmp_path / "calls.duckdb"),
            middleware=[ExactCache(DuckDBStore(tmp_path / "cache.duckdb"))],
        )
        with gw:
            plan = plan_warming(gw, dataset=small_dataset(3), target="oa/gpt-x", method="batch")
            assert fake.requests == []  # the plan sent nothing
            report = warm(plan, gw, poll_interval=60, sleep=slept.append)
            assert (report.called, report.exact_filled) == (3, 3)
            sent = len(fake.requests)
            hit = gw.chat("oa/gpt-x", "What is 2 + 2?")
            assert hit.cache_status == "hit" and hit.text == "echo: What is 2 + 2?"
            assert len(fake.requests) == sent  # no call for the hit
            rows = gw.query("SELECT tags_json, cost_usd FROM calls WHERE attempt >= 1")
        assert len(rows) == 3
        for tags in rows.tags_json:
            assert json.loads(tags)[WARM_TAG] == WARM_ROLE and BATCH_TAG in json.loads(tags)
        assert report.cost_usd == pytest.approx(rows.cost_usd.sum())
        assert slept  # the job was waited for with the injected sleep


# --- the real embedder --------------------------------------------------------------------------------


def test_with_minilm_at_its_defaults_a_warmed_prompt_answers_a_paraphrase_not_another_question(
    tmp_path, minilm
):
    producer_log(
        tmp_path / "prod.duckdb",
        [("What is the capital of France?", {})] * 2 + [("How do I reverse a list in Python?", {})],
    )
    provider = Counting()
    gw = Gateway([provider], prices=PRICES, middleware=[SemanticCache(minilm)])
    with gw:
        report = warm(plan_warming(gw, log=tmp_path / "prod.duckdb", top=5), gw)
        assert (report.semantic_filled, report.free, report.called) == (2, 2, 0)
        paraphrase = gw.chat("mock/m1", "Which city is the capital of France?")
        assert paraphrase.cache_status == "hit"
        assert paraphrase.text == "logged: What is the capital of France?"
        other = gw.chat("mock/m1", "How do I sort a list in Python?")
        assert other.cache_status == "miss" and provider.requests[-1].messages[-1].text == (
            "How do I sort a list in Python?"
        )
        assert len(provider.requests) == 1


# --- ExactCache.add / lookup, which warming fills through ------------------------------------------


def test_exact_cache_add_keys_and_times_an_entry_as_a_live_call_would():
    from aigw_lab.gateway.cache_stores import MemoryStore
    from aigw_lab.types import ChatRequest, ChatResponse, Usage

    now = [1000.0]
    cache = ExactCache(MemoryStore(clock=lambda: now[0]), ttl=100, model_ttls={"mock/m1": 10})
    request = ChatRequest.create("m1", "hi", tenant="a")
    answer = ChatResponse(
        text="hello", finish_reason="stop", usage=Usage(), provider="mock", model="m1"
    )
    assert cache.add(request, answer, provider="mock", model="m1")
    assert cache.lookup(request, provider="mock", model="m1").text == "hello"
    assert cache.lookup(request, provider="mock", model="m2") is None  # another target
    other_tenant = ChatRequest.create("m1", "hi", tenant="b")
    assert cache.lookup(other_tenant, provider="mock", model="m1") is None
    now[0] += 11  # past model_ttls["mock/m1"], within ttl
    assert cache.lookup(request, provider="mock", model="m1") is None
    failed = ChatResponse(
        text="", finish_reason="error", usage=Usage(), provider="mock", model="m1"
    )
    assert not cache.add(request, failed, provider="mock", model="m1")
    assert cache.stats().hits == 0 and cache.stats().misses == 0  # neither counts


# --- a logged request is rebuilt as sent ------------------------------------------------------------


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
MESSAGE = st.one_of(
    st.builds(lambda t: {"role": "user", "content": t}, TEXT),
    st.builds(lambda t: {"role": "assistant", "content": t}, TEXT),
    st.builds(
        lambda a, b: {"role": "user", "content": [{"type": "text", "text": a},
                                                  {"type": "text", "text": b}]},
        TEXT, TEXT,
    ),
)  # fmt: skip
PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.sampled_from([0, 0.0, 0.5, 1]),
        "top_p": st.sampled_from([0.9, 1]),
        "max_tokens": st.integers(1, 4000),
        "seed": st.integers(0, 2**31),
        "stop": st.lists(TEXT, min_size=1, max_size=2),
        "system": TEXT,
        "tenant": st.sampled_from(["a", "b"]),
        "user": st.sampled_from(["u", "v"]),
        "extra": st.fixed_dictionaries({"top_k": st.integers(1, 50)}),
    },
)
CONVERSATION = st.tuples(
    st.lists(MESSAGE, max_size=3).map(lambda ms: [*ms, {"role": "user", "content": "q"}]),
    PARAMS,
)


@settings(max_examples=15, deadline=None)
@given(calls=st.lists(CONVERSATION, min_size=1, max_size=6))
def test_a_logged_request_is_warmed_under_the_key_its_live_call_computed(calls):
    from aigw_lab.gateway.cache import cache_key
    from aigw_lab.types import ChatRequest

    gw = Gateway([Counting()], prices=PRICES, middleware=[ExactCache()])
    with gw:
        for messages, params in calls:
            gw.chat("mock/m1", messages, **params, metadata={"cache": {"skip": True}})
        plan = plan_warming(gw, log=True, top=100)
        sent = {
            cache_key(ChatRequest.create("m1", m, **p), provider="mock", model="m1")
            for m, p in calls
        }
        assert {cache_key(e.request, provider="mock", model="m1") for e in plan.entries} == sent
        assert plan.skipped == {}
        warm(plan, gw)
        for messages, params in calls:  # each now a hit, none sent upstream
            assert gw.chat("mock/m1", messages, **params).cache_status == "hit"
