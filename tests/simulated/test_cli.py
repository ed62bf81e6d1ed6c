"""``aigw-lab simulate``: argument parsing, the fleet it builds, and its start-up banner."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

import httpx
import pytest

from aigw_lab import sim_server
from aigw_lab.cli import simulate
from aigw_lab.errors import ConfigError
from tests._sdks import anthropic, openai


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aigw-lab")
    simulate.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", *argv])


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace the blocking server with a recorder of what it would have served."""
    calls: list[dict] = []

    def fake_serve(**kwargs: object) -> None:
        calls.append(kwargs)
        kwargs["on_listening"](sim_server.root_url(kwargs["host"], kwargs["port"]))

    monkeypatch.setattr(sim_server, "serve", fake_serve)
    return calls


def test_defaults() -> None:
    args = parse()
    assert (args.host, args.port, args.seed, args.time_scale) == ("127.0.0.1", 8787, 0, 1.0)
    assert args.func is simulate.run


def test_run_builds_the_fleet_and_prints_how_to_connect(
    served: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(
        "--port",
        "9911",
        "--seed",
        "4",
        "--time-scale",
        "0.5",
        "--fault-rate",
        "0.14",
        "--timeout",
        "0.05",
        "--models",
        "sim-nano",
        "sim-haikuish",
    )
    assert simulate.run(args) == 0
    (call,) = served
    assert (call["host"], call["port"]) == ("127.0.0.1", 9911)
    fleet = call["fleet"]
    assert fleet.seed == 4 and fleet.time_scale == 0.5
    assert [m.id for m in fleet.models] == ["sim-nano", "sim-haikuish"]
    assert fleet.faults.timeout == 0.05
    assert fleet.faults.rate_limited == pytest.approx(0.02)
    out = capsys.readouterr().out
    assert "SIMULATED" in out
    assert "http://127.0.0.1:9911/v1/chat/completions" in out
    assert "http://127.0.0.1:9911/v1/messages" in out
    assert "http://127.0.0.1:9911/client/v4/accounts/simulated/ai/run/{model}" in out
    assert 'openai.OpenAI(base_url="http://127.0.0.1:9911/v1"' in out
    assert 'anthropic.Anthropic(base_url="http://127.0.0.1:9911"' in out


def test_unknown_model_is_a_config_error_before_serving(served: list[dict]) -> None:
    with pytest.raises(ConfigError, match="not a model of the simulated fleet"):
        simulate.run(parse("--models", "gpt-4o"))
    assert served == []


def test_fault_rates_must_be_probabilities(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--malformed", "1.5")
    assert "not a probability" in capsys.readouterr().err


def test_wildcard_hosts_are_announced_as_connectable_addresses() -> None:
    assert sim_server.root_url("0.0.0.0", 8787) == "http://127.0.0.1:8787"
    assert sim_server.root_url("::", 8787) == "http://[::1]:8787"
    assert sim_server.root_url("localhost", 1) == "http://localhost:1"


def test_the_real_command_serves_until_terminated() -> None:
    """``python -m aigw_lab.cli.main simulate --port 0`` in a subprocess: the banner, printed
    once the port is bound, names the free port it took."""
    command = [
        sys.executable,
        "-m",
        "aigw_lab.cli.main",
        "simulate",
        "--port",
        "0",
        "--time-scale",
        "0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = [process.stdout.readline() for _ in range(5)]
        assert "SIMULATED" in banner[0]
        url = banner[4].split()[-1].removesuffix("/chat/completions") + "/models"
        assert url.startswith("http://127.0.0.1:") and not url.startswith("http://127.0.0.1:0/")
        deadline = time.monotonic() + 20
        while True:  # the banner comes just before uvicorn starts accepting
            try:
                listed = httpx.get(url, timeout=2.0)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.02)
        root = url.removesuffix("/v1/models")
        # The official SDKs, pointed at the real `aigw-lab simulate` process.
        oai = openai.OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0)
        completion = oai.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "Say hi"}], max_tokens=16
        )
        chunks = list(
            oai.chat.completions.create(
                model="sim-nano",
                messages=[{"role": "user", "content": "Say hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        claude = anthropic.Anthropic(base_url=root, api_key="unused", max_retries=0)
        message = claude.messages.create(
            model="sim-haikuish", max_tokens=16, messages=[{"role": "user", "content": "Say hi"}]
        )
        with claude.messages.stream(
            model="sim-sonnetish", max_tokens=32, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            streamed = stream.get_final_message()
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert listed.headers["x-aigw-simulated"] == "true"
    assert "sim-small" in {m["id"] for m in listed.json()["data"]}
    assert completion.choices[0].message.content and completion.usage.completion_tokens > 0
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert message.content[0].text and message.usage.output_tokens > 0
    assert streamed.stop_reason in ("end_turn", "max_tokens") and streamed.usage.output_tokens > 0


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            sim_server.serve(port=port)
