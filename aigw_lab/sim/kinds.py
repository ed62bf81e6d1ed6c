"""The in-process provider kinds: ``simulated`` (the offline fleet) and ``replay`` (recorded
real outputs or an earlier call log). The registry (`aigw_lab.providers.registry`) names them
by module path and imports this module on their first lookup; it imports nothing heavy (the
fleet and the replay load when a provider is built)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aigw_lab.providers.base import HttpClients, Provider, ProviderSpec
from aigw_lab.providers.kinds import ConfigKey, ProviderKind
from aigw_lab.sim.catalog import DEFAULT_MODELS, SIM_PROVIDERS

__all__ = ["SIMULATED", "REPLAY", "SimulatedKind", "ReplayKind"]

_SIMULATED_DEFAULTS: Mapping[str, Any] = MappingProxyType({"format": "openai"})


@dataclass(frozen=True, kw_only=True)
class SimulatedKind(ProviderKind):
    """``kind = "simulated"``: the fleet in-process, or a running ``aigw-lab simulate``
    server when ``base_url`` is set (`aigw_lab.sim.fleet.build_simulated_provider`)."""

    def build(
        self, spec: ProviderSpec, clients: HttpClients, env: Mapping[str, str] | None = None
    ) -> Provider:
        # lazy: the fleet loads httpx (~0.1-0.3 s); reading a config never needs it
        from aigw_lab.sim.fleet import build_simulated_provider

        return build_simulated_provider(spec, clients)

    def known_models(self, spec: ProviderSpec) -> tuple[str, ...] | None:
        """``options["models"]``, else the spec's ``models``, else every fleet model whose
        home format is the spec's ``format`` (for a fleet provider's name without one, its
        home format, as `aigw_lab.sim.fleet.build_simulated_provider` builds it)."""
        named = spec.options.get("models") or spec.models
        if isinstance(named, str):
            named = [named]
        if named:
            return tuple(str(m) for m in named)
        api_format = spec.options.get("format") or SIM_PROVIDERS.get(spec.name)
        return tuple(m.id for m in DEFAULT_MODELS if m.api_format == api_format)

    def default_options(self) -> Mapping[str, Any]:
        return _SIMULATED_DEFAULTS

    def preset_specs(self, **settings: Any) -> list[ProviderSpec]:
        """The whole fleet: ``sim-openai``, ``sim-anthropic`` and ``sim-workers``
        (`aigw_lab.sim.fleet.fleet_specs` with ``settings``)."""
        # lazy: the fleet loads httpx (~0.1-0.3 s); reading a config never needs it
        from aigw_lab.sim.fleet import fleet_specs

        return fleet_specs(**settings)


@dataclass(frozen=True, kw_only=True)
class ReplayKind(ProviderKind):
    """``kind = "replay"``: ``recorded = "..."`` (a shared-data recording) or ``call_log =
    "..."`` (`aigw_lab.sim.replay.build_replay_provider`). Its models are known only once
    the recording is read."""

    def build(
        self, spec: ProviderSpec, clients: HttpClients, env: Mapping[str, str] | None = None
    ) -> Provider:
        # lazy: the replay provider (and its call-log reader) loads only when one is built
        from aigw_lab.sim.replay import build_replay_provider

        return build_replay_provider(spec)


SIMULATED = SimulatedKind(
    name="simulated",
    summary="the offline simulated fleet (in-process, or an aigw-lab simulate server)",
    config_keys=(
        ConfigKey(name="format", types=(str,), what="a string"),
        ConfigKey(name="seed", types=(int,), what="an integer"),
        ConfigKey(name="time_scale", types=(int, float), what="a number"),
        ConfigKey(name="faults", types=(Mapping,), what="a table of fault rates"),
    ),
    misplaced_hint="remove them, or put provider-specific settings under options = {...}",
    local=True,
    simulated=True,
)
REPLAY = ReplayKind(
    name="replay",
    summary="recorded real outputs (shared data) or an earlier call log",
    config_keys=(
        ConfigKey(name="recorded", types=(str,), what="a recording name or file path"),
        ConfigKey(name="call_log", types=(str,), what="a call log file path"),
        ConfigKey(name="placeholder", types=(str,), what="a string"),
    ),
    local=True,
)
