"""A routing policy as a Cloudflare AI Gateway dynamic route (JSON).

Shapes followed:

- the route and its elements (``start``, ``conditional`` with ``true``/``false`` outputs,
  ``percentage`` with named ``"N%"`` outputs plus ``else``, ``model`` with ``provider``,
  ``model``, ``timeout`` in ms, ``retries`` and ``success``/``fallback`` outputs, ``end``):
  https://developers.cloudflare.com/ai-gateway/features/dynamic-routing/json-configuration/
- the create-route API body (``name``, ``elements``; the route id is assigned by the API):
  https://developers.cloudflare.com/api/resources/ai_gateway/subresources/dynamic_routing/methods/create/
  (also the OpenAPI-generated ``cloudflare-python`` types, ``dynamic_routing_create_params``)
- calling a route as model ``dynamic/<name>``, metadata in ``cf-aig-metadata``:
  https://developers.cloudflare.com/ai-gateway/features/dynamic-routing/usage/

Where the sources disagree or are silent (stated, not guessed away):

- the conditional's property is ``condition`` in the JSON-configuration page's example but
  ``conditions`` in the API reference; we follow the API (``condition_key`` switches it);
- the operators are "MongoDB-like": ``$eq`` is documented, ``$in`` and ``$and`` are
  assumed to work as in MongoDB;
- percentage outputs: "up to 5" named outputs plus ``else``, "fractional" percentages; we
  write at most two decimals (``"12.5%"``), give the last branch to ``else`` so rounding
  never loses traffic, and nest a further percentage element when there are more branches
  (or two equal shares, since the share is the output's name);
- the API marks both ``success`` and ``fallback`` outputs of a model element required; the
  last model of a chain falls back to ``end`` (which then returns the error).

Cloudflare expresses weighted splits, fallback chains and rules on request metadata
(category, tags, metadata; clients send them in ``cf-aig-metadata``); not prompt-text,
length or capability conditions, nor sticky assignment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.policy.export._conditions import metadata_query
from aigw_lab.policy.export._deployments import (
    Deployment,
    ProviderInfo,
    policy_addresses,
    resolve_deployments,
)

__all__ = ["cloudflare_route", "cloudflare_json"]

_MAX_NAMED_OUTPUTS = 5
# AI Gateway's provider slugs for the gateway kinds it can call directly.
_PROVIDER_SLUGS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "workers-ai": "workers-ai",
    "workers-ai-openai": "workers-ai",
}


def cloudflare_route(
    spec: Mapping[str, Any],
    *,
    providers: Mapping[str, ProviderInfo] | None = None,
    address_map: Mapping[str, str] | None = None,
    cloudflare_providers: Mapping[str, str] | None = None,
    timeout_ms: int = 60_000,
    retries: int = 2,
    condition_key: str = "conditions",
) -> dict[str, Any]:
    """The dynamic route (``{"name", "elements"}``) for a rules, split or fallback policy.

    ``cloudflare_providers`` maps gateway provider names to AI Gateway provider slugs; it
    is required for OpenAI-compatible providers (``groq``, ``mistral``, ...).
    """
    kind = spec.get("kind")
    deployments = resolve_deployments(policy_addresses(spec), providers, address_map)
    graph = _Graph(deployments, dict(cloudflare_providers or {}), timeout_ms, retries)
    if kind == "split":
        weighted = [(t["target"], float(t["weight"])) for t in spec["targets"]]
        first = graph.split([(a, w) for a, w in weighted if w > 0])
    elif kind == "fallback":
        first = graph.chain(list(spec["targets"]))
    elif kind == "rules":
        first = graph.rules(spec, condition_key)
    else:
        raise ConfigError(
            f"Cloudflare AI Gateway cannot express a {kind!r} policy directly",
            hint="export it with aigw_lab.policy.export.export(...), which approximates it",
        )
    start = {"id": "start", "type": "start", "outputs": {"next": {"elementId": first}}}
    end = {"id": "end", "type": "end", "outputs": {}}
    return {"name": spec["name"], "elements": [start, *graph.elements, end]}


def cloudflare_json(route: Mapping[str, Any]) -> str:
    """``route`` as indented JSON text (the create-route request body)."""
    return json.dumps(route, indent=2) + "\n"


class _Graph:
    """Builds elements with stable, readable ids (``model_1``, ``condition_1``, ``split_1``)."""

    def __init__(
        self,
        deployments: Mapping[str, Deployment],
        slugs: Mapping[str, str],
        timeout_ms: int,
        retries: int,
    ) -> None:
        self.deployments = deployments
        self.slugs = slugs
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.elements: list[dict[str, Any]] = []
        self._models: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def _new_id(self, prefix: str) -> str:
        self._counts[prefix] = self._counts.get(prefix, 0) + 1
        return f"{prefix}_{self._counts[prefix]}"

    def model(self, address: str, fallback: str = "end") -> str:
        """The model element for ``address`` (one per address and fallback target)."""
        key = (address, fallback)
        if key in self._models:
            return self._models[key]
        deployment = self.deployments[address]
        element_id = self._new_id("model")
        self._models[key] = element_id
        self.elements.append(
            {
                "id": element_id,
                "type": "model",
                "properties": {
                    "provider": self._slug(deployment),
                    "model": deployment.model,
                    "timeout": self.timeout_ms,
                    "retries": self.retries,
                },
                "outputs": {"success": {"elementId": "end"}, "fallback": {"elementId": fallback}},
            }
        )
        return element_id

    def chain(self, addresses: list[str]) -> str:
        """A fallback chain: each model falls back to the next; the last to ``end``."""
        next_id = "end"
        for address in reversed(addresses):
            next_id = self.model(address, fallback=next_id)
        return next_id

    def split(self, weighted: list[tuple[str, float]]) -> str:
        if not weighted:
            raise ConfigError("a split needs a target with a positive weight")
        if len(weighted) == 1:
            return self.model(weighted[0][0])
        total = sum(w for _, w in weighted)
        element_id = self._new_id("split")
        element: dict[str, Any] = {"id": element_id, "type": "percentage", "outputs": {}}
        self.elements.append(element)
        outputs: dict[str, dict[str, str]] = {}
        rest = list(weighted)
        while len(rest) > 1 and len(outputs) < _MAX_NAMED_OUTPUTS:
            label = _percent(rest[0][1] / total)
            if label in outputs:
                break  # an equal share cannot be a second output of the same name: nest it
            outputs[label] = {"elementId": self.model(rest.pop(0)[0])}
        # ``else`` takes the remaining share, so rounded percentages never drop traffic.
        remainder = self.split(rest) if len(rest) > 1 else self.model(rest[0][0])
        outputs["else"] = {"elementId": remainder}
        element["outputs"] = outputs
        return element_id

    def rules(self, spec: Mapping[str, Any], condition_key: str) -> str:
        """First match wins: a chain of conditionals, the last one's ``false`` to the default."""
        next_id = self.model(spec["default"])
        conditionals: list[dict[str, Any]] = []
        for number, rule in reversed(list(enumerate(spec["rules"], start=1))):
            query = metadata_query(rule.get("when", {}), number, "Cloudflare AI Gateway")
            element = {
                "id": f"condition_{number}",
                "type": "conditional",
                "properties": {condition_key: query},
                "outputs": {
                    "true": {"elementId": self.model(rule["target"])},
                    "false": {"elementId": next_id},
                },
            }
            conditionals.append(element)
            next_id = element["id"]
        self.elements[:0] = reversed(conditionals)  # conditionals first: reads top-down
        return next_id

    def _slug(self, deployment: Deployment) -> str:
        slug = self.slugs.get(deployment.provider) or _PROVIDER_SLUGS.get(deployment.kind)
        if slug is None:
            raise ConfigError(
                f"no AI Gateway provider slug for target {deployment.address!r} "
                f"(kind {deployment.kind!r})",
                hint=f"pass cloudflare_providers={{'{deployment.provider}': 'groq'}} (its slug)",
            )
        return slug


def _percent(share: float) -> str:
    return f"{round(share * 100, 2):g}%"
