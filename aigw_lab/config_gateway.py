"""Building a `Gateway` from a parsed config (`aigw_lab.config.GatewayConfig`): the one
place every section of a gateway config becomes part of a gateway, whichever entry point
asks (``Gateway.from_config``, ``aigw-lab serve``, an experiment file's ``[gateway]``, a Ray
worker's gateway), so no entry point silently drops a section.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aigw_lab.gateway.gateway import Gateway
from aigw_lab.gateway.shadow import Shadow
from aigw_lab.gateway.spool_guard import SpoolGuard
from aigw_lab.policy.router import merge_policies

if TYPE_CHECKING:
    from aigw_lab.config import GatewayConfig

__all__ = ["gateway_of"]


def gateway_of(
    config: GatewayConfig,
    *,
    env: Mapping[str, str] | None = None,
    gateway_class: type[Gateway] = Gateway,
    team_sink: Any = None,
    **kwargs: Any,
) -> Gateway:
    """The gateway of a parsed config, every section applied: providers, pool, prices,
    tags, middleware (on the ``[state]`` Redis pool), ``[policies]``, ``[shadow]``,
    ``[otel]`` and ``[metrics]`` sinks, ``[log]`` options and its team log. The one builder
    of `build_gateway` (``Gateway.from_config``), an experiment file's gateway and each Ray
    worker's, so no entry point drops a section. ``team_sink``: a `TeamLogSink` the caller
    opened and closes (a Ray shard's), used as ``[log] backend = "postgres"``'s sink instead
    of one on the config's spool (the caller checks it writes to the same database).
    Keyword arguments are as `aigw_lab.config.build_gateway`'s."""
    if "log" not in kwargs:
        kwargs["log"] = (config.db or ":memory:") if config.log else None
    shared = config.shared_stores()  # the [state] Redis pool, shared by the middleware
    built: list[Any] = []  # what this builds: the gateway's to close (now, if building fails)
    try:
        middleware = [*config.middleware(), *kwargs.pop("middleware", ())]
        policies = config.load_policies()
        extra_policies = kwargs.pop("policies", None)
        if extra_policies:
            policies = merge_policies(policies, extra_policies)
        if config.shadow is not None and "shadow" not in kwargs:  # shadow=None: none
            kwargs["shadow"] = Shadow.from_config(config.shadow)
        built += config.observability_sinks(env)
        if built:
            kwargs["sinks"] = [*kwargs.get("sinks", ()), *built]
        if team_sink is None and config.team_log is not None:
            team_sink = _team_log_sink(config, kwargs["log"])
            built.append(team_sink)
        if team_sink is not None:
            kwargs["sinks"] = [*kwargs.get("sinks", ()), team_sink]
            # Calls are refused, not made unlogged, while the team log's spool is at its bound.
            middleware.append(SpoolGuard([team_sink]))
        gateway = gateway_class(
            config.providers,
            log_options=config.log_options,
            prices=config.prices,
            default_provider=config.default_provider,
            env=env,
            tags=config.tags,
            experiment_id=config.experiment_id,
            max_body_chars=config.max_body_chars,
            pool=config.pool,
            middleware=middleware,
            policies=policies,
            **kwargs,
        )
    except BaseException:
        for thing in [*built, *([shared.state] if shared is not None else [])]:
            with contextlib.suppress(Exception):
                thing.close()
        raise
    if team_sink is not None and any(thing is team_sink for thing in built):
        # Also closed if the gateway object goes unclosed (or at exit); close is idempotent.
        weakref.finalize(gateway, team_sink.close)
    # What the config built is the gateway's: closed with it, once (sinks, Redis pool).
    gateway.own(*built, *([shared.state] if shared is not None else []))
    return gateway


def _team_log_sink(config: GatewayConfig, log: Any) -> Any:
    """The `TeamLogSink` of ``[log] backend = "postgres"``."""
    # lazy: psycopg is the optional team-log extra; only a team-log config needs it
    from aigw_lab.store.team_log import TeamLogSink

    spool = config.team_log.spool_for(log, config.base_dir)
    return TeamLogSink(
        config.team_log.url, spool_dir=spool, max_spool_bytes=config.team_log.max_spool_bytes
    )
