"""bench/bench_peers.py measures clients against a real loopback server in its own process:
the server must speak HTTP/1.1 well enough for the official SDK, every side must get the same
answer from it, and a round's clocks must include the log's work (no row left unwritten)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_peers.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_peers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_peers", None)


@pytest.fixture(scope="module")
def server(bench):
    proc, base_url = bench.start_server()
    yield base_url
    proc.stdin.close()
    proc.wait(timeout=10)


@pytest.mark.slow  # imports the openai SDK (seconds on the 2-core box)
def test_the_fake_server_answers_the_official_sdk_plainly_and_streaming(bench, server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server, api_key="unused", max_retries=0)
    try:
        answer = client.chat.completions.create(model=bench.MODEL, messages=bench.MESSAGES)
        assert answer.choices[0].message.content == "Paris."
        assert answer.usage.total_tokens == 29
        chunks = list(
            client.chat.completions.create(
                model=bench.MODEL,
                messages=bench.MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == bench.STREAM_TEXT
        assert chunks[-1].usage.completion_tokens == 9
    finally:
        client.close()


@pytest.mark.slow  # three clients, each in three modes: ~7 s under load
def test_every_side_gets_the_same_answer_in_every_mode(bench, server, tmp_path):
    sides = [
        bench.RawHttpx(server),
        bench.Aigw(server, tmp_path / "calls.duckdb"),
        bench.Aigw(server, None),
    ]
    with asyncio.Runner() as runner:
        for side in sides:
            assert side.call() == "Paris."
            assert runner.run(side.acall()) == "Paris."
            assert side.stream() == bench.STREAM_TEXT
            runner.run(side.aclose())
    for side in sides:
        side.close()


def test_a_round_ends_with_every_logged_call_written(bench, server, tmp_path):
    side = bench.Aigw(server, tmp_path / "calls.duckdb")
    with asyncio.Runner() as runner:
        for mode in ("sync", "async4", "stream", "paced200"):
            cpu, wall, elsewhere = bench.run_round(side, mode, 12, runner)
            assert cpu > 0 and wall > 0 and elsewhere >= 0
        # No flush here: the round itself waited for the writer, as its clocks must.
        assert side.log.query("SELECT count(*) AS n FROM calls")["n"][0] == 48
        runner.run(side.aclose())
    side.close()


def test_an_unknown_mode_is_a_usage_error(bench):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--modes", "sync,turbo"])
    assert exc.value.code == 2


def test_a_baseline_tree_side_runs_that_trees_code_in_its_own_process(bench, server, tmp_path):
    # This checkout stands in for the other tree: the worker must import it from there.
    side = bench.TreeSide(ROOT, server, tmp_path / "base.duckdb", "auto", "raw direct")
    try:
        assert side.name == "base log on"
        assert side.check() == ("Paris.", bench.STREAM_TEXT)
        with asyncio.Runner() as runner:
            for mode in ("sync", "async2", "stream"):
                cpu, wall, elsewhere = bench.run_round(side, mode, 5, runner)
                assert cpu > 0 and wall > 0 and elsewhere >= 0
    finally:
        side.close()
    assert side.proc.returncode == 0


def test_a_baseline_tree_without_aigw_lab_is_refused(bench, tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--baseline-tree", str(tmp_path), "--no-litellm"])
    assert "holds no aigw_lab package" in capsys.readouterr().err
