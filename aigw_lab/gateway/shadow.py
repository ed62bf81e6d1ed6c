"""Shadow traffic: a sampled share of live calls also sent to a candidate target, in the
background, under the shadow's own budget, each shadow call logged and linked to its live
original (``calls.shadow_of``) so the pairs can be scored later
(`aigw_lab.experiments.shadow_report`).

    shadow = Shadow("sim-anthropic/sim-large", share=0.1, budget_usd=5.0,
                    rng=random.Random(7))
    gateway = Gateway(providers, log="calls.duckdb", shadow=shadow)
    gateway.chat("sim-openai/sim-small", "Hi")   # answered as before; maybe shadowed
    shadow.stats()                               # sent, dropped, spent, exhausted, ...

How a call is shadowed, and why so:

- **After the live outcome is known.** The live call's answer (for a stream: its final
  event, before it is handed on) is offered to the shadow, which decides and hands the
  shadow call to its own worker threads, then returns: the caller waits for a random draw,
  a lock and a queue hand-off, never for the candidate. Starting after the outcome (rather
  than alongside) gives the shadow row the live call's ``call_id`` to link to, skips cache
  hits and failures (nothing to compare), and keeps the candidate from competing with the
  live call for connections while the caller waits.
- **Its own threads, in every mode.** The shadow runs the gateway's sync pipeline on a
  bounded pool of at most ``max_in_flight`` threads, whether the live call was ``chat``,
  ``achat``, ``stream`` or ``astream``: it never takes the caller's event loop, it does not
  die with a loop that ends (``asyncio.run`` in a notebook cell), and `Gateway.close` /
  ``aclose`` drain it the same way. A call offered while ``max_in_flight`` shadows run is
  dropped, and counted, never queued.
- **Its own budget.** Each shadow call reserves its estimated cost (the `Budget`'s
  estimate: whole output allowance, the target's price) against ``budget_usd`` before it is
  sent and is charged its real cost when it ends; a call the budget cannot cover is not
  sent, the shadow says so once in the Python log (``aigw_lab.shadow``) and `stats` shows
  ``exhausted``. Shadow calls skip the live pipeline's budget, rate limit, cache and
  retry stages (only a routing policy's route stage runs, so a policy can be shadowed) and
  their rows record ``budget_usd = 0``: a restarted `Budget` seeding from the log does not
  count them against live limits. They are real spend: ``cost_usd`` holds what they cost
  and every cost report includes them.
- **Linked rows.** A shadow row has ``shadow_of`` = the live call's ``call_id``,
  ``route_policy = "shadow"``, ``propensity`` = ``share`` (the probability that the live
  call was shadowed), the tag ``aigw_shadow = "1"``, its own trace id, and no experiment
  coordinates (so experiment tables never count it as a unit). With a provider target,
  exactly one row per shadow call sent.
- **Never in the caller's way.** Every step of the offer is guarded: a shadow problem is
  counted in `stats` and logged, never raised into the caller.

Sampling is one draw of ``rng`` per eligible live call (a successful call, not a cache hit
unless ``on_cache_hits``, not to the candidate itself, to an address in ``only`` when
given), made before the budget or the in-flight bound is looked at, so the share of calls
sampled is the configured share whatever happens later.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import random
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.config_schema import NUMBER, Key, Table
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.budget_limits import DEFAULT_OUTPUT_TOKENS, charged_usd, estimate_cost
from aigw_lab.gateway.middleware import CallContext
from aigw_lab.gateway.records import EXPERIMENT_KEY
from aigw_lab.types import ChatRequest

if TYPE_CHECKING:
    from aigw_lab.gateway._sync.calls import Calls
    from aigw_lab.gateway.gateway import Gateway
    from aigw_lab.types import ChatResponse

__all__ = [
    "Shadow",
    "ShadowStats",
    "SHADOW_POLICY",
    "SHADOW_TAG",
    "SHADOW_TABLE",
]

#: ``route_policy`` of every shadow row.
SHADOW_POLICY = "shadow"
#: The tag every shadow call carries (value ``"1"``).
SHADOW_TAG = "aigw_shadow"

_LOG = logging.getLogger("aigw_lab.shadow")

#: ``[shadow]`` in a config file: `Shadow.from_config` reads it.
SHADOW_TABLE = Table(
    keys=(
        Key(
            name="target",
            types=(str,),
            nonempty=True,
            required=True,
            what='a "provider/model" or policy name',
            doc="the candidate each sampled live call is also sent to",
        ),
        Key(
            name="share",
            types=NUMBER,
            low=0,
            high=1,
            low_open=True,
            what="a number in (0, 1]",
            doc="the share of eligible live calls shadowed (default 0.1)",
        ),
        Key(
            name="budget_usd",
            types=NUMBER,
            low=0,
            low_open=True,
            required=True,
            what="a positive number of USD",
            doc="what all shadow calls together may cost; shadowing stops when spent",
        ),
        Key(
            name="max_in_flight",
            types=(int,),
            low=1,
            high=256,
            what="an integer from 1 to 256",
            doc="shadow calls running at once; more are dropped (default 4)",
        ),
        Key(
            name="seed",
            types=(int,),
            what="an integer",
            doc="seed of the sampling draws (default: random)",
        ),
        Key(
            name="on_cache_hits",
            types=(bool,),
            what="true or false",
            doc="also shadow calls answered by a cache (default false)",
        ),
        Key(
            name="only",
            types=(list,),
            items=(str,),
            what='a list of "provider/model" strings',
            doc='shadow only live calls to these addresses ("policy/NAME" for a policy)',
        ),
        Key(
            name="drain_timeout",
            types=NUMBER,
            low=0,
            what="a non-negative number of seconds",
            doc="how long closing the gateway waits for running shadows (default 30)",
        ),
    ),
    hint='target = "provider/model", share = 0.1, budget_usd = 5',
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowStats:
    """What a `Shadow` has done so far.

    ``eligible``: live calls that could be shadowed (each one draw); ``sampled``: drawn
    into the share; ``sent``: shadow calls started (each has its row); ``completed`` /
    ``failed``: of those, answered or raised; ``dropped_in_flight``: sampled while
    ``max_in_flight`` shadows ran; ``skipped_budget``: sampled but not affordable;
    ``skipped_closed``: offered after close; ``errors``: problems of the shadow itself
    (logged, never raised); ``in_flight``: running now; ``spent_usd`` / ``reserved_usd``:
    charged and held against ``budget_usd``; ``exhausted``: a sampled call did not fit the
    budget (shadowing has stopped for calls that large); ``abandoned_at_close``: still
    running when close gave up waiting."""

    eligible: int
    sampled: int
    sent: int
    completed: int
    failed: int
    dropped_in_flight: int
    skipped_budget: int
    skipped_closed: int
    errors: int
    in_flight: int
    spent_usd: float
    reserved_usd: float
    budget_usd: float
    exhausted: bool
    abandoned_at_close: int


class Shadow:
    """Shadow traffic for one gateway (``Gateway(shadow=...)``; see the module docstring).

    ``target``: the candidate, ``"provider/model"`` or a routing policy's name, as a live
    call would address it. ``share``: the probability that an eligible live call is
    shadowed. ``budget_usd``: what all shadow calls together may cost. ``max_in_flight``:
    shadow calls running at once (threads); a call sampled beyond it is dropped.
    ``rng``: the sampling draws (a `random.Random`; default one seeded by ``seed``, random
    when None). ``on_cache_hits``: also shadow calls a cache answered. ``only``: shadow only
    live calls made to these addresses (``"provider/model"``; ``"policy/NAME"`` for a call
    to a routing policy, whatever target it chose). ``drain_timeout``: seconds
    the gateway's close waits for running shadows. ``default_output_tokens``: the output
    allowance of the cost estimate of a request without ``max_tokens``.
    """

    def __init__(
        self,
        target: str,
        *,
        share: float = 0.1,
        budget_usd: float,
        max_in_flight: int = 4,
        rng: random.Random | None = None,
        seed: int | None = None,
        on_cache_hits: bool = False,
        only: Sequence[str] = (),
        drain_timeout: float = 30.0,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(
                f"shadow target {target!r} is invalid",
                hint='name the candidate as "provider/model" or a policy name',
            )
        if not _number(share) or not 0 < share <= 1:
            raise ConfigError(
                f"shadow share={share!r} is invalid", hint="use a number in (0, 1], e.g. 0.1"
            )
        if not _number(budget_usd) or not 0 < budget_usd < math.inf:
            raise ConfigError(
                f"shadow budget_usd={budget_usd!r} is invalid",
                hint="use a positive, finite number of USD",
            )
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise ConfigError(f"shadow max_in_flight={max_in_flight!r} is invalid")
        if not 1 <= max_in_flight <= 256:
            raise ConfigError(
                f"shadow max_in_flight={max_in_flight!r} is invalid",
                hint="use an integer from 1 to 256",
            )
        if not _number(drain_timeout) or not 0 <= drain_timeout < math.inf:
            raise ConfigError(
                f"shadow drain_timeout={drain_timeout!r} is invalid",
                hint="use a non-negative number of seconds",
            )
        tokens = default_output_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ConfigError(
                f"shadow default_output_tokens={tokens!r} is invalid", hint="use a positive integer"
            )
        if isinstance(only, str) or not all(isinstance(o, str) and "/" in o for o in only):
            raise ConfigError(
                f"shadow only={only!r} is invalid", hint='use a list of "provider/model"'
            )
        self.target = target
        self.share = float(share)
        self.budget_usd = float(budget_usd)
        self.max_in_flight = max_in_flight
        self.on_cache_hits = bool(on_cache_hits)
        self.only = frozenset(only)
        self._only = frozenset(tuple(o.partition("/")[::2]) for o in only)
        self.drain_timeout = float(drain_timeout)
        self.default_output_tokens = default_output_tokens
        self._rng = rng if rng is not None else random.Random(seed)  # noqa: S311 - sampling
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._spent = 0.0
        self._reserved = 0.0
        self._exhausted = False
        self._closed = False
        self._futures: set[concurrent.futures.Future[None]] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Set by `bind`, when the gateway that owns this shadow is built.
        self._gateway: Gateway | None = None
        self._calls: Calls | None = None
        self._provider = ""
        self._model = ""

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Shadow:
        """Build from a ``[shadow]`` table (`SHADOW_TABLE`)::

        [shadow]
        target = "sim-anthropic/sim-large"
        share = 0.1
        budget_usd = 5.0
        max_in_flight = 4      # optional
        seed = 7               # optional
        """
        SHADOW_TABLE.validate(settings, "[shadow]")
        options = dict(settings)
        target = options.pop("target")
        if "only" in options:
            options["only"] = tuple(options["only"])
        return cls(target, **options)

    def __repr__(self) -> str:
        return (
            f"Shadow(target={self.target!r}, share={self.share}, budget_usd={self.budget_usd}, "
            f"max_in_flight={self.max_in_flight})"
        )

    # --- wiring (the gateway calls these) -----------------------------------------------

    def bind(self, gateway: Gateway, calls: Calls) -> None:
        """Attach to ``gateway``, whose sync pipeline ``calls`` (its route stage and the
        attempt, nothing else) runs each shadow call. Raises `ConfigError` for a target the
        gateway cannot address or price (its budget could not be kept)."""
        if self._gateway is not None and self._gateway is not gateway:
            raise ConfigError(
                "this Shadow already belongs to another gateway", hint="make one per gateway"
            )
        try:
            provider, model = gateway.resolve(self.target)
        except Exception as exc:
            raise ConfigError(
                f"shadow target {self.target!r} is not something this gateway serves: {exc}",
                hint="name a configured provider's model or a policy",
            ) from exc
        known = gateway.list_models().get(provider, ())
        if known and model not in known:
            raise ConfigError(
                f"shadow target {self.target!r}: {provider!r} has no model {model!r}",
                hint=f"its models: {', '.join(known)}",
            )
        probe = _probe_request(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            usd = estimate_cost(probe, gateway.prices, provider, model).usd
        if usd is None:
            raise ConfigError(
                f"shadow target {self.target!r} has no known price, so its budget cannot be kept",
                hint=f'set [prices."{self.target}"] or the provider\'s prices',
            )
        self._gateway = gateway
        self._calls = calls
        self._provider, self._model = provider, model

    def offer(self, ctx: CallContext, response: ChatResponse) -> None:
        """A live call ended with ``response``: shadow it or not. Returns at once; never
        raises (a problem is counted in ``stats().errors`` and logged)."""
        try:
            self._offer(ctx, response)
        except Exception:  # noqa: BLE001 - the shadow never fails a live call
            with self._lock:
                self._counts["errors"] += 1
            _LOG.exception("shadow: could not offer call %s", response.call_id)

    def stats(self) -> ShadowStats:
        """The counts and spend so far (`ShadowStats`)."""
        with self._lock:
            return ShadowStats(
                **self._counts,
                in_flight=len(self._futures),
                spent_usd=self._spent,
                reserved_usd=self._reserved,
                budget_usd=self.budget_usd,
                exhausted=self._exhausted,
            )

    def close(self, timeout: float | None = None) -> int:
        """Stop taking calls and wait up to ``timeout`` seconds (default
        ``drain_timeout``) for running shadow calls, so their rows are logged before the
        gateway closes its log. Returns how many were still running (counted in
        ``abandoned_at_close``; each still logs its row when it ends, or is set aside by a
        closed log). Idempotent."""
        with self._lock:
            self._closed = True
            pending = set(self._futures)
            pool, self._pool = self._pool, None
        if pending:
            wait = self.drain_timeout if timeout is None else timeout
            _, pending = concurrent.futures.wait(pending, timeout=wait)
        if pending:
            with self._lock:
                self._counts["abandoned_at_close"] += len(pending)
            _LOG.warning(
                "shadow: %d shadow call(s) still running at close; not waiting longer",
                len(pending),
            )
        if pool is not None:
            pool.shutdown(wait=False)
        return len(pending)

    # --- the decision -------------------------------------------------------------------

    def _offer(self, ctx: CallContext, response: ChatResponse) -> None:
        # On the caller's path: the common case (not sampled) costs a few comparisons, a
        # lock and a draw; the request and its estimate are built only for a sampled call.
        if ctx.shadow_of is not None or self._calls is None:
            return  # a shadow call is never shadowed
        if response.attempts == 0 and not self.on_cache_hits:
            return  # served by a cache: no upstream answer to compare
        # The call's address: its target, or "policy"/NAME once a policy's call is done.
        address = (ctx.provider_name, ctx.model)
        if self._only and address not in self._only:
            return
        if address == (self._provider, self._model):
            return  # the candidate itself: nothing to compare
        live_call_id = response.call_id
        if not live_call_id:
            return
        counts = self._counts
        with self._lock:
            if self._closed:
                counts["skipped_closed"] += 1
                return
            counts["eligible"] += 1
            # One draw per eligible call, before anything else decides: an honest share.
            if self._rng.random() >= self.share:
                return
            counts["sampled"] += 1
            if len(self._futures) >= self.max_in_flight:
                counts["dropped_in_flight"] += 1  # before building anything for it
                return
        request = _shadow_request(ctx.request, self._model)
        estimate = estimate_cost(
            request,
            self._gateway.prices,  # type: ignore[union-attr]
            self._provider,
            self._model,
            default_output_tokens=self.default_output_tokens,
        ).usd
        estimate = 0.0 if estimate is None else estimate
        with self._lock:
            if self._closed:
                counts["skipped_closed"] += 1
                return
            if len(self._futures) >= self.max_in_flight:
                counts["dropped_in_flight"] += 1
                return
            if self._spent + self._reserved + estimate > self.budget_usd:
                counts["skipped_budget"] += 1
                first = not self._exhausted
                self._exhausted = True
                if first:
                    _LOG.warning(
                        "shadow: budget of %.6f USD for %s is spent (%.6f USD charged, "
                        "%.6f reserved); shadowing stops",
                        self.budget_usd,
                        self.target,
                        self._spent,
                        self._reserved,
                    )
                return
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_in_flight, thread_name_prefix="aigw-shadow"
                )
            try:
                future = self._pool.submit(self._run, request, live_call_id, ctx.stream, estimate)
            except RuntimeError:  # the pool was shut down: the gateway is closing
                counts["skipped_closed"] += 1
                return
            self._reserved += estimate
            counts["sent"] += 1
            self._futures.add(future)
            future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    # --- the shadow call (on a worker thread) -------------------------------------------

    def _run(self, request: ChatRequest, live_call_id: str, stream: bool, estimate: float) -> None:
        gateway = self._gateway
        calls = self._calls
        assert gateway is not None and calls is not None
        recorder = gateway.recorder
        ctx = CallContext(
            request,
            self._provider,
            self._model,
            gateway.new_id(),
            stream=stream,
            started=recorder.perf(),
            started_wall=recorder.clock(),
            gateway=gateway,
            recorder=recorder,
        )
        ctx.shadow_of = live_call_id
        ctx.route_policy = SHADOW_POLICY
        ctx.propensity = self.share
        # Counts nothing against live budgets (``budget_usd`` = 0 in its row): see records.
        cost: float | None = None
        answered = False
        ok = False
        try:
            if stream:
                chat_stream = calls.stream(ctx)
                try:
                    response = chat_stream.until_done()
                finally:
                    answered = bool(chat_stream.text)
                    chat_stream.close()
            else:
                response = calls.chat(ctx)
            cost, answered, ok = response.cost_usd, True, True
        except Exception as exc:  # noqa: BLE001 - logged as the shadow row; counted
            _LOG.debug("shadow call for %s failed: %r", live_call_id, exc)
        finally:
            with self._lock:
                self._reserved -= estimate
                if self._reserved < 1e-12:
                    self._reserved = 0.0  # no float residue once nothing is held
                self._spent += charged_usd(estimate, cost, answered=answered)
                self._counts["completed" if ok else "failed"] += 1


_COUNTERS = (
    "eligible",
    "sampled",
    "sent",
    "completed",
    "failed",
    "dropped_in_flight",
    "skipped_budget",
    "skipped_closed",
    "errors",
    "abandoned_at_close",
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shadow_request(request: ChatRequest, model: str) -> ChatRequest:
    """The live request addressed to the candidate, tagged as a shadow, without the
    experiment coordinates (a shadow row is never an experiment unit)."""
    tags = MappingProxyType({**request.tags, SHADOW_TAG: "1"})
    metadata = request.metadata
    if metadata and EXPERIMENT_KEY in metadata:
        metadata = MappingProxyType({k: v for k, v in metadata.items() if k != EXPERIMENT_KEY})
    return replace(request, model=model, tags=tags, metadata=metadata)


def _probe_request(model: str) -> ChatRequest:
    return ChatRequest.create(model, "probe", max_tokens=16)
