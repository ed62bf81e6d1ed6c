"""``kill -9`` of ``aigw-lab serve`` under load loses no paid call.

The test process runs a loopback upstream (`FakeUpstream`, which records every request it
receives: the provider's own record of what it was asked, so what it would bill) and 16
client threads; ``aigw-lab serve`` runs as a subprocess between them. At a random moment the
server gets SIGKILL. Reopening its call log must then show a row for every request the
upstream received: answered ones as they ended, those in flight at the kill as
``interrupted``. Before the spool, the rows of up to a flush window were simply gone.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from aigw_lab.store import CallLog
from aigw_lab.testing.fake_upstream import FakeUpstream, Reply

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

CLIENTS = 16
REPETITIONS = 5
COMPLETION = {
    "id": "chatcmpl-kill",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
STREAM = (
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"o"}}]}\n\n'
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"k"}}]}\n\n'
    b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)
# trust_client_user: each request names itself in the body's `user`, which the log keeps as
# the call's user only when the config says so.
CONFIG = """
[server]
trust_client_user = true

[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "AIGW_TEST_UPSTREAM_KEY"
models = ["m"]

[prices."up/m"]
input_per_mtok = 1.0
output_per_mtok = 2.0
"""


def start_server(tmp_path, upstream_url: str, db) -> tuple[subprocess.Popen[str], str]:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(url=upstream_url))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "AIGW_TEST_UPSTREAM_KEY": "sk-test",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(config)]
        + ["--db", str(db), "--no-auth", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    for line in process.stdout:  # the banner names the URL once the port is bound
        if "listening on" in line:
            return process, line.split("listening on", 1)[1].strip()
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"the server did not start: {process.stderr.read()}")  # type: ignore[union-attr]


class Upstream(FakeUpstream):
    """A `FakeUpstream` that answers every request, as a stream when it asked for one, after
    a random 0-30 ms (so calls are in flight at any moment)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._seen = threading.local()
        super().__init__()
        self.requests = _Noting(self._seen)

    def _next_reply(self) -> Reply:
        request = self._seen.request  # the request this handler thread just recorded
        with self._lock:
            delay = self._rng.uniform(0.0, 0.03)
        if request.json and request.json.get("stream"):
            return Reply(headers={"content-type": "text/event-stream"}, chunks=(STREAM,),
                         chunked=True, delay=delay)  # fmt: skip
        body = json.dumps(COMPLETION).encode()
        return Reply(headers={"content-type": "application/json"}, chunks=(body,), delay=delay)


class _Noting(list):
    """The fake's request list; notes each request for the thread that appended it."""

    def __init__(self, seen: threading.local) -> None:
        super().__init__()
        self._seen = seen

    def append(self, request) -> None:
        self._seen.request = request
        super().append(request)


def load(url: str, tag: str, stream: bool, stop: threading.Event) -> None:
    """One client thread: calls (streamed or not) until the server is gone (or ``stop``)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        n = 0
        while not stop.is_set():
            marker = f"{tag}-{n}"
            n += 1
            body = {"model": "up/m", "messages": [{"role": "user", "content": marker}]}
            try:
                if stream:
                    with client.stream(
                        "POST",
                        "/v1/chat/completions",
                        json={**body, "user": marker, "stream": True},
                    ) as response:
                        response.read()
                else:
                    client.post("/v1/chat/completions", json={**body, "user": marker})
            except httpx.HTTPError:
                return  # the server was killed


def run_once(tmp_path, repetition: int) -> dict[str, int]:
    rng = random.Random(repetition)
    db = tmp_path / f"serve-{repetition}.duckdb"
    with Upstream(repetition) as upstream:
        process, url = start_server(tmp_path, upstream.url, db)
        stop = threading.Event()
        threads = [  # half the clients stream
            threading.Thread(target=load, args=(url, f"r{repetition}-t{i}", i % 2 == 1, stop))
            for i in range(CLIENTS)
        ]
        try:
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while len(upstream.requests) < 100 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(upstream.requests) >= 100, "the load did not reach the upstream"
            time.sleep(rng.uniform(0.0, 0.6))  # a random moment under load
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        finally:
            stop.set()
            if process.poll() is None:
                process.kill()
            for thread in threads:
                thread.join(30)
        assert process.returncode == -signal.SIGKILL
    # The upstream is closed: every request that reached it is in its record. One cut off
    # mid-body by the kill was never a call the provider could answer (or bill).
    received = collections.Counter(
        r.json["messages"][0]["content"] for r in upstream.requests if r.json is not None
    )

    with CallLog(db) as log:
        rows = log.query("SELECT user_id, status, stream FROM calls WHERE attempt >= 1")
    logged = collections.Counter(rows.user_id)
    missing = {m: n - logged[m] for m, n in received.items() if logged[m] < n}
    assert not missing, (
        f"repetition {repetition}: {sum(missing.values())} of {received.total()} paid calls "
        f"have no row in the log, e.g. {sorted(missing)[:5]}"
    )
    # Nothing is invented: every row that claims an outcome is a request the upstream
    # received. (An `interrupted` row may not be: its start is written before the request
    # leaves, so the kill can fall in between; its outcome is unknown either way.)
    answered = collections.Counter(rows.user_id[rows.status != "interrupted"])
    assert all(n <= received[m] for m, n in answered.items())
    return collections.Counter(zip(rows.status, rows.stream, strict=True))


def test_kill_9_of_serve_under_load_loses_no_paid_call(tmp_path):
    outcomes: collections.Counter[tuple[str, bool]] = collections.Counter()
    for repetition in range(REPETITIONS):
        outcomes.update(run_once(tmp_path, repetition))
    # Both kinds of call were made and answered...
    assert outcomes["ok", False] >= REPETITIONS * 20 and outcomes["ok", True] >= REPETITIONS * 20
    # ...and calls in flight at the kill (16 clients, 0-30 ms upstream latency) are logged as
    # such.
    assert outcomes["interrupted", False] + outcomes["interrupted", True] >= 1
