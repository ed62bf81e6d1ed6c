"""Making a call-log row storable before it is queued: one bad row must never poison the log.

Python strings may hold lone surrogates (``"\\ud800"``, from a client's JSON escape or an
upstream's answer); UTF-8 cannot encode them, so Arrow and DuckDB refuse the row. And a
multi-megabyte prompt or answer would make every row of its batch pay for it. `sanitize_record`
fixes both in every text field of a `CallRecord` and says what it did in ``flags``:

* ``invalid_text``: lone surrogates were replaced with U+FFFD (the replacement character);
* ``truncated_request`` / ``truncated_response`` / ``truncated_metadata`` /
  ``truncated_error`` / ``truncated_other``: a field was longer than ``max_body_chars``
  characters and was cut there (``request_json``; ``response_text`` or ``tool_calls_json``;
  ``tags_json`` or ``metadata_json``; ``error_message``; any other text column). A cut JSON
  field is stored as a JSON *string* holding the first ``max_body_chars`` characters of the
  original text, so the column stays valid JSON.

JSON text written with ``ensure_ascii`` carries a lone surrogate as the escape ``\\ud800``,
which DuckDB's JSON refuses (the column would hold one opaque JSON string): such text is
decoded, fixed and re-encoded. NUL characters need nothing: DuckDB stores them in VARCHAR and
JSON text escapes them.
"""

from __future__ import annotations

import json
import re
from operator import itemgetter

from aigw_lab.errors import ConfigError
from aigw_lab.store.records import CALL_COLUMNS, CallRecord
from aigw_lab.store.schema import COLUMN_TYPES

__all__ = [
    "DEFAULT_MAX_BODY_CHARS",
    "FLAGS",
    "check_max_body_chars",
    "sanitize_record",
    "sanitize_text",
]

#: Default cap on one text field of a row, in characters (``[log] max_body_chars``).
DEFAULT_MAX_BODY_CHARS = 1_000_000

#: Every value ``flags`` can hold, with what it means (also in docs/call_log.md).
FLAGS: dict[str, str] = {
    "invalid_text": "lone surrogates in a text field were replaced with U+FFFD",
    "truncated_request": "request_json was longer than max_body_chars and was cut",
    "truncated_response": "response_text or tool_calls_json was cut to max_body_chars",
    "truncated_metadata": "tags_json or metadata_json was cut to max_body_chars",
    "truncated_error": "error_message was cut to max_body_chars",
    "truncated_other": "another text column was cut to max_body_chars",
}

_SURROGATES = re.compile("[\ud800-\udfff]")
# A JSON escape of a surrogate (paired or not: json.loads tells them apart), as written by
# encoders with ensure_ascii=True. DuckDB's JSON refuses a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_JSON_COLUMNS = frozenset(name for name in CALL_COLUMNS if name.endswith("_json"))
_TRUNCATION_FLAG = {
    "request_json": "truncated_request",
    "response_text": "truncated_response",
    "tool_calls_json": "truncated_response",
    "tags_json": "truncated_metadata",
    "metadata_json": "truncated_metadata",
    "error_message": "truncated_error",
}
_FLAGS_INDEX = CALL_COLUMNS.index("flags")
# The text columns, fetched in one C call for the fast path.
_TEXT_VALUES = itemgetter(
    *(i for i, name in enumerate(CALL_COLUMNS) if COLUMN_TYPES[name] in ("VARCHAR", "JSON"))
)


def check_max_body_chars(value: object, where: str = "max_body_chars") -> int:
    """``value`` if it is a positive int, else a `ConfigError` naming ``where``."""
    if type(value) is not int or value < 1:
        raise ConfigError(
            f"{where} = {value!r} is invalid",
            hint="use a positive number of characters, e.g. max_body_chars = 1000000",
        )
    return value


def sanitize_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (the same object if none)."""
    if text.isascii() or not _SURROGATES.search(text):
        return text
    return _SURROGATES.sub("\ufffd", text)


def sanitize_record(
    record: CallRecord, *, max_body_chars: int = DEFAULT_MAX_BODY_CHARS
) -> CallRecord:
    """``record`` made storable: lone surrogates replaced, text fields over
    ``max_body_chars`` cut, each change named in ``flags`` (existing flags kept).

    Returns ``record`` itself when nothing needed fixing, which is the usual case: its text
    columns are joined and checked at once (length, ``isascii``, a ``\\u`` search), about
    1.5 µs per row (bench/bench_row_sanitize.py).
    """
    try:
        # Fast path, the usual case: all text at once, one scan (a few µs per row).
        joined = "".join(filter(None, _TEXT_VALUES(record)))
    except TypeError:  # a non-string in a text column: the writer deals with it
        joined = None
    if (
        joined is not None
        and len(joined) <= max_body_chars
        and (joined.isascii() or not _SURROGATES.search(joined))
        and ("\\u" not in joined or not _SURROGATE_ESCAPE.search(joined))
    ):
        return record
    changed: dict[str, str] | None = None
    flags: list[str] | None = None
    for name, value in zip(CALL_COLUMNS, record, strict=True):
        if not isinstance(value, str):
            continue
        fixed = value
        flag = None
        if not value.isascii() and _SURROGATES.search(value):
            fixed = _SURROGATES.sub("\ufffd", value)
            flag = "invalid_text"
        elif name in _JSON_COLUMNS and _SURROGATE_ESCAPE.search(value):
            decoded = _unescaped_json(value)
            if decoded is not None and _SURROGATES.search(decoded):
                fixed = _SURROGATES.sub("\ufffd", decoded)
                flag = "invalid_text"
        if len(fixed) > max_body_chars:
            if flag is not None:
                flags = _add(flags, flag)
            flag = _TRUNCATION_FLAG.get(name, "truncated_other")
            fixed = fixed[:max_body_chars]
            if name in _JSON_COLUMNS:
                fixed = json.dumps(fixed, ensure_ascii=False)
        if flag is None:
            continue
        flags = _add(flags, flag)
        if changed is None:
            changed = {}
        changed[name] = fixed
    if changed is None:
        return record
    existing = record[_FLAGS_INDEX] or ()
    merged = tuple(dict.fromkeys([*existing, *(flags or ())]))
    return record._replace(**changed, flags=merged)


def _unescaped_json(text: str) -> str | None:
    """``text`` re-encoded with its escapes decoded (lone surrogates become characters the
    caller replaces), or None if it is not JSON (the writer stores that as a JSON string)."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError):
        return None


def _add(flags: list[str] | None, flag: str) -> list[str]:
    if flags is None:
        return [flag]
    if flag not in flags:
        flags.append(flag)
    return flags
