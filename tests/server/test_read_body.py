"""`_read_body`'s deadline (aigw_lab.server.app): one timer per request instead of
``asyncio.timeout``, with the same behaviour: a 408 past it, other cancellations passed on,
and no cancellation left behind once the body is in."""

from __future__ import annotations

import asyncio

import pytest

from aigw_lab.server.app import _read_body
from aigw_lab.server.errors import HttpError


def chunks(*parts: bytes, then_wait: bool = False):
    queue = [{"type": "http.request", "body": p, "more_body": True} for p in parts]

    async def receive():
        if queue:
            return queue.pop(0)
        if then_wait:
            await asyncio.sleep(3600)
        return {"type": "http.request", "body": b"", "more_body": False}

    return receive


def test_a_whole_body_is_read_and_the_deadline_leaves_nothing_behind() -> None:
    async def main() -> bytes:
        body = await _read_body(chunks(b"ab", b"cd"), 100, 0.05)
        await asyncio.sleep(0.15)  # past the deadline: a timer left armed would cancel us here
        return body

    assert asyncio.run(main()) == b"abcd"


def test_past_the_deadline_the_answer_is_408_naming_the_bytes_received() -> None:
    result = asyncio.run(_read_body(chunks(b"0123456789", then_wait=True), 100, 0.05))
    assert isinstance(result, HttpError) and result.kind == "request_timeout"
    assert "(10 bytes received)" in result.message


def test_a_cancellation_that_is_not_the_deadline_is_passed_on() -> None:
    async def main() -> None:
        task = asyncio.ensure_future(_read_body(chunks(then_wait=True), 100, 30.0))
        await asyncio.sleep(0.01)
        task.cancel()  # a server shutting down
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


def test_too_large_is_413_before_the_rest_arrives() -> None:
    result = asyncio.run(_read_body(chunks(b"x" * 60, b"x" * 60, then_wait=True), 100, 30.0))
    assert isinstance(result, HttpError) and result.kind == "request_too_large"
