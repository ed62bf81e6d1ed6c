"""`FakeBatches`: a real HTTP server on 127.0.0.1 playing the OpenAI Files + Batches API and
the Anthropic Message Batches API, with job progress the test controls.

Each request in a batch is answered by ``responder(body) -> (status, payload)``; the default
echoes the last user message, and fails with HTTP 400 when that message starts with
``"error:"``. Every status poll moves a job one step along ``openai_steps`` /
``anthropic_steps`` (the last step sticks), so a test decides how many polls a job takes::

    with FakeBatches(openai_steps=("validating", "in_progress", "completed")) as fake:
        spec = ProviderSpec("openai", "openai", base_url=fake.url + "/v1", api_key_env="K")
        fake.fail_next(429)                       # the next request of any kind gets a 429
        ...
        assert fake.requests[0].path == "/v1/files"

Result files list answers in reverse input order (the APIs promise no order). Error bodies
follow each provider's documented shape.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aigw_lab.testing.fake_upstream import RecordedRequest

__all__ = ["FakeBatches", "echo_responder", "openai_error", "anthropic_error"]

Responder = Callable[[Mapping[str, Any]], tuple[int, Any]]

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                       404: "invalid_request_error", 429: "rate_limit_exceeded",
                       500: "server_error"}  # fmt: skip
_BATCH_PATH = re.compile(r"^/v1/batches/([^/]+)(/cancel)?$")
_FILE_CONTENT_PATH = re.compile(r"^/v1/files/([^/]+)/content$")
_MESSAGE_BATCH_PATH = re.compile(r"^/v1/messages/batches/([^/]+)(/cancel|/results)?$")


def openai_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _OPENAI_ERROR_TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """An Anthropic error body: ``{"type": "error", "error": {"type", "message"}}``."""
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def echo_responder(body: Mapping[str, Any]) -> tuple[int, Any]:
    """Answer ``echo: <last user text>``; HTTP 400 when that text starts with ``error:``."""
    text = ""
    for message in body.get("messages") or ():
        if message.get("role") == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
    if text.startswith("error:"):
        return 400, {"message": text[len("error:") :].strip()}
    return 200, {"text": f"echo: {text}", "input_tokens": len(text.split()),
                 "output_tokens": len(text.split()) + 1}  # fmt: skip


class FakeBatches:
    """The fake server (started on construction; a context manager, or call `close`).

    ``api_key``, when set, must arrive as ``Authorization: Bearer`` (OpenAI paths) or
    ``x-api-key`` (Anthropic paths), else HTTP 401 with the provider's error body.
    """

    def __init__(
        self,
        *,
        responder: Responder = echo_responder,
        api_key: str | None = None,
        openai_steps: Sequence[str] = ("validating", "in_progress", "finalizing", "completed"),
        anthropic_steps: Sequence[str] = ("in_progress", "ended"),
    ) -> None:
        self.responder = responder
        self.api_key = api_key
        self.openai_steps = tuple(openai_steps)
        self.anthropic_steps = tuple(anthropic_steps)
        #: The host ``results_url`` names (default: this server); set it to check that a
        #: client keeps its key on the configured host.
        self.results_base: str | None = None
        self.requests: list[RecordedRequest] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._failures: deque[tuple[int, Any]] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.005},
            name="FakeBatches", daemon=True,
        )  # fmt: skip
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; OpenAI clients use ``url + "/v1"``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, status: int, body: Any = None) -> None:
        """Answer the next request, whatever it is, with ``status`` and ``body`` (default:
        the error body of the provider the path belongs to)."""
        with self._lock:
            self._failures.append((status, body))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeBatches:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the routes --------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> tuple[int, Any, str]:
        """``(status, body, content type)`` for one request; JSON bodies are dicts."""
        anthropic = request.path.startswith("/v1/messages")
        error = anthropic_error if anthropic else openai_error
        with self._lock:
            self.requests.append(request)
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            status, body = failure
            return status, body if body is not None else error(status, "scripted failure"), "json"
        if self.api_key is not None and not self._authorised(request, anthropic):
            message = "invalid x-api-key" if anthropic else "Incorrect API key provided: ***."
            code = None if anthropic else "invalid_api_key"
            body = error(401, message) if anthropic else openai_error(401, message, code)
            return 401, body, "json"
        method, path = request.method, request.path
        if anthropic:
            return self._anthropic(method, path, request)
        if method == "POST" and path == "/v1/files":
            return self._upload(request)
        if method == "POST" and path == "/v1/batches":
            return self._create_openai(request.json or {})
        match = _BATCH_PATH.match(path)
        if match and match.group(1) in self.batches:
            batch = self.batches[match.group(1)]
            if match.group(2):
                return 200, self._cancel(batch, "cancelling", "cancelling_at"), "json"
            return 200, self._advance(batch), "json"
        match = _FILE_CONTENT_PATH.match(path)
        if method == "GET" and match and match.group(1) in self.files:
            return 200, self.files[match.group(1)], "jsonl"
        return 404, openai_error(404, f"No such route or object: {method} {path}"), "json"

    def _authorised(self, request: RecordedRequest, anthropic: bool) -> bool:
        if anthropic:
            return request.headers.get("x-api-key") == self.api_key
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _upload(self, request: RecordedRequest) -> tuple[int, Any, str]:
        fields = _multipart(request)
        if fields.get("purpose") != b"batch":
            return 400, openai_error(400, "purpose must be 'batch' for batch input"), "json"
        content = fields.get("file") or b""
        for number, line in enumerate(content.decode().splitlines(), 1):
            try:
                item = json.loads(line)
                item["custom_id"], item["method"], item["url"], item["body"]  # noqa: B018
            except (ValueError, KeyError, TypeError):
                message = f"Invalid file format for Batch API. Line {number} is not valid."
                return 400, openai_error(400, message, "invalid_jsonl"), "json"
        file_id = self._new_id("file-")
        self.files[file_id] = content
        return 200, {"id": file_id, "object": "file", "bytes": len(content),
                     "created_at": 1_700_000_000, "filename": "aigw_batch.jsonl",
                     "purpose": "batch"}, "json"  # fmt: skip

    def _create_openai(self, body: Mapping[str, Any]) -> tuple[int, Any, str]:
        if body.get("input_file_id") not in self.files:
            return 400, openai_error(400, "Invalid 'input_file_id'."), "json"
        if body.get("completion_window") != "24h":
            return 400, openai_error(400, "completion_window must be '24h'."), "json"
        lines = [json.loads(x) for x in self.files[body["input_file_id"]].decode().splitlines()]
        batch_id = self._new_id("batch_")
        batch = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"),
            "errors": None, "input_file_id": body["input_file_id"], "completion_window": "24h",
            "status": self.openai_steps[0], "output_file_id": None, "error_file_id": None,
            "created_at": 1_700_000_000, "in_progress_at": None, "expires_at": 1_700_086_400,
            "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
            "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "_lines": lines, "_step": 0, "_cancelled": False,
        }  # fmt: skip
        self.batches[batch_id] = batch
        return 200, _public(batch), "json"

    def _advance(self, batch: dict[str, Any]) -> dict[str, Any]:
        anthropic = batch.get("type") == "message_batch"
        steps = self.anthropic_steps if anthropic else self.openai_steps
        if batch.get("_finished"):
            pass
        elif batch["_cancelled"]:
            self._finish(batch, cancelled=True)
        elif batch["_step"] < len(steps) - 1:
            batch["_step"] += 1
            self._set_status(batch, steps[batch["_step"]])
            if batch["_step"] == len(steps) - 1:
                self._finish(batch, cancelled=False)
        return _public(batch)

    def _set_status(self, batch: dict[str, Any], status: str) -> None:
        batch["processing_status" if batch.get("type") == "message_batch" else "status"] = status

    def _cancel(self, batch: dict[str, Any], status: str, field: str) -> dict[str, Any]:
        if batch.get("_finished"):
            return _public(batch)  # an ended job stays as it ended
        batch["_cancelled"] = True
        self._set_status(batch, status)
        batch[field] = _ANTHROPIC_TIME if batch.get("type") == "message_batch" else 1_700_000_050
        return _public(batch)

    def _finish(self, batch: dict[str, Any], *, cancelled: bool) -> None:
        """Answer the requests (all of them, or none once cancelled) and publish results."""
        batch["_finished"] = True
        if batch.get("type") == "message_batch":
            self._finish_anthropic(batch, cancelled=cancelled)
            return
        if batch["status"] == "failed":  # failed validation: no request ran
            batch["failed_at"] = 1_700_000_010
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request",
                               "message": "Model 'gpt-x' is not available for batches.",
                               "param": "body.model", "line": 1}]}  # fmt: skip
            return
        outputs, errors = [], []
        for line in reversed(batch["_lines"] if not cancelled else []):
            status, answer = self.responder(line["body"])
            entry = {"id": self._new_id("batch_req_"), "custom_id": line["custom_id"],
                     "response": {"status_code": status, "request_id": self._new_id("req_"),
                                  "body": _openai_body(line["body"], status, answer)},
                     "error": None}  # fmt: skip
            (outputs if status < 400 else errors).append(entry)
        if outputs:
            batch["output_file_id"] = self._store_jsonl(outputs)
        if errors:
            batch["error_file_id"] = self._store_jsonl(errors)
        counts = batch["request_counts"]
        counts["completed"], counts["failed"] = len(outputs), len(errors)
        if cancelled:
            batch["status"], batch["cancelled_at"] = "cancelled", 1_700_000_060
        else:
            batch["completed_at"] = 1_700_000_600

    def _store_jsonl(self, lines: list[Any]) -> str:
        file_id = self._new_id("file-")
        self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
        return file_id

    # -- Anthropic ---------------------------------------------------------------------------

    def _anthropic(self, method: str, path: str, request: RecordedRequest) -> tuple[int, Any, str]:
        if method == "POST" and path == "/v1/messages/batches":
            body = request.json
            items = body.get("requests") if isinstance(body, dict) else None
            if not items or not all(isinstance(i, dict) and "params" in i for i in items):
                return 400, anthropic_error(400, "requests: Field required"), "json"
            batch_id = self._new_id("msgbatch_")
            batch = {
                "id": batch_id, "type": "message_batch",
                "processing_status": self.anthropic_steps[0],
                "request_counts": {"processing": len(items), "succeeded": 0, "errored": 0,
                                   "canceled": 0, "expired": 0},
                "ended_at": None, "created_at": _ANTHROPIC_TIME, "expires_at": None,
                "cancel_initiated_at": None, "archived_at": None, "results_url": None,
                "_lines": items, "_step": 0, "_cancelled": False,
            }  # fmt: skip
            self.batches[batch_id] = batch
            return 200, _public(batch), "json"
        match = _MESSAGE_BATCH_PATH.match(path)
        if not match or match.group(1) not in self.batches:
            return 404, anthropic_error(404, f"Not found: {path}"), "json"
        batch = self.batches[match.group(1)]
        if match.group(2) == "/cancel":
            return 200, self._cancel(batch, "canceling", "cancel_initiated_at"), "json"
        if match.group(2) == "/results":
            if batch["results_url"] is None:
                return 400, anthropic_error(400, "batch has not ended"), "json"
            return 200, batch["_results"], "jsonl"
        return 200, self._advance(batch), "json"

    def _finish_anthropic(self, batch: dict[str, Any], *, cancelled: bool) -> None:
        lines, counts = [], batch["request_counts"]
        counts["processing"] = 0
        for item in reversed(batch["_lines"]):
            if cancelled:
                result: dict[str, Any] = {"type": "canceled"}
                counts["canceled"] += 1
            else:
                status, answer = self.responder(item["params"])
                if status < 400:
                    message = _anthropic_message(item["params"], answer)
                    result = {"type": "succeeded", "message": message}
                    counts["succeeded"] += 1
                else:
                    error = anthropic_error(status, str(answer.get("message")))
                    result = {"type": "errored", "error": error}
                    counts["errored"] += 1
            lines.append({"custom_id": item["custom_id"], "result": result})
        batch["_results"] = "".join(json.dumps(x) + "\n" for x in lines).encode()
        batch["processing_status"], batch["ended_at"] = "ended", _ANTHROPIC_END_TIME
        base = self.results_base or self.url
        batch["results_url"] = f"{base}/v1/messages/batches/{batch['id']}/results"


_ANTHROPIC_TIME = "2024-09-24T18:37:24.100435Z"
_ANTHROPIC_END_TIME = "2024-09-24T18:47:24.100435Z"


def _public(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _openai_body(request: Mapping[str, Any], status: int, answer: Any) -> dict[str, Any]:
    if status >= 400:
        return openai_error(status, str(answer.get("message")))
    return {
        "id": f"chatcmpl-{abs(hash(answer['text'])) % 10**8}", "object": "chat.completion",
        "created": 1_700_000_100, "model": request.get("model"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": answer["text"]}}],
        "usage": {"prompt_tokens": answer["input_tokens"],
                  "completion_tokens": answer["output_tokens"],
                  "total_tokens": answer["input_tokens"] + answer["output_tokens"]},
    }  # fmt: skip


def _anthropic_message(params: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    return {
        "id": f"msg_{abs(hash(answer['text'])) % 10**8}", "type": "message",
        "role": "assistant", "model": params.get("model"),
        "content": [{"type": "text", "text": answer["text"]}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": answer["input_tokens"],
                  "output_tokens": answer["output_tokens"]},
    }  # fmt: skip


def _multipart(request: RecordedRequest) -> dict[str, bytes]:
    content_type = request.headers.get("content-type", "")
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    fields: dict[str, bytes] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = part.get_payload(decode=True) or b""
    return fields


def _make_handler(fake: FakeBatches) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, kind = fake.handle(
                RecordedRequest(self.command, self.path, headers, body)
            )
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            ctype = "application/json" if kind == "json" else "application/binary"
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
