"""A call's labels (``tags``/``metadata``) are encoded to JSON once per request.

`ChatRequest.create` encodes them to refuse what the log could not store; the spool's start
frame and the row used to encode them again, so a spooled call encoded its labels three
times. The request now keeps the text (`ChatRequest.labels_json`) and both reuse it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab import Gateway, Price
from aigw_lab.errors import InvalidRequestError
from aigw_lab.gateway.records import to_json
from aigw_lab.store import CallLog
from aigw_lab.store.spool import read_segment, spool_dir
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import ChatRequest

MODES = ("chat", "achat", "stream", "astream")


class Counted:
    """A label value JSON cannot hold: the log's encoder writes ``str(value)``, so each
    encoding of the labels calls `__str__` once."""

    def __init__(self) -> None:
        self.encoded = 0

    def __str__(self) -> str:
        self.encoded += 1
        return "counted"


def _call(gw: Gateway, mode: str, request: ChatRequest) -> None:
    if mode == "chat":
        gw.chat(request)
        return
    if mode == "stream":
        "".join(gw.stream(request))
        return

    async def run() -> None:
        if mode == "achat":
            await gw.achat(request)
        else:
            "".join([t async for t in gw.astream(request)])

    asyncio.run(run())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("durability", ["os", "none"])
def test_a_calls_labels_are_encoded_once(tmp_path, mode, durability):
    tag, meta = Counted(), Counted()
    request = ChatRequest.create(
        "mock/m1",
        "x",
        tags={"team": "a", "odd": tag},
        metadata={"run": "r1", "nested": {"v": [1, meta]}},
    )
    assert (tag.encoded, meta.encoded) == (1, 1)  # create's check
    mock = MockProvider("mock", models=("m1",))
    log = CallLog(tmp_path / "calls.duckdb", durability=durability)
    with Gateway([mock], log=log, prices={"mock/m1": Price(1.0, 2.0)}) as gw:
        _call(gw, mode, request)
        if durability == "os":  # the start frame holds the same text as the row
            (segment,) = spool_dir(tmp_path / "calls.duckdb").iterdir()
            start = next(values for kind, values in read_segment(segment) if kind == "start")
            assert start[13:15] == ('{"team":"a","odd":"counted"}', request.labels_json()[1])
        rows = gw.query("SELECT tags_json, metadata_json FROM calls")
    # Before: the start frame and the row encoded them again (3 with a spool, 2 without).
    assert (tag.encoded, meta.encoded) == (1, 1)
    assert list(rows["tags_json"]) == ['{"team":"a","odd":"counted"}']
    assert list(rows["metadata_json"]) == ['{"run":"r1","nested":{"v":[1,"counted"]}}']


def test_the_text_is_the_logs_encoding_and_none_when_empty():
    labels = {"tags": {"ü": "ß", "k": "\x00"}, "metadata": {"n": 10**30, "f": 0.1, "x": None}}
    request = ChatRequest.create("p/m", "x", **labels)
    assert request.labels_json() == (to_json(labels["tags"]), to_json(labels["metadata"]))
    assert ChatRequest.create("p/m", "x").labels_json() == (None, None)
    assert ChatRequest.create("p/m", "x", metadata={"a": 1}).labels_json()[0] is None


def test_replacing_the_labels_is_not_answered_from_the_old_text():
    request = ChatRequest.create("p/m", "x", tags={"a": "1"}, metadata={"m": 1})
    assert request.labels_json() == ('{"a":"1"}', '{"m":1}')
    changed = replace(request, tags={"b": "2"})
    assert changed.labels_json() == ('{"b":"2"}', '{"m":1}')
    assert replace(request, temperature=0.5).labels_json() == ('{"a":"1"}', '{"m":1}')
    # Not part of the request's identity: a copy without the text equals the original
    assert replace(request, temperature=None) == request
    assert "_labels_json" not in repr(request)


def test_a_request_built_without_create_encodes_its_labels_at_the_first_use():
    value = Counted()
    request = ChatRequest(model="p/m", messages=(), metadata={"v": value})
    assert value.encoded == 0
    assert request.labels_json() == (None, '{"v":"counted"}')
    assert request.labels_json() == (None, '{"v":"counted"}')
    assert value.encoded == 1


def test_the_row_holds_the_labels_as_they_were_when_the_request_was_created(tmp_path):
    # create's text is reused, so a caller changing a nested label value afterwards does not
    # change what is logged for the request it already made.
    nested = [1]
    request = ChatRequest.create("mock/m1", "x", metadata={"v": nested})
    nested.append(2)
    mock = MockProvider("mock", models=("m1",))
    log = CallLog(tmp_path / "c.duckdb")
    with Gateway([mock], log=log, prices={"mock/m1": Price(1.0, 2.0)}) as gw:
        gw.chat(request)
        rows = gw.query("SELECT metadata_json FROM calls")
    assert list(rows["metadata_json"]) == ['{"v":[1]}']


# Hostile label values: any text (lone surrogates, NULs, control characters), integers past
# 64 bits, floats including NaN and infinities, nested lists and dicts.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=()), max_size=20),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_LABELS = st.dictionaries(st.text(max_size=8), _VALUES, max_size=4)


@settings(max_examples=60, deadline=None)
@given(tags=_LABELS, metadata=_LABELS)
def test_the_kept_text_is_what_the_row_encoder_writes(tags, metadata):
    # The row used to encode the labels itself (`to_json`); the kept text must be the same
    # text for any labels create accepts, hostile ones included.
    request = ChatRequest.create("p/m", "x", tags=tags, metadata=metadata)
    assert request.labels_json() == (to_json(tags), to_json(metadata))


def test_labels_nested_past_the_recursion_limit_are_still_refused():
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InvalidRequestError, match="cannot be written to the call log"):
        ChatRequest.create("p/m", "x", metadata={"deep": deep})
