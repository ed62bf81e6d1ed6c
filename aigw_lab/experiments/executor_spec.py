"""An experiment file's ``[executor]`` table: where its units run.

```toml
[executor]
kind = "ray"                     # "local" (default): this process
address = "auto"                 # an existing Ray cluster; leave out to start a local one
workers = 4                      # shards (one Ray task each), each at [experiment] concurrency
url_env = "AIGW_TEAM_LOG_URL"    # the variable holding the team log's postgresql:// URL
mirror = "team-mirror.duckdb"    # the driver's local copy of the team log, relative to the file
spool = "/var/lib/aigw/spool"    # each node's spool for the team log (default under ~/.aigw-lab)
num_cpus = 4                     # CPUs of a local cluster (default: all)
```

The keys are declared once (`EXECUTOR_TABLE`) and checked by the config schema's one
validator; ``aigw-lab run --executor ray`` (and ``--ray-address``, ``--workers``,
``--mirror``) override them. See docs/deployment.md, "Experiments on Ray".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aigw_lab.config_schema import Key, Table
from aigw_lab.errors import ConfigError

__all__ = ["EXECUTORS", "EXECUTOR_TABLE", "executor_options"]

#: Values of ``[executor] kind``.
EXECUTORS = ("local", "ray")

EXECUTOR_TABLE = Table(
    keys=(
        Key(
            name="kind",
            choices=EXECUTORS,
            what="an executor",
            doc='"ray": units sharded across a Ray cluster, logged to the team log',
        ),
        Key(
            name="address",
            types=(str,),
            nonempty=True,
            what="a Ray cluster address",
            hint='e.g. address = "auto" or "ray://head:10001"; leave it out for a local cluster',
            doc="an existing Ray cluster (default: start a local one)",
        ),
        Key(
            name="workers",
            types=(int,),
            low=1,
            high=1024,
            what="a whole number of workers from 1 to 1024",
            doc="shards of the units, one Ray task each",
        ),
        Key(
            name="url_env",
            types=(str,),
            pattern=r"\w+",
            what="the name of an environment variable (letters, digits, _)",
            hint='url_env = "AIGW_TEAM_LOG_URL"; the URL itself never goes in the file',
            doc="the variable holding the team log's postgresql:// URL",
        ),
        Key(
            name="mirror",
            types=(str,),
            nonempty=True,
            what="a file path string",
            doc="the driver's local DuckDB copy of the team log, relative to the file",
        ),
        Key(
            name="spool",
            types=(str,),
            nonempty=True,
            what="a directory path string",
            doc="each node's spool for the team log",
        ),
        Key(
            name="num_cpus",
            types=(int,),
            low=1,
            what="a whole number of CPUs",
            doc="CPUs of a local Ray cluster",
        ),
    )
)

# [executor] key -> RayExecutor keyword.
_KEYWORDS = {
    "address": "address",
    "workers": "workers",
    "url_env": "url_env",
    "mirror": "mirror",
    "spool": "spool_dir",
    "num_cpus": "num_cpus",
}


def executor_options(
    table: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None, where: str
) -> dict[str, Any] | None:
    """The `RayExecutor` keywords of an ``[executor]`` table (paths resolved against
    ``base_dir``), or None for the local executor. Raises `ConfigError` naming ``where``."""
    EXECUTOR_TABLE.validate(table, where)
    kind = table.get("kind", "local")
    if kind == "local":
        stray = sorted(set(table) - {"kind"})
        if stray:
            raise ConfigError(
                f"{where}: {', '.join(stray)} set but kind is 'local'",
                hint='add kind = "ray", or remove ' + ", ".join(stray),
            )
        return None
    options = {_KEYWORDS[k]: v for k, v in table.items() if k in _KEYWORDS}
    for key in ("mirror", "spool_dir"):
        value = options.get(key)
        if value is not None and base_dir is not None and not value.startswith("~"):
            if not os.path.isabs(value):
                options[key] = str(Path(base_dir) / value)
    return options
