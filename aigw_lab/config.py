"""The gateway's TOML configuration: parsed strictly, so a typo is an error that names the key
and suggests the right one, never a silently ignored setting.

Example::

    [gateway]
    db = "calls.duckdb"              # the DuckDB call log, relative to this file
    default_provider = "sim-openai"  # used when a model is given without "provider/"

    [providers.openai]
    kind = "openai"
    api_key_env = "OPENAI_API_KEY"   # the NAME of the variable; keys never live in the file

    [providers.workers]
    kind = "workers-ai"
    account_id_env = "CLOUDFLARE_ACCOUNT_ID"
    api_key_env = "CLOUDFLARE_API_TOKEN"
    cf_gateway = "my-gateway"        # route through a Cloudflare AI Gateway
    cf_headers = { cache-ttl = "3600" }

    [prices."openai/gpt-4o-mini"]    # overrides genai-prices (custom costs)
    input_per_mtok = 0.15
    output_per_mtok = 0.60

See ``docs/config.md`` for every key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aigw_lab.alerts import AlertSettings
from aigw_lab.config_gateway import gateway_of
from aigw_lab.config_middleware import (
    build_middleware,
    build_reliability,
    check_semantic_model,
)
from aigw_lab.config_schema import reject_unknown_keys
from aigw_lab.config_security import parse_log_settings

# Re-exported: [server] settings have their own module.
from aigw_lab.config_server import ServerKeySpec, ServerSettings, parse_server
from aigw_lab.config_tables import (
    CONFIG_TABLE,
    PRICE_TABLE,
    PROVIDER_TABLE,
)
from aigw_lab.config_team_log import parse_team_log
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.budget import Budget
from aigw_lab.gateway.gateway import Gateway
from aigw_lab.gateway.observe_settings import (
    check_http_url,
    metrics_sink_from_config,
    otel_sink_from_config,
)
from aigw_lab.gateway.ratelimit import RateLimiter
from aigw_lab.gateway.reliability import Fallbacks, check_fallback_targets, check_targets
from aigw_lab.gateway.shadow import Shadow
from aigw_lab.gateway.state.settings import StateSettings
from aigw_lab.policy.explore import explore_policies
from aigw_lab.policy.policyfile import load_policy
from aigw_lab.providers.base import PoolSettings, Price, ProviderSpec
from aigw_lab.providers.registry import KindRegistry, default_registry
from aigw_lab.store.sanitize import DEFAULT_MAX_BODY_CHARS, check_max_body_chars

__all__ = [
    "CONFIG_TABLE",
    "GatewayConfig",
    "build_gateway",
    "ServerKeySpec",
    "ServerSettings",
    "load_config",
    "parse_config",
    "parse_price",
]


@dataclass(frozen=True)
class GatewayConfig:
    """A parsed configuration. ``db`` is already resolved against the config file's folder;
    ``None`` means no persistent log (an in-memory one is used)."""

    providers: tuple[ProviderSpec, ...]
    db: str | None = None
    log: bool = True
    default_provider: str | None = None
    prices: Mapping[str, Price] = field(default_factory=lambda: MappingProxyType({}))
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    experiment_id: str | None = None
    source: str | None = None
    #: ``[log] max_body_chars``: text fields of a log row longer than this are cut (flagged).
    max_body_chars: int = DEFAULT_MAX_BODY_CHARS
    #: ``[gateway.retry]``, ``[fallbacks]`` and ``[health]``, checked at load time and turned
    #: into a `aigw_lab.gateway.Retry` middleware by `reliability_middleware`.
    retry: Mapping[str, Any] | None = None
    fallbacks: Mapping[str, Any] | None = None
    health: Mapping[str, Any] | None = None
    #: ``[cache]``: the exact cache (see docs/caching.md); ``base_dir`` resolves its path.
    cache: Mapping[str, Any] | None = None
    base_dir: str | None = None
    #: ``[budgets]``: spending limits (see docs/budgets.md).
    budgets: Mapping[str, Any] | None = None
    #: ``[rate_limits]``: token buckets (see docs/rate_limits.md).
    rate_limits: Mapping[str, Any] | None = None
    #: ``[semantic_cache]``: embedding-similarity cache (see docs/semantic_cache.md).
    semantic_cache: Mapping[str, Any] | None = None
    #: ``[server]``: settings of ``aigw-lab serve`` (see docs/serving.md).
    server: ServerSettings | None = None
    #: ``[gateway] pool_*``: the upstream connection pool (None: `PoolSettings` defaults).
    pool: PoolSettings | None = None
    #: ``[policies]``: routing policy name -> policy file path (resolved against the config
    #: file's folder); loaded by `load_policies` (see docs/routing.md).
    policies: Mapping[str, str] | None = None
    #: ``[exploration.NAME]``: explore around the ``[policies]`` policy NAME
    #: (`aigw_lab.policy.explore.Exploring`, see docs/routing.md).
    exploration: Mapping[str, Any] | None = None
    #: ``[log]``: body modes, redaction, encryption, crash-spool durability
    #: (`aigw_lab.config_security.LogSettings`); None without a ``[log]`` table.
    log_settings: Any = None
    #: ``[shadow]``: shadow traffic to a candidate target (docs/routing.md, "Shadow
    #: traffic"); `build_gateway` turns it into a `aigw_lab.gateway.shadow.Shadow`.
    shadow: Mapping[str, Any] | None = None
    #: ``[state]``: where the primitives keep their state (`StateSettings`; None: each
    #: process in its own memory). See docs/deployment.md.
    state: StateSettings | None = None
    #: ``[otel]``, ``[metrics]``: traces and metrics sinks (docs/deployment.md), built by
    #: `observability_sinks`; ``[alerts]``: read by ``aigw-lab alerts``.
    otel: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    alerts: Mapping[str, Any] | None = None
    #: ``[log] backend = "postgres"``: the team log (`aigw_lab.config_team_log`); None
    #: writes only this process's log.
    team_log: Any = None
    #: The one `SharedStores` of this config, made by `shared_stores` on first use.
    _shared: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)

    def observability_sinks(self, env: Mapping[str, str] | None = None) -> list[Any]:
        """The extra sinks ``[otel]`` and ``[metrics]`` ask for (empty without them)."""
        sinks: list[Any] = []
        if self.otel is not None:
            env = os.environ if env is None else env
            otel = otel_sink_from_config(self.otel, env, source=self.source or "config")
            if otel is not None:
                sinks.append(otel)
        if self.metrics is not None:
            env = os.environ if env is None else env
            models = [m for spec in self.providers for m in (_spec_models(spec) or ())]
            metrics = metrics_sink_from_config(
                self.metrics,
                providers=[spec.name for spec in self.providers],
                models=models,
                env=env,
            )
            if metrics is not None:
                sinks.append(metrics)
        return sinks

    @property
    def log_options(self) -> Mapping[str, Any]:
        """``[log]`` as `CallLog` keyword arguments (only the settings the file sets), for
        the log the gateway opens."""
        if self.log_settings is None:
            return MappingProxyType({})
        return MappingProxyType(self.log_settings.calllog_options())

    def load_policies(self) -> dict[str, Any]:
        """The ``[policies]`` files, loaded: ``{name: Policy}`` (empty when there are none)."""
        if not self.policies:
            return {}
        loaded: dict[str, Any] = {}
        known = {spec.name: _spec_models(spec) for spec in self.providers}
        for name, path in self.policies.items():
            try:
                loaded[name] = load_policy(path)
                # A target the gateway does not serve would fail each call routed to it.
                places = [(t, f"policy file {path}: target") for t in loaded[name].targets()]
                check_targets(places, known, default_provider=self.default_provider)
            except ConfigError as exc:
                raise ConfigError(
                    f"{self.source}: [policies] {name}: {exc.message}", hint=exc.hint
                ) from exc
        if self.exploration:
            try:
                loaded = explore_policies(loaded, self.exploration)
            except ConfigError as exc:
                raise ConfigError(f"{self.source}: {exc.message}", hint=exc.hint) from exc
        return loaded

    def middleware(self, **injected: Any) -> list[Any]:
        """Every middleware this config asks for: the exact cache, then retry/fallback/health
        (the gateway orders them by kind anyway). With ``[state] backend = "redis"``, rate
        limits, budgets, the exact cache and circuit breakers keep their state there
        (`aigw_lab.config_middleware.build_middleware`)."""
        return build_middleware(self, **injected)

    def shared_stores(self) -> Any:
        """The `SharedStores` of ``[state] backend = "redis"`` (None otherwise): one per
        config, so every `middleware` call shares one connection pool and its threads;
        whoever builds a gateway from them closes ``.state`` with it (`Gateway.own`)."""
        if self.state is None:
            return None
        held = self._shared
        if not held or held[0].state.closed:
            stores = self.state.stores()
            if stores is None:
                return None
            held[:] = [stores]
        return held[0]

    def reliability_middleware(self, shared: Any = None, **injected: Any) -> list[Any]:
        """The retry/fallback/health middleware this config asks for (empty if none);
        ``shared`` (`SharedStores`) keeps the circuit breakers' records."""
        return build_reliability(self, shared, **injected)


def build_gateway(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    gateway_class: type[Gateway] = Gateway,
    **kwargs: Any,
) -> Gateway:
    """A gateway built from the TOML config file at ``path``: what `Gateway.from_config`
    does (it calls this). ``log``, when given, overrides the config's ``[gateway] db``;
    ``middleware`` is added to the config's, ``policies`` merged with its ``[policies]``
    (a name in both is a `ConfigError`); other keyword arguments go to ``gateway_class``."""
    config = load_config(path, env=env)
    return gateway_of(config, env=env, gateway_class=gateway_class, **kwargs)


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read and validate a TOML config file."""
    p = Path(path)
    data = read_toml(
        p, "config", hint="check the path, or start from the example in docs/config.md"
    )
    return parse_config(data, base_dir=p.parent, source=str(p), env=env)


def read_toml(path: Path, what: str, *, hint: str) -> dict[str, Any]:
    """The tables of the TOML file at ``path``; a `ConfigError` naming ``what`` the file is
    (``"config"``, ``"experiment"``) when it is missing, not a file, unreadable or invalid."""
    if not path.exists():
        raise ConfigError(f"{what} file {str(path)!r} does not exist", hint=hint)
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a file"
        raise ConfigError(f"{what} path {str(path)!r} is {kind}", hint="pass the .toml file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}", hint="fix the syntax at the line and column shown"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} file {str(path)!r}: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses once per nested array or table
        raise ConfigError(
            f"{path}: not readable TOML: nested too deeply",
            hint="a config nests a few levels at most: check that this is the file you meant",
        ) from exc


def parse_config(
    data: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    source: str = "config",
    env: Mapping[str, str] | None = None,
    kinds: KindRegistry | None = None,
) -> GatewayConfig:
    """Validate an already-parsed config mapping (the TOML's tables as dicts); provider kinds
    are looked up in ``kinds`` (default: `default_registry`)."""
    env = os.environ if env is None else env
    kinds = default_registry() if kinds is None else kinds
    CONFIG_TABLE.validate(data, source)
    gw = data.get("gateway", {})
    providers_table = data.get("providers", {})
    if not providers_table:
        raise ConfigError(
            f"{source}: no providers configured",
            hint='add a table like [providers.sim] with kind = "simulated"',
        )
    specs = tuple(
        _parse_provider(name, table, f"{source}: [providers.{name}]", env, kinds)
        for name, table in providers_table.items()
    )

    prices: dict[str, Price] = {}
    for key, value in data.get("prices", {}).items():
        if "/" not in key:
            raise ConfigError(
                f"{source}: [prices] key {key!r} is not a model address",
                hint='write the key as "provider/model", e.g. [prices."openai/gpt-4o-mini"]',
            )
        prices[key] = _price(value)

    default_provider = gw.get("default_provider")
    names = {s.name for s in specs}
    if default_provider is not None and default_provider not in names:
        raise ConfigError(
            f"{source}: [gateway] default_provider = {default_provider!r} is not a configured "
            "provider",
            hint=f"use one of {sorted(names)}",
        )
    db = gw.get("db")
    if db is not None and db != ":memory:" and base_dir is not None and not os.path.isabs(db):
        db = str(Path(base_dir) / db)
    log_table = data.get("log", {})  # its other keys: config_security
    max_body_chars = check_max_body_chars(
        log_table.get("max_body_chars", DEFAULT_MAX_BODY_CHARS), f"{source}: [log] max_body_chars"
    )
    reliability = {
        "retry": _optional_table(gw, "retry"),
        "fallbacks": _optional_table(data, "fallbacks"),
        "health": _optional_table(data, "health"),
    }
    config = GatewayConfig(
        providers=specs,
        db=db,
        log=gw.get("log", True),
        default_provider=default_provider,
        prices=MappingProxyType(prices),
        tags=MappingProxyType(dict(gw.get("tags", {}))),
        experiment_id=gw.get("experiment_id"),
        source=source,
        max_body_chars=max_body_chars,
        **reliability,
        cache=_optional_table(data, "cache"),
        budgets=_optional_table(data, "budgets"),
        rate_limits=_optional_table(data, "rate_limits"),
        semantic_cache=_optional_table(data, "semantic_cache"),
        server=parse_server(data["server"], source, base_dir) if "server" in data else None,
        pool=PoolSettings.from_table(gw, f"{source}: [gateway]"),
        policies=_parse_policies(data, base_dir, source),
        exploration=_optional_table(data, "exploration"),
        base_dir=None if base_dir is None else str(base_dir),
        log_settings=_parse_log(data, source, env),
        shadow=_optional_table(data, "shadow"),
        state=_parse_state(data, source, env),
        otel=_optional_table(data, "otel"),
        metrics=_optional_table(data, "metrics"),
        alerts=_optional_table(data, "alerts"),
        team_log=parse_team_log(log_table, source=source, base_dir=base_dir, env=env),
    )
    if config.semantic_cache is not None:
        check_semantic_model(config.semantic_cache, source)
    try:
        config.reliability_middleware()  # validate now: a typo fails at load, not at first use
        if config.fallbacks:
            _check_fallbacks(config)
        for name in config.exploration or {}:
            if name not in (config.policies or {}):
                raise ConfigError(
                    f"[exploration.{name}] names no policy of [policies]",
                    hint='add it to [policies] (NAME = "policies/NAME.json"), or fix the name',
                )
        if config.budgets is not None:
            Budget.from_config(config.budgets)
        if config.rate_limits is not None:
            RateLimiter.from_config(config.rate_limits)
        if config.shadow is not None:
            Shadow.from_config(config.shadow)
        if config.otel is not None:
            check_http_url(config.otel["endpoint"], "[otel] endpoint")
        if config.alerts is not None:
            AlertSettings.from_config(config.alerts)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from exc
    return config


def _parse_state(data: Mapping[str, Any], source: str, env: Mapping[str, str]) -> Any:
    if "state" not in data:
        return None
    return StateSettings.from_table(data["state"], env, f"{source}: [state]")


def _check_fallbacks(config: GatewayConfig) -> None:
    """Every ``[fallbacks]`` address must name a configured provider (and, when its models
    are known, one of them) or a ``[policies]`` policy as ``policy/NAME``: an unknown target
    would only show itself when the fallback is needed."""
    known: dict[str, tuple[str, ...] | None] = {
        spec.name: _spec_models(spec) for spec in config.providers
    }
    if config.policies:
        known.setdefault("policy", tuple(config.policies))
    check_fallback_targets(
        Fallbacks.from_mapping(config.fallbacks or {}),
        known,
        default_provider=config.default_provider,
    )


def _spec_models(spec: ProviderSpec) -> tuple[str, ...] | None:
    """The models a configured provider serves, or None when it takes any model name (an HTTP
    API without a ``models`` list, a replay whose recording is read later): its kind says."""
    return default_registry().known_models(spec)


def parse_price(value: Any, where: str) -> Price:
    """A `Price` from a ``{input_per_mtok, output_per_mtok, ...}`` table (`PRICE_TABLE`)."""
    PRICE_TABLE.validate(value, where)
    return _price(value)


def _price(table: Mapping[str, Any]) -> Price:
    """A `Price` from a table `PRICE_TABLE` has checked."""
    return Price(**{key: float(number) for key, number in table.items()})


def _parse_policies(
    data: Mapping[str, Any], base_dir: str | os.PathLike[str] | None, source: str
) -> Mapping[str, str] | None:
    """``[policies]``: ``name = "path/to/policy.json"``, paths relative to the config file.
    The files must exist now; they are read when the gateway is built."""
    table = _optional_table(data, "policies")
    if table is None:
        return None
    resolved: dict[str, str] = {}
    for name, path in table.items():
        where = f"{source}: [policies] {name}"
        if "/" in name:
            raise ConfigError(f"{where}: policy names cannot contain '/'", hint="rename it")
        full = Path(path) if base_dir is None or os.path.isabs(path) else Path(base_dir) / path
        if not full.is_file():
            raise ConfigError(
                f"{where}: policy file {str(full)!r} does not exist",
                hint="write it with aigw_lab.policy.save_policy, or fix the path (relative to "
                "the config file)",
            )
        resolved[name] = str(full)
    return MappingProxyType(resolved)


def _parse_log(data: Mapping[str, Any], source: str, env: Mapping[str, str]) -> Any:
    if "log" not in data:
        return None
    return parse_log_settings(data["log"], source, env)


def _parse_provider(
    name: str, table: Mapping[str, Any], where: str, env: Mapping[str, str], kinds: KindRegistry
) -> ProviderSpec:
    if "/" in name or not name:
        raise ConfigError(f"{where}: provider names cannot contain '/'", hint="rename the table")
    if not isinstance(table, Mapping):
        PROVIDER_TABLE.validate(table, where)  # names the problem
    # Looked up first so that an installed package's kind is known with its keys; an
    # unknown kind is reported after the typo check.
    kind_name = table.get("kind")
    kind = kinds.find(kind_name)
    owners = kinds.config_keys()  # each kind-specific key -> its kind
    # Typos first: the clearest error.
    reject_unknown_keys(table, PROVIDER_TABLE.names() | owners.keys(), where)
    if kind_name is None:
        raise ConfigError(f"{where} has no kind", hint=f"add kind = one of {list(kinds.names())}")
    if kind is None:
        raise ConfigError(
            f"{where}: kind = {kind_name!r} is not a provider kind",
            hint=f"use one of {list(kinds.names())}",
        )
    if any(owners.get(k, kind) is not kind for k in table):  # another kind's keys
        for other in kinds.loaded():
            misplaced = sorted(k for k in table if owners.get(k) is other and other is not kind)
            if misplaced:
                raise ConfigError(
                    f'{where}: {", ".join(misplaced)} only apply to kind = "{other.name}"',
                    hint=other.misplaced_fix(),
                )
    PROVIDER_TABLE.with_keys(kind.config_keys).validate(table, where)
    options = {**kind.default_options(), **table.get("options", {})}
    for key in kind.key_names():
        if key in table:
            options[key] = table[key]
    account_id = table.get("account_id")
    account_env = table.get("account_id_env")
    if account_id is None and account_env:
        account_id = env.get(account_env) or None
        options["account_id_env"] = account_env
    prices = {model: _price(value) for model, value in table.get("prices", {}).items()}
    return ProviderSpec(
        name=name,
        kind=kind_name,
        account_id=account_id,
        timeout=float(table.get("timeout", 60.0)),
        connect_timeout=float(table.get("connect_timeout", 10.0)),
        headers=MappingProxyType(dict(table.get("headers", {}))),
        cf_headers=MappingProxyType(dict(table.get("cf_headers", {}))),
        models=tuple(table.get("models", [])),
        prices=MappingProxyType(prices),
        options=MappingProxyType(options),
        **{key: table[key] for key in _SPEC_STRINGS if key in table},
    )


_SPEC_STRINGS = (
    "base_url",
    "api_key_env",
    "cf_gateway",
    "cf_gateway_token_env",
    "price_provider_id",
)


def _optional_table(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """A table `CONFIG_TABLE` has checked, frozen; None when absent."""
    if key not in data:
        return None
    return MappingProxyType(dict(data[key]))
