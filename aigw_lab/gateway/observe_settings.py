"""``[otel]`` and ``[metrics]`` of a config file: their schemas, the checks of what a user
may write there (an exporter URL, environment variable names, headers), and the sinks they
build (`aigw_lab.gateway.otel_sink.OtelSink`, `aigw_lab.gateway.metrics_sink.MetricsSink`).

Secrets never go in the file: ``[otel] headers_env`` names the variable holding the
exporter's headers (``key=value,key2=value2``, as ``OTEL_EXPORTER_OTLP_HEADERS``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aigw_lab.config_schema import NUMBER, Key, Table
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.metrics_sink import MetricsSink
from aigw_lab.gateway.otel_sink import OtelSink

__all__ = [
    "METRICS_TABLE",
    "OTEL_TABLE",
    "check_env_name",
    "check_http_url",
    "metrics_sink_from_config",
    "otel_sink_from_config",
    "parse_headers",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
_ENV_DOC = "the NAME of the environment variable holding it (never the secret itself)"

#: ``[otel]``: OpenTelemetry traces of every call (docs/deployment.md).
OTEL_TABLE = Table(
    keys=(
        Key(name="enabled", types=(bool,), what="true or false", doc="false: no traces"),
        Key(
            name="endpoint",
            types=(str,),
            nonempty=True,
            required=True,
            what="an http(s) URL",
            hint='endpoint = "http://127.0.0.1:4318" (spans go to its /v1/traces)',
            doc="the OTLP/HTTP collector's base URL",
        ),
        Key(
            name="headers_env",
            types=(str,),
            pattern=_ENV_NAME.pattern,
            what="an environment variable name",
            hint=_ENV_DOC,
            doc="the variable holding export headers (k=v,k2=v2)",
        ),
        Key(
            name="service_name",
            types=(str,),
            nonempty=True,
            pattern=r"[A-Za-z0-9._:/-]{1,128}",
            what="a service name (letters, digits, ._:/-)",
            doc='the resource\'s service.name (default "aigw-lab")',
        ),
        Key(
            name="capture_content",
            types=(bool,),
            what="true or false",
            doc="put prompts and answers in spans (default false)",
        ),
        Key(
            name="sample_ratio",
            types=NUMBER,
            low=0,
            high=1,
            what="a number from 0 to 1",
            doc="the share of calls traced, by trace id (default 1)",
        ),
        Key(
            name="timeout",
            types=NUMBER,
            low=0,
            low_open=True,
            high=300,
            what="a positive number of seconds (at most 300)",
            doc="seconds an export may take (default 10)",
        ),
    )
)

#: ``[metrics]``: Prometheus metrics at ``/metrics`` of ``serve`` (docs/deployment.md).
METRICS_TABLE = Table(
    keys=(
        Key(name="enabled", types=(bool,), what="true or false", doc="false: no /metrics"),
        Key(
            name="max_label_values",
            types=(int,),
            low=1,
            high=10_000,
            what="an integer from 1 to 10000",
            doc="distinct values kept per label; later ones count as _other (default 100)",
        ),
        Key(
            name="max_label_sets",
            types=(int,),
            low=1,
            high=100_000,
            what="an integer from 1 to 100000",
            doc="provider/model/tenant/cache combinations kept; later ones _other (default 2000)",
        ),
        Key(
            name="require_key",
            types=(bool,),
            what="true or false",
            doc="/metrics needs a gateway key (default true)",
        ),
        Key(
            name="tenants",
            types=(list,),
            items=(str,),
            what="a list of tenant names",
            doc="tenants always kept as label values",
        ),
    )
)


def check_env_name(name: Any, where: str) -> str:
    """``name`` if it is an environment variable name, else a `ConfigError` at ``where``."""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(
            f"{where} = {name!r} is not an environment variable name",
            hint="letters, digits and _, not starting with a digit: " + _ENV_DOC,
        )
    return name


def check_http_url(url: Any, where: str) -> str:
    """``url`` if it is a plain http(s) URL with a host and no credentials, fragment,
    whitespace or control characters, at most 2048 characters; else a `ConfigError`."""
    hint = "write an http:// or https:// URL with a host, e.g. http://127.0.0.1:4318"
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise ConfigError(f"{where} is not a URL of at most 2048 characters", hint=hint)
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ConfigError(f"{where} has whitespace or control characters", hint=hint)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{where} = {url!r} is not a valid URL ({exc})", hint=hint) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} = {url!r} is not an http(s) URL with a host", hint=hint)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{where} has credentials in it",
            hint="put secrets in an environment variable (headers_env / *_env), not the URL",
        )
    if parts.fragment:
        raise ConfigError(f"{where} = {url!r} has a #fragment", hint=hint)
    del port
    return url


def parse_headers(text: str, where: str) -> dict[str, str]:
    """``key=value,key2=value2`` (``OTEL_EXPORTER_OTLP_HEADERS``'s form) as a dict; a
    malformed entry is a `ConfigError` that never shows the value (it may be a secret)."""
    headers: dict[str, str] = {}
    for number, entry in enumerate(text.split(","), 1):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: entry #{number} is not name=value with a valid header name",
                hint="write the variable as key=value,key2=value2",
            )
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ConfigError(
                f"{where}: the value of {name} has control characters",
                hint="header values may not hold CR, LF or other control characters",
            )
        headers[name] = value
    return headers


def otel_sink_from_config(
    table: Mapping[str, Any], env: Mapping[str, str], *, source: str = "config"
) -> OtelSink | None:
    """The `OtelSink` of an ``[otel]`` table (already checked against `OTEL_TABLE`), or
    None when ``enabled = false``; headers are read from ``env``."""
    if not table.get("enabled", True):
        return None
    where = f"{source}: [otel]"
    endpoint = check_http_url(table["endpoint"], f"{where} endpoint")
    headers: dict[str, str] = {}
    if "headers_env" in table:
        name = check_env_name(table["headers_env"], f"{where} headers_env")
        if name not in env:
            raise ConfigError(
                f"{where} headers_env: the environment variable {name} is not set",
                hint=f"export {name}='key=value' before starting, or remove headers_env",
            )
        headers = parse_headers(env[name], f"{where} headers_env ({name})")
    return OtelSink(
        endpoint=endpoint,
        headers=headers,
        service_name=table.get("service_name", "aigw-lab"),
        capture_content=table.get("capture_content", False),
        sample_ratio=float(table.get("sample_ratio", 1.0)),
        timeout_s=float(table.get("timeout", 10.0)),
    )


def metrics_sink_from_config(
    table: Mapping[str, Any],
    *,
    providers: Iterable[str] = (),
    models: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> MetricsSink | None:
    """The `MetricsSink` of a ``[metrics]`` table (already checked against
    `METRICS_TABLE`), or None when ``enabled = false``. ``providers``/``models``: the
    configured ones, always kept as label values. ``env`` holding
    ``PROMETHEUS_MULTIPROC_DIR`` (set by ``serve --workers``): counts shared by processes."""
    if not table.get("enabled", True):
        return None
    return MetricsSink(
        max_values=table.get("max_label_values", 100),
        max_label_sets=table.get("max_label_sets", 2000),
        require_key=table.get("require_key", True),
        known={
            "provider": tuple(providers),
            "model": tuple(models),
            "tenant": tuple(table.get("tenants", ())),
        },
        multiprocess_dir=(env or {}).get("PROMETHEUS_MULTIPROC_DIR") or None,
    )
