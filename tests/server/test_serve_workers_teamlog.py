"""``aigw-lab serve --workers 2`` beside the team log: each worker writes its own local
DuckDB file (``calls.w0.duckdb``, ``calls.w1.duckdb``) and every row reaches the one team
log on a real PostgreSQL; nothing is lost across the two."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aigw_lab.store import CallLog
from aigw_lab.testing.postgres import PostgresCluster, find_pg_bin
from tests._lines import lines_until
from tests._sdks import openai
from tests.server.test_serve_workers import _ANNOUNCED, Upstream

psycopg = pytest.importorskip("psycopg")

CONFIG = """
[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "AIGW_TEST_UPSTREAM_KEY"
models = ["m"]

[prices."up/m"]
input_per_mtok = 1.0
output_per_mtok = 2.0

[log]
backend = "postgres"
url_env = "AIGW_TEST_TEAM_URL"
"""


@pytest.mark.slow  # a PostgreSQL cluster and two worker start-ups: 10-40 s on a loaded box
def test_each_worker_keeps_its_own_file_and_the_team_log_has_every_row(tmp_path: Path) -> None:
    import subprocess

    if find_pg_bin() is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl not found (.ci/run installs postgresql)")
    upstream = Upstream()
    with PostgresCluster.start_new() as cluster:
        name = f"w_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        team_url = cluster.url.rsplit("/", 1)[0] + f"/{name}"
        config = tmp_path / "gateway.toml"
        config.write_text(CONFIG.format(url=upstream.url))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
               "AIGW_TEST_UPSTREAM_KEY": "sk-test", "AIGW_TEST_TEAM_URL": team_url}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(config),
             "--db", str(tmp_path / "calls.duckdb"), "--no-auth", "--port", "0",
             "--workers", "2"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            lines = lines_until(proc, lambda got: sum(_ANNOUNCED in line for line in got) == 2)
            url = next(ln.split("listening on ")[1].split()[0] for ln in lines if "listening" in ln)
            assert any("calls.w0.duckdb" in ln for ln in lines)
            assert any("calls.w1.duckdb" in ln for ln in lines)

            def call(n: int) -> str:
                with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
                    raw = client.chat.completions.with_raw_response.create(
                        model="up/m", messages=[{"role": "user", "content": f"q-{n}"}]
                    )
                return raw.headers["x-aigw-worker"].split("/")[0]

            workers: set[str] = set()
            calls = 0
            with ThreadPoolExecutor(16) as pool:
                for _ in range(10):  # until both workers served some (bounded)
                    workers |= set(pool.map(call, range(calls, calls + 32)))
                    calls += 32
                    if workers == {"0", "1"}:
                        break
            assert workers == {"0", "1"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            upstream.close()

        local = 0
        for index in (0, 1):
            with CallLog(str(tmp_path / f"calls.w{index}.duckdb")) as log:
                count = log.query("SELECT count(*) AS n FROM calls")["n"][0]
            assert count > 0  # each worker logged what it served
            local += count
        assert not (tmp_path / "calls.duckdb").exists()  # no worker wrote the shared name
        assert local == calls == len(upstream.requests)
        deadline = time.monotonic() + 30  # the workers' sinks flushed on shutdown
        with psycopg.connect(team_url) as conn:
            team = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            while team < calls and time.monotonic() < deadline:
                time.sleep(0.2)
                team = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        assert team == calls
