"""Answers' JSON (aigw_lab.server.fast_json): orjson when installed, the standard library
otherwise, the same JSON value either way, and never a failed answer for its text."""

from __future__ import annotations

import importlib.util
import json

import pytest

from aigw_lab.server.fast_json import json_encoder, stdlib_dumps

HAS_ORJSON = importlib.util.find_spec("orjson") is not None
BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "héllo ☃ 😀"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "cost": 1.5e-07},
    "none": None,
    "flag": True,
}


def test_without_orjson_the_standard_library_encodes() -> None:
    assert json_encoder(lambda name: None) is stdlib_dumps


@pytest.mark.skipif(not HAS_ORJSON, reason="orjson is not installed (fast-serve extra)")
def test_orjson_is_taken_when_installed_and_gives_the_same_value() -> None:
    encode = json_encoder()
    assert encode is not stdlib_dumps
    assert json.loads(encode(BODY)) == json.loads(stdlib_dumps(BODY)) == BODY
    assert "héllo ☃ 😀".encode() in encode(BODY)  # UTF-8, not \\u escapes


@pytest.mark.parametrize("encode", [stdlib_dumps, json_encoder()], ids=["stdlib", "installed"])
@pytest.mark.parametrize("odd", ["a \ud800 lone surrogate", 2**70, {1: "int key"}])
def test_what_orjson_refuses_is_still_encoded(encode, odd) -> None:
    """A lone surrogate (an upstream's broken text), a huge integer, a non-string key:
    orjson refuses them; the answer is written by the standard library instead."""
    out = encode({"content": odd})
    assert json.loads(out) == json.loads(stdlib_dumps({"content": odd}))
    if isinstance(odd, str):
        assert b"\\ud800" in out
