"""Rule-based routing: conditions on a request mapped to targets, first match wins.

    policy = Rules(
        "by-task",
        [
            ({"category": ["arithmetic", "code"]}, "sim-openai/sim-large"),
            ({"requires": ["tools"]}, "sim-anthropic/sim-sonnetish"),
            ({"max_chars": 200}, "sim-workers/sim-llamaish-8b"),
        ],
        default="sim-openai/sim-small",
    )

A condition holds when *all* of its given keys hold. `Rules.by_category` is provider selection
by task type; `cheapest_meeting` is cost-optimised selection (the cheapest target whose
measured quality reaches a floor, per category when the quality is known per category).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.policy.base import Policy, RouteDecision, check_name, check_target
from aigw_lab.providers.base import Price
from aigw_lab.types import ChatRequest

__all__ = [
    "Condition",
    "Rule",
    "Rules",
    "cheapest_meeting",
    "last_user_text",
    "request_category",
    "CAPABILITIES",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
#: What ``requires`` may name: tool use, image input, JSON output.
CAPABILITIES = frozenset(("tools", "images", "json"))
_CONDITION_KEYS = frozenset(
    ("category", "tags", "metadata", "regex", "keywords", "min_chars", "max_chars", "requires")
)
_IMAGE_PARTS = frozenset(("image_url", "image", "input_image"))


def last_user_text(request: ChatRequest) -> str:
    """The text of the request's last user message ('' when there is none): what rules,
    keyword checks and learned routers look at."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text
    return ""


def request_category(request: ChatRequest) -> str | None:
    """The request's task category: ``tags["category"]``, else the experiment runner's
    ``metadata["aigw_experiment"]["category"]``, else None."""
    category = request.tags.get("category") if request.tags else None
    if category is not None:
        return category
    coordinates = request.metadata.get("aigw_experiment") if request.metadata else None
    if isinstance(coordinates, Mapping):
        value = coordinates.get("category")
        return None if value is None else str(value)
    return None


def _has_capability(request: ChatRequest, capability: str) -> bool:
    if capability == "tools":
        return bool(request.tools)
    if capability == "images":
        return any(
            not isinstance(m.content, str) and any(p.type in _IMAGE_PARTS for p in m.content)
            for m in request.messages
        )
    # "json": the caller asked for JSON output (OpenAI's response_format in extra).
    response_format = request.extra.get("response_format") if request.extra else None
    if isinstance(response_format, Mapping):
        return str(response_format.get("type", "")).startswith("json")
    return False


@dataclass(frozen=True)
class Condition:
    """What a request must look like for a rule to apply; every key given must hold.

    ``category``: one or several task categories (see `request_category`); ``tags`` /
    ``metadata``: key-value pairs the request's tags / metadata must contain; ``regex``:
    searched in the last user message; ``keywords``: any of them in the last user message
    (case-insensitive); ``min_chars`` / ``max_chars``: bounds on the last user message's
    length (a cheap complexity proxy); ``requires``: capabilities the request needs
    (``"tools"``, ``"images"``, ``"json"``).
    """

    category: tuple[str, ...] | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    regex: str | None = None
    keywords: tuple[str, ...] = ()
    min_chars: int | None = None
    max_chars: int | None = None
    requires: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _lowered: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.category, str):
            object.__setattr__(self, "category", (self.category,))
        elif self.category is not None:
            object.__setattr__(self, "category", tuple(self.category))
        if isinstance(self.keywords, str):
            object.__setattr__(self, "keywords", (self.keywords,))
        object.__setattr__(self, "keywords", tuple(self.keywords))
        object.__setattr__(self, "requires", tuple(self.requires))
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        unknown = set(self.requires) - CAPABILITIES
        if unknown:
            raise ConfigError(
                f"rule condition requires unknown capability {sorted(unknown)}",
                hint=f"use any of {sorted(CAPABILITIES)}",
            )
        for name in ("min_chars", "max_chars"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"rule condition {name}={value!r} must be an integer")
        if self.regex is not None:
            try:
                pattern = re.compile(self.regex)
            except re.error as exc:
                raise ConfigError(
                    f"rule condition regex {self.regex!r} does not compile: {exc}",
                    hint="fix the regular expression (Python re syntax)",
                ) from exc
            object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_lowered", tuple(k.lower() for k in self.keywords))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Condition:
        """A condition from its JSON form (the ``"when"`` of a rule)."""
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"a rule's 'when' must be an object, got {spec!r}",
                hint='e.g. {"category": "arithmetic"} or {"max_chars": 200}',
            )
        unknown = set(spec) - _CONDITION_KEYS
        if unknown:
            raise ConfigError(
                f"rule condition has unknown key(s) {sorted(unknown)}",
                hint=f"use any of {sorted(_CONDITION_KEYS)}",
            )
        return cls(**spec)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with only the keys that are set."""
        out: dict[str, Any] = {}
        if self.category is not None:
            out["category"] = self.category[0] if len(self.category) == 1 else list(self.category)
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.regex is not None:
            out["regex"] = self.regex
        if self.keywords:
            out["keywords"] = list(self.keywords)
        if self.min_chars is not None:
            out["min_chars"] = self.min_chars
        if self.max_chars is not None:
            out["max_chars"] = self.max_chars
        if self.requires:
            out["requires"] = list(self.requires)
        return out

    def describe(self) -> str:
        """A short text for a decision's reason: ``"category=arithmetic, max_chars=200"``."""
        parts = []
        for key, value in self.to_dict().items():
            if isinstance(value, list):
                value = "|".join(map(str, value))
            parts.append(f"{key}={value}")
        return ", ".join(parts) or "always"

    def matches(self, request: ChatRequest) -> bool:
        """True when every given key holds for ``request``."""
        if self.category is not None and request_category(request) not in self.category:
            return False
        for key, value in self.tags.items():
            if request.tags.get(key) != value:
                return False
        for key, value in self.metadata.items():
            if request.metadata.get(key) != value:
                return False
        if self._pattern is not None or self._lowered or self.min_chars or self.max_chars:
            text = last_user_text(request)
            if self.min_chars is not None and len(text) < self.min_chars:
                return False
            if self.max_chars is not None and len(text) > self.max_chars:
                return False
            if self._pattern is not None and self._pattern.search(text) is None:
                return False
            if self._lowered:
                lowered = text.lower()
                if not any(k in lowered for k in self._lowered):
                    return False
        return all(_has_capability(request, c) for c in self.requires)


@dataclass(frozen=True)
class Rule:
    """When ``when`` holds, send the request to ``target``."""

    when: Condition
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {"when": self.when.to_dict(), "target": self.target}


RuleLike = Rule | tuple[Condition | Mapping[str, Any], str] | Mapping[str, Any]


def _rule(value: RuleLike, index: int) -> Rule:
    if isinstance(value, Rule):
        rule = value
    elif isinstance(value, tuple) and len(value) == 2:
        when, target = value
        rule = Rule(when if isinstance(when, Condition) else Condition.from_dict(when), target)
    elif isinstance(value, Mapping) and "target" in value:
        rule = Rule(Condition.from_dict(value.get("when", {})), value["target"])
    else:
        raise ConfigError(
            f"rule {index + 1} is {value!r}, not a rule",
            hint='write rules as {"when": {...}, "target": "provider/model"}',
        )
    check_target(rule.target, f"rule {index + 1}")
    return rule


class Rules(Policy):
    """Route by the first rule whose condition holds, else to ``default``."""

    kind = "rules"

    def __init__(self, name: str, rules: Sequence[RuleLike], default: str) -> None:
        self.name = check_name(name)
        self.rules = tuple(_rule(r, i) for i, r in enumerate(rules))
        self.default = check_target(default, "default")
        self._reasons = tuple(
            f"rule {i + 1}: {r.when.describe()}" for i, r in enumerate(self.rules)
        )

    @classmethod
    def by_category(cls, name: str, mapping: Mapping[str, str], default: str) -> Rules:
        """Provider selection by task type: ``{category: target}``, else ``default``."""
        return cls(name, [(Condition(category=(c,)), t) for c, t in mapping.items()], default)

    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*(r.target for r in self.rules), self.default]))

    def decide(self, request: ChatRequest) -> RouteDecision:
        for rule, reason in zip(self.rules, self._reasons, strict=True):
            if rule.when.matches(request):
                return RouteDecision(rule.target, reason)
        return RouteDecision(self.default, "default")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "rules": [r.to_dict() for r in self.rules],
            "default": self.default,
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None) -> Rules:
        rules = spec.get("rules", [])
        if not isinstance(rules, Sequence) or isinstance(rules, str):
            raise ConfigError(f"rules policy {spec.get('name')!r}: 'rules' must be a list")
        return cls(spec.get("name"), list(rules), spec.get("default"))  # type: ignore[arg-type]


def cheapest_meeting(
    name: str,
    quality_by_target: Mapping[str, float | Mapping[str, float]],
    prices: Mapping[str, Price | tuple[float, float]],
    floor: float,
    *,
    typical_tokens: tuple[int, int] = (500, 250),
) -> Rules:
    """Cost-optimised selection: a `Rules` policy that sends each request to the cheapest
    target whose measured quality reaches ``floor``.

    ``quality_by_target`` maps a target to its quality (one number), or to its quality per
    category (``{category: quality}``; a ``"*"`` entry is the overall quality, else the mean
    of the categories is used). ``prices`` maps each target to a `Price` or
    ``(input_per_mtok, output_per_mtok)``; targets are compared by the cost of a call of
    ``typical_tokens`` (input, output). Where no target reaches the floor, the best one is
    chosen. Per-category choices equal to the default are not written as rules.
    """
    if not quality_by_target:
        raise ConfigError("cheapest_meeting needs at least one target's quality")
    cost: dict[str, float] = {}
    for target in quality_by_target:
        check_target(target, "cheapest_meeting")
        price = prices.get(target)
        if price is None:
            raise ConfigError(
                f"cheapest_meeting: no price for {target!r}",
                hint="give every target a Price or (input_per_mtok, output_per_mtok)",
            )
        in_rate, out_rate = (
            (price.input_per_mtok, price.output_per_mtok) if isinstance(price, Price) else price
        )
        cost[target] = (typical_tokens[0] * in_rate + typical_tokens[1] * out_rate) / 1e6

    def overall(q: float | Mapping[str, float]) -> float:
        if not isinstance(q, Mapping):
            return float(q)
        if "*" in q:
            return float(q["*"])
        return sum(q.values()) / len(q) if q else 0.0

    def choose(quality: Mapping[str, float]) -> str:
        meeting = [t for t, q in quality.items() if q >= floor]
        if meeting:
            return min(meeting, key=lambda t: (cost[t], -quality[t], t))
        return max(quality, key=lambda t: (quality[t], -cost[t], t))

    default = choose({t: overall(q) for t, q in quality_by_target.items()})
    categories = sorted(
        {c for q in quality_by_target.values() if isinstance(q, Mapping) for c in q if c != "*"}
    )
    rules: list[RuleLike] = []
    for category in categories:
        known = {
            t: float(q[category])
            for t, q in quality_by_target.items()
            if isinstance(q, Mapping) and category in q
        }
        target = choose(known)
        if target != default:
            rules.append((Condition(category=(category,)), target))
    return Rules(name, rules, default)
