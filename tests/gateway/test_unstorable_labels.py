"""Labels the call log cannot encode are refused before the upstream is called.

Rows are built after the upstream answered; without a spool (an in-memory log, or
``durability="none"``) nothing encoded the labels earlier, so a cyclic ``metadata`` used to
raise while building the row: the call was paid and had no row.
"""

from __future__ import annotations

import asyncio

import pytest

from aigw_lab import Gateway, Price
from aigw_lab.errors import InvalidRequestError
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import MockProvider

MODES = ("chat", "achat", "stream", "astream")


def _cyclic() -> dict:
    value: dict = {"run": "r1"}
    value["self"] = value
    return value


def _deep(levels: int = 5000) -> dict:
    top: dict = {}
    node = top
    for _ in range(levels):
        node["x"] = {}
        node = node["x"]
    return top


def _call(gw: Gateway, mode: str, **labels) -> None:
    if mode == "chat":
        gw.chat("mock/m1", "x", **labels)
        return
    if mode == "stream":
        "".join(gw.stream("mock/m1", "x", **labels))
        return

    async def run() -> None:
        if mode == "achat":
            await gw.achat("mock/m1", "x", **labels)
        else:
            "".join([t async for t in gw.astream("mock/m1", "x", **labels)])

    asyncio.run(run())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "labels",
    [{"metadata": "cyclic"}, {"metadata": "deep"}, {"tags": "cyclic"}],
    ids=["cyclic-metadata", "deep-metadata", "cyclic-tags"],
)
def test_unencodable_labels_are_refused_before_the_upstream_is_called(mode, labels):
    mock = MockProvider("mock", models=("m1",))
    log = CallLog(":memory:")  # no spool: nothing encodes the labels before the call
    built = {k: (_cyclic() if v == "cyclic" else _deep()) for k, v in labels.items()}
    with Gateway([mock], log=log, prices={"mock/m1": Price(1.0, 2.0)}) as gw:
        with pytest.raises(InvalidRequestError, match="cannot be written to the call log"):
            _call(gw, mode, **built)
        assert mock.requests == []  # nothing was sent, so nothing was paid
        _call(gw, mode, metadata={"run": "r1", "nested": {"ok": [1, 2]}})
        assert len(mock.requests) == 1
        rows = gw.query('SELECT status, error_type, cost_usd FROM calls ORDER BY "timestamp"')
        # The refusal is logged like any invalid request (no cost: nothing was sent), and the
        # call after it is logged in full.
        assert list(rows["status"]) == ["error", "ok"]
        assert rows["error_type"][0] == "invalid_request"
