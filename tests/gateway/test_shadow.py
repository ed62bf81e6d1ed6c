"""Shadow traffic (`aigw_lab.gateway.shadow`): a sampled share of live calls also goes to a
candidate, in the background, never delaying or failing the caller, under its own budget,
each shadow call logged once and linked to its live call."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import ConfigError, ProviderServerError
from aigw_lab.gateway import Budget, ExactCache, Limit, Shadow
from aigw_lab.gateway.shadow import SHADOW_POLICY, SHADOW_TAG
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import FunctionProvider
from tests._call_modes import MODES, call_in_mode

# Generous bounds so a stuck test fails instead of hanging; never asserted on.
WAIT = 30.0
PRICES = {"live/m": Price(1.0, 2.0), "cand/m": Price(3.0, 6.0)}


class Candidate:
    """The candidate's answers: blocked until the test releases them (``gate``), and
    reporting each call's start (``started``)."""

    def __init__(self, *, blocked: bool = False, fail: bool = False) -> None:
        self.gate = threading.Event()
        if not blocked:
            self.gate.set()
        self.started = threading.Semaphore(0)
        self.fail = fail
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, request):
        with self._lock:
            self.calls += 1
        self.started.release()
        assert self.gate.wait(WAIT), "the test never released the candidate"
        if self.fail:
            raise ProviderServerError("candidate down", provider="cand", model="m", status=500)
        return "candidate says " + request.messages[-1].text

    def wait_started(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.started.acquire(timeout=WAIT), "a shadow call never started"


def gateway(log, candidate: Candidate, *, middleware=(), **options) -> Gateway:
    options.setdefault("share", 1.0)
    options.setdefault("budget_usd", 10.0)
    options.setdefault("rng", random.Random(0))
    shadow = Shadow("cand/m", **options)
    return Gateway(
        [
            FunctionProvider(lambda r: "live says " + r.messages[-1].text, "live"),
            FunctionProvider(candidate, "cand"),
        ],
        log=log,
        prices=PRICES,
        shadow=shadow,
        middleware=list(middleware),
    )


def rows(log: CallLog, where: str = "TRUE") -> list[dict]:
    log.flush()
    frame = log.query(f'SELECT * FROM calls WHERE {where} ORDER BY "timestamp", call_id')
    return frame.to_dict("records")


@pytest.mark.parametrize("mode", MODES)
def test_the_caller_gets_its_answer_while_the_shadow_is_still_blocked(log, mode):
    candidate = Candidate(blocked=True)
    gw = gateway(log, candidate)
    response, texts = call_in_mode(gw, mode, "live/m", "hello")
    # The live answer is complete (every chunk of a stream) while the candidate is held.
    assert "".join(texts) == "live says hello" and response.text == "live says hello"
    candidate.wait_started()
    assert gw.shadow.stats().in_flight == 1 and not candidate.gate.is_set()
    assert rows(log, "shadow_of IS NOT NULL") == []  # the shadow has not answered yet
    candidate.gate.set()
    gw.close()
    (shadow,) = rows(log, "shadow_of IS NOT NULL")
    assert shadow["shadow_of"] == response.call_id
    assert shadow["response_text"] == "candidate says hello" and shadow["status"] == "ok"
    assert shadow["provider_name"] == "cand" and shadow["stream"] == (mode in ("stream", "astream"))
    assert shadow["route_policy"] == SHADOW_POLICY and shadow["propensity"] == 1.0
    assert json.loads(shadow["tags_json"])[SHADOW_TAG] == "1"
    assert shadow["budget_usd"] == 0.0 and shadow["cost_usd"] > 0  # real spend, own budget
    assert shadow["trace_id"] != response.trace_id
    stats = gw.shadow.stats()
    assert (stats.sent, stats.completed, stats.failed, stats.in_flight) == (1, 1, 0, 0)


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_shadow_never_reaches_the_caller_and_is_logged(log, mode):
    candidate = Candidate(fail=True)
    gw = gateway(log, candidate)
    response, _ = call_in_mode(gw, mode, "live/m", "hello")
    assert response.text == "live says hello"
    gw.close()
    (shadow,) = rows(log, "shadow_of IS NOT NULL")
    assert shadow["status"] == "error" and shadow["shadow_of"] == response.call_id
    assert gw.shadow.stats().failed == 1


class BrokenRandom(random.Random):
    def random(self) -> float:
        raise RuntimeError("the shadow's own bug")


@pytest.mark.parametrize("mode", MODES)
def test_a_bug_in_the_shadow_is_counted_not_raised(log, mode, caplog):
    gw = gateway(log, Candidate(), rng=BrokenRandom())
    with caplog.at_level(logging.ERROR, logger="aigw_lab.shadow"):
        response, _ = call_in_mode(gw, mode, "live/m", "hello")
    assert response.text == "live says hello"
    assert gw.shadow.stats().errors == 1 and "could not offer" in caplog.text
    gw.close()
    assert rows(log, "shadow_of IS NOT NULL") == []


def test_sampling_is_one_seeded_draw_per_eligible_call(log):
    gw = gateway(log, Candidate(), share=0.3, rng=random.Random(5), max_in_flight=256)
    responses = [gw.chat("live/m", f"q{i}") for i in range(200)]
    gw.close()
    draws = random.Random(5)
    expected = {r.call_id for r in responses if draws.random() < 0.3}
    shadowed = {row["shadow_of"] for row in rows(log, "shadow_of IS NOT NULL")}
    assert shadowed == expected and 0 < len(expected) < 200
    stats = gw.shadow.stats()
    assert (stats.eligible, stats.sampled, stats.sent) == (200, len(expected), len(expected))


def test_drops_at_max_in_flight_do_not_shift_the_draws(log):
    candidate = Candidate(blocked=True)
    gw = gateway(log, candidate, share=0.5, max_in_flight=2, rng=random.Random(3))
    responses = [gw.chat("live/m", f"q{i}") for i in range(30)]
    candidate.wait_started(2)
    draws = random.Random(3)
    sampled = [r.call_id for r in responses if draws.random() < 0.5]
    stats = gw.shadow.stats()
    assert stats.sampled == len(sampled) > 2
    assert (stats.sent, stats.dropped_in_flight) == (2, len(sampled) - 2)
    candidate.gate.set()
    gw.close()
    # The first two sampled calls were sent; the rest were dropped, and have no row.
    shadowed = [row["shadow_of"] for row in rows(log, "shadow_of IS NOT NULL")]
    assert sorted(shadowed) == sorted(sampled[:2])


def test_exactly_one_linked_row_per_shadow_call_sent(log):
    gw = gateway(log, Candidate(), share=0.5, rng=random.Random(11))
    for i in range(60):
        gw.chat("live/m", f"question {i}")
    gw.close()
    shadows = rows(log, "shadow_of IS NOT NULL")
    live = {row["call_id"]: row for row in rows(log, "shadow_of IS NULL")}
    assert len(shadows) == gw.shadow.stats().sent > 0
    assert len({row["shadow_of"] for row in shadows}) == len(shadows)
    for row in shadows:
        original = live[row["shadow_of"]]
        assert original["provider_name"] == "live" and original["route_policy"] is None
        # The same request, sent to the candidate.
        assert (
            json.loads(row["request_json"])["messages"]
            == json.loads(original["request_json"])["messages"]
        )
        assert row["propensity"] == 0.5


def test_its_own_budget_stops_shadowing_and_says_so(log, caplog):
    candidate = Candidate()
    # Each shadow call is estimated at (input + 10 output tokens) at 3 and 6 USD per 1M.
    gw = gateway(log, candidate, budget_usd=0.0005, max_in_flight=256)
    with caplog.at_level(logging.WARNING, logger="aigw_lab.shadow"):
        for i in range(20):
            assert gw.chat("live/m", f"q{i}", max_tokens=10).text == f"live says q{i}"
    gw.close()
    stats = gw.shadow.stats()
    assert stats.exhausted and stats.skipped_budget > 0 and 0 < stats.sent < 20
    assert stats.sent + stats.skipped_budget == 20
    assert stats.spent_usd <= 0.0005 and stats.reserved_usd == 0.0
    assert caplog.text.count("shadowing stops") == 1
    spent = sum(row["cost_usd"] for row in rows(log, "shadow_of IS NOT NULL"))
    assert spent == pytest.approx(stats.spent_usd)


def test_shadow_calls_count_against_no_live_budget_even_after_a_restart(new_log_path):
    # The live limit fits the live calls alone, not the live and shadow calls together.
    def limit():
        return Budget([Limit("gateway", 0.0002, "total")], log="gateway")

    with CallLog(new_log_path) as log:
        gw = gateway(log, Candidate(), middleware=[limit()], max_in_flight=256)
        for i in range(6):
            gw.chat("live/m", f"question {i}", max_tokens=10)
        gw.close()
        live_cost = sum(r["cost_usd"] for r in rows(log, "shadow_of IS NULL"))
        shadow_cost = sum(r["cost_usd"] for r in rows(log, "shadow_of IS NOT NULL"))
        assert gw.shadow.stats().sent == 6 and shadow_cost > 0.0002 > live_cost
    with CallLog(new_log_path) as log:  # a restarted gateway seeds its budget from the log
        budget = limit()
        live = FunctionProvider(lambda r: "x", "live")
        gw = Gateway([live], log=log, prices=PRICES, middleware=[budget])
        again = gw.chat("live/m", "again", max_tokens=10)
        (account,) = budget.snapshot()
        gw.close()
    assert account["spent_usd"] == pytest.approx(live_cost + again.cost_usd)


def test_cache_hits_are_not_shadowed_unless_asked(log):
    for on_cache_hits, expected in ((False, 1), (True, 2)):
        gw = gateway(log, Candidate(), middleware=[ExactCache()], on_cache_hits=on_cache_hits)
        first = gw.chat("live/m", f"same {on_cache_hits}")
        second = gw.chat("live/m", f"same {on_cache_hits}")
        assert second.cache_status == "hit" and second.text == first.text
        gw.close()
        assert gw.shadow.stats().sent == expected


def test_only_and_the_candidate_itself_are_not_shadowed(log):
    gw = gateway(log, Candidate(), only=("other/m",))
    gw.chat("live/m", "not listed")
    gw.chat("cand/m", "the candidate itself")
    gw.close()
    assert gw.shadow.stats().eligible == 0
    gw = gateway(log, Candidate())
    gw.chat("cand/m", "the candidate itself")
    gw.close()
    assert gw.shadow.stats().eligible == 0


def test_a_shadow_row_carries_no_experiment_coordinates(log):
    gw = gateway(log, Candidate())
    coordinates = {"run_id": "r1", "item_id": "i1", "target": "live/m", "repetition": 0}
    gw.chat(
        "live/m", "hello", metadata={"aigw_experiment": coordinates, "keep": 1}, tags={"t": "v"}
    )
    gw.close()
    (shadow,) = rows(log, "shadow_of IS NOT NULL")
    assert (shadow["run_id"], shadow["item_id"], shadow["target"]) == (None, None, None)
    assert json.loads(shadow["metadata_json"]) == {"keep": 1}
    assert json.loads(shadow["tags_json"]) == {"t": "v", SHADOW_TAG: "1"}


def test_close_waits_for_running_shadows(log):
    candidate = Candidate(blocked=True)
    gw = gateway(log, candidate)
    response = gw.chat("live/m", "hello")
    candidate.wait_started()
    closer = threading.Thread(target=gw.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # held by the running shadow
    candidate.gate.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    (shadow,) = rows(log, "shadow_of IS NOT NULL")
    assert shadow["shadow_of"] == response.call_id and shadow["status"] == "ok"
    assert gw.shadow.stats().abandoned_at_close == 0


def test_close_gives_up_after_drain_timeout_and_counts_it(log):
    candidate = Candidate(blocked=True)
    gw = gateway(log, candidate, drain_timeout=0.0)
    gw.chat("live/m", "hello")
    candidate.wait_started()
    gw.close()
    assert gw.shadow.stats().abandoned_at_close == 1
    assert rows(log, "shadow_of IS NOT NULL") == []
    # The abandoned call still logs its row when it ends (a log passed in stays open).
    candidate.gate.set()
    assert gw.shadow.close(timeout=WAIT) == 0
    (shadow,) = rows(log, "shadow_of IS NOT NULL")
    assert shadow["status"] == "ok"


def test_aclose_drains_shadows_of_async_calls(log):
    candidate = Candidate(blocked=True)
    gw = gateway(log, candidate)

    async def run():
        response = await gw.achat("live/m", "hello")
        await asyncio.to_thread(candidate.wait_started)
        candidate.gate.set()
        await gw.aclose()
        return response

    response = asyncio.run(run())
    (shadow,) = rows(log, "shadow_of IS NOT NULL")
    assert shadow["shadow_of"] == response.call_id


def test_offers_after_close_are_counted_not_sent(log):
    gw = gateway(log, Candidate())
    shadow = gw.shadow
    shadow.close()
    gw.chat("live/m", "hello")
    assert shadow.stats().skipped_closed == 1 and shadow.stats().sent == 0
    gw.close()


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"share": 0}, "share"),
        ({"share": 1.5}, "share"),
        ({"budget_usd": 0}, "budget_usd"),
        ({"budget_usd": float("inf")}, "budget_usd"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"drain_timeout": -1}, "drain_timeout"),
        ({"only": "live/m"}, "only"),
        ({"only": ["live"]}, "only"),
        ({"default_output_tokens": 0}, "default_output_tokens"),
    ],
)
def test_invalid_options_are_config_errors(options, needle):
    options = {"budget_usd": 1.0, **options}
    with pytest.raises(ConfigError, match=needle):
        Shadow("cand/m", **options)


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("nowhere/m", "not something this gateway serves"),
        ("sim-openai/no-such-model", "has no model"),
        ("free/m", "no known price"),
    ],
)
def test_a_target_the_gateway_cannot_call_or_price_is_refused(target, needle):
    fleet = Gateway.simulated_fleet(log=None)
    providers = [fleet.provider("sim-openai"), FunctionProvider(lambda r: "x", "free")]
    with pytest.raises(ConfigError, match=needle):
        Gateway(providers, log=None, shadow=Shadow(target, budget_usd=1.0))
    fleet.close()


def test_a_shadow_belongs_to_one_gateway():
    shadow = Shadow("cand/m", budget_usd=1.0)
    providers = [FunctionProvider(lambda r: "x", "cand")]
    Gateway(providers, log=None, prices=PRICES, shadow=shadow).close()
    with pytest.raises(ConfigError, match="another gateway"):
        Gateway(providers, log=None, prices=PRICES, shadow=shadow)


def test_shadow_table_in_a_config_file(tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text(
        "[gateway]\nlog = false\n"
        "[providers.sim-openai]\nkind = 'simulated'\nformat = 'openai'\ntime_scale = 0.0\n"
        "[shadow]\ntarget = 'sim-openai/sim-large'\nshare = 0.25\nbudget_usd = 2\n"
        "max_in_flight = 3\nseed = 4\nonly = ['sim-openai/sim-nano']\n"
    )
    with Gateway.from_config(config) as gw:
        shadow = gw.shadow
        assert (shadow.target, shadow.share, shadow.budget_usd) == ("sim-openai/sim-large", 0.25, 2)
        assert shadow.max_in_flight == 3 and shadow.only == {"sim-openai/sim-nano"}
    config.write_text(config.read_text() + "budget = 3\n")
    with pytest.raises(ConfigError, match=r"\[shadow\].*budget"):
        Gateway.from_config(config)


def test_a_routing_policy_can_be_the_candidate(log):
    from aigw_lab.policy import Rules

    by_length = Rules(
        "by-length", [({"max_chars": 5}, "sim-openai/sim-nano")], default="sim-openai/sim-large"
    )
    shadow = Shadow("by-length", share=1.0, budget_usd=1.0, rng=random.Random(0))
    gw = Gateway.simulated_fleet(time_scale=0.0, log=log, policies=[by_length], shadow=shadow)
    gw.chat("sim-anthropic/sim-haikuish", "hi")
    gw.chat("sim-anthropic/sim-haikuish", "a longer question")
    gw.close()
    shadows = rows(log, "shadow_of IS NOT NULL")
    # The policy chose each shadow call's target, as it would for a live call.
    assert [r["request_model"] for r in shadows] == ["sim-nano", "sim-large"]
    assert all(json.loads(r["tags_json"])[SHADOW_TAG] == "1" for r in shadows)
    assert shadow.stats().sent == 2


def test_shadow_spend_is_in_the_cost_reports_and_apart_by_its_tag(log):
    from aigw_lab.store.cost_reports import by_provider, by_tag

    gw = gateway(log, Candidate(), max_in_flight=256)
    for i in range(5):
        gw.chat("live/m", f"q{i}")
    gw.close()
    live = sum(r["cost_usd"] for r in rows(log, "shadow_of IS NULL"))
    shadow = sum(r["cost_usd"] for r in rows(log, "shadow_of IS NOT NULL"))
    total = by_provider(log)
    assert total["cost_usd"].sum() == pytest.approx(live + shadow)
    tagged = by_tag(log, SHADOW_TAG).set_index(SHADOW_TAG)
    assert tagged.loc["1", "cost_usd"] == pytest.approx(shadow)
    assert tagged["cost_usd"].sum() == pytest.approx(live + shadow)


def test_only_matches_a_policy_call_by_its_address(log):
    from aigw_lab.policy import Rules

    prod = Rules(
        "prod", [({"max_chars": 5}, "sim-openai/sim-nano")], default="sim-openai/sim-large"
    )
    shadow = Shadow("sim-anthropic/sim-sonnetish", budget_usd=1.0, share=1.0, only=("policy/prod",))
    with Gateway.simulated_fleet(time_scale=0.0, log=log, policies=[prod], shadow=shadow) as gw:
        gw.chat("prod", "hi")  # to the policy: shadowed
        gw.chat("sim-openai/sim-nano", "hi")  # the same target, not through the policy
    (row,) = rows(log, "shadow_of IS NOT NULL")
    (live,) = rows(log, f"call_id = '{row['shadow_of']}'")
    assert live["request_model"] == "sim-nano" and shadow.stats().eligible == 1


def test_concurrent_callers_threads_and_tasks_keep_the_counts_and_rows_exact(log):
    gw = gateway(log, Candidate(), share=0.5, max_in_flight=3, rng=random.Random(9))

    def caller(n: int) -> None:
        for i in range(25):
            gw.chat("live/m", f"thread {n} call {i}")

    async def tasks() -> None:
        await asyncio.gather(*(gw.achat("live/m", f"task {i}") for i in range(50)))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(tasks())
    for thread in threads:
        thread.join(WAIT)
    gw.close()
    stats = gw.shadow.stats()
    assert stats.eligible == 150 and stats.in_flight == 0 and stats.reserved_usd == 0.0
    assert stats.sampled == stats.sent + stats.dropped_in_flight + stats.skipped_budget
    assert stats.sent == stats.completed > 0
    shadows = rows(log, "shadow_of IS NOT NULL")
    assert len(shadows) == len({r["shadow_of"] for r in shadows}) == stats.sent
    assert sum(r["cost_usd"] for r in shadows) == pytest.approx(stats.spent_usd)
