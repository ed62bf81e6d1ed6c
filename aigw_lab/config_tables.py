"""The schemas of a config file's tables that belong to the config itself (``[gateway]``,
``[providers.NAME]``, prices, ``[semantic_cache]``, ``[policies]``) and `CONFIG_TABLE`, the
whole file: each component's own table (``[cache]``, ``[budgets]``, ``[server]``, ...) is
declared beside the component and joined here. `aigw_lab.config` validates a file against
`CONFIG_TABLE` in one pass (`aigw_lab.config_schema`); `key_rows` lists every key for
docs/config.md."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from aigw_lab.alerts import ALERTS_TABLE
from aigw_lab.config_schema import NUMBER, TABLE, Key, Table
from aigw_lab.config_security import LOG_TABLE
from aigw_lab.config_server import SERVER_TABLE
from aigw_lab.gateway.budget_limits import BUDGETS_TABLE
from aigw_lab.gateway.cache import CACHE_TABLE
from aigw_lab.gateway.health import HEALTH_TABLE
from aigw_lab.gateway.observe_settings import METRICS_TABLE, OTEL_TABLE
from aigw_lab.gateway.ratelimit_rules import RATE_LIMITS_TABLE
from aigw_lab.gateway.reliability import RETRY_TABLE
from aigw_lab.gateway.shadow import SHADOW_TABLE
from aigw_lab.gateway.state.settings import STATE_TABLE
from aigw_lab.policy.explore import EXPLORATION_TABLE
from aigw_lab.providers.base import POOL_KEYS
from aigw_lab.providers.registry import KindRegistry

__all__ = [
    "CONFIG_TABLE",
    "GATEWAY_TABLE",
    "PROVIDER_TABLE",
    "PRICE_TABLE",
    "SEMANTIC_TABLE",
    "key_rows",
    "keys_markdown",
]


def _section(name: str, table: Table | None = None) -> Key:
    return Key(
        name=name,
        types=TABLE,
        what="a table",
        table=table,
        hint=f"write it as [{name}] or {name} = {{...}}",
    )


#: ``[prices."provider/model"]`` and ``[providers.NAME.prices.MODEL]``: USD per 1M tokens.
PRICE_TABLE = Table(
    keys=tuple(
        Key(
            name=name,
            types=NUMBER,
            low=0,
            what="a non-negative number",
            required=required,
            hint="prices are USD per 1M tokens",
            doc=doc,
        )
        for name, required, doc in (
            ("input_per_mtok", True, "USD per 1M input tokens"),
            ("output_per_mtok", True, "USD per 1M output tokens"),
            ("cache_read_per_mtok", False, "USD per 1M cached input tokens read"),
            ("cache_write_per_mtok", False, "USD per 1M input tokens written to the cache"),
        )
    ),
    hint="input_per_mtok = ..., output_per_mtok = ...",
)
_PRICE_ENTRY = Key(name="", types=TABLE, what="a table", table=PRICE_TABLE, hint=PRICE_TABLE.hint)
_STRINGS = "a table of strings"
_SECONDS = "a positive number of seconds"

#: ``[providers.NAME]``, before the keys of its kind (`ProviderKind.config_keys`, kept in
#: ``ProviderSpec.options``) are added.
PROVIDER_TABLE = Table(
    keys=(
        Key(name="kind", types=(str,), what="a provider kind name", doc="which API it speaks"),
        Key(name="base_url", types=(str,), what="a string", doc="where the API lives"),
        Key(
            name="api_key_env",
            types=(str,),
            what="a string",
            doc="the NAME of the variable holding the key",
        ),
        Key(name="account_id", types=(str,), what="a string", doc="a Cloudflare account"),
        Key(
            name="account_id_env",
            types=(str,),
            what="a string",
            doc="the variable holding the Cloudflare account",
        ),
        Key(
            name="timeout",
            types=NUMBER,
            low=0,
            low_open=True,
            what=_SECONDS,
            doc="read timeout (default 60)",
        ),
        Key(
            name="connect_timeout",
            types=NUMBER,
            low=0,
            low_open=True,
            what=_SECONDS,
            doc="connect timeout (default 10)",
        ),
        Key(name="headers", types=TABLE, items=(str,), what=_STRINGS, doc="extra headers"),
        Key(
            name="cf_gateway",
            types=(str,),
            what="a string",
            doc="route through this Cloudflare AI Gateway",
        ),
        Key(
            name="cf_gateway_token_env",
            types=(str,),
            what="a string",
            doc="the variable holding the AI Gateway's token",
        ),
        Key(name="cf_headers", types=TABLE, items=(str,), what=_STRINGS, doc="cf-aig-* headers"),
        Key(
            name="models",
            types=(list,),
            items=(str,),
            what="a list of model names",
            doc="the models it serves (optional)",
        ),
        Key(
            name="prices",
            types=TABLE,
            what="a table of model = price tables",
            table=Table(keys=(), other=_PRICE_ENTRY),
            doc="its own prices per model",
        ),
        Key(
            name="price_provider_id",
            types=(str,),
            what="a string",
            doc="its genai-prices provider id",
        ),
        # Typed here because the providers read options only when first built, where a
        # wrong type would be a traceback.
        Key(name="options", types=TABLE, what="a table", doc="options of its kind"),
    )
)

_POOL_DOCS = {
    "max_connections": "open upstream connections (default 200)",
    "max_keepalive": "idle upstream connections kept for reuse (default 50)",
    "pool_timeout": "seconds a call waits for a free connection (default 5)",
    "shards": "independent pools the connections are split into (default 1)",
    "transport": (
        '"auto" (default: "lean" when httptools is installed), "httpx" or "lean": the '
        "upstream HTTP/1.1 transport"
    ),
}

#: ``[gateway]``.
GATEWAY_TABLE = Table(
    keys=(
        Key(
            name="db",
            types=(str,),
            nonempty=True,
            what="a file path string",
            doc="the DuckDB call log, relative to the config file",
        ),
        Key(
            name="default_provider",
            types=(str,),
            what="a configured provider's name",
            doc='used for a model given without "provider/"',
        ),
        Key(name="tags", types=TABLE, items=(str,), what=_STRINGS, doc="tags of every call"),
        Key(
            name="experiment_id",
            types=(str,),
            what="a string",
            doc="the experiment every call belongs to",
        ),
        Key(name="log", types=(bool,), what="true or false", doc="false: no call log"),
        _section("retry", RETRY_TABLE),
        # PoolSettings checks their values (for Python callers too).
        *(
            Key(name=key, what=f"PoolSettings' {name}", doc=_POOL_DOCS[name])
            for key, name in POOL_KEYS.items()
        ),
    )
)

#: ``[semantic_cache] index``, as a table.
INDEX_TABLE = Table(
    keys=(
        Key(name="kind", choices=("exact", "ivf"), what='"exact" or "ivf"'),
        Key(
            name="exact_below",
            types=(int,),
            low=0,
            what="a number of entries",
            doc="ivf: a partition smaller than this is searched exactly",
        ),
        Key(name="nlist", types=(int,), low=1, what="a positive integer", doc="ivf: clusters"),
        Key(
            name="nprobe",
            types=(int,),
            low=1,
            what="a positive integer",
            doc="ivf: clusters searched per lookup",
        ),
        Key(
            name="deep_nprobe",
            types=(int,),
            low=1,
            what="a positive integer",
            doc="ivf: clusters searched again when the best found is below deep_below "
            "(default 32; equal to nprobe: one pass)",
        ),
        Key(
            name="deep_below",
            types=(int, float),
            low=0,
            low_open=True,
            high=1,
            what="a similarity above 0 and at most 1",
            doc="ivf: the best similarity below which a lookup searches deep_nprobe clusters "
            "(default: the cache's threshold)",
        ),
    )
)
#: ``[semantic_cache]``: the embedding ``model`` and ``batch_size``, the ``index``, and
#: `SemanticCache`'s keyword arguments (it checks their values, for Python callers too).
SEMANTIC_TABLE = Table(
    keys=(
        Key(
            name="model",
            types=(str,),
            what="an embedding model name",
            doc="the embedding model (default all-MiniLM-L6-v2; all-MiniLM-L6-v2-static256: fast)",
        ),
        Key(
            name="index",
            types=(str, Mapping),
            what="a string or a table",
            table=INDEX_TABLE,
            hint='write index = "exact", index = "ivf" or index = { kind = "ivf", nprobe = 32 }',
        ),
        Key(
            name="batch_size",
            types=(int,),
            low=1,
            what="a positive integer",
            doc="texts embedded at once (default 64)",
        ),
        *(
            Key(name=name, what=f"SemanticCache's {name}", doc=doc)
            for name, doc in (
                ("threshold", "the least cosine similarity that may serve an answer"),
                ("max_entries", "beyond it, the least recently used entries are evicted"),
                ("ttl", "seconds an answer stays fresh"),
                ("top_k", "nearest entries checked against the guards"),
                ("allow_sampled", "also serve/store requests with temperature > 0"),
                ("allow_tools", "also serve/store requests that carry tools"),
                ("guard_numbers", "refuse a hit whose numbers differ (default true)"),
                ("guard_negation", "refuse a hit whose negations differ (default true)"),
                ("batch_window", "seconds concurrent lookups wait to share one embedding call"),
            )
        ),
        Key(
            name="verifier",
            choices=("lexical", "off"),
            what='"lexical" or "off"',
            doc="check each candidate's meaning before serving it (default lexical)",
        ),
    )
)

#: ``[fallbacks]``: `Fallbacks` checks the chains and their targets (docs/reliability.md).
FALLBACKS_TABLE = Table(
    keys=(
        Key(name="default", what="a list of targets", doc="targets of every other model"),
        Key(
            name="context_windows",
            what="a table of target = tokens",
            doc="skip a target whose window the prompt exceeds",
        ),
    ),
    other=Key(name="", what="a list of targets", doc='"provider/model" = [targets, ...]'),
)

#: The tables of a config file.
CONFIG_TABLE = Table(
    keys=(
        _section("gateway", GATEWAY_TABLE),
        _section("providers"),  # each provider's table depends on its kind: _parse_provider
        _section("prices", Table(keys=(), other=_PRICE_ENTRY)),
        _section("fallbacks", FALLBACKS_TABLE),
        _section("health", HEALTH_TABLE),
        _section("cache", CACHE_TABLE),
        _section("budgets", BUDGETS_TABLE),
        _section("rate_limits", RATE_LIMITS_TABLE),
        _section("semantic_cache", SEMANTIC_TABLE),
        _section("server", SERVER_TABLE),
        _section(
            "policies",
            Table(
                keys=(),
                other=Key(
                    name="",
                    types=(str,),
                    nonempty=True,
                    what="a policy file path",
                    hint='write NAME = "policies/NAME.json", relative to the config file',
                ),
            ),
        ),
        _section("log", LOG_TABLE),
        _section("shadow", SHADOW_TABLE),
        _section("state", STATE_TABLE),
        _section("otel", OTEL_TABLE),
        _section("metrics", METRICS_TABLE),
        _section("alerts", ALERTS_TABLE),
        _section(
            "exploration",
            Table(
                keys=(),
                other=Key(
                    name="",
                    types=TABLE,
                    what="a table",
                    table=EXPLORATION_TABLE,
                    hint="write [exploration.NAME] for a policy NAME of [policies]",
                ),
            ),
        ),
    )
)


def key_rows() -> Iterator[tuple[str, str, str]]:
    """``(table, key, what it is)`` for every key of a config file, the keys each provider
    kind built in adds under ``[providers.NAME]`` included."""
    yield from CONFIG_TABLE.rows()
    yield from PROVIDER_TABLE.rows("[providers.NAME]")
    for kind in KindRegistry(entry_points=False).loaded():  # built-ins: docs name those
        for key in kind.config_keys:
            yield "[providers.NAME]", key.name, f"{key.doc or key.what} (kind = {kind.name!r})"


def keys_markdown() -> str:
    """`key_rows` as the Markdown table of docs/config.md's "Every key" section (a test
    checks that the document shows this table)."""
    lines = ["| Table | Key | What it is |", "|---|---|---|"]
    for table, key, what in key_rows():
        lines.append(f"| `{table}` | `{key}` | {what.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
