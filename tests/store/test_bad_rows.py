"""Issue 9 section 3: one bad row never poisons the log or reaches another caller.

Rows are made storable where the gateway queues them (lone surrogates replaced, oversize
bodies cut, both flagged); a row the database still refuses goes to ``calls_dead_letter``
with its error while the rest of its batch is written; nothing of it is raised into another
caller's call, and `CallLog.health` says what happened.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aigw_lab import Gateway
from aigw_lab.errors import ProviderServerError, StoreError
from aigw_lab.gateway.budget import Budget
from aigw_lab.store import CallLog, CallLogWarning
from aigw_lab.store.sanitize import DEFAULT_MAX_BODY_CHARS
from aigw_lab.testing.fakes import FunctionProvider, MockProvider

from .bad_rows_helpers import (
    PRICE,
    SURROGATE,
    T0,
    calls,
    gateway,
    refusing_migrations,
    reply,
)


@pytest.mark.parametrize(
    "where",
    ["prompt", "answer", "tool_call", "error_message", "metadata", "tags", "tenant"],
)
def test_a_lone_surrogate_anywhere_is_replaced_flagged_and_stored(tmp_path, where):
    bad = f"x{SURROGATE}y"
    request: dict = {"tags": {"team": "a"}}
    answer = reply("fine")
    if where == "prompt":
        messages = [{"role": "user", "content": bad}]
    else:
        messages = [{"role": "user", "content": "hi"}]
    if where == "answer":
        answer = reply(bad)
    elif where == "tool_call":
        answer = reply("", tool_calls=({"id": "t1", "name": "f", "arguments": bad},))
    elif where == "error_message":
        answer = ProviderServerError(f"upstream said {bad}")
    elif where == "metadata":
        request["metadata"] = {"note": bad}
    elif where == "tags":
        request["tags"] = {"team": bad}
    elif where == "tenant":
        request["tenant"] = bad
    mock = MockProvider("mock", models=("m1",)).enqueue(answer)
    with CallLog(tmp_path / "c.duckdb") as log:
        gw = gateway(log, mock)
        try:
            gw.chat("mock/m1", messages, **request)
        except ProviderServerError:
            assert where == "error_message"
        log.flush()  # raises nothing
        [(flags, text)] = log.execute(
            "SELECT flags, concat_ws('|', request_json, response_text, tool_calls_json, "
            "error_message, tags_json, metadata_json, tenant_id) FROM calls"
        )
        assert flags == ["invalid_text"]
        assert "x\ufffdy" in text or "x\\ufffdy" in text
        assert log.execute("SELECT count(*) FROM calls_dead_letter") == [(0,)]
        assert log.health().rows_dead_lettered == 0


def test_a_surrogate_row_no_longer_fails_the_next_call_of_another_tenant(tmp_path):
    # Seen: the row of tenant a could not be stored; budget seeding for tenant b flushed the
    # log and got tenant a's StoreError (with the DB path and a's call id); a's paid call
    # then vanished from the log and from budget seeding.
    mock = MockProvider("mock", models=("m1",)).enqueue(reply(f"bad {SURROGATE}"), reply("ok"))
    path = tmp_path / "c.duckdb"
    with CallLog(path) as log:
        budget = Budget([{"scope": "tenant", "usd": 10}], log=log, clock=lambda: T0)
        gw = gateway(log, mock, budget)
        gw.chat("mock/m1", [{"role": "user", "content": f"hi {SURROGATE}"}], tenant="a")
        answer = gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant="b")
        assert answer.text == "ok"
        assert calls(log, "tenant_id, cost_usd, flags") == [
            ("a", pytest.approx(0.01), ["invalid_text"]),
            ("b", pytest.approx(0.01), None),
        ]


def test_oversize_bodies_are_cut_to_max_body_chars_and_flagged(tmp_path):
    long_prompt = "p" * 500
    mock = MockProvider("mock", models=("m1",)).enqueue(reply("a" * 300), reply("short"))
    with CallLog(tmp_path / "c.duckdb") as log:
        gw = gateway(log, mock, max_body_chars=100)
        gw.chat("mock/m1", [{"role": "user", "content": long_prompt}], metadata={"k": "m" * 200})
        gw.chat("mock/m1", [{"role": "user", "content": "hi"}])
        (first_flags, request, text, metadata), (second_flags, *_) = calls(
            log, "flags, request_json, response_text, metadata_json"
        )
    assert set(first_flags) == {"truncated_request", "truncated_response", "truncated_metadata"}
    assert second_flags is None
    assert text == "a" * 100
    # A cut JSON column holds the first max_body_chars characters of its text, as a string.
    assert isinstance(json.loads(request), str) and len(json.loads(request)) == 100
    assert json.loads(request).startswith('{"model":"m1"')
    assert len(json.loads(metadata)) == 100


def test_max_body_chars_defaults_agree_and_config_validates_it(tmp_path):
    from aigw_lab.config import GatewayConfig, parse_config
    from aigw_lab.errors import ConfigError

    assert GatewayConfig.max_body_chars == DEFAULT_MAX_BODY_CHARS
    providers = {"providers": {"sim": {"kind": "simulated"}}}
    assert parse_config({**providers, "log": {"max_body_chars": 50}}).max_body_chars == 50
    with pytest.raises(ConfigError, match="max_body_chars"):
        parse_config({**providers, "log": {"max_body_chars": 0}})
    with pytest.raises(ConfigError, match="max_bdy_chars"):
        parse_config({**providers, "log": {"max_bdy_chars": 50}})
    with pytest.raises(ConfigError, match="max_body_chars"):
        Gateway([], max_body_chars=-1)


def test_a_paid_call_whose_row_is_refused_still_counts_toward_its_budget_after_restart(
    tmp_path,
):
    migrations = refusing_migrations("response_text IS NULL OR response_text <> 'poison'")
    path = tmp_path / "c.duckdb"
    limit = [{"scope": "tenant", "id": "a", "usd": 0.05}]
    mock = MockProvider("mock", models=("m1",)).enqueue(reply("poison", output_tokens=40))
    with CallLog(path, migrations=migrations) as log:
        gw = gateway(log, mock, Budget(limit, log=log, clock=lambda: T0))
        with pytest.warns(CallLogWarning, match="calls_dead_letter"):
            gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant="a", max_tokens=10)
            log.flush()
        assert calls(log) == [] and log.health().rows_dead_lettered == 1

    # Restart: the $0.04 refused call is seeded from the dead letter, so a call that may
    # cost up to $0.02 more would exceed the $0.05 limit and is refused before sending.
    with CallLog(path) as log:
        budget = Budget(limit, log=log, clock=lambda: T0)
        gw = gateway(log, MockProvider("mock", models=("m1",)), budget)
        from aigw_lab.errors import BudgetExceededError

        with pytest.raises(BudgetExceededError, match=r"\$0.04 spent"):
            gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant="a", max_tokens=20)


def test_a_refused_row_never_reaches_the_next_call_of_another_tenant(tmp_path):
    migrations = refusing_migrations("response_text IS NULL OR response_text <> 'poison'")
    mock = MockProvider("mock", models=("m1",)).enqueue(reply("poison"), reply("ok"))
    with CallLog(tmp_path / "c.duckdb", migrations=migrations) as log:
        gw = gateway(log, mock, Budget([{"scope": "tenant", "usd": 10}], log=log))
        with pytest.warns(CallLogWarning):
            gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant="a")
            assert gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant="b").text == "ok"
        health = gw.log_health()
        assert calls(log, "tenant_id") == [("b",)]
    assert health is not None and health.rows_dead_lettered == 1
    assert health.last_error is not None and "ConstraintException" in health.last_error
    assert str(tmp_path) not in health.last_error and "call" not in health.last_error.lower()


def test_budget_seeding_never_raises_a_writer_failure_into_a_call(tmp_path, gate):
    mock = MockProvider("mock", models=("m1",))
    with CallLog(tmp_path / "c.duckdb", before_insert=gate) as log:
        gw = gateway(log, mock, Budget([{"scope": "tenant", "usd": 10}], log=log))
        gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant="a")
        gate.fail_with = OSError(28, "No space left on device")
        with pytest.warns(CallLogWarning, match="No space left"):
            # Opening tenant b's account reads the log while a's row cannot be written.
            assert gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant="b").text
        health = log.health()
        assert health.state == "retrying" and health.rows_pending >= 1
        assert "No space" not in (health.last_error or "x")  # no message text, just a kind
        with pytest.raises(StoreError, match="could not be written"):
            log.flush()  # the user's own explicit flush still says so
        gate.fail_with = None
        log.flush()
        assert calls(log, "tenant_id") == [("a",), ("b",)]
        assert log.health().state == "ok"


def test_a_closed_log_does_not_fail_the_call_and_the_row_is_kept_in_a_file(tmp_path):
    log = CallLog(tmp_path / "c.duckdb")
    gw = gateway(log, MockProvider("mock", models=("m1",)))
    log.close()
    with pytest.warns(CallLogWarning, match="could not be queued"):
        answer = gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant="a")
    assert answer.text == "ok"
    [spilled] = tmp_path.glob("calls.unwritten-*.jsonl")
    assert stat.S_IMODE(os.stat(spilled).st_mode) == 0o600
    assert json.loads(spilled.read_text(encoding="utf-8"))["call_id"] == answer.call_id
    assert log.health().rows_spilled == 1 and log.health().state == "closed"


ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@pytest.fixture(scope="module")
def one_log(tmp_path_factory):
    """One gateway and DuckDB file for every example (a log per example would dominate)."""
    answer = [""]
    provider = FunctionProvider(lambda request: answer[0], name="fn", models=("m1",))
    log = CallLog(tmp_path_factory.mktemp("any-text") / "c.duckdb")
    gw = Gateway([provider], log=log, prices={"fn/m1": PRICE})
    yield gw, log, answer
    gw.close()
    log.close()


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _fixed(text: str) -> str:
    return "".join("\ufffd" if _has_surrogate(c) else c for c in text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=ANY_TEXT, answer=ANY_TEXT, note=ANY_TEXT, tag=ANY_TEXT)
def test_any_text_in_prompt_answer_metadata_and_tags_gives_exactly_one_stored_row_per_call(
    one_log, prompt, answer, note, tag
):
    gw, log, answer_box = one_log
    answer_box[0] = answer
    response = gw.chat(
        "fn/m1",
        [{"role": "user", "content": prompt}],
        metadata={"note": note},
        tags={"tag": tag},
    )
    assert response.text == answer  # the caller gets the answer as it came
    rows = log.execute(
        "SELECT response_text, flags, request_json->'messages'->0->>'content', "
        "metadata_json->>'note', tags_json->>'tag' FROM calls WHERE trace_id = ?",
        [response.trace_id],
    )
    assert len(rows) == 1
    stored, flags, stored_prompt, stored_note, stored_tag = rows[0]
    assert (stored or "") == _fixed(answer)
    assert (stored_prompt, stored_note, stored_tag) == (_fixed(prompt), _fixed(note), _fixed(tag))
    assert ("invalid_text" in (flags or [])) == _has_surrogate(answer + prompt + note + tag)
    assert log.execute("SELECT count(*) FROM calls_dead_letter") == [(0,)]


def test_a_call_refused_before_sending_keeps_its_request_as_json_with_the_surrogate_replaced(
    tmp_path,
):
    # A call whose messages do not validate is logged from the raw input, JSON-encoded with
    # ensure_ascii: the surrogate arrives as the escape "\ud800", which DuckDB's JSON
    # refuses; the row used to be stored as one opaque JSON string instead of an object.
    from aigw_lab.errors import InvalidRequestError

    messages = [{"role": "user", "content": f"a{SURROGATE}"}, {"role": "bogus", "content": "x"}]
    with CallLog(tmp_path / "c.duckdb") as log:
        gw = gateway(log, MockProvider("mock", models=("m1",)))
        with pytest.raises(InvalidRequestError):
            gw.chat("mock/m1", messages)
        assert calls(
            log, "json_type(request_json), request_json->'messages'->0->>'content', flags"
        ) == [("OBJECT", "a\ufffd", ["invalid_text"])]


def test_streamed_and_abandoned_streams_with_surrogates_are_stored_flagged(tmp_path):
    provider = FunctionProvider(lambda request: f"one {SURROGATE} two three", name="fn")
    with CallLog(tmp_path / "c.duckdb") as log:
        gw = Gateway([provider], log=log, prices={"fn/m1": PRICE})
        whole = gw.stream("fn/m1", [{"role": "user", "content": "hi"}])
        assert "".join(whole) == f"one {SURROGATE} two three"
        abandoned = gw.stream("fn/m1", [{"role": "user", "content": f"q {SURROGATE}"}])
        next(iter(abandoned))
        abandoned.close()
        rows = calls(log, "status, response_text, flags")
    assert rows[0] == ("ok", "one \ufffd two three", ["invalid_text"])
    assert rows[1][0] == "cancelled" and rows[1][2] == ["invalid_text"]


async def test_async_calls_of_two_tenants_with_budget_seeding_are_isolated(tmp_path):
    mock = MockProvider("mock", models=("m1",)).enqueue(reply(f"a {SURROGATE}"), reply("b"))
    with CallLog(tmp_path / "c.duckdb") as log:
        budget = Budget([{"scope": "tenant", "usd": 10}], log=log, clock=lambda: T0)
        gw = gateway(log, mock, budget)
        await gw.achat("mock/m1", [{"role": "user", "content": SURROGATE}], tenant="a")
        answer = await gw.achat("mock/m1", [{"role": "user", "content": "hi"}], tenant="b")
        assert answer.text == "b"
        assert calls(log, "tenant_id, flags") == [("a", ["invalid_text"]), ("b", None)]


@pytest.mark.parametrize("durability", ["none", "os"])
def test_a_full_queue_while_inserts_fail_never_fails_a_gateway_call(tmp_path, gate, durability):
    log = CallLog(
        tmp_path / "c.duckdb",
        batch_size=1,
        max_queue=2,
        before_insert=gate,
        durability=durability,
    )
    gw = gateway(log, MockProvider("mock", models=("m1",)))
    gate.fail_with = OSError(28, "No space left on device")
    with pytest.warns(CallLogWarning):
        answers = [gw.chat("mock/m1", [{"role": "user", "content": f"q{i}"}]) for i in range(5)]
    assert all(a.text == "ok" for a in answers)  # the calls went through
    health = log.health()
    assert health.state == "retrying" and health.rows_pending == 2
    assert health.rows_spilled == 3
    [spilled] = tmp_path.glob("calls.unwritten-*.jsonl")  # one file, appended to
    saved = [json.loads(line) for line in spilled.read_text(encoding="utf-8").splitlines()]
    assert [row["call_id"] for row in saved] == [a.call_id for a in answers[2:]]
    gate.fail_with = None
    log.close()
    # Without a spool the set-aside rows are only in the file; with one, the next open
    # writes them too (the file is then a copy).
    kept = answers[:2] if durability == "none" else answers
    with CallLog(tmp_path / "c.duckdb") as reopened:
        ids = reopened.execute("SELECT call_id FROM calls ORDER BY call_id")
        assert ids == sorted((a.call_id,) for a in kept)


def test_a_tenant_id_with_a_surrogate_is_seeded_from_its_stored_rows_after_restart(tmp_path):
    from aigw_lab.errors import BudgetExceededError

    path, tenant = tmp_path / "c.duckdb", f"t{SURROGATE}"
    limit = [{"scope": "tenant", "usd": 0.05}]
    mock = MockProvider("mock", models=("m1",)).enqueue(reply("ok", output_tokens=40))
    with CallLog(path) as log:
        gw = gateway(log, mock, Budget(limit, log=log, clock=lambda: T0))
        gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant=tenant, max_tokens=10)
    with CallLog(path) as log:
        budget = Budget(limit, log=log, clock=lambda: T0)
        gw = gateway(log, MockProvider("mock", models=("m1",)), budget)
        with pytest.raises(BudgetExceededError, match=r"\$0.04 spent"):
            gw.chat("mock/m1", [{"role": "user", "content": "hi"}], tenant=tenant, max_tokens=20)


def test_batch_results_are_made_storable_like_every_other_row():
    from aigw_lab import ProviderSpec
    from aigw_lab.batch import submit_batch
    from aigw_lab.testing.fake_batches import FakeBatches

    def responder(body):
        return 200, {"text": "x" * 50 + SURROGATE, "input_tokens": 1, "output_tokens": 1}

    with FakeBatches(responder=responder) as fake:
        spec = ProviderSpec(
            "oa", "openai", base_url=fake.url + "/v1", api_key_env="K", prices={"gpt-x": PRICE}
        )
        gw = Gateway([spec], env={"K": "k"}, log=":memory:", max_body_chars=20)
        clock = [0.0]
        job = submit_batch(
            gw,
            "oa/gpt-x",
            ["hi"],
            sleep=lambda s: clock.__setitem__(0, clock[0] + s),
            clock=lambda: clock[0],
        )
        job.wait(poll_interval=1)
        [answer] = job.results()
        assert answer.text.endswith(SURROGATE)  # the caller's answer is untouched
        assert gw.log is not None
        [(text, flags)] = gw.log.execute("SELECT response_text, flags FROM calls")
        gw.close()
    assert text == "x" * 20 and {"truncated_response", "invalid_text"} <= set(flags)


def test_a_call_log_with_a_cut_request_can_still_be_replayed(tmp_path):
    # A cut request_json is a JSON string, not an object: replay used to crash on it.
    from aigw_lab.sim.replay import ReplayProvider

    mock = MockProvider("mock", models=("m1",)).enqueue(reply("long"), reply("short"))
    with CallLog(tmp_path / "c.duckdb") as log:
        gw = gateway(log, mock, max_body_chars=60)
        gw.chat("mock/m1", [{"role": "user", "content": "q" * 100}])
        gw.chat("mock/m1", [{"role": "user", "content": "hi"}])
        assert calls(log, "flags") == [(["truncated_request"],), (None,)]
        replay = ReplayProvider.from_call_log(log)
    again = Gateway([replay], log=None)
    assert again.chat("replay/mock/m1", [{"role": "user", "content": "hi"}]).text == "short"


def test_a_cut_tool_call_is_not_replayed_as_garbage(tmp_path):
    from aigw_lab.sim.replay import ReplayProvider

    calls_made = ({"id": "t1", "name": "f", "arguments": "a" * 200},)
    mock = MockProvider("mock", models=("m1",)).enqueue(reply("", tool_calls=calls_made))
    with CallLog(tmp_path / "c.duckdb") as log:
        gateway(log, mock, max_body_chars=100).chat("mock/m1", [{"role": "user", "content": "hi"}])
        assert calls(log, "flags") == [(["truncated_response"],)]
        replay = ReplayProvider.from_call_log(log)
    assert replay.models == ()  # nothing replayable: the only row's tool calls were cut
