"""`submit_batch` and `BatchJob`: a batch's requests, its progress, and its results decoded
by the provider's codec, priced at the batch discount and logged once per request."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.batch.apis import api_for, custom_id
from aigw_lab.errors import AigwError, ConfigError, ProviderError, ProviderTimeoutError
from aigw_lab.gateway.middleware import CallContext
from aigw_lab.gateway.records import failure_record, success_record
from aigw_lab.providers.codec import UpstreamErrorEvent
from aigw_lab.types import ChatRequest, ChatResponse, Latency

if TYPE_CHECKING:
    from aigw_lab.gateway import Gateway

__all__ = ["submit_batch", "BatchJob", "BATCH_DISCOUNT", "BATCH_TAG", "TERMINAL_STATUSES"]

#: The share of the normal price a batched request costs: both OpenAI and Anthropic bill
#: batches at 50% of their standard input and output token prices.
BATCH_DISCOUNT = 0.5
#: The tag every logged batch row carries, with the job id as its value.
BATCH_TAG = "aigw_batch"
#: Normalised statuses in which a job no longer changes.
TERMINAL_STATUSES = frozenset(("completed", "failed", "expired", "cancelled", "ended"))

# What a codec raises on a payload of the wrong shape (as in `aigw_lab.providers.transport`).
_DECODE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError)


def submit_batch(
    gateway: Gateway,
    model_address: str,
    requests: Sequence[ChatRequest | str],
    *,
    metadata: Mapping[str, str] | None = None,
    discount: float = BATCH_DISCOUNT,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchJob:
    """Submit ``requests`` to ``model_address`` (``"provider/model"``) as one batch job.

    Strings become one-message requests; a `ChatRequest`'s own model is replaced by the
    addressed one. ``metadata`` goes to the provider's batch object (OpenAI only: Anthropic
    batches have none). ``discount`` is the share of the normal price logged per request.
    ``sleep`` and ``clock`` are what `BatchJob.wait` uses (injected by tests).
    """
    provider_name, model = _split_address(gateway, model_address)
    if not requests:
        raise ConfigError("submit_batch got no requests", hint="pass at least one request")
    prepared = tuple(_prepare(model, r) for r in requests)
    prepared = tuple(gateway.with_defaults(r) for r in prepared)
    api = api_for(gateway, provider_name, model)
    info = api.create(prepared, dict(metadata or {}))
    return BatchJob(
        gateway, provider_name, model, prepared, info,
        discount=discount, sleep=sleep, clock=clock,
    )  # fmt: skip


class BatchJob:
    """A submitted batch: poll it, wait for it, cancel it, and collect its results.

    Use `submit_batch` to create one and `BatchJob.resume` to reconnect to one from
    `to_dict`'s output. ``info`` is the provider's latest batch object, as JSON data.
    """

    def __init__(
        self,
        gateway: Gateway,
        provider_name: str,
        model: str,
        requests: tuple[ChatRequest, ...],
        info: Mapping[str, Any],
        *,
        discount: float = BATCH_DISCOUNT,
        logged: bool = False,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = gateway
        self.provider_name = provider_name
        self.model = model
        self.requests = requests
        self.info: Mapping[str, Any] = info
        self.discount = discount
        self._api = api_for(gateway, provider_name, model)
        self._logged = logged
        self._results: list[ChatResponse | AigwError] | None = None
        self._sleep = sleep
        self._clock = clock

    @property
    def id(self) -> str:
        return str(self.info["id"])

    def __repr__(self) -> str:
        status = self._api.status_of(self.info)
        target = f"{self.provider_name}/{self.model}"
        return f"<BatchJob {self.id} {target} {len(self.requests)} requests {status}>"

    # -- progress ----------------------------------------------------------------------------

    def status(self) -> str:
        """Ask the provider; one of validating, in_progress, finalizing, completed, failed,
        expired, cancelling, cancelled (OpenAI) or in_progress, cancelling, ended (Anthropic)."""
        self.info = self._api.retrieve(self.id)
        return self._api.status_of(self.info)

    def wait(self, *, poll_interval: float = 30.0, timeout: float | None = None) -> str:
        """Poll every ``poll_interval`` seconds until the job ends; return its final status.

        Raises `ProviderTimeoutError` when ``timeout`` seconds pass first (the job keeps
        running at the provider: wait again, or resume it later)."""
        started = self._clock()
        while True:
            status = self.status()
            if status in TERMINAL_STATUSES:
                return status
            waited = self._clock() - started
            if timeout is not None and waited + poll_interval > timeout:
                raise ProviderTimeoutError(
                    f"batch {self.id} is still {status} after {waited:g}s",
                    provider=self.provider_name,
                    model=self.model,
                    hint="batches may take up to 24h: call wait() again later, or save "
                    "job.to_dict() and BatchJob.resume() it in a new session",
                )
            self._sleep(poll_interval)

    def cancel(self) -> str:
        """Ask the provider to cancel the job; returns the status it reports (cancelling
        until the requests in flight finish; their results stay collectable)."""
        self.info = self._api.cancel(self.id)
        return self._api.status_of(self.info)

    @property
    def duration_s(self) -> float | None:
        """Seconds from creation to the end of the job, once it ended (per the provider)."""
        return self._api.duration_s(self.info)

    # -- results -----------------------------------------------------------------------------

    def results(self) -> list[ChatResponse | AigwError]:
        """One entry per request, in input order: a `ChatResponse`, or the `AigwError` that
        request ended with. The first call downloads, decodes and logs them (each request
        once); later calls return the same list."""
        if self._results is not None:
            return self._results
        if self._api.status_of(self.info) not in TERMINAL_STATUSES:
            self.status()
        status = self._api.status_of(self.info)
        if status not in TERMINAL_STATUSES:
            raise AigwError(
                f"batch {self.id} is {status}: its results are not ready",
                hint="call job.wait() first",
            )
        raw = self._api.fetch_results(self.info)
        latency = Latency(total_ms=self.duration_s * 1000.0 if self.duration_s is not None else 0.0)
        results = [
            self._result(index, request, raw.get(custom_id(index)), latency)
            for index, request in enumerate(self.requests)
        ]
        if not self._logged:
            if not self._in_log():
                self._log(results)
            self._logged = True
        self._results = results
        return results

    def _result(
        self, index: int, request: ChatRequest, raw: Any, latency: Latency
    ) -> ChatResponse | AigwError:
        provider = self._api.provider
        if raw is None:
            return ProviderError(
                f"the batch {self.id} ({self._api.status_of(self.info)}) has no result for "
                f"request {index}{self._api.job_errors(self.info)}",
                provider=self.provider_name,
                model=self.model,
                retryable=True,
                hint="the request was not run (the batch was cancelled, expired or failed): "
                "submit it again",
            )
        try:
            payload = self._api.answer_of(raw)  # raises UpstreamErrorEvent for an error
            decoded = provider.codec.decode(payload, request)
        except UpstreamErrorEvent as event:
            return provider.upstream_event_error(request, event, json.dumps(event.payload))
        except ProviderError as exc:
            return exc
        except _DECODE_ERRORS as exc:
            return provider.malformed_error(request, None, json.dumps(raw), exc)
        usage = decoded.usage
        cost = self.gateway.prices.cost(self.provider_name, self.model, usage)
        return ChatResponse(
            text=decoded.text,
            finish_reason=decoded.finish_reason,
            usage=usage,
            provider=self.provider_name,
            model=decoded.model or self.model,
            latency=latency,
            cost_usd=None if cost is None else cost * self.discount,
            cache_status="none",
            attempts=1,
            response_id=decoded.response_id,
            tool_calls=decoded.tool_calls,
            raw=decoded.raw,
            # The simulated fleet's batches are marked as its chat calls are.
            simulated=provider.simulated,
            call_id=self.gateway.new_id(),
            trace_id=self.gateway.new_id(),
        )

    def _in_log(self) -> bool:
        # A job resumed from a dict saved before its results were read, in a session that
        # read them since, finds its rows here: each request is logged once, whatever the
        # order of saves and restarts.
        log = self.gateway.log
        if log is None:
            return False
        rows = log.execute(
            f"SELECT 1 FROM calls WHERE json_extract_string(tags_json, '$.{BATCH_TAG}') = ? "
            "LIMIT 1",
            [self.id],
        )
        return bool(rows)

    def _log(self, results: list[ChatResponse | AigwError]) -> None:
        gateway = self.gateway
        recorder = gateway.recorder
        if recorder.log is None and not recorder.sinks:
            return
        started_wall = self._api.created_at(self.info) or time.time()
        api_format = self._api.provider.codec.api_format
        simulated = self._api.provider.simulated
        records = []
        for request, result in zip(self.requests, results, strict=True):
            tagged = replace(request, tags=MappingProxyType({**request.tags, BATCH_TAG: self.id}))
            trace_id = result.trace_id if isinstance(result, ChatResponse) else gateway.new_id()
            ctx = CallContext(
                tagged, self.provider_name, self.model, trace_id or gateway.new_id(),
                stream=False, started=0.0, started_wall=started_wall, gateway=gateway,
            )  # fmt: skip
            ctx.attempt = 1
            if isinstance(result, ChatResponse):
                record = success_record(ctx, result, api_format=api_format)
            else:
                record = failure_record(
                    ctx, result, call_id=gateway.new_id(), total_ms=0.0, upstream_ms=None,
                    partial_text=None, api_format=api_format, simulated=simulated,
                )  # fmt: skip
            # No per-request latency exists for a batch: NULL, never a made-up number.
            records.append(
                record._replace(
                    latency_ms=None,
                    ttfb_ms=None,
                    ttft_ms=None,
                    upstream_ms=None,
                    overhead_ms=None,
                )  # fmt: skip
            )
        # Through the recorder: the log and every extra sink get each row, made storable.
        recorder.append_many(records)

    # -- reconnecting ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state for `resume`: the job id, target, discount, whether its results
        were logged already, and the requests (needed to decode and log the results)."""
        return {
            "version": 1,
            "id": self.id,
            "provider": self.provider_name,
            "model": self.model,
            "discount": self.discount,
            "logged": self._logged,
            "info": dict(self.info),
            "requests": [_request_to_dict(r) for r in self.requests],
        }

    @classmethod
    def resume(
        cls,
        gateway: Gateway,
        state: Mapping[str, Any],
        *,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> BatchJob:
        """Reconnect to a job saved with `to_dict` (nothing is submitted again)."""
        try:
            model = state["model"]
            requests = tuple(_request_from_dict(model, r) for r in state["requests"])
            return cls(
                gateway, state["provider"], model, requests, dict(state["info"]),
                discount=float(state.get("discount", BATCH_DISCOUNT)),
                logged=bool(state.get("logged", False)), sleep=sleep, clock=clock,
            )  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"not a saved batch job: {type(exc).__name__}: {exc}",
                hint="pass the dict that job.to_dict() returned, unchanged",
            ) from exc


# --- helpers ----------------------------------------------------------------------------------


def _split_address(gateway: Gateway, address: str) -> tuple[str, str]:
    provider_name, sep, model = address.partition("/") if isinstance(address, str) else ("", "", "")
    if not sep or not model or provider_name not in gateway.provider_names:
        raise ConfigError(
            f"{address!r} is not a provider/model address of this gateway",
            hint=f"write it as provider/model; providers: {', '.join(gateway.provider_names)}",
        )
    return provider_name, model


def _prepare(model: str, request: ChatRequest | str) -> ChatRequest:
    if isinstance(request, str):
        return ChatRequest.create(model, request)
    if isinstance(request, ChatRequest):
        return request if request.model == model else replace(request, model=model)
    raise ConfigError(
        f"a batch request is a {type(request).__name__}",
        hint="pass prompt strings or ChatRequest objects",
    )


def _request_to_dict(request: ChatRequest) -> dict[str, Any]:
    out = request.to_dict()
    for name in ("user", "tenant", "experiment_id"):
        value = getattr(request, name)
        if value is not None:
            out[name] = value
    if request.tags:
        out["tags"] = dict(request.tags)
    if request.metadata:
        out["metadata"] = dict(request.metadata)
    return out


def _request_from_dict(model: str, data: Mapping[str, Any]) -> ChatRequest:
    fields = dict(data)
    fields.pop("model", None)
    messages = fields.pop("messages")
    return ChatRequest.create(model, messages, **fields)
