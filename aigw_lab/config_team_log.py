"""``[log] backend = "postgres"``: the team log's settings (docs/deployment.md, "One call
log for a team").

```toml
[log]
backend = "postgres"                   # "duckdb" (default): this process's file only
url_env = "AIGW_TEAM_LOG_URL"          # the variable holding postgresql://user@host/db
team_spool = "team-log.spool"          # rows wait here until PostgreSQL has them
team_spool_max_bytes = 1073741824      # past it (rows waiting), new calls get a 503
```

The URL comes from the environment variable named here, never from the file (it may hold a
password). `build_gateway` adds a `aigw_lab.store.team_log.TeamLogSink` beside the
process's own log; readers sync a mirror (`aigw-lab log sync`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigw_lab.config_schema import Key
from aigw_lab.errors import ConfigError

__all__ = ["BACKENDS", "TEAM_LOG_KEYS", "TeamLogSettings", "parse_team_log"]

#: Values of ``[log] backend``.
BACKENDS = ("duckdb", "postgres")

#: The ``[log]`` keys of the team log (joined into ``config_security.LOG_TABLE``).
TEAM_LOG_KEYS: tuple[Key, ...] = (
    Key(
        name="backend",
        choices=BACKENDS,
        what="a log backend",
        doc='"postgres": also write every row to the team log (docs/deployment.md)',
    ),
    Key(
        name="url_env",
        types=(str,),
        pattern=r"\w+",
        what="the name of an environment variable (letters, digits, _)",
        doc="the variable holding the team log's postgresql:// URL",
        hint='url_env = "AIGW_TEAM_LOG_URL"; the URL itself never goes in the file',
    ),
    Key(
        name="team_spool",
        types=(str,),
        nonempty=True,
        what="a directory path string",
        doc="where rows wait for PostgreSQL, relative to the config file",
    ),
    Key(
        name="team_spool_max_bytes",
        types=(int,),
        low=1 << 20,
        what="a whole number of bytes, at least 1048576 (1 MiB)",
        doc="the spool's bound while rows wait: past it new calls are refused (503) until "
        "PostgreSQL has them (default 1 GiB)",
    ),
)

_URL = re.compile(r"postgres(ql)?://\S+\Z")


@dataclass(frozen=True)
class TeamLogSettings:
    """``[log] backend = "postgres"``, resolved: the URL (read from ``url_env``) and the
    spool directory (None: beside the process's log file, see `spool_for`)."""

    url_env: str
    url: str = field(repr=False)
    spool: str | None = None
    max_spool_bytes: int = 1 << 30

    def spool_for(self, log: Any, base_dir: str | None) -> Path:
        """The spool directory: ``team_spool``; else ``<log file>.team-spool`` when the
        process logs to a file; else ``aigw-team-log.spool`` in the config's folder."""
        if self.spool is not None:
            return Path(self.spool)
        if isinstance(log, (str, os.PathLike)) and str(log) != ":memory:":
            return Path(f"{os.fspath(log)}.team-spool")
        return Path(base_dir or ".") / "aigw-team-log.spool"


def parse_team_log(
    table: Mapping[str, Any], *, source: str, base_dir: Any, env: Mapping[str, str]
) -> TeamLogSettings | None:
    """The team-log settings of a ``[log]`` table already checked against its schema;
    None unless ``backend = "postgres"``."""
    where = f"{source}: [log]"
    backend = table.get("backend", "duckdb")
    url_env = table.get("url_env")
    if backend != "postgres":
        stray = [key for key in ("url_env", "team_spool", "team_spool_max_bytes") if key in table]
        if stray:
            raise ConfigError(
                f"{where}: {', '.join(stray)} is set but backend is {backend!r}",
                hint='add backend = "postgres", or remove ' + ", ".join(stray),
            )
        return None
    if not url_env:
        raise ConfigError(
            f'{where}: backend = "postgres" needs url_env',
            hint='add url_env = "AIGW_TEAM_LOG_URL" and export that variable as '
            "postgresql://user@host:5432/db",
        )
    url = env.get(url_env, "")
    if not url:
        raise ConfigError(
            f"{where}: url_env names {url_env}, which is unset or empty",
            hint=f"export {url_env}=postgresql://user@host:5432/db before starting",
        )
    if not _URL.match(url):
        # Never echo the value: it may hold a password.
        raise ConfigError(
            f"{where}: {url_env} does not hold a postgresql:// URL",
            hint=f"export {url_env}=postgresql://user@host:5432/db",
        )
    spool = table.get("team_spool")
    if spool is not None and base_dir is not None and not os.path.isabs(spool):
        spool = str(Path(base_dir) / spool)
    return TeamLogSettings(
        url_env=url_env,
        url=url,
        spool=spool,
        max_spool_bytes=table.get("team_spool_max_bytes", 1 << 30),
    )
