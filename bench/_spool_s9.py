"""The spooled log's calling-thread path as session 9 shipped it, for the spool benches'
before/after in one run (bench_spool_threads.py's ``os-s9`` side, bench_spool.py's
"os, session 9").

Session 10 made the gateway hand a spooled log its rows with the request already in plain
fields, and the ``u`` end frame the queued ``(values, max_body_chars)`` itself (one
``marshal`` call on the item, no slices, no second pass over the messages); a frame under
``durability = "os"`` stores no "dirty" mark any more, and the start hook calls no
`traits` for a built-in provider. Session 9's ``u`` frame was ``(max_body_chars, values
before request_json, plain request, values after it)``, the plain request made in the spool
by ``plain_request``. Its methods are copied here as they were (same Python call levels:
`CallLog.append_later` -> `Spool.write_unfinished` -> ``unfinished_payload`` ->
`plain_request`; `Recorder.spool_start` -> `traits`, `Spool.start`), as methods of
subclasses that one side's recorder, log and spool are switched to (so they are looked up
on the class, as the shipped ones are); the frames they write still replay (the 4-tuple
shape is read too).
"""

from __future__ import annotations

import os
from typing import Any

from aigw_lab.gateway.recorder import Recorder
from aigw_lab.gateway.records import experiment_coordinates
from aigw_lab.providers.base_provider import traits
from aigw_lab.store import CallLog
from aigw_lab.store.records import CallRecord
from aigw_lab.store.spool import (
    _HEADER_SIZE,
    _START,
    _UNFINISHED,
    Spool,
    _checksum,
    _dumps,
    _pack_header,
)
from aigw_lab.store.spool_rows import plain_request
from aigw_lab.store.unfinished import finish_row

__all__ = ["use_session_9_ends"]

_REQUEST_JSON = CallRecord._fields.index("request_json")


def _unfinished_payload(values: tuple[Any, ...], max_body_chars: int, dumps: Any) -> bytes:
    return dumps(
        (
            max_body_chars,
            values[:_REQUEST_JSON],
            plain_request(values[_REQUEST_JSON]),
            values[_REQUEST_JSON + 1 :],
        ),
        2,
    )


def _write_unfinished(self, values: tuple[Any, ...], max_body_chars: int) -> bool:
    try:
        payload = _unfinished_payload(values, max_body_chars, _dumps)
    except ValueError:
        return False
    used = self._used
    end = used + _HEADER_SIZE + len(payload)
    if end > self._limit:
        self._write_slow(_UNFINISHED, payload)
    else:
        mapping = self._map
        mapping[used + _HEADER_SIZE : end] = payload
        _pack_header(mapping, used, _UNFINISHED, len(payload), _checksum(payload))
        self._used = end
        if self._sync_each:
            os.fdatasync(self._segment.fd)
        self._dirty = True
    if self._open:
        self._open.pop(values[0], None)
    if self._sealed and not self._keep and self._sealed[0][0] <= self._committed():
        self._drop_sealed()
    return True


def _append_later(self, values: tuple[Any, ...], max_body_chars: int) -> None:
    item = (values, max_body_chars)
    spool = self._spool
    if spool is None:
        self._writer.append_later(item)
        return
    if self._bodies is None and self._unfinished_ends:
        with spool.lock:
            if spool.write_unfinished(values, max_body_chars):
                try:
                    self._writer.append_later(item)
                except BaseException:
                    spool.refused()
                    raise
                spool.ends += 1
                return
    record, _ = finish_row(item, None)
    self.append(record, built=True)


def _start(self, values: tuple[Any, ...]) -> None:
    try:
        payload = _dumps(values, 2)
    except ValueError:
        return
    with self.lock:
        used = self._used
        end = used + _HEADER_SIZE + len(payload)
        if end > self._limit:
            self._write_slow(_START, payload)
        else:
            mapping = self._map
            mapping[used + _HEADER_SIZE : end] = payload
            _pack_header(mapping, used, _START, len(payload), _checksum(payload))
            self._used = end
            if self._sync_each:
                os.fdatasync(self._segment.fd)
            self._dirty = True
        self._open[values[0]] = payload


def _spool_start(self, ctx: Any, call_id: str, provider: Any) -> None:
    request = ctx.request
    metadata = request.metadata
    if metadata or request.tags:
        tags_json, metadata_json = request.labels_json()
        run_id, item_id, target, repetition = experiment_coordinates(metadata)
    else:
        tags_json = metadata_json = run_id = item_id = target = repetition = None
    facts = traits(provider)
    self.spool.start(
        (
            call_id,
            ctx.trace_id,
            ctx.started_wall,
            ctx.provider_name,
            ctx.model,
            facts.api_format,
            ctx.stream,
            ctx.cache_status,
            ctx.attempt,
            ctx.fallback_from,
            request.user,
            request.tenant,
            request.experiment_id,
            tags_json,
            metadata_json,
            facts.simulated,
            run_id,
            item_id,
            target,
            repetition,
            ctx.budget_estimate_usd,
        )
    )


class _SpoolS9(Spool):
    start = _start  # type: ignore[assignment]
    write_unfinished = _write_unfinished  # type: ignore[assignment]


class _RecorderS9(Recorder):
    spool_start = _spool_start  # type: ignore[assignment]


class _CallLogS9(CallLog):
    append_later = _append_later  # type: ignore[assignment]


def use_session_9_ends(gateway: Any, log: Any) -> None:
    """Make ``gateway`` (whose log is ``log``, spooled) take session 9's calling-thread path:
    its start hook and start frame, rows with the request object, the ``u`` frame built in
    the spool."""
    gateway.recorder._plain = False
    gateway.recorder.__class__ = _RecorderS9
    log.__class__ = _CallLogS9
    log.spool.__class__ = _SpoolS9
