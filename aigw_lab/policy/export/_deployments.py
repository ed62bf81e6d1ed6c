"""Where each policy target lives in production: the shared input of the three exporters.

A policy names its targets by gateway address (``"provider/model"``), where ``provider`` is
a provider *name* from the gateway config. An exporter needs more than the name: the API
format (``kind``), the base URL of an OpenAI-compatible server, the variable holding the key.
`resolve_deployments` turns each address into a `Deployment` from the config's
`ProviderSpec`s (or plain dicts), after an optional ``address_map`` has renamed offline
addresses (``"replay/gpt-4-1106-preview"``) to the production ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aigw_lab.errors import ConfigError

__all__ = ["Deployment", "ProviderInfo", "resolve_deployments", "policy_addresses"]

#: Kinds a production config can call. ``simulated`` and ``replay`` run only in-process.
EXPORTABLE_KINDS = ("openai", "anthropic", "workers-ai", "workers-ai-openai", "openai-compatible")

# The variable read when a provider names none: the same defaults as the gateway's registry
# (`ProviderKind.api_key_env` in aigw_lab/providers/kinds.py), repeated so that exporting a policy
# never imports the provider machinery.
_DEFAULT_KEY_ENVS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "workers-ai": "CLOUDFLARE_API_TOKEN",
    "workers-ai-openai": "CLOUDFLARE_API_TOKEN",
}

#: A provider as the exporters accept it: a `ProviderSpec` (``GatewayConfig.providers``) or a
#: mapping with the same keys (``kind``, ``base_url``, ``api_key_env``, ``account_id``).
ProviderInfo = Any


@dataclass(frozen=True, slots=True)
class Deployment:
    """One policy target resolved for production.

    ``address`` is the address the policy uses; ``provider``/``model`` come from the
    production address (after ``address_map``); ``kind`` is the API format.
    """

    address: str
    provider: str
    model: str
    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    account_id: str | None = None

    @property
    def production_address(self) -> str:
        return f"{self.provider}/{self.model}"


def policy_addresses(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Every address a policy dict may call, in first-mention order."""
    kind = spec.get("kind")
    found: list[str] = []
    if kind == "rules":
        found += [rule["target"] for rule in spec.get("rules", ())]
        found.append(spec["default"])
    elif kind == "split":
        found += [entry["target"] for entry in spec.get("targets", ())]
    elif kind == "cascade":
        found += [step["target"] for step in spec.get("steps", ())]
    else:  # fallback, adaptive, learned: a plain list of addresses
        found += list(spec.get("targets", ()))
    return tuple(dict.fromkeys(found))


def resolve_deployments(
    addresses: Iterable[str],
    providers: Mapping[str, ProviderInfo] | Iterable[ProviderInfo] | None = None,
    address_map: Mapping[str, str] | None = None,
) -> dict[str, Deployment]:
    """Each address -> its `Deployment`.

    ``providers`` maps provider names to `ProviderSpec`s or dicts (a sequence of specs, such
    as ``GatewayConfig.providers``, works too). A provider missing from it is understood
    only when its name is itself a kind (``openai``, ``anthropic``, ``workers-ai``).
    """
    table = _provider_table(providers)
    renames = dict(address_map or {})
    resolved: dict[str, Deployment] = {}
    for address in addresses:
        production = renames.get(address, address)
        provider, sep, model = production.partition("/")
        if not sep or not provider or not model:
            raise ConfigError(
                f"policy target {production!r} is not a 'provider/model' address",
                hint="name targets as 'provider/model', or map them with address_map={...}",
            )
        info = table.get(provider)
        if info is None and provider in EXPORTABLE_KINDS:
            info = {"kind": provider}
        if info is None:
            raise ConfigError(
                f"cannot export target {production!r}: provider {provider!r} is unknown",
                hint=(
                    f"pass providers={{'{provider}': ProviderSpec(...)}} (for example "
                    "GatewayConfig.providers), or address_map={...} to a production address"
                ),
            )
        kind = _get(info, "kind")
        if kind not in EXPORTABLE_KINDS:
            raise ConfigError(
                f"cannot export target {production!r}: provider kind {kind!r} runs only "
                "inside aigw_lab",
                hint=(
                    f"map it to a production model, e.g. address_map={{'{address}': "
                    f"'openai/{model}'}}"
                ),
            )
        resolved[address] = Deployment(
            address=address,
            provider=provider,
            model=model,
            kind=kind,
            base_url=_get(info, "base_url"),
            api_key_env=_get(info, "api_key_env") or _DEFAULT_KEY_ENVS.get(kind),
            account_id=_get(info, "account_id"),
        )
    return resolved


def _provider_table(
    providers: Mapping[str, ProviderInfo] | Iterable[ProviderInfo] | None,
) -> dict[str, ProviderInfo]:
    if providers is None:
        return {}
    if isinstance(providers, Mapping):
        return dict(providers)
    return {_get(spec, "name"): spec for spec in providers}


def _get(info: ProviderInfo, key: str) -> Any:
    if isinstance(info, Mapping):
        return info.get(key)
    return getattr(info, key, None)
