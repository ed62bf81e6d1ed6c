"""A routing policy as a Portkey gateway config (JSON).

Shapes followed (Portkey docs):

- the config object (``strategy``, ``targets``, ``override_params``, ``virtual_key``,
  ``weight``, ``retry``): https://portkey.ai/docs/api-reference/config-object
- ``loadbalance``: https://portkey.ai/docs/product/ai-gateway/load-balancing
- ``fallback`` (``strategy.on_status_codes``): https://portkey.ai/docs/product/ai-gateway/fallbacks
- ``conditional`` (``conditions: [{query, then}]``, ``default``, named targets, ``$eq``/``$in``
  on ``metadata.<key>``, ``$and``): https://portkey.ai/docs/product/ai-gateway/conditional-routing
- ``retry`` (``attempts`` up to 5, ``on_status_codes``):
  https://portkey.ai/docs/product/ai-gateway/automatic-retries
- the open-source gateway's own validator (Portkey-AI/gateway,
  src/middlewares/requestValidator/schema/config.ts) accepts the same keys.

Each target names its credentials by reference, never by key: ``@<slug>`` is a Model Catalog
provider (the current docs' form), anything else is a legacy virtual key. ``portkey_providers``
maps gateway provider names to those references (default ``@<provider name>``), and
``override_params.model`` pins the model.

Portkey expresses weighted splits, fallback chains and rules on request metadata (category,
tags, metadata; clients send them as Portkey metadata). Conditions on the prompt text, its
length or required capabilities are not expressible (Portkey compares only primitive
``params``), nor is sticky assignment per user as a policy option.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.policy.export._conditions import metadata_query
from aigw_lab.policy.export._deployments import (
    Deployment,
    ProviderInfo,
    policy_addresses,
    resolve_deployments,
)

__all__ = ["portkey_config", "portkey_json", "DEFAULT_RETRY_STATUS_CODES"]

#: Portkey's documented default retry codes, written out so the export is explicit.
DEFAULT_RETRY_STATUS_CODES = (429, 500, 502, 503, 504)
_MAX_RETRY_ATTEMPTS = 5  # "Automatic retries are triggered up to 5 times"


def portkey_config(
    spec: Mapping[str, Any],
    *,
    providers: Mapping[str, ProviderInfo] | None = None,
    address_map: Mapping[str, str] | None = None,
    portkey_providers: Mapping[str, str] | None = None,
    retry_attempts: int = 2,
    retry_on_status_codes: Sequence[int] = DEFAULT_RETRY_STATUS_CODES,
    fallback_on_status_codes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The Portkey config for a rules, split or fallback policy dict.

    ``retry_attempts=0`` leaves retries out. ``fallback_on_status_codes`` limits a fallback
    chain to those statuses (Portkey's default: any non-2xx answer).
    """
    if not 0 <= retry_attempts <= _MAX_RETRY_ATTEMPTS:
        raise ConfigError(
            f"retry_attempts={retry_attempts} is out of Portkey's range",
            hint=f"use 0 to {_MAX_RETRY_ATTEMPTS}",
        )
    kind = spec.get("kind")
    deployments = resolve_deployments(policy_addresses(spec), providers, address_map)
    refs = dict(portkey_providers or {})

    def target(address: str, *, name: str | None = None, weight: Any = None) -> dict[str, Any]:
        entry = {"name": name} if name is not None else {}
        entry.update(_target(deployments[address], refs))
        if weight is not None:
            entry["weight"] = weight
        return entry

    config: dict[str, Any]
    if kind == "split":
        config = {
            "strategy": {"mode": "loadbalance"},
            "targets": [target(t["target"], weight=t["weight"]) for t in spec["targets"]],
        }
    elif kind == "fallback":
        strategy: dict[str, Any] = {"mode": "fallback"}
        if fallback_on_status_codes:
            strategy["on_status_codes"] = list(fallback_on_status_codes)
        config = {"strategy": strategy, "targets": [target(t) for t in spec["targets"]]}
    elif kind == "rules":
        names = {a: deployments[a].production_address for a in policy_addresses(spec)}
        conditions = [
            {
                "query": metadata_query(rule.get("when", {}), number, "Portkey"),
                "then": names[rule["target"]],
            }
            for number, rule in enumerate(spec["rules"], start=1)
        ]
        config = {
            "strategy": {
                "mode": "conditional",
                "conditions": conditions,
                "default": names[spec["default"]],
            },
            "targets": [target(a, name=n) for a, n in names.items()],
        }
    else:
        raise ConfigError(
            f"Portkey cannot express a {kind!r} policy directly",
            hint="export it with aigw_lab.policy.export.export(...), which approximates it",
        )
    if retry_attempts:
        config["retry"] = {
            "attempts": retry_attempts,
            "on_status_codes": list(retry_on_status_codes),
        }
    return config


def portkey_json(config: Mapping[str, Any]) -> str:
    """``config`` as indented JSON text (what Portkey's config editor accepts)."""
    return json.dumps(config, indent=2) + "\n"


def _target(deployment: Deployment, refs: Mapping[str, str]) -> dict[str, Any]:
    ref = refs.get(deployment.provider, f"@{deployment.provider}")
    credentials = {"provider": ref} if ref.startswith("@") else {"virtual_key": ref}
    return {**credentials, "override_params": {"model": deployment.model}}
