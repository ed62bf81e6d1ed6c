"""Gateway middleware: the primitives (budget, rate limit, cache, route, retry/fallback) are
each a `Middleware` that sees a `CallContext` and the next stage, in a visible order.

The order of a gateway's pipeline, outermost first, is::

    budget -> rate limit -> cache -> route -> retry/fallback -> [attempt: provider -> cost -> log]

The innermost stage, the *attempt*, belongs to the gateway itself: it calls the provider,
prices the answer and logs one row, so every attempt (including each retry and fallback) is a
row of the call log. A middleware that answers without reaching the attempt (a cache hit)
logs its own row through `CallContext.recorder`.

Two ways to write a stage:

- `Primitive` (budget, rate limit, caches): sans-IO logic (``admit``, ``observe``,
  ``settle``, ``withdraw``; see `aigw_lab.gateway.primitive`) that the gateway's drivers run
  in each call mode (`aigw_lab.gateway._async.drive` and the sync code generated from it).
  The primitive never sleeps, awaits or closes a stream.
- `Middleware` with its four hooks, for the stages shaped "around" the rest (retry and
  fallback, a routing policy that may call several targets); their async hooks are written
  once and the sync ones generated (see docs/architecture.md). The defaults pass straight
  through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from aigw_lab.gateway._async.drive import drive_achat, drive_astream
from aigw_lab.gateway._sync.drive import drive_chat, drive_stream
from aigw_lab.gateway.primitive import PROCEED, Outcome, Verdict
from aigw_lab.types import ChatRequest, ChatResponse, StreamEvent

if TYPE_CHECKING:
    from aigw_lab.gateway.gateway import Gateway
    from aigw_lab.gateway.recorder import Recorder

__all__ = [
    "CallContext",
    "Middleware",
    "Primitive",
    "Next",
    "AsyncNext",
    "StreamNext",
    "AsyncStreamNext",
    "PIPELINE_ORDER",
]

#: Where each kind of middleware sits, outermost first; `Gateway` sorts by this.
PIPELINE_ORDER: tuple[str, ...] = ("guard", "budget", "rate_limit", "cache", "route", "retry")


class CallContext:
    """Everything one call carries through the pipeline.

    ``provider_name``/``model`` are the current target: a route or fallback middleware may
    change them before the attempt. ``attempt`` counts attempts of this call (1-based);
    ``fallback_from`` names the target the current attempt fell back from.
    """

    __slots__ = (
        "request",
        "provider_name",
        "model",
        "trace_id",
        "stream",
        "started",
        "started_wall",
        "attempt",
        "attempt_started",
        "fallback_from",
        "cache_status",
        "cache_similarity",
        "gateway",
        "recorder",
        "extra",
        "logged",
        "budget_estimate_usd",
        "route_policy",
        "propensity",
        "shadow_of",
    )

    def __init__(
        self,
        request: ChatRequest,
        provider_name: str,
        model: str,
        trace_id: str,
        *,
        stream: bool,
        started: float,
        started_wall: float,
        gateway: Gateway,
        recorder: Recorder | None = None,
    ) -> None:
        self.request = request
        self.provider_name = provider_name
        self.model = model
        self.trace_id = trace_id
        self.stream = stream
        self.started = started
        self.started_wall = started_wall
        self.attempt = 0
        self.attempt_started = started
        self.fallback_from: str | None = None
        self.cache_status = "none"
        self.cache_similarity: float | None = None
        self.gateway = gateway
        #: Prices, times and logs the call (`aigw_lab.gateway.recorder.Recorder`): a stage
        #: that answers or refuses a call itself logs it here. None: ``gateway.recorder``
        #: (a context built with neither, as a primitive's own tests do, has none).
        if recorder is None and gateway is not None:
            recorder = gateway.recorder
        self.recorder: Recorder = recorder  # type: ignore[assignment]
        self.extra: dict[str, Any] = {}
        #: Rows logged for this call so far; a call that ends with none gets one.
        self.logged = 0
        #: What a budget reserved for this call (its estimate), or None when no budget did:
        #: each row records what it counts against budgets from it (``budget_usd``).
        self.budget_estimate_usd: float | None = None
        #: The routing policy that chose the current target and the probability with which
        #: it chose it (1.0 when deterministic); None when no policy chose. Logged per row
        #: (``route_policy``, ``propensity``) for off-policy evaluation.
        self.route_policy: str | None = None
        self.propensity: float | None = None
        #: For a shadow call: the call_id of the live call it duplicates (``shadow_of``).
        self.shadow_of: str | None = None

    @property
    def address(self) -> str:
        """The current target as ``provider/model``."""
        return f"{self.provider_name}/{self.model}"


Next = Callable[[CallContext], ChatResponse]
AsyncNext = Callable[[CallContext], Awaitable[ChatResponse]]
StreamNext = Callable[[CallContext], Iterator[StreamEvent]]
AsyncStreamNext = Callable[[CallContext], AsyncIterator[StreamEvent]]


class Middleware:
    """Base class of gateway primitives. ``kind`` places it in `PIPELINE_ORDER`."""

    kind: str = "route"

    def handle(self, ctx: CallContext, call_next: Next) -> ChatResponse:
        return call_next(ctx)

    async def ahandle(self, ctx: CallContext, call_next: AsyncNext) -> ChatResponse:
        return await call_next(ctx)

    def handle_stream(self, ctx: CallContext, call_next: StreamNext) -> Iterator[StreamEvent]:
        return call_next(ctx)

    def ahandle_stream(
        self, ctx: CallContext, call_next: AsyncStreamNext
    ) -> AsyncIterator[StreamEvent]:
        return call_next(ctx)

    def describe(self) -> Mapping[str, Any]:
        """A short description for `Gateway.pipeline`."""
        return {"kind": self.kind, "type": type(self).__name__}


class Primitive(Middleware):
    """Base class of sans-IO primitives: override ``admit`` (and ``settle``, ``observe``,
    ``withdraw`` as needed); the four hooks are the gateway's drivers, the same for every
    primitive. ``observes``: whether ``observe`` wants each stream event (off by default,
    so a stream pays nothing for stages that do not look)."""

    observes: bool = False
    #: Where the async drivers run ``admit`` and a successful call's ``settle`` when this
    #: primitive's store waits on the network (a shared store's threads, e.g. Redis), so the
    #: event loop is never blocked on it; None (in-memory stores): inline on the loop.
    io: Executor | None = None

    def admit(self, ctx: CallContext, state: Any) -> Verdict:
        """Decide on ``ctx``: `Proceed`, `Serve`, `Wait` or `Work` (see
        `aigw_lab.gateway.primitive`). ``state`` is None on the first ask, then the state
        of the last `Wait` or the result of the last `Work`."""
        return PROCEED

    def withdraw(self, ctx: CallContext, state: Any) -> None:
        """The driver stopped waiting (or working) for ``state``: give up what it held."""

    def observe(self, ctx: CallContext, ticket: Any, event: StreamEvent) -> None:
        """One event of a streamed answer, before it goes on (with ``observes = True``)."""

    def settle(self, ctx: CallContext, ticket: Any, outcome: Outcome) -> None:
        """The call that proceeded with ``ticket`` ended as ``outcome`` (called once)."""

    # The drivers are the hooks: the same four functions for every primitive.
    handle = drive_chat  # type: ignore[assignment]
    ahandle = drive_achat  # type: ignore[assignment]
    handle_stream = drive_stream  # type: ignore[assignment]
    ahandle_stream = drive_astream  # type: ignore[assignment]


def compose(middleware: list[Middleware], terminal: Any, hook: str) -> Any:
    """Chain ``middleware`` around ``terminal`` through the named hook, outermost first."""
    handler = terminal
    for mw in reversed(middleware):
        handler = _bind(getattr(mw, hook), handler)
    return handler


def _bind(method: Any, call_next: Any) -> Any:
    def stage(ctx: CallContext) -> Any:
        return method(ctx, call_next)

    return stage
