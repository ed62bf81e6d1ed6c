"""``aigw-lab serve --workers N``: the refusals (state that would multiply, a DuckDB file N
processes cannot share), the per-worker log names, and a real two-worker server on one port
sharing a real redis-server, called through the real ``openai`` SDK."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from aigw_lab.cli.main import main
from aigw_lab.cli.serve import say
from aigw_lab.errors import ConfigError
from aigw_lab.server.workers import check_workers, worker_log_path
from aigw_lab.testing.fake_upstream import FakeUpstream, Reply
from tests._lines import lines_until

SIM = """
[providers.sim]
kind = "simulated"
format = "openai"
time_scale = 0.0
"""

LIMITED = (
    SIM
    + """
[rate_limits]
mode = "reject"
[[rate_limits.rule]]
match = { model = ["sim/a"] }
requests_per_minute = 10
"""
)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return str(path)


def test_refuses_limits_in_process_memory(tmp_path: Path, capsys) -> None:
    config = _write(tmp_path, LIMITED + "\n[gateway]\nlog = false\n")
    assert main(["serve", "--config", config, "--no-auth", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "rate limits" in err[0] and "would admit 20" in err[0]
    assert any('[state] backend = "redis"' in line for line in err)


def test_refuses_a_plain_duckdb_log(tmp_path: Path, capsys) -> None:
    config = _write(tmp_path, SIM)  # no limits: only the log is in the way
    assert main(["serve", "--config", config, "--no-auth", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "DuckDB call log can be written by one process only" in err
    assert '[log] backend = "postgres"' in err and "log = false" in err
    # The simulated fleet (no --config) logs to a file too.
    assert main(["serve", "--no-auth", "--workers", "3", "--port", "0"]) == 2


def test_workers_must_be_a_positive_whole_number(capsys) -> None:
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", "--no-auth", "--workers", bad])
        assert exit_.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_one_worker_checks_nothing() -> None:
    limited = SimpleNamespace(rate_limits={"rule": []}, budgets=None, cache=None,
                              semantic_cache=None, health=None, state=None, team_log=None)  # fmt: skip
    assert check_workers(limited, 1, logs=True) == []
    with pytest.raises(ConfigError):
        check_workers(limited, 2, logs=False)


def test_nothing_to_share_warns_and_the_team_log_allows_a_log() -> None:
    plain = SimpleNamespace(rate_limits=None, budgets=None, cache=None, semantic_cache=None,
                            health=None, state=None, team_log=object())  # fmt: skip
    warnings = check_workers(plain, 2, logs=True)
    assert len(warnings) == 1 and "share nothing but the port" in warnings[0]
    shared = SimpleNamespace(**{**vars(plain), "health": {"failure_threshold": 1},
                                "state": SimpleNamespace(backend="redis")})  # fmt: skip
    assert check_workers(shared, 4, logs=True) == []
    breakers = SimpleNamespace(**{**vars(shared), "state": SimpleNamespace(backend="memory")})
    with pytest.raises(ConfigError, match="circuit breakers"):
        check_workers(breakers, 2, logs=False)


def test_worker_log_path() -> None:
    assert worker_log_path("/x/calls.duckdb", 0) == "/x/calls.w0.duckdb"
    assert worker_log_path("calls.duckdb", 3) == "calls.w3.duckdb"
    assert worker_log_path("/x/calls", 1) == "/x/calls.w1"


# -- a real two-worker server on a real redis-server ------------------------------------

SERVED = """
[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "AIGW_TEST_UPSTREAM_KEY"
models = ["limited", "free"]

[gateway]
log = false

[state]
backend = "redis"
url_env = "AIGW_TEST_REDIS_URL"
prefix = "workers:"

[rate_limits]
mode = "reject"
[[rate_limits.rule]]
match = {{ model = ["up/limited"] }}
requests_per_minute = 10
"""


class Upstream(FakeUpstream):
    """Answers every request with a short completion; ``requests`` records them all."""

    def _next_reply(self) -> Reply:
        body = {
            "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }  # fmt: skip
        return Reply(headers={"content-type": "application/json"},
                     chunks=(json.dumps(body).encode(),))  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


#: How each worker of ``serve --workers`` announces itself once it listens.
_ANNOUNCED = "aigw-lab serve: worker"


def _start(tmp_path: Path, upstream_url: str, redis_url: str) -> tuple[subprocess.Popen, str, list]:
    config = _write(tmp_path, SERVED.format(url=upstream_url))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
           "AIGW_TEST_UPSTREAM_KEY": "sk-test", "AIGW_TEST_REDIS_URL": redis_url}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", config, "--no-auth"]
        + ["--port", "0", "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = lines_until(proc, lambda got: sum(_ANNOUNCED in line for line in got) == 2)
    except AssertionError:
        proc.kill()
        proc.wait()
        raise
    text = "".join(lines)
    url = re.search(r"listening on (http://\S+)", text).group(1)
    pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", text).group(1).split(", ")]
    return proc, url, pids


@pytest.mark.slow  # two worker start-ups and a redis-server: 5-20 s on a loaded box
def test_two_workers_share_one_port_and_one_limit(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    from tests.state.redis_server import RedisServer

    redis = RedisServer(tmp_path)
    redis.start()
    upstream = Upstream()
    proc = None
    try:
        proc, url, pids = _start(tmp_path, upstream.url, redis.url)
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)

        def call(model: str) -> tuple[int, str]:
            # A client (so a connection) per call: the kernel spreads connections.
            with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
                try:
                    raw = client.chat.completions.with_raw_response.create(
                        model=f"up/{model}", messages=[{"role": "user", "content": "hi"}]
                    )
                except openai.RateLimitError as exc:
                    return 429, exc.response.headers.get("x-aigw-worker", "")
                return raw.http_response.status_code, raw.headers["x-aigw-worker"]

        seen: set[str] = set()
        with ThreadPoolExecutor(16) as pool:
            for _ in range(10):  # until both workers answered (bounded)
                seen |= {worker for _, worker in pool.map(call, ["free"] * 32)}
                if len(seen) >= 2:
                    break
            assert {w.split("/")[1] for w in seen} == {str(pid) for pid in pids}

            limited = list(pool.map(call, ["limited"] * 30))
        statuses = sorted(status for status, _ in limited)
        assert statuses == [200] * 10 + [429] * 20
        served_by = {worker.split("/")[0] for _, worker in limited if worker}
        assert served_by == {"0", "1"}  # both workers refused or admitted
        upstream_limited = [
            r for r in upstream.requests if (r.json or {}).get("model") == "limited"
        ]
        assert len(upstream_limited) == 10

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not any(_alive(pid) for pid in pids)  # no orphan worker
        assert "all workers stopped" in proc.stderr.read()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        upstream.close()
        redis.stop()


@pytest.mark.slow  # two worker start-ups: 5-20 s on a loaded box
def test_workers_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    from tests.state.redis_server import RedisServer

    redis = RedisServer(tmp_path)
    redis.start()
    upstream = Upstream()
    proc = None
    try:
        proc, _, pids = _start(tmp_path, upstream.url, redis.url)
        proc.kill()  # SIGKILL: the parent cannot pass anything on
        proc.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        for pid in pids if proc is not None else ():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        upstream.close()
        redis.stop()


def test_loop_uvloop_without_uvloop_names_the_extra() -> None:
    from aigw_lab.cli.serve import check_loop

    with pytest.raises(ConfigError, match="uvloop is not installed") as caught:
        check_loop("uvloop", find_spec=lambda name: None)
    assert "aigw-lab[fast-serve]" in caught.value.hint
    check_loop("uvloop", find_spec=lambda name: object())  # installed: accepted
    check_loop("auto", find_spec=lambda name: None)  # auto falls back to asyncio


# -- the supervisor alone, over stand-in workers (no server) ----------------------------

_WORKER = """
import signal, sys, time
from pathlib import Path
folder, index = Path(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGTERM, lambda *_: (Path(folder, "stopped" + index).touch(), sys.exit(0)))
Path(folder, "ready" + index).touch()
if index == sys.argv[3]:  # the failing one, once worker 0 can take its signal
    while not Path(folder, "ready0").exists():
        time.sleep(0.01)
    sys.exit(3)
time.sleep(120)
"""


def _stand_ins(tmp_path: Path, failing: int = -1):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    return lambda i: [sys.executable, str(script), str(tmp_path), str(i), str(failing)]


def test_a_signal_to_the_parent_stops_every_worker_once(tmp_path: Path) -> None:
    import socket

    from aigw_lab.server.workers import run_workers

    def started(pids: list[int]) -> None:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{i}").exists() for i in range(3)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill <parent>` would

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert run_workers(sock, 3, _stand_ins(tmp_path), on_started=started) == 0
    assert all((tmp_path / f"stopped{i}").exists() for i in range(3))


def test_a_failing_worker_stops_the_others(tmp_path: Path, capsys) -> None:
    import socket

    from aigw_lab.server.workers import run_workers

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert run_workers(sock, 2, _stand_ins(tmp_path, failing=1)) == 1
    assert (tmp_path / "stopped0").exists()  # the healthy one was told to stop
    assert "a worker failed" in capsys.readouterr().err


def test_metrics_with_workers_are_no_longer_warned_about() -> None:
    # One scrape sums every worker (tests/observe/test_metrics_workers.py).
    config = SimpleNamespace(rate_limits=None, budgets=None, cache=None, semantic_cache=None,
                             health=None, state=None, team_log=None, metrics={})  # fmt: skip
    assert not any("[metrics]" in w for w in check_workers(config, 2, logs=False))


def test_workers_get_the_parsers_choice() -> None:
    """``--http`` reaches every worker's command line, as ``--loop`` does."""
    from aigw_lab.cli.serve import _worker_argv

    args = SimpleNamespace(log_level="warning", loop="auto", http="h11", config="g.toml",
                           db=None, host=None, no_auth=True)  # fmt: skip
    argv = _worker_argv(args, 7, 1)
    assert argv[argv.index("--http") + 1] == "h11"
    assert argv[argv.index("--worker-fd") + 1] == "7"


def test_serve_http_httptools_without_httptools_is_one_line_exit_2(capsys, monkeypatch) -> None:
    import aigw_lab.server.limits as limits

    monkeypatch.setattr(limits, "find_spec", lambda name: None)
    assert main(["serve", "--no-auth", "--http", "httptools", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "httptools is not installed" in err and "fast-serve" in err
    assert "Traceback" not in err


class _Writes(io.RawIOBase):
    """A raw stream that keeps each write call apart (a pipe would join them in its buffer)."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def, override]
        self.calls.append(bytes(data))
        return len(data)


def test_a_workers_line_is_one_write_even_when_python_is_unbuffered() -> None:
    # Failed before (print): under PYTHONUNBUFFERED (this machine sets it, and CI) print wrote
    # a line's text and its newline as two writes, so two workers announcing themselves at
    # once came out as one line holding both plus an empty line, and `_start` waited for ever
    # for the second worker (a whole CI run hung there). One write of a short line to a pipe
    # is atomic.
    printed, said = _Writes(), _Writes()
    print("by print", file=io.TextIOWrapper(printed, write_through=True), flush=True)  # as -u
    assert printed.calls == [b"by print", b"\n"]
    say("aigw-lab serve: worker 0 (pid 1)", io.TextIOWrapper(said, write_through=True))
    assert said.calls == [b"aigw-lab serve: worker 0 (pid 1)\n"]
