"""The only places the gateway's pipeline waits, runs blocking work or closes a stream: one
class per kind of caller (threads or asyncio), with the same method names.

The pipeline code for asyncio (`aigw_lab.gateway._async`) calls ``AsyncIO``; the sync code
generated from it (`aigw_lab.gateway._sync`, by ``.ci/unasync.py``) calls ``SyncIO``.
These two are written by hand because waiting differs in kind, not just in spelling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from aigw_lab.gateway.primitive import Wait, Work

__all__ = ["SyncIO", "AsyncIO", "offloaded_from"]

# The event loop whose task handed the running code to an executor thread (`AsyncIO.offload`),
# read by primitives that must know which loop their caller runs on (a cache flight's
# leader). A context variable, not state: each offloaded call sees its own copy.
_OFFLOADED_FROM: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "aigw_offloaded_from", default=None
)


def offloaded_from() -> asyncio.AbstractEventLoop | None:
    """The event loop running the caller: this thread's own, or, on an executor thread that
    `AsyncIO.offload` runs a primitive's hook on, the loop of the task that waits for it."""
    return asyncio._get_running_loop() or _OFFLOADED_FROM.get()


class SyncIO:
    """Waiting and closing on the calling thread."""

    @staticmethod
    def wait(verdict: Wait) -> None:
        """Block until ``verdict.seconds`` pass or its ``wake`` future resolves."""
        if verdict.sleep is not None or verdict.wake is None:
            if verdict.seconds is None:
                raise ValueError("a Wait with neither seconds nor wake would never end")
            (verdict.sleep or time.sleep)(verdict.seconds)
            return
        if verdict.wake_loop is not None and verdict.wake_loop is asyncio._get_running_loop():
            # Only a task of the loop this thread runs (and this wait would block) can
            # resolve the wake: return, and the primitive decides without it.
            return
        try:
            verdict.wake.result(timeout=verdict.seconds)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            pass  # the primitive is asked again either way; it knows what changed
        except Exception:  # noqa: BLE001 - a failed wake is still a wake
            pass

    @staticmethod
    def work(verdict: Work) -> Any:
        return verdict.run()

    @staticmethod
    def offload(io: Executor | None, hook: Callable[..., Any], *args: Any) -> Any:
        """``hook(*args)`` on this thread (a blocking caller may block on a store)."""
        return hook(*args)

    @staticmethod
    def sleep(seconds: float, sleep: Callable[[float], Any] | None = None) -> None:
        """Let ``seconds`` pass, through ``sleep`` when a test injected one (a retry's
        backoff)."""
        (sleep or time.sleep)(seconds)

    @staticmethod
    def close(stream: Any) -> None:
        """Close ``stream`` now (a generator: its ``finally`` runs, an attempt logs itself)."""
        close = getattr(stream, "close", None)
        if close is not None:
            close()


class AsyncIO:
    """Waiting and closing for asyncio tasks: nothing here blocks the event loop."""

    @staticmethod
    async def wait(verdict: Wait) -> None:
        wake = verdict.wake
        if wake is None:
            if verdict.seconds is None:
                raise ValueError("a Wait with neither seconds nor wake would never end")
            await (verdict.async_sleep or asyncio.sleep)(verdict.seconds)
            return
        # Shielded: a cancelled or timed-out wait must not cancel the primitive's future,
        # which other callers may share (a cache flight).
        woken = asyncio.shield(asyncio.wrap_future(wake))
        if verdict.async_sleep is not None and verdict.seconds is not None:
            sleeper = asyncio.ensure_future(verdict.async_sleep(verdict.seconds))
            try:
                await asyncio.wait((sleeper, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
            return
        try:
            await asyncio.wait_for(woken, verdict.seconds)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # this task is being cancelled, not just the primitive's future
        except Exception:  # noqa: BLE001 - a failed wake is still a wake
            pass

    @staticmethod
    async def work(verdict: Work) -> Any:
        return await asyncio.to_thread(verdict.run)

    @staticmethod
    async def offload(io: Executor | None, hook: Callable[..., Any], *args: Any) -> Any:
        """``hook(*args)`` on ``io``'s threads (a primitive whose store waits on the network,
        e.g. Redis), so the loop serves other tasks meanwhile; inline when ``io`` is None. The
        hook runs in a copy of this task's context that names this loop (`offloaded_from`)."""
        if io is None:
            return hook(*args)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(_OFFLOADED_FROM.set, loop)
        return await loop.run_in_executor(io, functools.partial(context.run, hook, *args))

    @staticmethod
    async def sleep(seconds: float, sleep: Callable[[float], Awaitable[Any]] | None = None) -> None:
        """Let ``seconds`` pass without blocking the loop, through ``sleep`` when a test
        injected one."""
        await (sleep or asyncio.sleep)(seconds)

    @staticmethod
    async def close(stream: Any) -> None:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
