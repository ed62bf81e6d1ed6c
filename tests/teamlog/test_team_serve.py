"""Issue 14 §2's test: two ``aigw-lab serve`` processes write one team log (a real
PostgreSQL) while a notebook kernel (nbclient + ipykernel) reads it through a mirror; no
call the upstream answered is missing, and the analysis results equal those of a single
``serve`` process logging the same calls into one DuckDB file.

The upstream is a loopback `FakeUpstream` that records every request and answers each with
usage derived from its prompt, so the per-model sums do not depend on which server a call
went through. Calls come in three waves; each next wave starts only once the kernel has
seen the previous one, so the kernel reads while both servers are up and writing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aigw_lab.store import CallLog, summary_by_model
from aigw_lab.testing.fake_upstream import FakeUpstream, Reply
from tests._sdks import openai

pytestmark = pytest.mark.slow
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

KEYS = {"TEAM_KEY_A": "sk-gw-teamlog-a-0123456789", "TEAM_KEY_B": "sk-gw-teamlog-b-987654321"}
CONFIG = """
[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "TEAM_UPSTREAM_KEY"
models = ["m1", "m2"]

[prices."up/m1"]
input_per_mtok = 1.0
output_per_mtok = 2.0

[prices."up/m2"]
input_per_mtok = 3.0
output_per_mtok = 5.0

[server]
keys = [
  {{ key_env = "TEAM_KEY_A", name = "a", tenant = "ta" }},
  {{ key_env = "TEAM_KEY_B", name = "b", tenant = "tb" }},
]
{log}
"""
TEAM = '[log]\nbackend = "postgres"\nurl_env = "TEAM_URL"\n'
WAVES = (20, 20, 20)
SUMMARY = ["provider_name", "request_model", "calls", "errors", "input_tokens",
           "output_tokens", "cost_usd"]  # fmt: skip


class Upstream(FakeUpstream):
    """Answers every request; its usage is derived from the prompt (``q-<n>``)."""

    def __init__(self) -> None:
        self._seen = threading.local()
        super().__init__()
        self.requests = _Noting(self._seen)

    def _next_reply(self) -> Reply:
        request = self._seen.request
        prompt = request.json["messages"][-1]["content"]
        n = int(prompt.split("-")[1])
        body = {
            "id": f"up-{n}",
            "object": "chat.completion",
            "model": request.json["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"answer {n}"}}],
            "usage": {"prompt_tokens": 5 + n % 7, "completion_tokens": 1 + n % 5},
        }  # fmt: skip
        return Reply(headers={"content-type": "application/json"},
                     chunks=(json.dumps(body).encode(),))  # fmt: skip


class _Noting(list):
    """The fake's request list; notes each request for the thread that appended it."""

    def __init__(self, seen: threading.local) -> None:
        super().__init__()
        self._seen = seen

    def append(self, request) -> None:
        self._seen.request = request
        super().append(request)


def _serve(config: Path, db: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "aigw_lab.cli.main", "serve", "--config", str(config),
         "--db", str(db), "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:  # the banner names the URL once the port is bound
        if "listening on" in line:
            return process, line.split("listening on", 1)[1].split()[0]
    process.kill()
    raise AssertionError(f"serve did not start: {process.stderr.read()}")  # type: ignore[union-attr]


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    return stderr


def _calls(urls: list[str], first: int, count: int) -> None:
    """``count`` calls numbered from ``first``, spread over servers, keys and models."""
    clients = [
        openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        for url in urls
        for key in KEYS.values()
    ]

    def one(n: int) -> None:
        client = clients[n % len(clients)]
        client.chat.completions.create(
            model=f"up/m{1 + n % 2}", messages=[{"role": "user", "content": f"q-{n}"}]
        )

    # Eight at a time: the fake's listen backlog is socketserver's small default.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(first, first + count)))


_NOTEBOOK_CELLS = [
    """
import json, pathlib, time
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.store import TeamLogMirror, summary_by_model
mirror = TeamLogMirror({url!r}, {mirror!r})
progress = pathlib.Path({progress!r})
seen = []
""",
    """
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    mirror.sync()
    n = mirror.log.execute("SELECT count(*) FROM calls")[0][0]
    seen.append(n)
    progress.write_text(str(n))
    if n >= {total}:
        break
    time.sleep(0.1)
""",
    """
gateway = Gateway.simulated_fleet(log=mirror.log)
by_tenant = gateway.query(
    "SELECT tenant_id, request_model, count(*) AS n, sum(input_tokens) AS tin, "
    "sum(output_tokens) AS tout, sum(cost_usd) AS cost FROM calls GROUP BY ALL ORDER BY ALL"
)
prompts = [r[0] for r in mirror.log.execute(
    "SELECT json_extract_string(request_json, '$.messages[0].content') FROM calls")]
print(json.dumps({{
    "seen": seen,
    "summary": summary_by_model(mirror.log)[{columns!r}].to_dict("list"),
    "by_tenant": by_tenant.to_dict("list"),
    "prompts": prompts,
}}))
""",
]


def _run_notebook(tmp_path: Path, cells: list[str], out: dict) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "test", "language": "python"}  # fmt: skip
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    km = KernelManager(
        kernel_name="python3",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    try:
        client = nbclient.NotebookClient(notebook, km=km, timeout=300, kernel_name="python3")
        client.execute(cwd=str(tmp_path))
        out["notebook"] = notebook
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        out["error"] = exc


def _wait_for(progress: Path, at_least: int, reader: threading.Thread) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and reader.is_alive():
        text = progress.read_text() if progress.exists() else ""
        if text and int(text) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"the notebook never saw {at_least} rows (last: {text!r})")


def test_two_servers_and_a_reading_notebook_share_one_team_log(team_url, tmp_path):
    total = sum(WAVES)
    env = {**os.environ, **KEYS, "TEAM_UPSTREAM_KEY": "sk-up", "TEAM_URL": team_url,
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    with Upstream() as upstream:
        config = tmp_path / "team.toml"
        config.write_text(CONFIG.format(url=upstream.url, log=TEAM))
        servers = [_serve(config, tmp_path / f"worker-{i}.duckdb", env) for i in (1, 2)]
        progress = tmp_path / "progress"
        out: dict = {}
        cells = [c.format(url=team_url, mirror=str(tmp_path / "mirror.duckdb"),
                          progress=str(progress), total=total, columns=SUMMARY)
                 for c in _NOTEBOOK_CELLS]  # fmt: skip
        reader = threading.Thread(target=_run_notebook, args=(tmp_path, cells, out))
        reader.start()
        try:
            _wait_for(progress, 0, reader)  # the kernel synced once: an empty team log
            first = 0
            for count in WAVES:
                _calls([url for _, url in servers], first, count)
                first += count
                _wait_for(progress, first, reader)  # read while the servers are up
        finally:
            reader.join(timeout=300)
            stderrs = [_stop(process) for process, _ in servers]
        assert "error" not in out, out.get("error")
        recorded = sorted(r.json["messages"][-1]["content"] for r in upstream.requests)
    assert len(recorded) == total and all("call log flushed" in s for s in stderrs)
    assert len(set(recorded)) == total  # every call reached the upstream once
    result = json.loads(out["notebook"].cells[-1].outputs[0]["text"])
    # 0 rows lost against the upstream's record, none twice.
    assert sorted(result["prompts"]) == recorded
    seen = result["seen"]
    assert seen == sorted(seen) and seen[-1] == total and len(set(seen)) >= len(WAVES)

    # The same calls through one server logging into one DuckDB file.
    with Upstream() as upstream:
        config = tmp_path / "single.toml"
        config.write_text(CONFIG.format(url=upstream.url, log=""))
        process, url = _serve(config, tmp_path / "single.duckdb", env)
        try:
            first = 0
            for count in WAVES:
                _calls([url, url], first, count)
                first += count
        finally:
            _stop(process)
        assert len(upstream.requests) == total
    with CallLog(tmp_path / "single.duckdb") as single:
        summary = summary_by_model(single)[SUMMARY].to_dict("list")
        by_tenant = single.query(
            "SELECT tenant_id, request_model, count(*) AS n, sum(input_tokens) AS tin, "
            "sum(output_tokens) AS tout, sum(cost_usd) AS cost FROM calls GROUP BY ALL "
            "ORDER BY ALL"
        ).to_dict("list")
    # Exact but for float sums, which differ in the last bits with the order of addition.
    for ours, theirs in ((result["summary"], summary), (result["by_tenant"], by_tenant)):
        assert ours.keys() == theirs.keys()
        for column, values in theirs.items():
            assert ours[column] == pytest.approx(values, rel=1e-12, abs=0), column
    assert sum(by_tenant["n"]) == total
