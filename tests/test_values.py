"""Values with many fields are built by keyword, and their fields keep their order.

Neighbouring fields of these values share a type (provider/model, call_id/trace_id,
input/output tokens, label/comment), so a positional call, or a reorder of the fields under
one, would put values in the wrong place without any error. These tests pin both: a
positional call is a TypeError, and the field order is written out here in full, so a
reorder is a deliberate, reviewed change (the call log's column order and the semantic
cache's saved usage lists depend on it).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime

import pytest

from aigw_lab.datasets.recorded import RecordedOutcome
from aigw_lab.gateway.cache import CacheStats
from aigw_lab.gateway.cache_stores import StoreStats
from aigw_lab.gateway.reliability import RetryPolicy
from aigw_lab.gateway.semantic_cache import SemanticCacheStats
from aigw_lab.providers.codec import Decoded, ErrorDetail
from aigw_lab.providers.sse import SSEEvent
from aigw_lab.scorers.base import Score
from aigw_lab.server.auth import ClientIdentity
from aigw_lab.server.errors import HttpError
from aigw_lab.store.dead_letter import LogHealth
from aigw_lab.store.records import CALL_COLUMNS, CallRecord
from aigw_lab.types import ChatRequest, ChatResponse, Latency, Message, Usage

USAGE = Usage(input_tokens=1, output_tokens=2)

#: Each value, its fields in order, and how many of the first may be passed positionally.
FIELD_ORDER = [
    (
        ChatResponse,
        [
            "text",
            "finish_reason",
            "usage",
            "provider",
            "model",
            "latency",
            "cost_usd",
            "cache_status",
            "attempts",
            "response_id",
            "tool_calls",
            "raw",
            "simulated",
            "call_id",
            "trace_id",
        ],
        0,
    ),
    (
        Usage,
        [
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "known",
        ],
        0,
    ),
    (Latency, ["total_ms", "ttfb_ms", "ttft_ms", "upstream_ms"], 0),
    (
        ChatRequest,
        [
            "model",
            "messages",
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "seed",
            "tools",
            "tool_choice",
            "user",
            "tenant",
            "tags",
            "metadata",
            "extra",
            "experiment_id",
            "timeout",
            # Not a constructor argument: the labels' JSON text, encoded once (init=False).
            "_labels_json",
        ],
        2,
    ),
    (
        Decoded,
        ["text", "finish_reason", "usage", "response_id", "model", "tool_calls", "raw"],
        0,
    ),
    (
        Score,
        ["scorer", "value", "label", "comment", "details", "judge_trace_id", "kind"],
        2,
    ),
    (SSEEvent, ["event", "data", "id"], 0),
    (ErrorDetail, ["message", "error_class", "code"], 0),
    (ClientIdentity, ["name", "tenant", "user", "signing"], 1),
    (HttpError, ["kind", "message", "retry_after", "param"], 2),
]

#: Keyword arguments for each value, with neighbours of one type given different values.
KWARGS = {
    ChatResponse: dict(text="t", finish_reason="stop", usage=USAGE, provider="p", model="m"),
    Usage: dict(input_tokens=1, output_tokens=2),
    Latency: dict(total_ms=1.0, ttfb_ms=0.5),
    Decoded: dict(text="t", finish_reason="stop", usage=USAGE),
    Score: dict(scorer="s", value=1.0, label="l", comment="c"),
    ChatRequest: dict(model="p/m", messages=(Message("user", "x"),), temperature=0.5, top_p=0.9),
    RetryPolicy: dict(max_attempts=2, base_delay=0.1),
    SSEEvent: dict(event="message", data="{}"),
    ErrorDetail: dict(message="m", code="c"),
    ClientIdentity: dict(name="team", tenant="t", user="u"),
    HttpError: dict(kind="invalid_request", message="m", retry_after=1.0, param="p"),
}


def _distinct_values(cls):
    """Each field of ``cls`` without a default, a different plain value (ints and strings)."""
    required = [
        f
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return {f.name: (i if "str" not in str(f.type) else f"v{i}") for i, f in enumerate(required)}


for _cls in (RecordedOutcome, CacheStats, SemanticCacheStats, StoreStats, LogHealth):
    KWARGS[_cls] = _distinct_values(_cls)


@pytest.mark.parametrize(
    ("cls", "names", "positional"), FIELD_ORDER, ids=[c.__name__ for c, _, _ in FIELD_ORDER]
)
def test_value_fields_keep_their_order(cls, names, positional):
    assert [f.name for f in dataclasses.fields(cls)] == names
    keyword_only = [f.name for f in dataclasses.fields(cls) if f.kw_only]
    assert keyword_only == names[positional:]


def test_call_record_columns_keep_their_order():
    # The calls table's columns, the spool's frames and the writer's batches are in this
    # order; tests/store/test_schema.py ties the table to CALL_COLUMNS.
    assert (
        CALL_COLUMNS
        == CallRecord._fields
        == (
            "call_id",
            "trace_id",
            "timestamp",
            "provider_name",
            "request_model",
            "operation_name",
            "response_model",
            "response_id",
            "api_format",
            "request_json",
            "response_text",
            "finish_reason",
            "tool_calls_json",
            "status",
            "error_type",
            "error_message",
            "http_status_code",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "reasoning_tokens",
            "cost_usd",
            "latency_ms",
            "ttfb_ms",
            "ttft_ms",
            "upstream_ms",
            "overhead_ms",
            "stream",
            "cache_status",
            "cache_similarity",
            "attempt",
            "fallback_from",
            "user_id",
            "tenant_id",
            "experiment_id",
            "tags_json",
            "metadata_json",
            "simulated",
            "run_id",
            "item_id",
            "target",
            "repetition",
            "flags",
            "bodies",
            "budget_usd",
            "route_policy",
            "propensity",
            "shadow_of",
        )
    )


@pytest.mark.parametrize("cls", list(KWARGS), ids=lambda c: c.__name__)
def test_values_with_neighbours_of_one_type_refuse_positional_arguments(cls):
    kwargs = KWARGS[cls]
    built = cls(**kwargs)
    for name, value in kwargs.items():
        assert getattr(built, name) == value
    with pytest.raises(TypeError, match="positional"):
        cls(*kwargs.values())


def _record(**overrides):
    values = dict(
        call_id="c1",
        trace_id="t1",
        timestamp=datetime(2026, 1, 2, tzinfo=UTC),
        provider_name="p",
        request_model="m",
    )
    values.update(overrides)
    return CallRecord(**values)


def test_call_records_are_built_by_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        CallRecord("c1", "t1", datetime(2026, 1, 2, tzinfo=UTC), "p", "m")  # type: ignore[misc]
    with pytest.raises(TypeError, match="trace_id"):
        CallRecord(call_id="c1")  # type: ignore[call-arg]
    record = _record(status="error", attempt=2)
    assert (record.call_id, record.trace_id, record.status, record.attempt) == (
        "c1",
        "t1",
        "error",
        2,
    )
    # Defaults are the named tuple's own.
    assert record.operation_name == "chat" and record.bodies == "full"
    assert record.stream is False and record.flags is None


def test_call_records_still_behave_as_named_tuples():
    record = _record(input_tokens=3)
    assert CallRecord._make(tuple(record)) == record
    assert record._replace(status="cancelled").status == "cancelled"
    assert record._asdict()["input_tokens"] == 3
    assert type(record._make(tuple(record))) is CallRecord
    for twin in (pickle.loads(pickle.dumps(record)), copy.copy(record), copy.deepcopy(record)):
        assert twin == record and type(twin) is CallRecord


def test_semantic_cache_reads_saved_usage_in_the_files_order():
    from aigw_lab.gateway.semantic_cache import _response_from_json

    saved = {
        "text": "hi",
        "finish_reason": "stop",
        "provider": "p",
        "model": "m",
        "cost_usd": 0.5,
        "response_id": None,
        "usage": [10, 5, 2, 1, 3, True],  # the list a saved file holds
        "tool_calls": None,
        "simulated": False,
    }
    usage = _response_from_json(saved).usage
    assert usage == Usage(
        input_tokens=10,
        output_tokens=5,
        cache_read_tokens=2,
        cache_write_tokens=1,
        reasoning_tokens=3,
        known=True,
    )
