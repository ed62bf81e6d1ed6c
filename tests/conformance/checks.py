"""Checks shared by the conformance tests: what the log and the budget must show."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from .stacks import Stack


def by_trace(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        traces[row["trace_id"]].append(row)
    return dict(traces)


def check_one_row_per_attempt(stack: Stack, calls: int) -> dict[str, list[dict[str, Any]]]:
    """The invariant every test here shares: ``calls`` traces, and the rows of attempts that
    were sent are exactly the requests the upstream received, numbered 1.. in each trace."""
    rows = stack.rows()
    traces = by_trace(rows)
    assert len(traces) == calls, rows
    sent = [r for r in rows if r["attempt"] >= 1]
    assert len(sent) == len(stack.upstream.requests), rows
    for trace in traces.values():
        numbers = sorted(r["attempt"] for r in trace if r["attempt"] >= 1)
        assert numbers == list(range(1, len(numbers) + 1)), trace
        assert all(r["attempt"] >= 0 for r in trace)
    return traces


def check_budget_settled(stack: Stack) -> float:
    state = stack.budget_state()
    rows = stack.rows()
    charged = sum(r["budget_usd"] or 0.0 for r in rows)
    assert state["reserved_usd"] == pytest.approx(0.0, abs=1e-12), state
    assert state["in_flight"] == 0, state
    assert state["spent_usd"] == pytest.approx(charged, rel=1e-9, abs=1e-12), (state, rows)
    return state["spent_usd"]
