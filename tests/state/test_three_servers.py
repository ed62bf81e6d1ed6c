"""Issue 14's headline: three ``aigw-lab serve`` processes sharing one real redis-server, a
loopback upstream that records every request (what the provider would bill), and the real
``openai`` SDK as the client.

- a 10-per-minute limit admits exactly 10 across the three (the leading proxy's most
  reported bug: rpm=10 over 3 replicas admitted about 30);
- a budget overshoots by no more than the estimates of the calls in flight (here the
  estimates are exact, so not at all: exactly 3 calls of $0.10 fit a $0.35 budget);
- an answer cached by one process is a hit in another;
- a breaker opened by one process is open in all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from aigw_lab.testing.fake_upstream import FakeUpstream, Reply
from tests._sdks import openai

pytestmark = [
    pytest.mark.slow,  # three server start-ups: about 15-30 s on a loaded box
    pytest.mark.xdist_group("three_servers"),  # one worker starts the three servers once
]

CONFIG = """
[server]
trust_client_user = true

[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "AIGW_TEST_UPSTREAM_KEY"
models = ["limited", "spend", "cached", "flaky", "backup"]

[providers.up.prices]
limited = {{ input_per_mtok = 0.0, output_per_mtok = 1000.0 }}
spend = {{ input_per_mtok = 0.0, output_per_mtok = 1000.0 }}
cached = {{ input_per_mtok = 0.0, output_per_mtok = 1000.0 }}
flaky = {{ input_per_mtok = 0.0, output_per_mtok = 1000.0 }}
backup = {{ input_per_mtok = 0.0, output_per_mtok = 1000.0 }}

[state]
backend = "redis"
url_env = "AIGW_TEST_REDIS_URL"
prefix = "three:"

[rate_limits]
mode = "reject"
[[rate_limits.rule]]
match = {{ model = ["up/limited"] }}
requests_per_minute = 10

[budgets]
seed_from_log = false
tokenizer = "estimate"
[[budgets.limit]]
scope = "user"
id = "spender"
usd = 0.35
period = "day"

[cache]
ttl = 600

[gateway.retry]
max_attempts = 1

[health]
failure_threshold = 1
cooldown = 600

[fallbacks]
"up/flaky" = ["up/backup"]
"""


class Upstream(FakeUpstream):
    """Answers by model: ``flaky`` fails (HTTP 500), ``spend`` takes 0.5 s (so calls are in
    flight together), every answer reports 100 output tokens ($0.10 at the test's price)."""

    def __init__(self) -> None:
        self._seen = threading.local()
        super().__init__()
        self.requests = _Noting(self._seen)

    def _next_reply(self) -> Reply:
        model = (self._seen.request.json or {}).get("model")
        if model == "flaky":
            body = {"error": {"message": "upstream broke", "type": "server_error"}}
            return Reply(status=500, headers={"content-type": "application/json"},
                         chunks=(json.dumps(body).encode(),))  # fmt: skip
        completion = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"answer from {model}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 100, "total_tokens": 105},
        }  # fmt: skip
        return Reply(
            headers={"content-type": "application/json"},
            chunks=(json.dumps(completion).encode(),),
            delay=0.5 if model == "spend" else 0.0,
        )

    def count(self, model: str) -> int:
        return sum(1 for r in list(self.requests) if (r.json or {}).get("model") == model)


class _Noting(list):
    """The fake's request list; notes each request for the thread that appended it."""

    def __init__(self, seen: threading.local) -> None:
        super().__init__()
        self._seen = seen

    def append(self, request) -> None:
        self._seen.request = request
        super().append(request)


def start_server(tmp_path, index: int, upstream_url: str, redis_url: str):
    folder = tmp_path / f"server{index}"
    folder.mkdir()
    config = folder / "gateway.toml"
    config.write_text(CONFIG.format(url=upstream_url))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "AIGW_TEST_UPSTREAM_KEY": "sk-test",
        "AIGW_TEST_REDIS_URL": redis_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(config)]
        + ["--db", str(folder / "calls.duckdb"), "--no-auth", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_url(process) -> str:
    deadline = time.monotonic() + 90
    for line in process.stdout:  # the banner names the URL once the port is bound
        if "listening on" in line:
            return line.split("listening on", 1)[1].strip()
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"the server did not start: {process.stderr.read()}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, redis_server):
    tmp_path = tmp_path_factory.mktemp("three")
    upstream = Upstream()
    processes = [start_server(tmp_path, i, upstream.url, redis_server.url) for i in range(3)]
    try:
        urls = [wait_for_url(p) for p in processes]  # started together, awaited in turn
        clients = [
            openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
            for url in urls
        ]
        yield upstream, clients
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        upstream.close()


def ask(client, model: str, prompt: str, **extra):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], **extra
    )


def test_a_10_per_minute_limit_admits_exactly_10_across_three_servers(fleet):
    upstream, clients = fleet
    outcomes: list[str] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        try:
            ask(clients[i % 3], "up/limited", f"limited call {i}")
            result = "ok"
        except openai.RateLimitError:
            result = "429"
        with lock:
            outcomes.append(result)

    # All 15 at once, so they land well inside the 6 s the bucket takes to refill one call.
    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(i,)) for i in range(15)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    # A token bucket of 10 per minute rightly admits one more call for every 6 s the burst
    # took (seen on a box at load 20, where 15 calls took over 6 s): the exact count is 10
    # plus those refills, never the 15 that three in-memory buckets admit (the bug).
    refills = int(elapsed // 6)
    ok = Counter(outcomes)["ok"]
    assert 10 <= ok <= 10 + refills, (Counter(outcomes), elapsed)
    assert ok < 15 or refills >= 5
    assert Counter(outcomes)["429"] == 15 - ok
    assert upstream.count("limited") == ok


def test_a_budget_overshoots_by_no_more_than_the_estimates_in_flight(fleet):
    upstream, clients = fleet
    outcomes: list[str] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        try:
            ask(clients[i % 3], "up/spend", f"spend {i}", max_tokens=100, user="spender")
            result = "ok"
        except openai.APIStatusError as exc:
            result = str(exc.status_code)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each call is estimated at exactly its cost ($0.10): 3 fit in $0.35, whichever
    # process they reached and however they overlapped; each process alone would admit 3.
    assert Counter(outcomes) == {"ok": 3, "429": 9}  # OpenAI's insufficient_quota
    assert upstream.count("spend") == 3


def test_an_answer_cached_by_one_server_is_a_hit_in_the_others(fleet):
    upstream, clients = fleet
    first = ask(clients[0], "up/cached", "the same question")
    others = [ask(client, "up/cached", "the same question") for client in clients[1:]]
    assert first.headers["x-aigw-cache"] == "miss"
    assert [o.headers["x-aigw-cache"] for o in others] == ["hit", "hit"]
    assert upstream.count("cached") == 1
    assert {o.parse().choices[0].message.content for o in others} == {"answer from cached"}


def test_a_breaker_opened_by_one_server_is_open_in_all(fleet):
    upstream, clients = fleet
    answers = [ask(client, "up/flaky", f"flaky {i}") for i, client in enumerate(clients)]
    # The first server met the failure and fell back; the others skipped the open target.
    assert [a.headers["x-aigw-model"] for a in answers] == ["up/backup"] * 3
    assert upstream.count("flaky") == 1 and upstream.count("backup") == 3
