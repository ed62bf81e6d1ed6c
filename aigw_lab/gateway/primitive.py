"""What a sans-IO primitive says to the gateway's drivers, and what they tell it back.

A primitive (budget, rate limit, cache, ...) keeps the logic of its stage and none of the
waiting: the gateway's driver for the call mode (chat, achat, stream, astream; see
`aigw_lab.gateway._async.drive`) asks it to ``admit`` the call, and the primitive answers
with a verdict:

- `Proceed`: go on to the next stage, carrying ``ticket`` (None: nothing to settle);
- `Serve`: the call is answered here (a cache hit): the driver returns ``response`` in the
  call's mode (a stream replays it) and nothing is settled;
- `Wait`: wait ``seconds`` (None: until woken) or until ``wake`` resolves, then ask again
  with ``state``;
- `Work`: run ``run()`` (blocking work such as a log query or an embedding; off the event
  loop in async modes), then ask again with what it returned.

Once a call proceeded with a ticket, the driver shows the primitive each stream event
(``observe``, for primitives with ``observes = True``) and then settles the ticket exactly
once with an `Outcome`: the response, or the error (a cancellation included) and whether
any of the answer had arrived. When the driver stops waiting or working part-way (the task
was cancelled, the wait failed), it calls ``withdraw`` with the state it was holding, so a
queue position is given up.

Verdicts are plain values, so the same logic serves all four modes, and a primitive's tests
need no thread or event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, NamedTuple

from aigw_lab.types import ChatResponse

__all__ = ["Proceed", "Serve", "Wait", "Work", "Outcome", "PROCEED", "Verdict"]


class Proceed(NamedTuple):
    """Go on to the next stage; settle ``ticket`` when the call ends (None: nothing to)."""

    ticket: Any = None


#: `Proceed` with nothing to settle: the stage lets the call pass untouched.
PROCEED = Proceed()


class Serve(NamedTuple):
    """The call is answered by this stage (the primitive has logged it)."""

    response: ChatResponse


class Wait(NamedTuple):
    """Wait, then ask again with ``state``.

    ``seconds``: how long at most (None: until ``wake``). ``wake``: a future resolved when
    waiting may end early (capacity came back, a leader's answer landed); any thread may
    resolve it. ``sleep``/``async_sleep``: how time passes for this primitive when it was
    given a test clock (None: the real one). ``wake_loop``: the event loop whose task will
    resolve ``wake``, when only that loop can (a cache flight led by a task): a blocking
    (sync) wait on a thread that runs this very loop would never end, so it returns at once
    instead, and the primitive, asked again, finds ``wake`` not done."""

    seconds: float | None
    state: Any = None
    wake: Future[Any] | None = None
    sleep: Callable[[float], Any] | None = None
    async_sleep: Callable[[float], Awaitable[Any]] | None = None
    wake_loop: Any = None  # asyncio.AbstractEventLoop | None


class Work(NamedTuple):
    """Run ``run()`` (blocking: never on an event loop), then ask again with its result."""

    run: Callable[[], Any]
    state: Any = None  # what to withdraw if the work is abandoned


class Outcome(NamedTuple):
    """How a call that proceeded ended, as its ticket is settled.

    ``response``: the answer (a stream's final response), or None. ``error``: what ended it
    otherwise (a cancellation included), or None when a stream simply stopped. ``answered``:
    whether any of the answer arrived (a stream cut after its first event was paid for)."""

    response: ChatResponse | None = None
    error: BaseException | None = None
    answered: bool = False


Verdict = Proceed | Serve | Wait | Work
