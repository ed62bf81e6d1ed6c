"""The HTTP server's timeouts and limits: `ServerLimits`, read from ``[server]`` by
`aigw_lab.config` and applied by `aigw_lab.server` (``aigw-lab serve`` flags override them).

A plain value at the config layer so that both the config parser (below the server) and the
server itself can use it. See docs/serving.md, "Limits and timeouts".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from aigw_lab.errors import ConfigError

__all__ = ["ServerLimits", "parse_server_limits", "LIMIT_KEYS"]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """How long the server waits for a client and how much it takes on at once.

    - ``header_timeout``: seconds from a connection's first byte (or its opening) until the
      request's headers are complete; a slower client is closed (408 if it sent anything).
    - ``body_timeout``: seconds to receive the whole request body once the headers are in;
      past it the answer is 408 in the caller's API format.
    - ``keepalive_timeout``: seconds an idle keep-alive connection is kept open.
    - ``max_connections``: open connections; one more is answered 503 with Retry-After
      and closed.
    - ``max_requests_in_flight``: requests being served at once (streams included); one more
      is answered 503 with Retry-After in the caller's format.
    - ``retry_after``: seconds a 503 asks the client to wait.
    - ``max_body_bytes``: largest request body (413 past it).
    - ``max_header_bytes``: largest request line plus headers (400 past it).
    - ``max_json_depth``: deepest nesting of arrays and objects in a request body (400).
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 5.0
    max_connections: int = 1000
    max_requests_in_flight: int = 512
    retry_after: float = 1.0
    max_body_bytes: int = 32 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    max_json_depth: int = 64

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            whole = spec.type == "int"
            if not _positive(value, whole=whole):
                what = "a positive integer" if whole else "a positive number of seconds"
                raise ConfigError(
                    f"{spec.name} = {value!r} must be {what}",
                    hint=f"the default is {spec.default!r}; see docs/serving.md",
                )


#: The ``[server]`` keys `parse_server_limits` reads.
LIMIT_KEYS: frozenset[str] = frozenset(spec.name for spec in fields(ServerLimits))


def parse_server_limits(table: Mapping[str, Any], where: str) -> ServerLimits:
    """The `ServerLimits` of a ``[server]`` table (other keys are ignored here); a
    `ConfigError` at ``where`` naming a bad value."""
    values = {key: table[key] for key in LIMIT_KEYS if key in table}
    try:
        return ServerLimits(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc


def _positive(value: Any, *, whole: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if whole and not isinstance(value, int):
        return False
    return math.isfinite(value) and value > 0
