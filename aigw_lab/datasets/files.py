"""Reading the files users bring as datasets, with errors a user can act on.

Every loader reads through here, so a missing path, a directory, an unreadable file, bytes
that are not UTF-8, a line that is not JSON (or JSON nested too deep to parse) or not an
object is one `ConfigError` that names the file, the line (and the byte, for encodings) and
the fix, never a traceback from the codec or the JSON parser.

    for number, record in iter_jsonl(path, "GSM8K"):   # (line number, dict) per record
        ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aigw_lab.errors import ConfigError

__all__ = ["existing_file", "read_text", "iter_jsonl", "parse_json", "json_kind"]

_NOT_UTF8_HINT = (
    "re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`); if it is not a text "
    "file at all, pass the right file"
)


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a `Path`, once it is known to be a readable regular file; a `ConfigError`
    saying which of those it is not."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise ConfigError(f"{what} path {path!r} is not a file path", hint="pass a file path")
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{what} file {p} does not exist", hint="check the path")
    if p.is_dir():
        raise ConfigError(
            f"{what} path {p} is a directory, not a file", hint="pass the file inside it"
        )
    if not p.is_file():
        raise ConfigError(f"{what} path {p} is not a regular file", hint="pass a regular file")
    return p


def read_text(path: Path, what: str) -> str:
    """The file's text, decoded as UTF-8 (a leading byte-order mark is dropped)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {what} file {path}: {exc.strerror or exc}",
            hint="check the file's permissions (and that it is not a directory or a socket)",
        ) from exc
    return decode(data, path, what)


def decode(data: bytes, path: Path, what: str) -> str:
    """``data`` decoded as UTF-8; a `ConfigError` naming the first bad byte, its offset and
    its line when it is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise ConfigError(
            f"{what} file {path} is not UTF-8 text (byte 0x{byte} at offset {exc.start}, "
            f"line {line})",
            hint=_NOT_UTF8_HINT,
        ) from exc


def json_kind(value: Any) -> str:
    """How JSON would name ``value``'s type: object, array, string, number, true/false, null."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def parse_json(text: str, where: str, hint: str) -> Any:
    """``json.loads(text)``, with syntax errors and nesting too deep for the parser as a
    `ConfigError` at ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where} is not valid JSON ({exc.msg}, column {exc.colno})", hint=hint
        ) from exc
    except RecursionError as exc:
        raise ConfigError(
            f"{where} holds JSON nested too deeply to read",
            hint="no dataset record nests this deep: check that this is the file you meant",
        ) from exc


def iter_jsonl(path: str | Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file; a `ConfigError` naming
    the line when one is not UTF-8, not valid JSON or not an object (see the module
    docstring). The file is read a line at a time, so a large file is never held whole."""
    p = existing_file(path, what)
    hint = f"a {what} file holds one JSON object per line"
    try:
        handle = p.open("rb")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {what} file {p}: {exc.strerror or exc}",
            hint="check the file's permissions (and that it is not a directory or a socket)",
        ) from exc
    with handle:
        offset = 0
        # Binary lines end only at b"\n" (str.splitlines would also split at U+2028 and other
        # characters JSON allows unescaped inside strings).
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                bom = 3 if number == 1 and raw.startswith(b"\xef\xbb\xbf") else 0
                at = offset + exc.start + bom
                raise ConfigError(
                    f"{what} file {p} is not UTF-8 text (byte 0x{raw[exc.start + bom]:02x} at "
                    f"offset {at}, line {number})",
                    hint=_NOT_UTF8_HINT,
                ) from exc
            offset += len(raw)
            if not line.strip():
                continue
            where = f"{p}:{number}"
            record = parse_json(line, where, hint)
            if not isinstance(record, dict):
                raise ConfigError(f"{where} holds {json_kind(record)}, not an object", hint=hint)
            yield number, record
