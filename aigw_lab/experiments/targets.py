"""`Target`: one thing an experiment compares - a model address with its request parameters.

    Target(model="sim-openai/sim-small")                         # name "sim-openai/sim-small"
    Target(model="sim-openai/sim-small", params={"temperature": 0.7})
    # name "sim-openai/sim-small[temperature=0.7]"

The model address is opaque to the runner: whatever the `Gateway` accepts (a
``"provider/model"`` address today, a routing policy's name later). The target's ``name`` is
the label its calls and scores carry in the call log (the ``target`` column), so it must be
unique within an experiment and stable across runs: resuming matches work by it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aigw_lab.errors import AigwError, ConfigError
from aigw_lab.types import ChatRequest

__all__ = ["Target", "TARGET_PARAMS", "coerce_targets"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

#: Request fields a target (or an experiment's ``params``) may set. The rest of a request is
#: the dataset item's (messages, system prompt) or the runner's (metadata, experiment_id).
TARGET_PARAMS: frozenset[str] = frozenset(
    (
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "stop",
        "timeout",
        "tags",
        "extra",
        "user",
        "tenant",
    )
)


@dataclass(frozen=True, slots=True)
class Target:
    """One provider/model/params variant an experiment sends every item to.

    ``model`` is the address the gateway resolves; ``params`` are request fields
    (`TARGET_PARAMS`: temperature, max_tokens, extra={...} for provider-specific fields, ...)
    that override the experiment's own ``params``. ``name`` defaults to the model address,
    with the params appended in brackets when there are any.
    """

    name: str | None = None
    model: str = ""
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(
                f"target {self.name!r} has model {self.model!r}"
                if self.name
                else f"a target has model {self.model!r}",
                hint='give every target a model address such as "sim-openai/sim-small"',
            )
        if not isinstance(self.params, Mapping):
            raise ConfigError(
                f"target {self.model!r}: params must be a mapping, got "
                f"{type(self.params).__name__}",
                hint='write params = { temperature = 0.7 } (or params={"temperature": 0.7})',
            )
        params = MappingProxyType(dict(self.params))
        check_params(params, f"target {self.model!r}")
        object.__setattr__(self, "params", params)
        if self.name is None:
            object.__setattr__(self, "name", default_name(self.model, params))
        elif not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(
                f"target {self.model!r} has name {self.name!r}",
                hint="leave name out (it defaults to the model address) or give a string",
            )

    @property
    def label(self) -> str:
        """The target's name (never None after construction)."""
        return self.name or self.model

    def request_params(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The request fields this target sends: the experiment's ``defaults`` overridden by
        its own params (``tags`` and ``extra`` are merged key by key)."""
        merged = dict(defaults)
        for key, value in self.params.items():
            if key in ("tags", "extra") and isinstance(merged.get(key), Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return merged

    def describe(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The target as JSON-ready data, with its effective params (for the experiment
        record, and to tell whether a resumed experiment's target is still the same)."""
        return {"name": self.label, "model": self.model, "params": self.request_params(defaults)}


def default_name(model: str, params: Mapping[str, Any]) -> str:
    """``model``, plus ``[key=value,...]`` (keys sorted) when ``params`` is not empty."""
    if not params:
        return model
    parts = ",".join(f"{key}={_compact(params[key])}" for key in sorted(params))
    return f"{model}[{parts}]"


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def check_params(params: Mapping[str, Any], where: str) -> None:
    """Raise `ConfigError` naming the key when ``params`` has a field a target may not set
    or a value the request would reject."""
    for key in params:
        if key not in TARGET_PARAMS:
            raise ConfigError(
                f"{where}: {key!r} is not a request parameter a target can set",
                hint="use one of "
                + ", ".join(sorted(TARGET_PARAMS))
                + "; provider-specific fields go in extra = {...}",
            )
    for key, value in params.items():
        problem = _type_problem(key, value)
        if problem is not None:
            raise ConfigError(
                f"{where}: {key} = {value!r:.60} must be {problem}",
                hint=f"e.g. {_EXAMPLES.get(key, key + ' = ...')}",
            )
    try:
        ChatRequest.create("check/params", "x", **params)
    except AigwError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc
    except TypeError as exc:  # a wrongly typed mapping field (tags = 3, say)
        raise ConfigError(f"{where}: invalid params: {exc}") from exc


# What each parameter must be, checked before a request is built: a value of the wrong type
# would otherwise reach the request body, the call log's columns or a header.
_EXAMPLES = {
    "max_tokens": "max_tokens = 256",
    "seed": "seed = 42",
    "stop": 'stop = ["\\n\\n"]',
    "timeout": "timeout = 30.0",
    "tags": 'tags = { team = "search" }',
    "user": 'user = "alice"',
    "tenant": 'tenant = "acme"',
    "extra": "extra = { top_k = 40 }",
}


def _type_problem(key: str, value: Any) -> str | None:
    """What ``value`` should be for parameter ``key`` when it is not, else None."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in ("max_tokens", "seed"):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if key in ("temperature", "top_p"):
        return None if number else "a number"
    if key == "timeout":
        return None if number and 0 < value < float("inf") else "a positive number of seconds"
    if key == "stop":
        if isinstance(value, str) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        ):
            return None
        return "a string or a list of strings"
    if key == "tags":
        if isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return None
        return "a table of strings"
    if key in ("user", "tenant"):
        return None if isinstance(value, str) else "a string"
    if key == "extra":
        return None if isinstance(value, Mapping) else "a table"
    return None


def coerce_targets(targets: Iterable[Target | str | Mapping[str, Any]]) -> tuple[Target, ...]:
    """Targets from `Target` objects, model addresses, or ``{"model", "name", "params"}``
    dicts; raises `ConfigError` when there are none or two share a name."""
    if isinstance(targets, (str, Target, Mapping)):
        targets = [targets]  # type: ignore[list-item]
    out: list[Target] = []
    for index, value in enumerate(targets):
        if isinstance(value, Target):
            out.append(value)
        elif isinstance(value, str):
            out.append(Target(model=value))
        elif isinstance(value, Mapping):
            unknown = set(value) - {"model", "name", "params"}
            if unknown:
                raise ConfigError(
                    f"target {index + 1}: unknown key(s) {', '.join(sorted(unknown))}",
                    hint="a target has model, name and params",
                )
            out.append(Target(value.get("name"), value.get("model", ""), value.get("params", {})))
        else:
            raise ConfigError(
                f"target {index + 1} is a {type(value).__name__}",
                hint='pass Target(...) objects, model addresses, or {"model": ...} dicts',
            )
    if not out:
        raise ConfigError("an experiment needs at least one target", hint="add a target")
    seen: dict[str, Target] = {}
    for target in out:
        if target.label in seen:
            raise ConfigError(
                f"two targets are named {target.label!r}",
                hint="target names label results and must be unique: give one a name=...",
            )
        seen[target.label] = target
    return tuple(out)
