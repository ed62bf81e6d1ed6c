"""The simulated fleet's batch APIs: OpenAI's Files + Batches API and Anthropic's Message
Batches API, served in-process so `aigw_lab.batch.submit_batch` works offline on the fleet.

A job answers every request with the fleet's own `respond` (the same answer, usage and faults
a chat call of that model and prompt gets at temperature 0), without its simulated latency:
a batch has none per request. A job is created ``validating`` (OpenAI) or ``in_progress``
(Anthropic) and ends at its first status poll, so a caller always polls at least once, as
with the real APIs. Everything it answers is simulated: bodies carry the fleet's marks and
the provider logs its rows with ``simulated = true``.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aigw_lab.sim.wire import SIMULATED_HEADER, WireReply, respond

if TYPE_CHECKING:
    from aigw_lab.sim.fleet import SimulatedFleet

__all__ = ["FleetBatches"]

_OPENAI_JOB = re.compile(r"/v1/batches/([A-Za-z0-9_-]+)(/cancel)?$")
_OPENAI_FILE = re.compile(r"/v1/files/([A-Za-z0-9_-]+)/content$")
_ANTHROPIC_JOB = re.compile(r"/v1/messages/batches/([A-Za-z0-9_-]+)(/cancel|/results)?$")
_JSON = ("content-type", "application/json")


class FleetBatches:
    """Batch jobs of one in-process fleet (one per `SimulatedTransport`): `reply` answers a
    batch API request, or returns None for any other path (a chat call)."""

    def __init__(self, fleet: SimulatedFleet, *, clock: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self._clock = clock
        self._files: dict[str, bytes] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        # The transport serves threads and event loops at once.
        self._lock = threading.Lock()

    def reply(self, method: str, path: str, content_type: str, body: bytes) -> WireReply | None:
        """The answer to a batch API request; None when ``path`` is not a batch path."""
        if "/batches" not in path and "/files" not in path:
            return None  # a chat call: the common case, decided without the lock
        path = path.rstrip("/")
        with self._lock:
            if "/messages/batches" in path:
                return self._anthropic(method, path, body)
            if path.endswith("/v1/files") and method == "POST":
                return self._upload(content_type, body)
            if path.endswith("/v1/batches") and method == "POST":
                return self._create_openai(body)
            if (match := _OPENAI_JOB.search(path)) is not None:
                return self._openai_job(match.group(1), cancel=bool(match.group(2)))
            if method == "GET" and (match := _OPENAI_FILE.search(path)) is not None:
                content = self._files.get(match.group(1))
                if content is None:
                    return _openai_error(404, f"No such File object: {match.group(1)}")
                return WireReply(200, [("content-type", "application/jsonl"), SIMULATED_HEADER],
                                 content)  # fmt: skip
        return None

    # -- OpenAI ------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}sim{next(self._ids):06d}"

    def _upload(self, content_type: str, body: bytes) -> WireReply:
        fields = _multipart(content_type, body)
        if fields.get("purpose") != b"batch":
            return _openai_error(400, "purpose must be 'batch' for batch input")
        content = fields.get("file") or b""
        for number, line in enumerate(content.decode("utf-8", "replace").splitlines(), 1):
            try:
                item = json.loads(line)
                if not isinstance(item.get("body"), dict) or "custom_id" not in item:
                    raise ValueError(line)
            except (ValueError, AttributeError):
                return _openai_error(400, f"Invalid file format for Batch API. Line {number}.")
        file_id = self._new_id("file-")
        self._files[file_id] = content
        return _json(200, {"id": file_id, "object": "file", "bytes": len(content),
                           "created_at": int(self._clock()), "purpose": "batch",
                           "filename": "batch.jsonl"})  # fmt: skip

    def _create_openai(self, body: bytes) -> WireReply:
        try:
            request = json.loads(body)
            content = self._files[request["input_file_id"]]
        except (ValueError, KeyError, TypeError):
            return _openai_error(400, "Invalid 'input_file_id'.")
        lines = [json.loads(x) for x in content.decode("utf-8").splitlines() if x.strip()]
        job = {
            "id": self._new_id("batch_"), "object": "batch", "endpoint": request.get("endpoint"),
            "errors": None, "input_file_id": request["input_file_id"],
            "completion_window": "24h", "status": "validating", "output_file_id": None,
            "error_file_id": None, "created_at": int(self._clock()), "completed_at": None,
            "cancelled_at": None, "request_counts": {"total": len(lines), "completed": 0,
                                                     "failed": 0},
            "metadata": request.get("metadata"), "_lines": lines,
        }  # fmt: skip
        self._jobs[job["id"]] = job
        return _json(200, _public(job))

    def _openai_job(self, job_id: str, *, cancel: bool) -> WireReply:
        job = self._jobs.get(job_id)
        if job is None:
            return _openai_error(404, f"No batch found with id '{job_id}'.")
        if cancel and job["status"] not in ("completed", "cancelled"):
            job["status"], job["cancelled_at"] = "cancelled", int(self._clock())
        elif job["status"] == "validating":
            outputs, errors = [], []
            for line in job["_lines"]:
                status, answer = self._answer("/v1/chat/completions", line["body"])
                entry = {
                    "id": self._new_id("batch_req_"),
                    "custom_id": line["custom_id"],
                    "response": {"status_code": status, "body": answer},
                    "error": None,
                }
                (outputs if status < 400 else errors).append(entry)
            for key, entries in (("output_file_id", outputs), ("error_file_id", errors)):
                if entries:
                    file_id = self._new_id("file-")
                    self._files[file_id] = "".join(json.dumps(e) + "\n" for e in entries).encode()
                    job[key] = file_id
            job["request_counts"].update(completed=len(outputs), failed=len(errors))
            job["status"], job["completed_at"] = "completed", int(self._clock())
        return _json(200, _public(job))

    def _answer(self, path: str, body: Any) -> tuple[int, Any]:
        """The fleet's answer to one request of a batch: (HTTP status, JSON body)."""
        reply = respond(self.fleet, "POST", path, json.dumps(body).encode())
        if reply.hang:  # a timeout fault: the batch reports the request as failed
            error = {"error": {"message": "simulated timeout", "type": "server_error",
                               "param": None, "code": "timeout"}}  # fmt: skip
            if path.endswith("/messages"):
                error = {
                    "type": "error",
                    "error": {"type": "api_error", "message": "simulated timeout"},
                }
            return 500, error
        try:
            return reply.status, json.loads(reply.body)
        except ValueError:  # a malformed-body fault: a broken body, passed on as text
            return reply.status, reply.body.decode("utf-8", "replace")

    # -- Anthropic ---------------------------------------------------------------------------

    def _anthropic(self, method: str, path: str, body: bytes) -> WireReply:
        if method == "POST" and path.endswith("/v1/messages/batches"):
            try:
                items = json.loads(body)["requests"]
                if not items or not all(isinstance(i, dict) and "params" in i for i in items):
                    raise ValueError("requests")
            except (ValueError, KeyError, TypeError):
                return _anthropic_error(400, "requests: Field required")
            job = {
                "id": self._new_id("msgbatch_"), "type": "message_batch",
                "processing_status": "in_progress",
                "request_counts": {"processing": len(items), "succeeded": 0, "errored": 0,
                                   "canceled": 0, "expired": 0},
                "ended_at": None, "created_at": _rfc3339(self._clock()), "expires_at": None,
                "cancel_initiated_at": None, "archived_at": None, "results_url": None,
                "_lines": items,
            }  # fmt: skip
            self._jobs[job["id"]] = job
            return _json(200, _public(job))
        match = _ANTHROPIC_JOB.search(path)
        job = self._jobs.get(match.group(1)) if match is not None else None
        if match is None or job is None:
            return _anthropic_error(404, f"Not found: {path}")
        if match.group(2) == "/results":
            if job.get("_results") is None:
                return _anthropic_error(400, "batch has not ended")
            return WireReply(200, [("content-type", "application/binary"), SIMULATED_HEADER],
                             job["_results"])  # fmt: skip
        if job["processing_status"] != "ended":
            self._end_anthropic(job, path, cancelled=match.group(2) == "/cancel")
        return _json(200, _public(job))

    def _end_anthropic(self, job: dict[str, Any], path: str, *, cancelled: bool) -> None:
        lines, counts = [], job["request_counts"]
        counts["processing"] = 0
        for item in job["_lines"]:
            if cancelled:
                result: dict[str, Any] = {"type": "canceled"}
                counts["canceled"] += 1
            else:
                status, answer = self._answer("/v1/messages", item["params"])
                ok = status < 400 and isinstance(answer, dict)
                result = (
                    {"type": "succeeded", "message": answer}
                    if ok
                    else {"type": "errored", "error": answer}
                )
                counts["succeeded" if ok else "errored"] += 1
            lines.append({"custom_id": item["custom_id"], "result": result})
        job["_results"] = "".join(json.dumps(x) + "\n" for x in lines).encode()
        job["processing_status"], job["ended_at"] = "ended", _rfc3339(self._clock())
        job["results_url"] = path.split("/v1/messages/batches")[0] + (
            f"/v1/messages/batches/{job['id']}/results"
        )


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _json(status: int, data: Any) -> WireReply:
    return WireReply(status, [_JSON, SIMULATED_HEADER], json.dumps(data).encode())


def _openai_error(status: int, message: str) -> WireReply:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": None}}  # fmt: skip
    return _json(status, body)


def _anthropic_error(status: int, message: str) -> WireReply:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return _json(status, {"type": "error", "error": {"type": kind, "message": message}})


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, bytes] = {}
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                fields[name] = part.get_payload(decode=True) or b""
    return fields
