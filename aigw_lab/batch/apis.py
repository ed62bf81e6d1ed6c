"""The two batch APIs aigw_lab speaks, over a provider's `HttpProvider`: OpenAI's Files +
Batches API and Anthropic's Message Batches API. Each turns requests into a job, reads the
job's state, cancels it, and downloads its raw results keyed by ``custom_id``; decoding the
answers is the provider codec's job (`aigw_lab.batch.job`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import httpx

from aigw_lab.errors import ConfigError, ProviderError
from aigw_lab.providers.codec import UpstreamErrorEvent
from aigw_lab.providers.transport import HttpProvider
from aigw_lab.types import ChatRequest

if TYPE_CHECKING:
    from aigw_lab.gateway import Gateway

__all__ = ["BATCH_KINDS", "BatchAPI", "OpenAIBatches", "AnthropicBatches", "api_for", "custom_id"]

#: Provider kinds with a batch API this package speaks.
BATCH_KINDS: tuple[str, ...] = ("openai", "anthropic")

# Anthropic's processing_status, in the normalised vocabulary (OpenAI's is used as is).
_ANTHROPIC_STATUS: Mapping[str, str] = MappingProxyType(
    {"in_progress": "in_progress", "canceling": "cancelling", "ended": "ended"}
)
_OPENAI_CHAT_URL = "/v1/chat/completions"


class BatchAPI:
    """The HTTP exchanges of one provider's batch API, through its `HttpProvider`: the same
    base URL, key and headers as its chat calls, and its error mapping."""

    # Every exchange goes through `HttpProvider.send`, so a batch maps errors and redacts
    # keys exactly as a chat call does, rather than a second copy of that logic.

    def __init__(self, provider: HttpProvider, model: str) -> None:
        self.provider = provider
        # Errors name the model; the transport's helpers read it from a request.
        self._stand_in = ChatRequest(model, ())

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.provider.send(method, url, on_behalf_of=self._stand_in, **kwargs)

    def send_json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.send(method, url, **kwargs)
        try:
            payload = response.json()
            if not isinstance(payload, dict) or "id" not in payload:
                raise ValueError("expected a JSON object with an 'id'")
        except ValueError as exc:
            raise self.provider.malformed_error(
                self._stand_in, response.status_code, response.text, exc
            ) from exc
        return payload

    def jsonl(self, url: str) -> list[Any]:
        response = self.send("GET", url)
        try:
            return [json.loads(line) for line in response.text.splitlines() if line.strip()]
        except ValueError as exc:
            raise self.provider.malformed_error(
                self._stand_in, response.status_code, response.text, exc
            ) from exc


class OpenAIBatches(BatchAPI):
    """OpenAI: upload a JSONL file (purpose ``batch``), create a batch over it, read the
    output and error files; base URLs end in ``/v1`` (``https://api.openai.com/v1``)."""

    def create(self, requests: tuple[ChatRequest, ...], metadata: dict[str, str]) -> Any:
        lines = []
        for index, request in enumerate(requests):
            body = self.provider.codec.encode(request, stream=False).body
            line = {"custom_id": custom_id(index), "method": "POST", "url": _OPENAI_CHAT_URL,
                    "body": body}  # fmt: skip
            lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
        content = ("\n".join(lines) + "\n").encode()
        uploaded = self.send_json(
            "POST", "/files", data={"purpose": "batch"},
            files={"file": ("aigw_batch.jsonl", content, "application/jsonl")},
        )  # fmt: skip
        body: dict[str, Any] = {"input_file_id": uploaded["id"], "endpoint": _OPENAI_CHAT_URL,
                                "completion_window": "24h"}  # fmt: skip
        if metadata:
            body["metadata"] = metadata
        return self.send_json("POST", "/batches", json=body)

    def retrieve(self, batch_id: str) -> Any:
        return self.send_json("GET", f"/batches/{batch_id}")

    def cancel(self, batch_id: str) -> Any:
        return self.send_json("POST", f"/batches/{batch_id}/cancel")

    def status_of(self, info: Mapping[str, Any]) -> str:
        return str(info.get("status"))

    def created_at(self, info: Mapping[str, Any]) -> float | None:
        value = info.get("created_at")
        return float(value) if isinstance(value, (int, float)) else None

    def duration_s(self, info: Mapping[str, Any]) -> float | None:
        created = self.created_at(info)
        ends = [info.get(k) for k in ("completed_at", "failed_at", "expired_at", "cancelled_at")]
        ended = next((e for e in ends if isinstance(e, (int, float))), None)
        return None if created is None or ended is None else float(ended) - created

    def job_errors(self, info: Mapping[str, Any]) -> str:
        """Why a failed batch failed (its validation errors), as a suffix for messages."""
        errors = info.get("errors")
        data = errors.get("data") if isinstance(errors, Mapping) else None
        if not data:
            return ""
        first = data[0] if isinstance(data[0], Mapping) else {}
        line = f" (line {first['line']})" if first.get("line") is not None else ""
        return f"; the batch failed: {first.get('code')}: {first.get('message')}{line}"

    def fetch_results(self, info: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("error_file_id", "output_file_id"):  # output last: it wins a conflict
            file_id = info.get(key)
            if file_id:
                for line in self.jsonl(f"/files/{file_id}/content"):
                    out[str(line.get("custom_id"))] = line
        return out

    def answer_of(self, line: Mapping[str, Any]) -> Any:
        response = line.get("response")
        error = line.get("error")
        if isinstance(response, Mapping):
            status = int(response.get("status_code") or 0)
            body = response.get("body")
            if status >= 400:
                raise UpstreamErrorEvent(status, body)
            return body
        if isinstance(error, Mapping):
            # A request the batch never ran (e.g. ``batch_expired``): no HTTP status exists.
            raise ProviderError(
                f"the request was not run: {error.get('code')}: {error.get('message')}",
                provider=self.provider.name,
                model=self._stand_in.model,
                retryable=True,
                hint="submit the request again",
            )
        raise ValueError("a batch output line has neither 'response' nor 'error'")


class AnthropicBatches(BatchAPI):
    """Anthropic: one ``POST /v1/messages/batches`` with every request's ``params``; results
    come as JSONL from the batch's ``results_url``."""

    def create(self, requests: tuple[ChatRequest, ...], metadata: dict[str, str]) -> Any:
        if metadata:
            raise ConfigError(
                "Anthropic message batches take no metadata",
                hint="drop metadata=, or label each request with tags (they are logged)",
            )
        items = [
            {"custom_id": custom_id(i), "params": self.provider.codec.encode(r, stream=False).body}
            for i, r in enumerate(requests)
        ]
        return self.send_json("POST", "/v1/messages/batches", json={"requests": items})

    def retrieve(self, batch_id: str) -> Any:
        return self.send_json("GET", f"/v1/messages/batches/{batch_id}")

    def cancel(self, batch_id: str) -> Any:
        return self.send_json("POST", f"/v1/messages/batches/{batch_id}/cancel")

    def status_of(self, info: Mapping[str, Any]) -> str:
        value = info.get("processing_status")
        return _ANTHROPIC_STATUS.get(value, str(value)) if isinstance(value, str) else "unknown"

    def created_at(self, info: Mapping[str, Any]) -> float | None:
        return _rfc3339(info.get("created_at"))

    def duration_s(self, info: Mapping[str, Any]) -> float | None:
        created, ended = self.created_at(info), _rfc3339(info.get("ended_at"))
        return None if created is None or ended is None else ended - created

    def job_errors(self, info: Mapping[str, Any]) -> str:
        return ""  # a Message Batch reports errors per request only

    def fetch_results(self, info: Mapping[str, Any]) -> dict[str, Any]:
        url = info.get("results_url")
        if not url:
            return {}
        url = str(url)
        if not url.startswith(self.provider.base_url + "/"):
            # The key goes only to the configured host: elsewhere (a proxy's base URL), ask
            # for the results at their documented path, as Anthropic's SDK does.
            url = f"/v1/messages/batches/{info['id']}/results"
        return {str(line.get("custom_id")): line for line in self.jsonl(url)}

    def answer_of(self, line: Mapping[str, Any]) -> Any:
        result = line["result"]
        kind = result.get("type")
        if kind == "succeeded":
            return result["message"]
        if kind == "errored":
            error = result.get("error") or {}
            # ``error`` is an error response ({"type": "error", "error": {...}}); the codec
            # maps its error type to the HTTP status Anthropic uses for it.
            self.provider.codec.decode(error, self._stand_in)
            raise ValueError("an errored result without an error response")
        raise ProviderError(
            f"the request was {kind} before it ran",
            provider=self.provider.name,
            model=self._stand_in.model,
            retryable=True,
            hint="submit the request again",
        )


def api_for(gateway: Gateway, provider_name: str, model: str) -> OpenAIBatches | AnthropicBatches:
    """The batch API of provider ``provider_name``; a `ConfigError` naming the kinds that have
    one when it has none (or when it is reached through an AI Gateway)."""
    # The spec says which API a provider speaks (an OpenAI-compatible server shares OpenAI's
    # chat format but has no batch API).
    spec = gateway.spec(provider_name)
    kind = spec.kind if spec is not None else None
    api_kind = kind
    if kind == "simulated" and spec is not None and not spec.base_url:
        # The in-process fleet serves both batch APIs (`aigw_lab.sim.batches`) in the format
        # its provider speaks; a simulator server does not.
        api_kind = spec.options.get("format")
    if api_kind not in BATCH_KINDS:
        raise ConfigError(
            f"provider {provider_name!r} (kind {kind or 'a ready-made provider'!r}) has no "
            "batch API aigw_lab can use",
            hint=f"batches work with providers of kind {' or '.join(BATCH_KINDS)}; send the "
            "requests with gateway.chat (or an experiment) instead",
        )
    if spec.cf_gateway:
        raise ConfigError(
            f"provider {provider_name!r} goes through Cloudflare AI Gateway "
            f"{spec.cf_gateway!r}, which aigw_lab cannot send batch jobs through",
            hint="add a second provider of the same kind without cf_gateway for batches",
        )
    provider = gateway.provider(provider_name)
    if not isinstance(provider, HttpProvider):
        raise ConfigError(f"provider {provider_name!r} is not an HTTP provider")
    if api_kind == "openai":
        return OpenAIBatches(provider, model)
    return AnthropicBatches(provider, model)


def custom_id(index: int) -> str:
    # Both APIs accept ids of 1-64 characters from [a-zA-Z0-9_-]; the index keeps order.
    return f"req-{index}"


def _rfc3339(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
