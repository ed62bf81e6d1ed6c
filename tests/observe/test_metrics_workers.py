"""``serve --workers 2`` with ``[metrics]``: one scrape of ``/metrics``, whichever worker
answers it, shows the whole server's counts (prometheus-client's multiprocess mode in a
folder the parent makes and removes). Real workers, a real redis-server, the openai SDK."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.server.test_serve_workers import SERVED, Upstream, _alive, _start

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")


def _count(text: str, metric: str, model: str) -> float:
    """``metric`` for provider ``up`` and ``model``, summed over its label sets."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and f'model="{model}"' in line:
            if 'provider="up"' in line and 'status="error"' not in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow  # two worker start-ups and a redis-server: 5-20 s on a loaded box
def test_one_scrape_sums_every_workers_counts(tmp_path: Path, monkeypatch) -> None:
    openai = pytest.importorskip("openai")
    from aigw_lab.server.workers import METRICS_DIR_ENV
    from tests.state.redis_server import RedisServer

    monkeypatch.setattr(
        "tests.server.test_serve_workers.SERVED", SERVED + "\n[metrics]\nrequire_key = false\n"
    )
    redis = RedisServer(tmp_path)
    redis.start()
    upstream = Upstream()
    proc = None
    try:
        proc, url, pids = _start(tmp_path, upstream.url, redis.url)
        # This server's own folder (other tests' servers may make theirs meanwhile).
        environ = Path(f"/proc/{pids[0]}/environ").read_bytes().decode().split("\0")
        prefix = f"{METRICS_DIR_ENV}="
        folder = Path(next(v for v in environ if v.startswith(prefix)).removeprefix(prefix))
        assert folder.is_dir()

        def call(_: int) -> str:
            # A client (so a connection) per call: the kernel spreads connections.
            with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
                raw = client.chat.completions.with_raw_response.create(
                    model="up/free", messages=[{"role": "user", "content": "hi"}]
                )
                return raw.headers["x-aigw-worker"].split("/")[0]

        served: list[str] = []
        with ThreadPoolExecutor(8) as pool:
            for _ in range(10):  # until both workers answered (bounded)
                served += pool.map(call, range(16))
                if len(set(served)) == 2:
                    break
        assert set(served) == {"0", "1"}
        scrapes = {}
        for _ in range(40):  # scrape until each worker has answered one (bounded)
            with httpx.Client() as client:  # a new connection: any worker may answer
                reply = client.get(f"{url}/metrics")
            assert reply.status_code == 200
            scrapes[reply.headers["x-aigw-worker"].split("/")[0]] = reply.text
            if len(scrapes) == 2:
                break
        assert set(scrapes) == {"0", "1"}
        for text in scrapes.values():  # each worker's scrape shows every call
            assert _count(text, "aigw_requests_total", "free") == len(served)
            assert _count(text, "aigw_request_duration_seconds_count", "free") == len(served)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not any(_alive(pid) for pid in pids)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        upstream.close()
        redis.stop()
    assert not folder.exists()  # removed with the workers


def test_a_multiprocess_folder_is_checked(tmp_path: Path) -> None:
    from aigw_lab.errors import ConfigError
    from aigw_lab.gateway.metrics_sink import MetricsSink

    with pytest.raises(ConfigError, match="not a directory"):
        MetricsSink(multiprocess_dir=str(tmp_path / "missing"))
    # This process imported prometheus-client without the variable: its counts would stay
    # in memory, so a sink that promised to share them is refused.
    with pytest.raises(ConfigError, match="not set when prometheus_client was imported"):
        MetricsSink(multiprocess_dir=str(tmp_path))


def test_the_config_reads_the_folder_from_its_environment(tmp_path: Path) -> None:
    from aigw_lab.errors import ConfigError
    from aigw_lab.gateway.observe_settings import metrics_sink_from_config

    assert metrics_sink_from_config({}, env={}).multiprocess_dir is None
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        metrics_sink_from_config({}, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "x")})
