"""The attempt stage writes each attempt's start to the call log's spool before its request
leaves, and its end (the row) when it ends, in all four call modes.

The upstream is an httpx transport that, when a request arrives, reads the spool files: the
start of the attempt being sent must already be there, without an end.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from aigw_lab.errors import ProviderError
from aigw_lab.gateway import Gateway
from aigw_lab.providers.base import HttpClients, Price, ProviderSpec
from aigw_lab.store.spool import read_segment, spool_dir

COMPLETION = {
    "id": "chatcmpl-1",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],  # fmt: skip
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}
STREAM = (
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"h"}}]}\n\n'
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"i"}}]}\n\n'
    'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    "data: [DONE]\n\n"
)


def frames(db) -> list[tuple[str, tuple]]:
    return [f for path in sorted(spool_dir(db).glob("*.spool")) for f in read_segment(path)]


class Upstream:
    """Answers like OpenAI; on each request, notes which starts/ends the spool holds."""

    def __init__(self, db, *, status: int = 200) -> None:
        self.db = db
        self.status = status
        self.seen: list[tuple[list[str], list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        on_file = frames(self.db)
        starts = [v[0] for kind, v in on_file if kind == "start"]
        ends = [v[0] for kind, v in on_file if kind == "end"]
        self.seen.append((starts, ends))
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "boom"}})
        if json.loads(request.content).get("stream"):
            return httpx.Response(
                200, content=STREAM.encode(), headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(200, json=COMPLETION)


def gateway(db, upstream: Upstream) -> Gateway:
    spec = ProviderSpec(name="up", kind="openai", base_url="http://127.0.0.1:9/v1",
                        api_key_env="UP_KEY", models=("m",))  # fmt: skip
    transport = httpx.MockTransport(upstream)
    return Gateway(
        [spec],
        log=str(db),
        clients=HttpClients(transport=transport, async_transport=transport),
        env={"UP_KEY": "sk-test"},
        prices={"up/m": Price(1.0, 2.0)},
    )


def call(gw: Gateway, mode: str, **params) -> str:
    if mode == "chat":
        return gw.chat("up/m", "hello", **params).text
    if mode == "achat":
        return asyncio.run(gw.achat("up/m", "hello", **params)).text
    if mode == "stream":
        return "".join(gw.stream("up/m", "hello", **params))

    async def collect() -> str:
        return "".join([t async for t in gw.astream("up/m", "hello", **params)])

    return asyncio.run(collect())


MODES = ["chat", "achat", "stream", "astream"]


@pytest.mark.parametrize("mode", MODES)
def test_the_start_is_on_file_before_the_request_leaves_and_the_end_after(tmp_path, mode):
    db = tmp_path / "calls.duckdb"
    upstream = Upstream(db)
    with gateway(db, upstream) as gw:
        assert call(gw, mode, user="u-1", tenant="t-1") == "hi"
        ((starts, ends),) = upstream.seen
        on_file = frames(db)
        row = gw.query("SELECT call_id, trace_id, status, stream, user_id FROM calls").iloc[0]
    (started,) = starts
    assert started not in ends  # sent with its start on file, its end not yet
    assert started == row.call_id  # the start and the row are the same attempt
    kinds = [(kind, v[0]) for kind, v in on_file]
    assert kinds == [("start", started), ("end", started)]
    start = dict(zip(("call_id", "trace_id"), on_file[0][1][:2], strict=True))
    assert start["trace_id"] == row.trace_id
    assert (row.status, bool(row.stream), row.user_id) == ("ok", mode.endswith("stream"), "u-1")


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_attempt_ends_its_start(tmp_path, mode):
    db = tmp_path / "calls.duckdb"
    upstream = Upstream(db, status=500)
    with gateway(db, upstream) as gw:
        with pytest.raises(ProviderError):
            call(gw, mode)
        on_file = frames(db)
        row = gw.query("SELECT call_id, status FROM calls").iloc[0]
    assert [(kind, v[0]) for kind, v in on_file] == [("start", row.call_id), ("end", row.call_id)]
    assert row.status == "error"


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_an_abandoned_stream_ends_its_start_as_cancelled(tmp_path, mode):
    db = tmp_path / "calls.duckdb"
    with gateway(db, Upstream(db)) as gw:
        if mode == "stream":
            stream = gw.stream("up/m", "hello")
            next(iter(stream))
            stream.close()
        else:

            async def abandon() -> None:
                stream = gw.astream("up/m", "hello")
                async for _ in stream:
                    break
                await stream.aclose()

            asyncio.run(abandon())
        on_file = frames(db)
        row = gw.query("SELECT call_id, status FROM calls").iloc[0]
    assert [(kind, v[0]) for kind, v in on_file] == [("start", row.call_id), ("end", row.call_id)]
    assert row.status == "cancelled"


def test_no_start_is_written_for_calls_that_send_nothing(tmp_path):
    db = tmp_path / "calls.duckdb"
    upstream = Upstream(db)
    with gateway(db, upstream) as gw:
        with pytest.raises(Exception):  # noqa: B017 - any refusal: unknown model
            gw.chat("up/not-a-model", "hello")
        on_file = frames(db)
    assert [kind for kind, _ in on_file] == ["end"]  # its row, but no start: nothing left
    assert upstream.seen == []


def test_the_start_carries_the_labels_and_experiment_coordinates(tmp_path):
    from aigw_lab.store.spool import START_FIELDS

    db = tmp_path / "calls.duckdb"
    upstream = Upstream(db)
    coordinates = {"run_id": "r-1", "item_id": "i-1", "target": "up/m", "repetition": 2}
    with gateway(db, upstream) as gw:
        gw.chat("up/m", "hello", tags={"team": "x"}, metadata={"aigw_experiment": coordinates})
        gw.chat("up/m", "hello")  # no labels: the short path
        starts = [dict(zip(START_FIELDS, v, strict=True)) for k, v in frames(db) if k == "start"]
        rows = gw.query("SELECT call_id, tags_json, metadata_json FROM calls ORDER BY timestamp")
    labelled, bare = starts
    assert labelled["call_id"] == rows.call_id[0] and bare["call_id"] == rows.call_id[1]
    assert (labelled["tags_json"], labelled["metadata_json"]) == tuple(rows.iloc[0][1:])
    assert [labelled[k] for k in ("run_id", "item_id", "target", "repetition")] == [
        "r-1",
        "i-1",
        "up/m",
        2,
    ]
    assert [bare[k] for k in START_FIELDS[9:]] == [None] * 6 + [False] + [None] * 5
    assert (labelled["api_format"], labelled["simulated"]) == (bare["api_format"], False)
