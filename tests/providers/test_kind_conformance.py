"""The conformance suite over the registry of provider kinds: every kind the registry holds
(the built-in ones, any installed package's, and this suite's test plugin) is checked here,
so a newly registered kind is tested without editing this file.

- Every kind: its facts are well formed (name, summary, config keys that do not shadow the
  common provider keys, an AI Gateway slug only on HTTP kinds).
- Built-in HTTP kinds: the wire-level matrix of `test_conformance` (`adapters.ADAPTERS`)
  must hold a direct row and an AI Gateway row for each; a kind missing there fails here,
  naming it. Other HTTP kinds (installed packages', this suite's ``groqish``) speaking a wire
  format the fixtures know answer a chat and a stream from `FakeUpstream`, with their key
  sent the kind's way.
- In-process kinds: built from a spec by `build_provider`, a provider answers one request in
  all four modes (chat, achat, stream, astream) with the same text, streams end in exactly
  one `StreamEnd`, and it closes. Kinds that need more than a bare spec have a recipe
  below; any other kind gets the bare spec ``models = ["m"]``.

Declared gaps: an HTTP kind with a wire format the fixtures do not know is skipped by the
wire check (its facts are still checked).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from aigw_lab.config_tables import PROVIDER_TABLE
from aigw_lab.providers.base import HttpClients, Provider, ProviderSpec
from aigw_lab.providers.base_provider import traits
from aigw_lab.providers.kinds import HttpKind, ProviderKind
from aigw_lab.providers.registry import BUILTIN_KINDS, KindRegistry, build_provider
from aigw_lab.testing.fake_upstream import FakeUpstream
from aigw_lab.types import ChatRequest, StreamEnd, TextDelta

from .adapters import ADAPTERS, EXPECTED
from .plugin_kind import MODULE, write_plugin
from .wire_formats import ANSWER

BUILTIN_NAMES = KindRegistry(BUILTIN_KINDS, entry_points=False).names()
#: This suite's third-party kinds (tests/providers/plugin_kind.py).
PLUGINS = ("echo", "groqish")


def _kind_names() -> list[str]:
    # Read at collection: the built-in kinds and whatever installed packages declare.
    names = list(KindRegistry().names())
    return names + [p for p in PLUGINS if p not in names]


@pytest.fixture
def kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KindRegistry]:
    """The registry with the test plugin installed (on sys.path) as well."""
    monkeypatch.syspath_prepend(str(write_plugin(tmp_path / "site")))
    yield KindRegistry()
    sys.modules.pop(MODULE, None)


@pytest.mark.parametrize("name", _kind_names())
def test_a_kind_states_well_formed_facts(name: str, kinds: KindRegistry) -> None:
    kind = kinds.get(name)
    assert isinstance(kind, ProviderKind) and kind.name == name
    assert kind.summary, f"kind {name!r} has no summary"
    shadowed = set(kind.key_names()) & PROVIDER_TABLE.names()
    assert not shadowed, f"kind {name!r} redefines common provider keys {shadowed}"
    for key in kind.config_keys:
        assert key.types and key.what, f"kind {name!r}: key {key.name!r} states no type"
    if kind.gateway_slug is not None:
        assert isinstance(kind, HttpKind), "only HTTP kinds are routed through an AI Gateway"
    assert kind.auth_header and kind.auth_header == kind.auth_header.lower()


@pytest.mark.parametrize("name", _kind_names())
def test_an_http_kind_is_tested_on_the_wire(
    name: str, kinds: KindRegistry, fake: FakeUpstream, clients: HttpClients
) -> None:
    kind = kinds.get(name)
    if not isinstance(kind, HttpKind):
        pytest.skip(f"{name!r} is not an HTTP kind: see the in-process checks")
    if name not in BUILTIN_NAMES:
        _check_on_the_wire(kind, fake, clients)
        return
    rows = {(row.kind, row.gateway) for row in ADAPTERS}
    assert (name, False) in rows, f"add a direct row for kind {name!r} to adapters.ADAPTERS"
    if kind.gateway_slug is not None:
        assert (name, True) in rows, f"add an AI Gateway row for {name!r} to adapters.ADAPTERS"


def _check_on_the_wire(kind: HttpKind, fake: FakeUpstream, clients: HttpClients) -> None:
    """A chat and a stream of a kind outside the built-in matrix, against the fixtures of
    its wire format, at its default path under the fake's address."""
    if kind.api_format not in EXPECTED:
        pytest.skip(f"gap: no fixtures of wire format {kind.api_format!r} for {kind.name!r}")
    expected = EXPECTED[kind.api_format]
    variable = kind.api_key_env or "CONFORMANCE_KEY"
    spec = ProviderSpec(
        name="conformance",
        kind=kind.name,
        base_url=f"{fake.url}/v1",
        api_key_env=None if kind.api_key_env else variable,
        account_id="acct123" if kind.account_path else None,
    )
    provider = build_provider(spec, clients, env={variable: "k-conformance"}, kinds=_only(kind))
    request = ChatRequest.create("m", "What is the capital of France?")
    fake.reply_json(expected.body)
    answer = provider.chat(request)
    assert answer.text == ANSWER and answer.usage == expected.usage
    sent = fake.last_request
    scheme = f"{kind.auth_scheme} " if kind.auth_scheme else ""
    assert sent.headers[kind.auth_header] == scheme + "k-conformance"
    fake.reply_sse(expected.stream, chunk_size=17)
    _check_stream(list(provider.stream(request)), ANSWER)


def _only(kind: ProviderKind) -> KindRegistry:
    return KindRegistry([kind], entry_points=False)


# --- in-process kinds answer in every mode --------------------------------------------------

Recipe = Callable[[Path], tuple[ProviderSpec, ChatRequest]]


def _simulated(tmp_path: Path) -> tuple[ProviderSpec, ChatRequest]:
    spec = ProviderSpec(
        name="conformance",
        kind="simulated",
        options=MappingProxyType({"format": "openai", "time_scale": 0}),
    )
    return spec, ChatRequest.create("sim-small", "What is 2 + 2?", temperature=0)


def _replay(tmp_path: Path) -> tuple[ProviderSpec, ChatRequest]:
    # A replay of a call log answers what was logged: log one call first.
    from aigw_lab import Gateway

    log = tmp_path / "earlier.duckdb"
    with Gateway.simulated_fleet(log=str(log), time_scale=0) as gw:
        gw.chat("sim-openai/sim-small", "What is 2 + 2?", temperature=0)
    spec = ProviderSpec(
        name="conformance",
        kind="replay",
        options=MappingProxyType({"call_log": str(log)}),
    )
    return spec, ChatRequest.create("sim-openai/sim-small", "What is 2 + 2?", temperature=0)


def _bare(name: str) -> Recipe:
    def recipe(tmp_path: Path) -> tuple[ProviderSpec, ChatRequest]:
        spec = ProviderSpec(name="conformance", kind=name, models=("m",))
        return spec, ChatRequest.create("m", "What is 2 + 2?")

    return recipe


#: Kinds that need more than a bare spec to answer.
RECIPES: dict[str, Recipe] = {"simulated": _simulated, "replay": _replay}


@pytest.mark.parametrize("name", _kind_names())
def test_an_in_process_kind_answers_in_every_mode(
    name: str, kinds: KindRegistry, tmp_path: Path
) -> None:
    kind = kinds.get(name)
    if isinstance(kind, HttpKind):
        pytest.skip(f"{name!r} is an HTTP kind: see test_an_http_kind_is_tested_on_the_wire")
    spec, request = RECIPES.get(name, _bare(name))(tmp_path)
    clients = HttpClients()
    provider = build_provider(spec, clients, env={}, kinds=kinds)
    try:
        assert isinstance(provider, Provider)
        facts = traits(provider)
        assert facts.name == spec.name
        if kind.simulated:
            assert facts.simulated

        answer = provider.chat(request)
        assert answer.provider == spec.name and answer.text
        assert answer.model == request.model

        events = list(provider.stream(request))
        _check_stream(events, answer.text)

        async def run() -> None:
            assert (await provider.achat(request)).text == answer.text
            _check_stream([e async for e in provider.astream(request)], answer.text)
            await provider.aclose()

        asyncio.run(run())
    finally:
        provider.close()
        clients.close()


def _check_stream(events: list, text: str) -> None:
    *deltas, end = events
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert isinstance(end, StreamEnd), "a stream ends with exactly one StreamEnd"
    assert "".join(d.text for d in deltas) == text == end.response.text
