"""What a call-log row keeps of the bodies it carries: `BodyPolicy` and its text redaction.

``[log] bodies`` chooses one of four modes, and each row records the mode it was written
with (column ``bodies``):

- ``"full"``: prompts, answers, tool calls and error messages as they are (the default);
- ``"redacted"``: the same, with e-mail addresses, phone numbers, card numbers (only
  Luhn-valid ones, so order numbers survive), API keys and the operator's own patterns
  replaced by typed placeholders: ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[API_KEY]``,
  ``[REDACTED:name]``;
- ``"hash"``: each body replaced by ``"sha256:<hex>"`` of its text (``"hmac-sha256:<hex>"``
  when a hash key is configured), so equal requests and equal answers still group; error
  messages are redacted as in ``"redacted"``;
- ``"none"``: no bodies at all (NULL); error messages redacted.

Pure functions of text: no I/O, no clock. Applied by `aigw_lab.store.CallLog.append` on the
caller's thread, so an unredacted body never reaches the writer queue, the database or a
spill file.

Detection is pattern matching, not understanding: a name, an address or a secret in a form
no pattern knows is kept. Add ``[log] redact_patterns`` for the identifiers your data has.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.store.records import CallRecord

__all__ = ["BODY_MODES", "BodyPolicy", "Redactor", "luhn_valid"]

BODY_MODES = ("full", "redacted", "hash", "none")

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# Card candidates: 13 or more ASCII digits, single spaces or hyphens allowed between them.
# A run can hold a card next to other numbers ("4111 1111 1111 1111 123"): see `_card`.
_CARD_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,}(?![0-9])")
_GROUP_SEPARATOR = re.compile(r"[ -]")
# Well-known credential shapes: OpenAI/Anthropic (sk-, sk-proj-, sk-ant-), AWS access key
# ids, GitHub tokens, Slack tokens, Google API keys, Stripe keys, JWTs, bearer tokens.
_API_KEY = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r")"
    r"|(?<=Bearer )[A-Za-z0-9._~+/-]{20,}=*"
)
# Substrings every match of _API_KEY contains (case as written there).
_KEY_MARKERS = (
    "sk-", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "AIza",
    "k_live_", "k_test_", "eyJ", "Bearer ",
)  # fmt: skip
_NO_DIGITS = str.maketrans("", "", "0123456789")
# Every pattern here runs in linear time on hostile input (a client chooses the text):
# possessive quantifiers (Python 3.11) and "not preceded by" guards leave nothing to
# backtrack into, and the checks a regex would do by backtracking (the top-level domain, the
# digit count of a phone number) are done once on the match instead.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)++")
_TLD = re.compile(r"[A-Za-z]{2,}")
# Phone numbers in unambiguous shapes: international (+ or 00 then 7-15 digits with spaces,
# dots, hyphens or a parenthesised area code) and North American (NNN) NNN-NNNN or
# NNN-NNN-NNNN. Bare digit runs are not taken for phones: they are dates, amounts, ids.
_PHONE = re.compile(
    r"(?<![\w+-])(?:"
    r"(?:\+|00)[0-9]++(?:(?:[ .-]|[ .-]?\(|\)[ .-]?)[0-9]++)*+\)?"
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
    r"|\d{3}[.-]\d{3}[.-]\d{4}"
    r")(?![\w])"
)


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check (as every payment card number does)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


#: Digit runs longer than this are replaced whole: checking every reading of a long run
#: costs time a hostile client could multiply, and such a run may well hold a card.
MAX_CARD_RUN = 256


def _card(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) > MAX_CARD_RUN:
        return "[CARD]"
    # Every reading of the run as consecutive digit groups with 13-19 digits: the run itself,
    # or a card with an expiry, a CVV or another number written next to it. Card groups
    # have 4 or more digits but the last (4111 1111 1111 1), so "1 2 3 4 5 ..." lists are
    # never read as one; digits glued without a separator are one group, so a 13-digit
    # order number is read only as itself.
    groups = [len(g) for g in _GROUP_SEPARATOR.split(run)]
    digits = run.replace(" ", "").replace("-", "")
    start = 0
    for first in range(len(groups)):
        end = start
        for last in range(first, len(groups)):
            end += groups[last]
            size = end - start
            if size > 19:
                break
            if size >= 13 and luhn_valid(digits[start:end]):
                return "[CARD]"
            if groups[last] < 4:
                break  # a short group ends any card reading
        start += groups[first]
    return run


def _email(match: re.Match[str]) -> str:
    address = match.group(0)
    tld = address.rpartition(".")[2]
    return "[EMAIL]" if _TLD.fullmatch(tld) else address


def _phone(match: re.Match[str]) -> str:
    # E.164 numbers have 8 to 15 digits with the country code; fewer is an id or a code.
    n = sum(c.isdigit() for c in match.group(0))
    return "[PHONE]" if 8 <= n <= 15 else match.group(0)


@dataclass(frozen=True)
class Redactor:
    """Replaces sensitive substrings of text by typed placeholders. ``patterns`` are the
    operator's own: name -> regular expression, replaced by ``[REDACTED:name]`` (applied
    first, so they win over the built-in ones)."""

    patterns: Mapping[str, str] = field(default_factory=dict)
    _compiled: tuple[tuple[re.Pattern[str], str], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        compiled: list[tuple[re.Pattern[str], str]] = []
        for name, pattern in self.patterns.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
                raise ConfigError(
                    f"redaction pattern name {name!r} must be 1-40 letters, digits, _ . -",
                    hint='write it as [log.redact_patterns] employee_id = "EMP-[0-9]{6}"',
                )
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"redaction pattern {name!r} must be a non-empty string")
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"redaction pattern {name!r} is not a valid regular expression: {exc}",
                    hint="use Python regular expression syntax; test it with re.compile",
                ) from exc
            if regex.fullmatch(""):
                raise ConfigError(
                    f"redaction pattern {name!r} matches the empty string",
                    hint="make it match at least one character (use + rather than *)",
                )
            compiled.append((regex, f"[REDACTED:{name}]"))
        object.__setattr__(self, "_compiled", tuple(compiled))

    def text(self, text: str) -> str:
        """``text`` with every match replaced by its placeholder."""
        for regex, placeholder in self._compiled:
            text = regex.sub(placeholder, text)
        # Cards before phones and keys: a card's digit groups could read as a phone number.
        # Each scan runs only when a cheap substring test says it could match: the regular
        # expressions cost 20-60 us per kilobyte each, the tests about 1 us.
        digits = len(text) - len(text.translate(_NO_DIGITS))
        if digits >= 13:
            text = _CARD_RUN.sub(_card, text)
        if any(marker in text for marker in _KEY_MARKERS):
            text = _API_KEY.sub("[API_KEY]", text)
        if "@" in text:
            text = _EMAIL.sub(_email, text)
        if digits >= 8:
            text = _PHONE.sub(_phone, text)
        return text

    def json_text(self, text: str) -> str:
        """JSON text with every string in it (not the object keys) redacted; text that is
        not JSON is redacted as text."""
        try:
            value = json.loads(text)
        except ValueError:
            return self.text(text)
        return _JSON.encode(self._walk(value))

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            if value[:1] in ("{", "[") and value[-1:] in ("}", "]"):
                # JSON inside JSON (a tool call's arguments): redact its values, keep it JSON.
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict | list):
                    walked = self._walk(parsed)
                    return value if walked == parsed else _JSON.encode(walked)
            return self.text(value)
        if isinstance(value, dict):
            return {key: self._walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._walk(item) for item in value]
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**12:
            # A card number sent as a JSON number.
            text = str(value)
            return value if self.text(text) == text else "[CARD]"
        return value


@dataclass(frozen=True)
class BodyPolicy:
    """What the call log keeps of request and response bodies (see the module docstring).

    ``mode`` is one of `BODY_MODES`; ``redactor`` holds the patterns (used by every mode but
    ``"full"``, for error messages at least); ``hash_key``, for ``"hash"``, makes the digest
    an HMAC-SHA256 so that a reader of the log cannot confirm a guessed prompt by hashing it.
    """

    mode: str = "full"
    redactor: Redactor = field(default_factory=Redactor)
    hash_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in BODY_MODES:
            raise ConfigError(
                f"[log] bodies = {self.mode!r} is not a body mode",
                hint=f"use one of {', '.join(repr(m) for m in BODY_MODES)}",
            )

    def apply(self, record: CallRecord) -> CallRecord:
        """``record`` with its bodies kept, redacted, hashed or dropped, and its ``bodies``
        column set to this mode."""
        mode = self.mode
        if mode == "full":
            return record if record.bodies == "full" else record._replace(bodies="full")
        redact = self.redactor
        error = record.error_message
        if error:
            error = redact.text(error)
        if mode == "redacted":
            request, response = record.request_json, record.response_text
            tools = record.tool_calls_json
            return record._replace(
                request_json=None if request is None else redact.json_text(request),
                response_text=None if response is None else redact.text(response),
                tool_calls_json=None if tools is None else redact.json_text(tools),
                error_message=error,
                bodies=mode,
            )
        if mode == "hash":
            return record._replace(
                request_json=self._json_digest(record.request_json),
                response_text=self.digest(record.response_text),
                tool_calls_json=self._json_digest(record.tool_calls_json),
                error_message=error,
                bodies=mode,
            )
        return record._replace(
            request_json=None,
            response_text=None,
            tool_calls_json=None,
            error_message=error,
            bodies=mode,
        )

    def scores(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``scores`` rows with ``comment`` and ``details_json`` redacted (patterns, in every
        mode but "full": scores stay readable for analysis; see docs/security.md)."""
        out: list[dict[str, Any]] = []
        for row in rows:
            row = dict(row)
            if self.mode != "full":
                if isinstance(row.get("comment"), str):
                    row["comment"] = self.redactor.text(row["comment"])
                if isinstance(row.get("details_json"), str):
                    row["details_json"] = self.redactor.json_text(row["details_json"])
            out.append(row)
        return out

    def digest(self, text: str | None) -> str | None:
        """``"sha256:<hex>"`` of ``text`` (``"hmac-sha256:<hex>"`` with a hash key)."""
        if text is None:
            return None
        data = text.encode("utf-8", "surrogatepass")
        if self.hash_key is not None:
            return "hmac-sha256:" + hmac.new(self.hash_key, data, hashlib.sha256).hexdigest()
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def _json_digest(self, text: str | None) -> str | None:
        # JSON columns hold JSON: the digest is stored as a JSON string.
        digest = self.digest(text)
        return None if digest is None else f'"{digest}"'
