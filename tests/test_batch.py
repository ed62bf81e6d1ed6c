"""Batch jobs against the loopback fake of the OpenAI and Anthropic batch APIs: submission
bodies, polling with a fake clock, cancel, resume, results in input order, errors, the log."""

import json

import httpx
import pytest

from aigw_lab import ChatRequest, Gateway, Price, ProviderSpec
from aigw_lab.batch import BATCH_DISCOUNT, BatchJob, submit_batch
from aigw_lab.errors import (
    AigwError,
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
)
from aigw_lab.pricing import cost_of
from aigw_lab.testing import MemorySink
from aigw_lab.testing.fake_batches import FakeBatches, openai_error
from aigw_lab.types import ChatResponse, Usage

PRICE = Price(input_per_mtok=3.0, output_per_mtok=15.0)
PROMPTS = ["hello batch world", "error: max_tokens is too large", "third prompt here"]


class FakeTime:
    """An injected clock and sleep: sleeping advances the clock, nothing really waits."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake():
    with FakeBatches(api_key="sk-right") as server:
        yield server


def make_gateway(fake, *, key="sk-right", log=":memory:", sinks=(), **spec_kwargs):
    specs = [
        ProviderSpec("oa", "openai", base_url=fake.url + "/v1", api_key_env="OA_KEY",
                     prices={"gpt-x": PRICE}),
        ProviderSpec("an", "anthropic", base_url=fake.url, api_key_env="AN_KEY",
                     prices={"claude-x": PRICE}),
    ]  # fmt: skip
    return Gateway(specs, env={"OA_KEY": key, "AN_KEY": key}, log=log, sinks=sinks)


def log_rows(gw):
    gw.log.flush()
    return gw.query(
        "SELECT call_id, request_model, status, error_type, cost_usd, latency_ms, ttft_ms, "
        "tags_json, request_json, response_text, input_tokens, output_tokens FROM calls"
    ).to_dict("records")


@pytest.mark.parametrize(("address", "model"), [("oa/gpt-x", "gpt-x"), ("an/claude-x", "claude-x")])
def test_round_trip_mixed_results_in_input_order_at_half_price(fake, address, model):
    gw = make_gateway(fake)
    requests = [*PROMPTS[:2], ChatRequest.create("ignored", PROMPTS[2], temperature=0.2)]
    time = FakeTime()
    job = submit_batch(gw, address, requests, sleep=time.sleep, clock=time.clock)

    assert job.wait(poll_interval=60) in ("completed", "ended")
    results = job.results()

    first, second, third = results
    assert isinstance(first, ChatResponse) and first.text == "echo: hello batch world"
    assert isinstance(third, ChatResponse) and third.text == "echo: third prompt here"
    assert isinstance(second, InvalidRequestError)
    assert "max_tokens is too large" in str(second) and second.status == 400
    for response, prompt in ((first, PROMPTS[0]), (third, PROMPTS[2])):
        words = len(prompt.split())
        assert response.usage == Usage(input_tokens=words, output_tokens=words + 1)
        assert response.cost_usd == pytest.approx(cost_of(PRICE, response.usage) * 0.5)
        assert response.provider == address.split("/")[0] and response.model == model

    rows = log_rows(gw)
    assert len(rows) == 3
    assert {r["status"] for r in rows} == {"ok", "error"}
    by_text = {json.loads(r["request_json"])["messages"][0]["content"]: r for r in rows}
    assert by_text[PROMPTS[1]]["error_type"] == "invalid_request"
    assert by_text[PROMPTS[2]]["cost_usd"] == pytest.approx(third.cost_usd)
    assert json.loads(by_text[PROMPTS[2]]["request_json"])["temperature"] == 0.2
    for row in rows:
        assert json.loads(row["tags_json"]) == {"aigw_batch": job.id}
        assert row["request_model"] == model
        assert row["latency_ms"] is None or row["latency_ms"] != row["latency_ms"]  # NULL
    # Asking again returns the same answers and logs nothing more.
    assert job.results() is results
    assert len(log_rows(gw)) == 3


def test_openai_wire_format_upload_then_batch(fake):
    gw = make_gateway(fake)
    job = submit_batch(gw, "oa/gpt-x", PROMPTS[:2], metadata={"run": "r1"})

    upload, create = fake.requests
    assert (upload.method, upload.path) == ("POST", "/v1/files")
    assert upload.headers["authorization"] == "Bearer sk-right"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert b'name="purpose"\r\n\r\nbatch' in upload.body
    file_id = create.json["input_file_id"]
    lines = [json.loads(x) for x in fake.files[file_id].decode().splitlines()]
    assert [x["custom_id"] for x in lines] == ["req-0", "req-1"]
    assert {(x["method"], x["url"]) for x in lines} == {("POST", "/v1/chat/completions")}
    assert lines[0]["body"] == {"model": "gpt-x",
                                "messages": [{"role": "user", "content": PROMPTS[0]}]}  # fmt: skip
    assert create.path == "/v1/batches"
    assert create.json == {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                           "completion_window": "24h", "metadata": {"run": "r1"}}  # fmt: skip
    assert job.id.startswith("batch_")


def test_anthropic_wire_format_one_request_with_params(fake):
    gw = make_gateway(fake)
    job = submit_batch(gw, "an/claude-x", [ChatRequest.create("x", "hi", system="be brief")])

    (create,) = fake.requests
    assert (create.method, create.path) == ("POST", "/v1/messages/batches")
    assert create.headers["x-api-key"] == "sk-right"
    assert create.headers["anthropic-version"] == "2023-06-01"
    assert create.json == {"requests": [{"custom_id": "req-0", "params": {
        "model": "claude-x", "max_tokens": 1024, "system": "be brief",
        "messages": [{"role": "user", "content": "hi"}]}}]}  # fmt: skip
    assert job.id.startswith("msgbatch_")


def test_wait_polls_on_the_injected_clock_and_times_out(fake):
    gw = make_gateway(fake)
    fake.openai_steps = ("validating", "in_progress", "in_progress", "in_progress", "completed")
    time = FakeTime()
    job = submit_batch(gw, "oa/gpt-x", PROMPTS[:1], sleep=time.sleep, clock=time.clock)

    with pytest.raises(ProviderTimeoutError, match="still in_progress"):
        job.wait(poll_interval=10, timeout=25)
    assert time.sleeps == [10, 10]  # three polls; a third sleep would pass the timeout
    polls = [r for r in fake.requests if r.method == "GET"]
    assert len(polls) == 3

    assert job.wait(poll_interval=10) == "completed"  # the fourth poll sees it end
    assert time.sleeps == [10, 10]
    assert job.duration_s == 600


def test_results_before_the_job_ends_are_refused(fake):
    gw = make_gateway(fake)
    job = submit_batch(gw, "an/claude-x", PROMPTS[:1])
    fake.anthropic_steps = ("in_progress", "in_progress", "ended")

    with pytest.raises(AigwError, match="not ready"):
        job.results()
    assert len(log_rows(gw)) == 0


@pytest.mark.parametrize(
    ("address", "cancelling", "final"),
    [("oa/gpt-x", "cancelling", "cancelled"), ("an/claude-x", "cancelling", "ended")],
)
def test_cancel_then_unrun_requests_are_errors(fake, address, cancelling, final):
    gw = make_gateway(fake)
    job = submit_batch(gw, address, PROMPTS[:2])

    assert job.cancel() == cancelling
    assert job.status() == final
    results = job.results()
    assert all(type(r) is ProviderError and r.retryable for r in results)
    assert [r["status"] for r in log_rows(gw)] == ["error", "error"]


def test_resume_from_a_saved_dict_does_not_resubmit(fake):
    gw = make_gateway(fake)
    request = ChatRequest.create("x", PROMPTS[0], temperature=0.3, max_tokens=5,
                                 tags={"team": "ds"}, metadata={"item": 7})  # fmt: skip
    job = submit_batch(gw, "an/claude-x", [request, PROMPTS[2]])
    saved = json.loads(json.dumps(job.to_dict()))  # as a notebook would store it
    submitted = len(fake.requests)

    resumed = BatchJob.resume(gw, saved)
    assert resumed.id == job.id and resumed.requests == job.requests
    assert resumed.wait(poll_interval=0) == "ended"
    assert [r.text for r in resumed.results()] == ["echo: " + PROMPTS[0], "echo: " + PROMPTS[2]]
    assert not any(r.method == "POST" and r.path.endswith("/batches") for r in
                   fake.requests[submitted:])  # fmt: skip
    tags = {r["tags_json"] for r in log_rows(gw)}
    assert json.dumps({"team": "ds", "aigw_batch": job.id}, separators=(",", ":")) in tags

    # A job saved after its results were logged is not logged twice.
    again = BatchJob.resume(gw, json.loads(json.dumps(resumed.to_dict())))
    assert len(again.results()) == 2
    assert len(log_rows(gw)) == 2


def test_resume_rejects_something_else(fake):
    with pytest.raises(ConfigError, match="not a saved batch job"):
        BatchJob.resume(make_gateway(fake), {"id": "batch_1"})


@pytest.mark.parametrize("address", ["oa/gpt-x", "an/claude-x"])
def test_wrong_key_is_an_authentication_error(fake, address):
    gw = make_gateway(fake, key="sk-wrong")
    with pytest.raises(AuthenticationError) as caught:
        submit_batch(gw, address, PROMPTS[:1])
    assert caught.value.status == 401
    assert "sk-wrong" not in str(caught.value) + (caught.value.body or "")


def test_invalid_jsonl_400_is_an_invalid_request(fake):
    gw = make_gateway(fake)
    body = openai_error(400, "Invalid file format for Batch API. Line 1 is not valid.",
                        "invalid_jsonl")  # fmt: skip
    fake.fail_next(400, body)
    with pytest.raises(InvalidRequestError, match="Invalid file format"):
        submit_batch(gw, "oa/gpt-x", PROMPTS[:1])


def test_fake_rejects_invalid_jsonl_as_openai_does(fake):
    files = {"file": ("in.jsonl", b'{"custom_id": "a"}\nnot json\n', "application/jsonl")}
    response = httpx.post(fake.url + "/v1/files", data={"purpose": "batch"}, files=files,
                          headers={"authorization": "Bearer sk-right"})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_jsonl"


@pytest.mark.parametrize("address", ["oa/gpt-x", "an/claude-x"])
def test_rate_limited_poll_is_a_rate_limited_error(fake, address):
    gw = make_gateway(fake)
    job = submit_batch(gw, address, PROMPTS[:1])
    fake.fail_next(429)
    with pytest.raises(RateLimitedError) as caught:
        job.status()
    assert caught.value.retryable and caught.value.status == 429
    assert job.status() in ("in_progress", "finalizing", "ended", "completed")


def test_kinds_without_a_batch_api_are_refused_by_name(fake):
    specs = [
        ProviderSpec("local", "openai-compatible", base_url=fake.url + "/v1"),
        ProviderSpec("viagw", "openai", api_key_env="K", cf_gateway="g", account_id="a"),
    ]
    gw = Gateway(specs, env={"K": "x"}, log=None)
    with pytest.raises(ConfigError, match="openai-compatible") as caught:
        submit_batch(gw, "local/llama", PROMPTS[:1])
    assert "openai or anthropic" in str(caught.value)
    with pytest.raises(ConfigError, match="AI Gateway"):
        submit_batch(gw, "viagw/gpt-x", PROMPTS[:1])
    with pytest.raises(ConfigError, match="provider/model"):
        submit_batch(gw, "nowhere/gpt-x", PROMPTS[:1])
    assert fake.requests == []


def test_simulated_fleet_batches_only_in_openai_and_anthropic_formats():
    # The in-process fleet serves both batch APIs (tests/simulated/test_fleet_batches.py);
    # its Workers AI format has none, as the real one has none.
    with Gateway.simulated_fleet(log=None) as gw, pytest.raises(ConfigError, match="simulated"):
        submit_batch(gw, "sim-workers/sim-llamaish-8b", PROMPTS[:1])


def test_discount_is_overridable(fake):
    gw = make_gateway(fake)
    job = submit_batch(gw, "oa/gpt-x", PROMPTS[:1], discount=1.0)
    job.wait(poll_interval=0)
    (response,) = job.results()
    assert response.cost_usd == pytest.approx(cost_of(PRICE, response.usage))
    assert BATCH_DISCOUNT == 0.5


def test_stale_saved_dict_does_not_log_twice(fake):
    gw = make_gateway(fake)
    job = submit_batch(gw, "oa/gpt-x", PROMPTS[:2])
    saved_before_results = json.loads(json.dumps(job.to_dict()))
    job.wait(poll_interval=0)
    job.results()

    resumed = BatchJob.resume(gw, saved_before_results)
    assert [getattr(r, "text", None) for r in resumed.results()] == ["echo: " + PROMPTS[0], None]
    assert len(log_rows(gw)) == 2


def test_failed_batch_says_why_for_every_request(fake):
    gw = make_gateway(fake)
    fake.openai_steps = ("validating", "failed")
    job = submit_batch(gw, "oa/gpt-x", PROMPTS[:2])

    assert job.wait(poll_interval=0) == "failed"
    results = job.results()
    assert all(isinstance(r, ProviderError) for r in results)
    assert "not available for batches" in str(results[0]) and "line 1" in str(results[0])
    assert [r["error_type"] for r in log_rows(gw)] == ["provider_error", "provider_error"]


def test_anthropic_results_stay_on_the_configured_host(fake):
    # results_url on another host (the real API behind a proxy): the key is not sent there;
    # the results come from the documented path on the configured base URL instead.
    fake.results_base = "https://api.anthropic.invalid"
    gw = make_gateway(fake)
    job = submit_batch(gw, "an/claude-x", PROMPTS[:1])
    job.wait(poll_interval=0)
    assert job.info["results_url"].startswith("https://api.anthropic.invalid/")
    assert [r.text for r in job.results()] == ["echo: " + PROMPTS[0]]
    assert fake.requests[-1].path == f"/v1/messages/batches/{job.id}/results"


def test_anthropic_refuses_batch_metadata_and_gateway_tags_are_logged(fake):
    specs = [ProviderSpec("an", "anthropic", base_url=fake.url, api_key_env="AN_KEY",
                          prices={"claude-x": PRICE})]  # fmt: skip
    gw = Gateway(specs, env={"AN_KEY": "sk-right"}, tags={"project": "p1"}, experiment_id="e1")
    with pytest.raises(ConfigError, match="no metadata"):
        submit_batch(gw, "an/claude-x", PROMPTS[:1], metadata={"run": "r1"})
    assert fake.requests == []

    job = submit_batch(gw, "an/claude-x", PROMPTS[:1])
    job.wait(poll_interval=0)
    job.results()
    gw.log.flush()
    (row,) = gw.query("SELECT tags_json, experiment_id FROM calls").to_dict("records")
    assert json.loads(row["tags_json"]) == {"project": "p1", "aigw_batch": job.id}
    assert row["experiment_id"] == "e1"


@pytest.mark.parametrize("log", [":memory:", None], ids=["with-log", "sinks-only"])
def test_a_batch_jobs_rows_reach_every_sink_like_the_log(fake, log):
    # Batch results are logged in one go, not through an attempt: they must still reach the
    # extra sinks a gateway was given, with or without a call log.
    sink = MemorySink()
    gw = make_gateway(fake, log=log, sinks=[sink])
    time = FakeTime()
    job = submit_batch(gw, "oa/gpt-x", PROMPTS, sleep=time.sleep, clock=time.clock)
    assert job.wait(poll_interval=60) in ("completed", "ended")
    job.results()
    rows = sink.rows
    assert len(rows) == len(PROMPTS)
    assert all(json.loads(r.tags_json) == {"aigw_batch": job.id} for r in rows)
    assert sorted(r.status for r in rows) == ["error", "ok", "ok"]
    if log is not None:
        assert sorted(r["call_id"] for r in log_rows(gw)) == sorted(r.call_id for r in rows)
    gw.close()
