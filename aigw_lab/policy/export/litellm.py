"""A routing policy as a LiteLLM proxy ``config.yaml``.

Shapes followed (LiteLLM docs):

- ``model_list`` / ``litellm_params`` (``model`` as ``provider/model``, ``api_key`` as
  ``os.environ/VAR``, ``api_base``): https://docs.litellm.ai/docs/proxy/configs
- ``router_settings`` (``routing_strategy``, ``num_retries``, ``fallbacks``,
  ``context_window_fallbacks``, ``enable_tag_filtering``):
  https://docs.litellm.ai/docs/proxy/config_settings and https://docs.litellm.ai/docs/routing
- weighted deployments (``litellm_params.weight`` with ``simple-shuffle``):
  https://docs.litellm.ai/docs/routing (weighted deployments)
- tag routing (``litellm_params.tags``; ``"default"`` for untagged requests):
  https://docs.litellm.ai/docs/proxy/tag_routing
- Workers AI (``cloudflare/@cf/...`` with ``CLOUDFLARE_ACCOUNT_ID`` or an ``api_base``):
  https://docs.litellm.ai/docs/providers/cloudflare_workers

What LiteLLM expresses: a weighted split (one model group, a deployment per target with a
``weight``), a fallback chain (the policy's group is the first target; ``fallbacks`` lists
the others, each its own group), and rules on the request's category only, as tag routing:
clients send ``"tags": ["<category>"]`` in the request body. LiteLLM's complexity/auto
routers classify prompts with their own models, not with a policy's rules, so they are not
used. Everything else goes through `approximation.closest_expressible` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.policy.export._deployments import (
    Deployment,
    ProviderInfo,
    policy_addresses,
    resolve_deployments,
)

__all__ = ["litellm_config", "litellm_yaml"]

_CLOUDFLARE_API = "https://api.cloudflare.com/client/v4/accounts/{account}/ai/v1"


def litellm_config(
    spec: Mapping[str, Any],
    *,
    providers: Mapping[str, ProviderInfo] | None = None,
    address_map: Mapping[str, str] | None = None,
    num_retries: int = 2,
    context_window_fallbacks: bool = False,
) -> dict[str, Any]:
    """The LiteLLM proxy config (``model_list`` + ``router_settings``) for a rules, split or
    fallback policy dict. Clients call the policy's ``name`` as the model.

    ``context_window_fallbacks`` also sends a fallback chain's context-length errors down
    the chain (LiteLLM keeps those apart from ordinary ``fallbacks``).
    """
    kind = spec.get("kind")
    name = spec["name"]
    deployments = resolve_deployments(policy_addresses(spec), providers, address_map)
    settings: dict[str, Any] = {"routing_strategy": "simple-shuffle", "num_retries": num_retries}
    if kind == "split":
        # A zero weight means "no traffic"; LiteLLM's shuffle is only documented for positive
        # weights, so such a deployment is left out rather than trusted to be skipped.
        model_list = [
            _entry(name, deployments[t["target"]], weight=t["weight"])
            for t in spec["targets"]
            if float(t["weight"]) > 0
        ]
        if not model_list:
            raise ConfigError(f"split {name!r} has no target with a positive weight")
    elif kind == "fallback":
        first, *rest = spec["targets"]
        model_list = [_entry(name, deployments[first])]
        model_list += [_entry(deployments[t].production_address, deployments[t]) for t in rest]
        chain = [{name: [deployments[t].production_address for t in rest]}] if rest else []
        settings["fallbacks"] = chain
        if context_window_fallbacks and chain:
            settings["context_window_fallbacks"] = chain
    elif kind == "rules":
        model_list = [
            _entry(name, deployments[address], tags=tags)
            for address, tags in _tags_by_target(spec).items()
        ]
        settings["enable_tag_filtering"] = True
    else:
        raise ConfigError(
            f"LiteLLM cannot express a {kind!r} policy directly",
            hint="export it with aigw_lab.policy.export.export(...), which approximates it",
        )
    return {"model_list": model_list, "router_settings": settings}


def litellm_yaml(config: Mapping[str, Any], header: list[str] | None = None) -> str:
    """``config`` as YAML text, ``header`` lines as ``#`` comments on top."""
    import yaml  # lazy: PyYAML, a LiteLLM dependency, needed only to render

    comments = "".join(f"# {line}\n" for line in header or ())
    return comments + yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def _tags_by_target(spec: Mapping[str, Any]) -> dict[str, list[str]]:
    """Deployment tags per target: each rule's categories, ``default`` for the default."""
    tags: dict[str, list[str]] = {}
    for number, rule in enumerate(spec["rules"], start=1):
        when = rule.get("when", {})
        if set(when) != {"category"}:
            raise ConfigError(
                f"LiteLLM tag routing can express rule {number} only if it tests the category "
                f"alone; it tests {sorted(when)}",
                hint="export with aigw_lab.policy.export.export(...), which drops such rules "
                "and reports it",
            )
        categories = [when["category"]] if isinstance(when["category"], str) else when["category"]
        bucket = tags.setdefault(rule["target"], [])
        bucket += [c for c in categories if c not in bucket]
    tags.setdefault(spec["default"], []).append("default")
    return tags


def _entry(
    model_name: str,
    deployment: Deployment,
    *,
    weight: float | None = None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    params = _litellm_params(deployment)
    if weight is not None:
        params["weight"] = weight
    if tags:
        params["tags"] = list(tags)
    return {"model_name": model_name, "litellm_params": params}


def _litellm_params(deployment: Deployment) -> dict[str, Any]:
    kind, model = deployment.kind, deployment.model
    params: dict[str, Any]
    if kind == "anthropic":
        params = {"model": f"anthropic/{model}"}
    elif kind in ("workers-ai", "workers-ai-openai"):
        # LiteLLM's Workers AI provider speaks the OpenAI-compatible /ai/v1 endpoint; with no
        # api_base it builds it from CLOUDFLARE_ACCOUNT_ID.
        params = {"model": f"cloudflare/{model}"}
        if deployment.account_id:
            params["api_base"] = _CLOUDFLARE_API.format(account=deployment.account_id)
    elif kind == "openai-compatible":
        if not deployment.base_url:
            raise ConfigError(
                f"target {deployment.address!r} is OpenAI-compatible but has no base_url",
                hint=f"set base_url on provider {deployment.provider!r}",
            )
        params = {"model": f"openai/{model}", "api_base": deployment.base_url}
    else:  # openai
        params = {"model": f"openai/{model}"}
        if deployment.base_url:
            params["api_base"] = deployment.base_url
    if deployment.api_key_env:
        params["api_key"] = f"os.environ/{deployment.api_key_env}"
    return params
