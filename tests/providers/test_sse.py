"""The incremental SSE parser: event-stream rules, and the same events whatever the chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab.providers.sse import SSEEvent, SSEParser


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def test_event_names_multiline_data_comments_and_ids() -> None:
    wire = (
        b": connected\n"
        b"event: message_start\n"
        b"id: 7\n"
        b"data: first line\n"
        b"data:second line\n"  # no space after the colon
        b"data:  two spaces keep one\n"
        b"\n"
        b"data\n"  # a field name alone: empty data line
        b"\n"
    )
    assert parse(wire) == [
        SSEEvent(
            event="message_start", data="first line\nsecond line\n two spaces keep one", id="7"
        ),
        SSEEvent(event="message", data="", id="7"),  # the last event id carries over
    ]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert parse(b"\n\n: ping\n\nevent: ping\n\n") == []


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_is_understood(newline: bytes) -> None:
    wire = newline.join([b"event: a", b"data: 1", b"", b"data: 2", b"", b""])
    assert parse(wire) == [SSEEvent(event="a", data="1"), SSEEvent(event="message", data="2")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # A "\r" closing one chunk and the "\n" opening the next must not read as two line ends
    # (which would dispatch the event early, before its second data line).
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [
        SSEEvent(event="message", data="a\nb")
    ]


def test_multibyte_character_split_across_chunks() -> None:
    wire = "data: café ☀️\n\n".encode()
    cut = wire.index("☀".encode()) + 1  # inside the 3-byte sun
    assert parse(wire[:cut], wire[cut:]) == [SSEEvent(event="message", data="café ☀️")]


def test_byte_order_mark_at_start_is_skipped() -> None:
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n") == [SSEEvent(event="message", data="x")]


def test_close_dispatches_complete_lines_but_drops_an_unterminated_one() -> None:
    assert parse(b"data: whole\n") == [SSEEvent(event="message", data="whole")]
    assert parse(b'data: {"cut') == []
    assert parse(b'data: a\ndata: {"cut') == [SSEEvent(event="message", data="a")]


def test_form_feed_and_unicode_separators_stay_inside_a_line() -> None:
    text = "a\x0cb\u2028c\x85d"
    assert parse(f"data: {text}\n\n".encode()) == [SSEEvent(event="message", data=text)]


# Events as a provider would send them: names, ids, multi-line data with any characters but
# the line breaks that frame the stream.
_line_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=30,
)
_events = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(["message_start", "content_block_delta", "x"])),
        st.lists(_line_text, min_size=1, max_size=3),
        st.booleans(),  # a comment line before the event
    ),
    max_size=8,
)


def _encode(events: list[tuple[str | None, list[str], bool]], newline: str) -> bytes:
    lines: list[str] = []
    for name, data_lines, comment in events:
        if comment:
            lines.append(": keep-alive")
        if name:
            lines.append(f"event: {name}")
        lines.extend(f"data: {line}" for line in data_lines)
        lines.append("")
    return "".join(line + newline for line in lines).encode()


# derandomize: the same 300 cases every run, as the project wants deterministic tests.
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    events=_events,
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=40),
)
def test_any_chunking_yields_the_same_events(
    events: list[tuple[str | None, list[str], bool]], newline: str, cuts: list[int]
) -> None:
    wire = _encode(events, newline)
    bounds = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    chunks = [wire[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    expected = [SSEEvent(event=name or "message", data="\n".join(data)) for name, data, _ in events]
    assert parse(*chunks) == expected
    assert parse(wire) == expected
    assert parse(*(wire[i : i + 1] for i in range(len(wire)))) == expected
