"""`parse_body`'s skip of the value walk (aigw_lab.server.safe_json): taken only when the
raw bytes prove the walk would pass; every hostile body still meets the walk."""

from __future__ import annotations

import json

import pytest

from aigw_lab.errors import InvalidRequestError
from aigw_lab.server import safe_json
from aigw_lab.server.safe_json import parse_body

PLAIN = json.dumps(
    {"model": "m", "messages": [{"role": "user", "content": "héllo [x] {y}"}]},
    ensure_ascii=False,
).encode()


def walks(monkeypatch) -> list[object]:
    seen: list[object] = []
    original = safe_json._check
    monkeypatch.setattr(safe_json, "_check", lambda value, depth: (seen.append(value),
                                                                    original(value, depth)))  # fmt: skip
    return seen


def test_a_plain_chat_body_skips_the_walk(monkeypatch) -> None:
    seen = walks(monkeypatch)
    assert parse_body(PLAIN)["messages"][0]["content"] == "héllo [x] {y}"
    assert seen == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"content": "\\ud800"}',  # a lone surrogate: only an escape can make one
        b'{"\\udfff": 1}',  # in a key
        b'{"a": "\\\\u is no escape, but is walked"}',
        b"[" * 70 + b"]" * 70,  # too deep
    ],
)
def test_bodies_that_might_fail_are_walked(monkeypatch, raw: bytes) -> None:
    seen = walks(monkeypatch)
    try:
        parse_body(raw)
    except InvalidRequestError:
        pass
    assert len(seen) == 1


@pytest.mark.parametrize(
    "raw", [b'{"content": "\\ud800"}', b'{"\\udfff": 1}', b"[" * 70 + b"]" * 70]
)
def test_hostile_bodies_are_still_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        parse_body(raw)


def test_the_bracket_bound_is_conservative() -> None:
    """Fewer opening brackets than max_depth cannot nest past it; at max_depth or more the
    body is walked (the walk refuses only past max_depth levels)."""
    assert not safe_json._may_need_check(b"[" * 63 + b"]" * 63, 64)
    assert safe_json._may_need_check(b"[" * 64 + b"]" * 64, 64)
    parse_body(b"[" * 64 + b"]" * 64)  # 64 levels: still accepted, after the walk
