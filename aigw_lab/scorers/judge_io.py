"""What an LLM judge's calls do differently when awaited and when blocking: one class per kind
of caller, with the same method names, used by the judge's scoring code
(`aigw_lab.scorers._async.judging`, and the sync code generated from it).

Written by hand, as `aigw_lab.gateway.effects` is, because these differ in kind rather than
spelling: an async baseline function can be awaited only by an async caller; the two
pairwise calls run concurrently only on an event loop; a log query must leave the loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aigw_lab.errors import ConfigError

if TYPE_CHECKING:
    from aigw_lab.store import CallLog
    from aigw_lab.types import ChatResponse

__all__ = ["AsyncJudgeIO", "SyncJudgeIO", "single_attempt", "trace_cost"]

T = TypeVar("T")
U = TypeVar("U")


class AsyncJudgeIO:
    """For a judge awaited (experiments, `ascore`)."""

    @staticmethod
    async def baseline(answer: str | None | Awaitable[str | None]) -> str | None:
        """A baseline function's answer, awaited when the function is async."""
        if inspect.isawaitable(answer):
            return await answer
        return answer

    @staticmethod
    async def both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
        """Both judge calls, concurrently."""
        done = await asyncio.gather(first, second)
        return done[0], done[1]

    @staticmethod
    async def off_loop(run: Callable[..., T], *args: Any) -> T:
        """``run(*args)`` on a worker thread: it blocks (a log query waits on the writer)."""
        return await asyncio.to_thread(run, *args)


class SyncJudgeIO:
    """For a judge called with blocking calls (notebooks and scripts, `score`)."""

    @staticmethod
    def baseline(answer: str | None | Awaitable[str | None]) -> str | None:
        """A baseline function's answer; an async function's cannot be had here."""
        if inspect.isawaitable(answer):
            close = getattr(answer, "close", None)
            if close is not None:
                close()  # a coroutine never awaited would warn
            raise ConfigError(
                "the pairwise judge's baseline function is async",
                hint="call `await judge.ascore(item, response)`",
            )
        return answer

    @staticmethod
    def both(first: T, second: U) -> tuple[T, U]:
        """Both judge calls' results: made one after the other, as the arguments were
        evaluated (a failure of the first stops the second)."""
        return first, second

    @staticmethod
    def off_loop(run: Callable[..., T], *args: Any) -> T:
        return run(*args)


def single_attempt(reply: ChatResponse) -> bool:
    """Whether ``reply``'s logical call had no earlier attempt (retry or fallback) to add."""
    return reply.attempts <= 1


def trace_cost(log: CallLog | None, reply: ChatResponse) -> float | None:
    """The cost of ``reply``'s logical call: its own cost when it was the first attempt,
    else the sum over its trace's logged rows (failed attempts may cost too)."""
    if single_attempt(reply) or log is None or reply.trace_id is None:
        return reply.cost_usd
    rows = log.execute("SELECT sum(cost_usd) FROM calls WHERE trace_id = ?", [reply.trace_id])
    return rows[0][0] if rows and rows[0][0] is not None else reply.cost_usd
