"""Provider kinds as objects: the registry's lookups and errors, the kinds' facts, and
`BaseProvider` (a provider that writes two methods)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from aigw_lab import Gateway
from aigw_lab.errors import ConfigError
from aigw_lab.providers.base import HttpClients, Price, Provider, ProviderSpec
from aigw_lab.providers.base_provider import BaseProvider, traits
from aigw_lab.providers.kinds import HTTP_KINDS, ConfigKey, ProviderKind
from aigw_lab.providers.registry import BUILTIN_KINDS, KindRegistry, build_provider
from aigw_lab.types import ChatRequest, ChatResponse, Usage

#: The kinds that existed before kinds were objects, in the order errors list them.
BUILT_IN = (
    "openai",
    "anthropic",
    "workers-ai",
    "workers-ai-openai",
    "openai-compatible",
    "simulated",
    "replay",
)


def registry(**kwargs: Any) -> KindRegistry:
    return KindRegistry(entry_points=False, **kwargs)


# --- lookups --------------------------------------------------------------------------------


def test_the_built_in_kinds_are_registered_in_their_listed_order() -> None:
    kinds = registry()
    assert kinds.names() == BUILT_IN
    assert all(kinds.get(name).name == name for name in BUILT_IN)


@pytest.mark.parametrize("name", ["opneai", "", "Simulated", 3, None, ["openai"]])
def test_an_unknown_kind_is_a_config_error_naming_the_known_ones(name: Any) -> None:
    kinds = registry()
    assert kinds.find(name) is None
    with pytest.raises(ConfigError) as caught:
        kinds.get(name, where="provider 'p': ")
    assert caught.value.message == f"provider 'p': kind {name!r} is not a provider kind"
    assert caught.value.hint == f"use one of {list(BUILT_IN)}"


def test_build_provider_names_the_known_kinds_for_an_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="kind 'nope' is not a provider kind") as caught:
        build_provider(ProviderSpec(name="p", kind="nope"), HttpClients(), env={})
    assert caught.value.hint == f"use one of {list(BUILT_IN)}"


def test_a_name_cannot_be_registered_twice_or_be_unusable() -> None:
    kinds = registry()
    with pytest.raises(ConfigError, match="'openai' is already registered"):
        kinds.register(ProviderKind(name="openai"))
    for bad in ("", "a/b"):
        with pytest.raises(ConfigError, match="is not usable"):
            kinds.register(ProviderKind(name=bad))
    with pytest.raises(ConfigError, match="is not 'module:attribute'"):
        kinds.register("no_colon_here")


def test_a_registered_kind_is_found_and_listed_after_the_built_in_ones() -> None:
    kinds = registry()
    mine = ProviderKind(name="mine", summary="test")
    kinds.register(mine)
    assert kinds.get("mine") is mine
    assert kinds.names() == (*BUILT_IN, "mine")


def test_a_reference_loads_on_first_lookup_and_must_name_that_kind() -> None:
    kinds = registry(
        kinds=["aigw_lab.providers.kinds:OPENAI", "aigw_lab.providers.kinds:ANTHROPIC"]
    )
    assert kinds.get("openai").name == "openai"
    wrong = registry(kinds=["aigw_lab.providers.kinds:OPENAI_COMPATIBLE"])
    # The reference's attribute names "openai-compatible": the object must be that kind.
    assert wrong.get("openai-compatible").name == "openai-compatible"
    mislabelled = registry(kinds=[])
    mislabelled.register("aigw_lab.providers.kinds:HTTP_KINDS")
    with pytest.raises(ConfigError, match="is not the ProviderKind 'http-kinds'"):
        mislabelled.get("http-kinds")


def test_looking_up_the_in_process_kinds_does_not_import_the_fleet(tmp_path) -> None:
    # The simulated and replay kinds live above the providers layer and are imported by
    # name on first lookup; their module imports neither the fleet nor the replay.
    import subprocess

    code = (
        "import sys\n"
        "from aigw_lab.providers.registry import KindRegistry\n"
        "kinds = KindRegistry(entry_points=False)\n"
        "assert 'aigw_lab.sim.kinds' not in sys.modules\n"
        "assert kinds.get('simulated').local and kinds.get('replay').local\n"
        "assert 'aigw_lab.sim.kinds' in sys.modules\n"
        "assert 'aigw_lab.sim.fleet' not in sys.modules, 'fleet imported'\n"
        "assert 'aigw_lab.sim.replay' not in sys.modules, 'replay imported'\n"
        # Checking a config needs the kinds' facts, not their codecs or the transport.
        "import aigw_lab.config\n"
        "codecs = [m for m in ('aigw_lab.providers.openai', 'aigw_lab.providers.transport')\n"
        "          if m in sys.modules]\n"
        "assert not codecs, codecs\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- facts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", HTTP_KINDS, ids=lambda k: k.name)
def test_an_http_kind_states_the_format_its_codec_speaks(kind) -> None:
    spec = ProviderSpec(name="p", kind=kind.name, account_id="a1")
    assert kind.codec(spec).api_format == kind.api_format
    assert kind.gateway_slug  # every shipped HTTP kind can be routed through an AI Gateway


def test_the_cloudflare_api_root_is_the_workers_ai_one() -> None:
    from aigw_lab.providers.kinds import CLOUDFLARE_API_URL
    from aigw_lab.providers.workers_ai import API_URL

    assert CLOUDFLARE_API_URL == API_URL


def test_the_facts_that_were_tables_before_are_the_kinds_now() -> None:
    kinds = registry()
    keys = {n: kinds.get(n).api_key_env for n in BUILT_IN}
    assert keys == {
        "openai": "OPENAI_API_KEY",
        "anthropic": "ANTHROPIC_API_KEY",
        "workers-ai": "CLOUDFLARE_API_TOKEN",
        "workers-ai-openai": "CLOUDFLARE_API_TOKEN",
        "openai-compatible": None,
        "simulated": None,
        "replay": None,
    }
    prices = {n: kinds.get(n).price_provider_id for n in BUILT_IN}
    assert prices == {
        "openai": "openai",
        "anthropic": "anthropic",
        "workers-ai": "cloudflare",
        "workers-ai-openai": "cloudflare",
        "openai-compatible": None,
        "simulated": None,
        "replay": None,
    }
    assert {n for n in BUILT_IN if kinds.get(n).local} == {"simulated", "replay"}
    assert {n for n in BUILT_IN if kinds.get(n).simulated} == {"simulated"}
    assert kinds.config_keys().keys() == {
        "format", "seed", "time_scale", "faults", "recorded", "call_log", "placeholder"
    }  # fmt: skip


def test_policy_export_key_variables_match_the_kinds() -> None:
    # Export repeats them so that it never imports the provider machinery: keep them equal.
    from aigw_lab.policy.export._deployments import _DEFAULT_KEY_ENVS

    kinds = registry()
    for name, variable in _DEFAULT_KEY_ENVS.items():
        assert kinds.get(name).api_key_env == variable


def test_a_config_key_refuses_wrong_types_and_booleans_for_numbers() -> None:
    key = ConfigKey(name="seed", types=(int,), what="an integer")
    key.check(None, "w")
    key.check(3, "w")
    for bad in (True, "3", 3.0):
        with pytest.raises(ConfigError, match=r"^w: seed = .* must be an integer$"):
            key.check(bad, "w")


def test_a_kind_without_a_factory_is_a_config_error_when_building() -> None:
    kind = ProviderKind(name="bare")
    with pytest.raises(ConfigError, match="kind 'bare' cannot build providers"):
        kind.build(ProviderSpec(name="p", kind="bare"), HttpClients(), {})


def test_the_simulated_kinds_preset_is_the_fleet_and_others_have_none() -> None:
    kinds = registry()
    specs = kinds.get("simulated").preset_specs(seed=3, time_scale=0)
    assert [s.name for s in specs] == ["sim-openai", "sim-anthropic", "sim-workers"]
    assert {s.kind for s in specs} == {"simulated"} and specs[0].options["seed"] == 3
    with pytest.raises(ConfigError, match="kind 'openai' has no preset providers"):
        kinds.get("openai").preset_specs()


def test_builtin_kind_references_are_all_resolvable() -> None:
    kinds = KindRegistry(BUILTIN_KINDS, entry_points=False)
    assert [k.name for k in kinds.loaded()] == list(BUILT_IN)


# --- BaseProvider: two methods --------------------------------------------------------------


class Upper(BaseProvider):
    """A provider that writes only chat and achat."""

    models = ("shout",)

    def __init__(self, name: str = "upper") -> None:
        self.name = name
        self.async_calls = 0

    def chat(self, request: ChatRequest) -> ChatResponse:
        text = request.messages[-1].text.upper()
        return ChatResponse(
            text=text,
            finish_reason="stop",
            usage=Usage(input_tokens=3, output_tokens=len(text.split())),
            provider=self.name,
            model=request.model,
        )

    async def achat(self, request: ChatRequest) -> ChatResponse:
        self.async_calls += 1
        return self.chat(request)

    def price_for(self, model: str) -> Price | None:
        return Price(1.0, 2.0) if model == "shout" else None


def test_a_two_method_provider_answers_in_every_mode_through_a_gateway() -> None:
    provider = Upper()
    assert isinstance(provider, Provider)
    with Gateway(providers=[provider]) as gw:
        assert gw.chat("upper/shout", "hello there world").text == "HELLO THERE WORLD"
        assert list(gw.stream("upper/shout", "a b  c")) == ["A ", "B  ", "C"]

        async def run() -> tuple[str, list[str]]:
            answer = await gw.achat("upper/shout", "async one")
            return answer.text, [piece async for piece in gw.astream("upper/shout", "async two")]

        text, streamed = asyncio.run(run())
        assert text == "ASYNC ONE" and "".join(streamed) == "ASYNC TWO"
        assert provider.async_calls == 2
        rows = gw.query("SELECT stream, status, cost_usd FROM calls ORDER BY timestamp")
        assert list(rows["status"]) == ["ok"] * 4
        assert sorted(rows["stream"]) == [False, False, True, True]
        # price_for is the gateway's price: 3 input tokens at $1/M plus output at $2/M.
        assert rows["cost_usd"].iloc[0] == pytest.approx((3 * 1.0 + 3 * 2.0) / 1e6)
        assert gw.list_models()["upper"] == ("shout",)


def test_a_provider_writing_only_chat_gets_achat_from_it() -> None:
    class OnlyChat(BaseProvider):
        name = "only"

        def chat(self, request: ChatRequest) -> ChatResponse:
            return ChatResponse(
                text="fine", finish_reason="stop", usage=Usage(), provider="only", model="m"
            )

    provider = OnlyChat()
    request = ChatRequest.create("m", "hi")
    assert asyncio.run(provider.achat(request)).text == "fine"
    provider.close()
    asyncio.run(provider.aclose())


def test_base_provider_without_chat_says_what_is_missing() -> None:
    class Nothing(BaseProvider):
        name = "nothing"

    with pytest.raises(NotImplementedError, match="Nothing must define chat"):
        Nothing().chat(ChatRequest.create("m", "hi"))


def test_traits_of_a_provider_written_to_the_protocol_alone_take_the_defaults() -> None:
    class Bare:
        name = "bare"

        def chat(self, request: ChatRequest) -> ChatResponse: ...

    facts = traits(Bare())
    assert (facts.name, facts.simulated, facts.models, facts.api_format) == (
        "bare",
        False,
        (),
        None,
    )
    assert facts.price_for("m") is None
    upper = Upper()
    assert traits(upper) is upper


def test_the_replay_and_the_fleet_are_base_providers() -> None:
    from aigw_lab.providers.transport import HttpProvider
    from aigw_lab.sim.fleet import SimulatedProvider
    from aigw_lab.sim.replay import ReplayProvider

    assert issubclass(ReplayProvider, BaseProvider)
    # The fleet's provider is an HttpProvider with a catalogue, not a forwarding wrapper.
    assert issubclass(SimulatedProvider, HttpProvider)
    for method in ("chat", "achat", "stream", "astream", "close", "aclose"):
        assert method not in vars(SimulatedProvider)
    for method in ("stream", "astream", "close", "aclose"):
        assert method not in vars(ReplayProvider)
