"""`build_simulated_provider` and `fleet_specs`: the fleet behind the real codecs and
`HttpProvider`, in-process and over HTTP to the simulator server."""

from __future__ import annotations

import pytest

from aigw_lab import errors
from aigw_lab.datasets import load_bundled
from aigw_lab.providers.base import HttpClients, Provider, ProviderSpec
from aigw_lab.sim.catalog import DEFAULT_MODELS
from aigw_lab.sim.fleet import (
    SimulatedProvider,
    build_simulated_provider,
    fleet_specs,
)
from aigw_lab.sim_server import BackgroundServer
from aigw_lab.types import ChatRequest, StreamEnd, TextDelta

FORMATS = ["openai", "anthropic", "workers-ai"]
ITEM = next(item for item in load_bundled() if item["category"] == "classification")


def provider_for(api_format: str, **options: object) -> SimulatedProvider:
    spec = ProviderSpec(
        name=f"sim-{api_format}",
        kind="simulated",
        timeout=5.0,
        options={"format": api_format, "time_scale": 0.0, **options},
    )
    return build_simulated_provider(spec, HttpClients())


@pytest.mark.parametrize("api_format", FORMATS)
def test_chat_on_a_dataset_item(api_format: str) -> None:
    provider = provider_for(api_format)
    assert isinstance(provider, Provider) and provider.simulated
    model = provider.models[-1]
    response = provider.chat(
        ChatRequest.create(model, ITEM["prompt"], temperature=0, max_tokens=50)
    )
    assert response.text in [ITEM["reference"], *ITEM["distractors"]]
    assert response.simulated and response.model == model
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens >= 1


@pytest.mark.parametrize("api_format", FORMATS)
def test_stream_deltas_add_up_to_the_final_response(api_format: str) -> None:
    provider = provider_for(api_format)
    events = list(
        provider.stream(ChatRequest.create(provider.models[0], "Tell me about tides", max_tokens=9))
    )
    assert isinstance(events[-1], StreamEnd)
    deltas = [e.text for e in events[:-1] if isinstance(e, TextDelta)]
    final = events[-1].response
    assert "".join(deltas) == final.text
    assert final.finish_reason == "length" and final.usage.output_tokens == 9


@pytest.mark.parametrize("api_format", FORMATS)
async def test_async_chat_and_stream(api_format: str) -> None:
    provider = provider_for(api_format)
    request = ChatRequest.create(provider.models[0], "Tell me about tides", max_tokens=20)
    whole = await provider.achat(request)
    events = [e async for e in provider.astream(request)]
    assert events[-1].response.text == whole.text


@pytest.mark.parametrize("api_format", FORMATS)
@pytest.mark.parametrize(
    "fault, error_type, stream",
    [
        ("rate_limited", errors.RateLimitedError, False),
        ("server_error", errors.ProviderServerError, False),
        ("overloaded", errors.OverloadedError, False),
        ("timeout", errors.ProviderTimeoutError, False),
        ("truncated", errors.StreamInterruptedError, True),
        ("malformed", errors.MalformedResponseError, True),
        ("malformed", errors.MalformedResponseError, False),
    ],
)
def test_faults_arrive_as_typed_errors(
    api_format: str, fault: str, error_type: type, stream: bool
) -> None:
    provider = provider_for(api_format, faults={fault: 1.0})
    request = ChatRequest.create(provider.models[0], "Tell me about tides", max_tokens=200)
    with pytest.raises(error_type) as caught:
        if stream:
            list(provider.stream(request))
        else:
            provider.chat(request)
    if fault == "rate_limited":
        # The wait the fleet asks for is simulated time: at time_scale 0 it is no wait at all.
        assert caught.value.retry_after == 0.0
    if fault == "overloaded" and api_format == "anthropic":
        assert caught.value.status == 529


@pytest.mark.parametrize("time_scale", [1.0, 0.25])
def test_retry_after_follows_the_time_scale(time_scale: float) -> None:
    provider = provider_for("openai", faults={"rate_limited": 1.0}, time_scale=time_scale)
    request = ChatRequest.create(provider.models[0], "Tell me about tides", max_tokens=20)
    with pytest.raises(errors.RateLimitedError) as caught:
        provider.chat(request)
    seconds = int(caught.value.message.split("try again in ")[1].split("s")[0])
    assert 1 <= seconds <= 5
    assert caught.value.retry_after == pytest.approx(seconds * time_scale)


def test_models_prices_and_format_defaults() -> None:
    provider = provider_for("anthropic")
    assert provider.models == tuple(m.id for m in DEFAULT_MODELS if m.api_format == "anthropic")
    assert provider.api_format == "anthropic"
    assert provider.price_for("sim-sonnetish").output_per_mtok == 15.0
    assert provider.price_for("sim-nano") is None
    chosen = provider_for("openai", models=["sim-nano", "sim-sonnetish"])
    assert chosen.models == ("sim-nano", "sim-sonnetish")
    assert chosen.chat(ChatRequest.create("sim-sonnetish", "hi")).model == "sim-sonnetish"


def test_bad_format_is_a_config_error() -> None:
    spec = ProviderSpec(name="mystery", kind="simulated", options={"format": "grpc"})
    with pytest.raises(errors.ConfigError, match="format 'grpc'"):
        build_simulated_provider(spec, HttpClients())


def test_fleet_specs_cover_the_three_providers() -> None:
    specs = fleet_specs(seed=7, faults={"timeout": 0.1})
    assert [s.name for s in specs] == ["sim-openai", "sim-anthropic", "sim-workers"]
    assert {m for s in specs for m in s.models} == {m.id for m in DEFAULT_MODELS}
    assert all(s.kind == "simulated" and s.options["seed"] == 7 for s in specs)
    assert all(s.base_url is None for s in specs)


def test_fleet_specs_against_a_running_server() -> None:
    from aigw_lab.sim.fleet import SimulatedFleet

    with BackgroundServer(SimulatedFleet(time_scale=0.0)) as server:
        clients = HttpClients()
        try:
            for spec in fleet_specs(base_url=server.url):
                provider = build_simulated_provider(spec, clients)
                assert provider.fleet is None
                model = provider.models[0]
                response = provider.chat(ChatRequest.create(model, ITEM["prompt"]))
                assert response.simulated and response.model == model
                assert response.text in [ITEM["reference"], *ITEM["distractors"]]
                streamed = list(provider.stream(ChatRequest.create(model, "Tell me about tides")))
                assert streamed[-1].response.usage.output_tokens > 0
        finally:
            clients.close()
