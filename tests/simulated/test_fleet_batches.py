"""The in-process fleet's batch APIs (`aigw_lab.sim.batches`): `submit_batch` on a simulated
provider gets the same answers as chat calls, at the batch price, logged as simulated rows."""

import json

import pytest

from aigw_lab import Gateway
from aigw_lab.batch import BATCH_DISCOUNT, submit_batch
from aigw_lab.errors import AigwError, ConfigError
from aigw_lab.sim.fleet import fleet_specs
from aigw_lab.types import ChatResponse

PROMPTS = ["What is 2 + 2?", "Name a prime number.", "Summarise: tides follow the moon."]


class FakeTime:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("address", ["sim-openai/sim-small", "sim-anthropic/sim-haikuish"])
def test_batch_answers_equal_chat_answers_at_the_batch_price(address):
    gw = Gateway.simulated_fleet(seed=3, time_scale=0.0, log=":memory:")
    time = FakeTime()
    job = submit_batch(gw, address, PROMPTS, sleep=time.sleep, clock=time.clock)
    # Created, not yet run: the first poll runs it.
    assert job.info.get("status", job.info.get("processing_status")) in (
        "validating",
        "in_progress",
    )
    assert job.wait(poll_interval=10) in ("completed", "ended")
    batched = job.results()
    live = [gw.chat(address, prompt) for prompt in PROMPTS]
    for b, c in zip(batched, live, strict=True):
        assert isinstance(b, ChatResponse)
        assert b.text == c.text and b.usage == c.usage
        assert b.cost_usd == pytest.approx(c.cost_usd * BATCH_DISCOUNT)
        assert b.simulated and c.simulated
    gw.log.flush()
    rows = gw.query(
        "SELECT simulated, tags_json, latency_ms FROM calls WHERE tags_json IS NOT NULL"
    ).to_dict("records")
    assert len(rows) == len(PROMPTS)
    assert all(r["simulated"] for r in rows)
    assert {json.loads(r["tags_json"])["aigw_batch"] for r in rows} == {job.id}


def test_cancelled_openai_batch_runs_nothing():
    gw = Gateway.simulated_fleet(seed=0, time_scale=0.0, log=None)
    job = submit_batch(gw, "sim-openai/sim-nano", PROMPTS[:2])
    assert job.cancel() == "cancelled"
    results = job.results()
    assert all(not isinstance(r, ChatResponse) for r in results)


def test_an_unknown_model_is_an_error_per_request():
    gw = Gateway.simulated_fleet(seed=0, time_scale=0.0, log=None)
    job = submit_batch(gw, "sim-openai/not-in-the-fleet", PROMPTS[:2])
    job.wait(poll_interval=0)
    results = job.results()
    assert len(results) == 2
    assert all(isinstance(r, AigwError) and "not-in-the-fleet" in str(r) for r in results)


def test_workers_format_and_simulator_server_have_no_batch_api():
    gw = Gateway.simulated_fleet(seed=0, time_scale=0.0, log=None)
    with pytest.raises(ConfigError, match="no batch API"):
        submit_batch(gw, "sim-workers/sim-llamaish-8b", PROMPTS[:1])
    remote = Gateway(fleet_specs(base_url="http://127.0.0.1:9"), log=None)
    with pytest.raises(ConfigError, match="no batch API"):
        submit_batch(remote, "sim-openai/sim-nano", PROMPTS[:1])


@pytest.mark.parametrize("address", ["sim-openai/sim-small", "sim-anthropic/sim-haikuish"])
@pytest.mark.parametrize("fault", ["server_error", "timeout", "malformed"])
def test_a_faulty_request_is_an_error_in_its_place(address, fault):
    gw = Gateway.simulated_fleet(seed=0, time_scale=0.0, faults={fault: 1.0}, log=":memory:")
    job = submit_batch(gw, address, PROMPTS[:2])
    job.wait(poll_interval=0)
    results = job.results()
    assert len(results) == 2 and all(isinstance(r, AigwError) for r in results)
    gw.log.flush()
    statuses = gw.query("SELECT status FROM calls")["status"].tolist()
    assert statuses == ["error", "error"]
