"""Encrypted DuckDB databases for the call log and the cache: `Encryption` and the code that
opens a database file with a key.

DuckDB (1.4 and later) encrypts a whole database file, its write-ahead log and, when asked,
its temporary files with AES-GCM, when the file is attached with ``ENCRYPTION_KEY``. Writing
needs a cryptographic library: DuckDB's ``httpfs`` extension brings OpenSSL; without it
DuckDB has only its built-in mbedtls, which it refuses to write with unless told
``force_mbedtls_unsafe`` (DuckDB's own warning: "NOT securely encrypted"; its random numbers
for nonces are not from a cryptographic generator). aigw_lab never downloads an extension:
it loads ``httpfs`` when it is already installed, uses the built-in module only when the
configuration says ``crypto = "builtin"``, and otherwise refuses with a message saying both.

The key itself is a string from an environment variable (``[log] encryption_key_env``); it
never goes in a file, a log line or an error message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import StoreError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "CRYPTO_CHOICES",
    "Encryption",
    "EncryptedConnection",
    "attach_error",
    "attach_sql",
    "database_creator",
    "load_crypto",
    "open_encrypted",
]

#: ``"openssl"``: only with DuckDB's httpfs extension installed; ``"builtin"``: DuckDB's
#: mbedtls fallback, which DuckDB itself calls not secure (see the module docstring).
CRYPTO_CHOICES = ("openssl", "builtin")

#: Name of the encrypted database inside the connection (its cursors `USE` it too).
ALIAS = "aigw_encrypted"


@dataclass(frozen=True)
class Encryption:
    """How to encrypt a database file: ``key`` (never shown in a repr or a message),
    ``source`` (what error messages call the key, e.g. the environment variable holding it)
    and ``crypto`` (one of `CRYPTO_CHOICES`)."""

    key: str = field(repr=False)
    source: str = "the encryption key"
    crypto: str = "openssl"

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key or "\x00" in self.key:
            raise StoreError(
                f"the database encryption key from {self.source} is empty or not text",
                hint=f"set {self.source} to a long random string, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        if self.crypto not in CRYPTO_CHOICES:
            raise StoreError(
                f"unknown encryption crypto {self.crypto!r}",
                hint=f"use one of {', '.join(CRYPTO_CHOICES)}",
            )


class EncryptedConnection:
    """A DuckDB connection whose database is an attached, encrypted file: every cursor it
    hands out (the log writer's and readers') starts in that database too, as the
    connection itself does after ``USE``."""

    __slots__ = ("_conn",)

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._conn.cursor()
        cursor.execute(f"USE {ALIAS}")
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> EncryptedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


def open_encrypted(
    path: Path,
    encryption: Encryption,
    *,
    what: str,
    config: dict[str, Any] | None = None,
    read_only: bool = False,
) -> EncryptedConnection:
    """Open (creating if missing) the encrypted database ``path``; ``what`` names it in
    errors ("the call log x.duckdb"). A wrong key, an unencrypted file or missing crypto
    support is a `StoreError` saying what to do. Reading (``read_only``) needs no crypto
    library beyond DuckDB's own."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    conn = duckdb.connect(":memory:", config=dict(config or {}))
    try:
        if not read_only:
            load_crypto(conn, encryption, what=what)
        try:
            conn.execute(attach_sql(path, encryption, read_only=read_only))
        except duckdb.Error as exc:
            raise attach_error(exc, encryption, what=what) from None  # never chain: the
            # statement holding the key could show in a traceback
        conn.execute(f"USE {ALIAS}")
        # DuckDB's spill files would otherwise hold the same rows in the clear.
        conn.execute("SET temp_file_encryption = true")
    except BaseException:
        conn.close()
        raise
    return EncryptedConnection(conn)


def create_encrypted(path: Path, encryption: Encryption, *, what: str) -> None:
    """Create an empty encrypted database at ``path`` and close it (for
    `aigw_lab.store.files.create_private_database`)."""
    open_encrypted(path, encryption, what=what).close()


def database_creator(
    what: str, config: Mapping[str, Any] | None, encryption: Encryption | None
) -> Callable[[Path], None]:
    """What `aigw_lab.store.files.create_private_database` calls to make an empty DuckDB
    database (encrypted when ``encryption`` is given) at the staging path it is handed; for
    the call log and the DuckDB cache alike."""

    def create(staging: Path) -> None:
        if encryption is not None:
            create_encrypted(staging, encryption, what=what)
        else:
            # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
            import duckdb

            duckdb.connect(str(staging), config=dict(config or {})).close()

    return create


def load_crypto(conn: duckdb.DuckDBPyConnection, encryption: Encryption, *, what: str) -> None:
    """Make ``conn``'s instance able to write encrypted files as ``encryption.crypto`` says
    (the setting is the instance's), or raise a `StoreError` saying how."""
    # lazy: duckdb loads in ~0.1-0.2 s; only opening a database needs it
    import duckdb

    if encryption.crypto == "builtin":
        conn.execute("SET force_mbedtls_unsafe = true")
        return
    conn.execute("SET autoinstall_known_extensions = false")
    row = conn.execute(
        "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'httpfs'"
    ).fetchone()
    try:
        if row and row[0]:
            conn.execute("LOAD httpfs")
            return
    except duckdb.Error:
        pass  # installed for another DuckDB build: same answer as not installed
    raise StoreError(
        f"cannot encrypt {what}: DuckDB writes encrypted databases securely only with its "
        "httpfs extension (OpenSSL), which is not installed here",
        hint="install it once with python -c \"import duckdb; duckdb.sql('INSTALL httpfs')\", "
        'or set [log] encryption_crypto = "builtin" to accept DuckDB\'s built-in crypto, '
        "which DuckDB does not consider secure (see docs/security.md)",
    )


def attach_sql(
    path: Path, encryption: Encryption, *, read_only: bool = False, alias: str = ALIAS
) -> str:
    """The ``ATTACH`` statement of an encrypted database (it holds the key: never log it).
    ``alias`` is SQL: a plain name, or one checked by `aigw_lab.store.engine.check_catalog_name`
    and quoted."""
    quoted_path = str(path).replace("'", "''")
    quoted_key = encryption.key.replace("'", "''")
    mode = ", READ_ONLY" if read_only else ""
    return f"ATTACH '{quoted_path}' AS {alias} (ENCRYPTION_KEY '{quoted_key}'{mode})"


def attach_error(exc: Exception, encryption: Encryption, *, what: str) -> StoreError:
    """The `StoreError` for a failed encrypted ``ATTACH`` (the key masked in its text)."""
    message = str(exc).replace(encryption.key, "***")
    lowered = message.lower()
    if "wrong encryption key" in lowered:
        return StoreError(
            f"cannot open {what}: it is encrypted with a different key than the one in "
            f"{encryption.source}",
            hint=f"set {encryption.source} to the key the file was created with; without "
            "that key its rows cannot be read",
        )
    if "is not encrypted" in lowered:
        return StoreError(
            f"cannot open {what} with a key: the file is not encrypted",
            hint="choose a new path for the encrypted log (aigw_lab does not encrypt an "
            "existing file in place), or remove [log] encryption_key_env to open it as it is",
        )
    if "lock" in lowered:
        return StoreError(
            f"{what} is in use by another process",
            hint="DuckDB allows one writing process per file: close it there, or use another path",
        )
    return StoreError(
        f"cannot open {what}: {message}",
        hint="check that the file is an encrypted DuckDB database, or choose another path",
    )
