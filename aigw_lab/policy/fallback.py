"""A fallback chain as a policy: try targets in order until one answers.

    chain = FallbackChain("resilient", ["sim-openai/sim-small", "sim-anthropic/sim-haikuish"])

It moves to the next target on the failures the gateway's `Retry` middleware also falls back
on (see `aigw_lab.gateway.reliability`): retryable errors (rate limits, 5xx, overload,
network, timeouts, malformed answers) once the retry stage gave up on them, an exhausted
quota, and a prompt too long for the model. It never moves on from a request that is itself
wrong (invalid parameters, authentication, content filtered): another model would refuse it
too, and paying for that is worse than saying so at once. Each target gets the gateway's own
retries first, when the gateway has a `Retry` middleware.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aigw_lab.errors import AigwError, AllAttemptsFailedError, ConfigError
from aigw_lab.gateway.health import should_fall_back
from aigw_lab.policy._async.chains import fallback_acall
from aigw_lab.policy._sync.chains import fallback_call
from aigw_lab.policy.base import (
    Policy,
    RouteDecision,
    check_name,
    check_target,
)
from aigw_lab.types import ChatRequest

__all__ = ["FallbackChain", "should_fall_back"]


class FallbackChain(Policy):
    """Try ``targets`` in order; the first answer wins. When all fail, the last error is
    raised, or `AllAttemptsFailedError` listing every target's error."""

    kind = "fallback"
    single_decision = False

    def __init__(self, name: str, targets: Sequence[str]) -> None:
        self.name = check_name(name)
        if isinstance(targets, str) or not targets:
            raise ConfigError(
                f"fallback chain {name!r} needs a list of targets, got {targets!r}",
                hint='e.g. ["sim-openai/sim-small", "sim-anthropic/sim-haikuish"]',
            )
        self.chain = tuple(check_target(t, f"fallback chain {name!r}") for t in targets)

    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.chain))

    def decide(self, request: ChatRequest) -> RouteDecision:
        return RouteDecision(self.chain[0], "first of the chain")

    def stream_targets(self, request: ChatRequest) -> Sequence[str]:
        return self.chain

    # Written once (aigw_lab.policy._async.chains); the sync one is generated.
    call = fallback_call  # type: ignore[assignment]
    acall = fallback_acall  # type: ignore[assignment]

    def _all_failed(self, errors: list[AigwError]) -> AigwError:
        if len(errors) == 1:
            return errors[0]
        listed = "; ".join(f"{t}: {e.error_type}" for t, e in zip(self.chain, errors, strict=False))
        return AllAttemptsFailedError(
            f"policy {self.name!r}: every target of the fallback chain failed: {listed}",
            errors=errors,
            hint="each attempt is in the call log under the same trace_id; add targets or "
            "check their health",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "targets": list(self.chain)}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, artifacts: Path | None = None) -> FallbackChain:
        return cls(spec.get("name"), spec.get("targets", ()))  # type: ignore[arg-type]
