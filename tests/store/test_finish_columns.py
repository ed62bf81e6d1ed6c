"""A batch of unfinished rows finished column by column (`aigw_lab.store.unfinished.
finish_columns`, session 12): the writer thread's usual batch at paced rates.

The columns must be exactly the rows `finish_batch` makes, value for value and type for type;
whenever that cannot be promised cheaply (text to fix or cut, a finished row in the batch,
another ``max_body_chars``, a request whose JSON cannot be made) it says so (None) and the
writer finishes the rows one by one as before. Through a real log, both paths store the same
rows, and a batch whose insert fails after being finished by columns is kept as rows: retried,
bisected, dead-lettered or saved like any other.
"""

from __future__ import annotations

import marshal
import warnings
from typing import Any

import pytest

from aigw_lab.gateway.records import success_record, success_values_later
from aigw_lab.store import CallLog
from aigw_lab.store.records import CallRecord
from aigw_lab.store.row_tables import transpose
from aigw_lab.store.sanitize import sanitize_record
from aigw_lab.store.spool_rows import plain_item
from aigw_lab.store.unfinished import finish_batch, finish_columns
from aigw_lab.types import ChatRequest
from tests.gateway.test_row_building import HOSTILE, REQUEST, _context, _response

_WIDTH = len(CallRecord._fields)
_REQUEST_JSON = CallRecord._fields.index("request_json")
_INPUT_TOKENS = CallRecord._fields.index("input_tokens")

TEXTS = ["answer", "déjà vu, 東京, emoji \U0001f600", "NUL \x00 and \\ backslash", ""]


def _values(text: str = "answer", request: ChatRequest = REQUEST, **fields: Any) -> tuple:
    values = success_values_later(_context(request), _response(text=text, **fields), api_format="x")
    assert values is not None
    return values


def _items(form: str, texts: list[str], limit: int = 1_000_000) -> list[Any]:
    """Unfinished rows as the writer is queued them: ``request`` (a log without a spool:
    the request object), ``plain`` (its plain fields) or ``bytes`` (a spooled log: the ``u``
    frame's marshal payload)."""
    items: list[Any] = []
    for i, text in enumerate(texts):
        values = _values(text, call_id=f"call-{i}")
        item = (values, limit) if form == "request" else plain_item(values, limit)
        items.append(marshal.dumps(item, 2) if form == "bytes" else item)
    return items


def _rows_by_finish_batch(items: list[Any]) -> list[CallRecord]:
    rows = list(items)
    assert finish_batch(rows, None) == []
    return rows


@pytest.mark.parametrize("form", ["request", "plain", "bytes"])
def test_the_columns_are_the_rows_finish_batch_makes_value_for_value(form: str) -> None:
    items = _items(form, TEXTS * 100)  # more rows than one text check (256) covers
    before = list(items)
    columns = finish_columns(items)
    assert columns is not None and items == before  # the batch itself is left as it is
    expected = transpose(_rows_by_finish_batch(items), _WIDTH)
    assert columns == expected
    for got, want in zip(columns, expected, strict=True):
        assert list(map(type, got)) == list(map(type, want))
    # And the row the calling thread would have built, finished and sanitised, for one.
    row = sanitize_record(
        success_record(_context(REQUEST), _response(text=TEXTS[1]), api_format="x")
    )
    assert [column[1] for column in columns][3:] == list(row)[
        3:
    ]  # call_id, trace_id, timestamp differ


@pytest.mark.parametrize(
    ("texts", "limit"),
    [
        ([*TEXTS, HOSTILE], 1_000_000),  # a lone surrogate to replace
        ([*TEXTS, "a \\ud800 escape"], 1_000_000),  # maybe a JSON escape of one: asked per row
        (TEXTS, 20),  # text to cut
    ],
    ids=["surrogate", "escape", "over-max_body_chars"],
)
@pytest.mark.parametrize("form", ["request", "bytes"])
def test_a_batch_with_text_to_fix_is_left_to_finish_batch(
    form: str, texts: list[str], limit: int
) -> None:
    assert finish_columns(_items(form, texts, limit)) is None


def test_a_batch_of_mixed_limits_or_with_a_finished_row_is_left_to_finish_batch() -> None:
    items = _items("plain", TEXTS)
    assert finish_columns([*items, _items("plain", ["x"], limit=5_000)[0]]) is None
    finished = sanitize_record(success_record(_context(REQUEST), _response(), api_format="x"))
    assert finish_columns([*items, finished]) is None
    assert finish_columns([]) is None


def test_a_request_whose_json_cannot_be_made_is_left_to_finish_batch() -> None:
    values = list(_values())
    values[_REQUEST_JSON] = ("model", (("user", 3, None, None),), None)  # not a request
    assert finish_columns([(tuple(values), 1_000_000)]) is None
    rows = [(tuple(values), 1_000_000)]
    assert finish_batch(rows, None)  # which finishes it with request_json NULL, and says so
    assert rows[0].request_json is None


# --- through a real log ---------------------------------------------------------------------


def _stored(log: CallLog) -> list[tuple]:
    log.flush()
    frame = log.query("SELECT * FROM calls ORDER BY call_id")
    return [tuple(row) for row in frame.itertuples(index=False)]


@pytest.mark.parametrize("durability", ["none", "os"])
def test_a_log_finishing_by_columns_stores_what_it_stores_row_by_row(
    tmp_path, durability: str
) -> None:
    by_columns = CallLog(tmp_path / "columns.duckdb", durability=durability)
    by_rows = CallLog(tmp_path / "rows.duckdb", durability=durability)
    by_rows._writer._insert.finish_columns = None  # noqa: SLF001 - the path before
    used = []
    columns_hook = by_columns._writer._insert.finish_columns  # noqa: SLF001
    assert columns_hook is not None

    def spy(batch: list[Any]) -> list[list[Any]] | None:
        columns = columns_hook(batch)
        used.append(columns is not None)
        return columns

    by_columns._writer._insert.finish_columns = spy  # noqa: SLF001
    for log in (by_columns, by_rows):
        for i, text in enumerate(TEXTS * 3):
            log.append_later(_values(text, call_id=f"call-{i:02d}"), 1_000_000)
    assert _stored(by_columns) == _stored(by_rows)
    assert len(_stored(by_rows)) == len(TEXTS) * 3 and used and all(used)
    by_columns.close()
    by_rows.close()


def test_a_batch_finished_by_columns_whose_insert_fails_is_retried_as_rows(tmp_path) -> None:
    failures = [1]
    batches: list[list[Any]] = []

    def gate(rows: int) -> None:
        batches.append(list(log._writer._inflight or ()))  # noqa: SLF001
        if failures[0]:
            failures[0] -= 1
            raise OSError("disk hiccup")

    log = CallLog(tmp_path / "c.duckdb", durability="none", before_insert=gate)
    for i, text in enumerate(TEXTS):
        log.append_later(_values(text, call_id=f"call-{i}"), 1_000_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception, match="disk hiccup"):
            log.flush()
        log.flush()  # the retry
    stored = _stored(log)
    log.close()
    assert [row[0] for row in stored] == [f"call-{i}" for i in range(len(TEXTS))]
    # The first attempt went in as columns (its items still queued as they were), the retry
    # as the finished rows the failed attempt left in their place.
    assert all(type(item) is tuple for item in batches[0])
    assert all(type(item) is CallRecord for item in batches[-1])


def test_a_value_no_column_holds_sends_the_batch_row_by_row_to_the_dead_letter(tmp_path) -> None:
    log = CallLog(tmp_path / "c.duckdb", durability="none")
    bad = list(_values(call_id="call-bad"))
    bad[_INPUT_TOKENS] = "eleven"  # a string in a token count
    log.append_later(_values(call_id="call-good"), 1_000_000)
    log.append_later(tuple(bad), 1_000_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = _stored(log)
    dead = log.query("SELECT call_id FROM calls_dead_letter")["call_id"].tolist()
    log.close()
    assert [row[0] for row in stored] == ["call-good"] and dead == ["call-bad"]
