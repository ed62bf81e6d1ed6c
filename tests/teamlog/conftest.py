"""Fixtures of the team-log tests: a real PostgreSQL cluster (Debian's binaries, started on
a loopback port by `aigw_lab.testing.postgres`), a fresh database per test, and rows.

The cluster is one per test worker (session scope); each test gets its own database in it.
A test that stops the server (an outage) starts a cluster of its own (`own_cluster`).
Without the binaries every test here is skipped, saying so."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from aigw_lab.store.records import CallRecord
from aigw_lab.testing.postgres import PostgresCluster, find_pg_bin

psycopg = pytest.importorskip("psycopg")

_NO_PG = "PostgreSQL's initdb/pg_ctl not found (Debian's postgresql package; .ci/run installs it)"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    if find_pg_bin() is None:
        pytest.skip(_NO_PG)
    with PostgresCluster.start_new() as cluster:
        yield cluster


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, which it may stop and start."""
    if find_pg_bin() is None:
        pytest.skip(_NO_PG)
    with PostgresCluster.start_new() as cluster:
        yield cluster


@pytest.fixture
def team_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """The URL of a new, empty database in the worker's cluster."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg_cluster.url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def make_rows(n: int, *, seed: int = 0, prefix: str = "c") -> list[CallRecord]:
    """``n`` varied rows: statuses, tokens, costs, flags, JSON, tenants, cache hits."""
    start = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    rows = []
    for i in range(n):
        j = i + seed
        ok = j % 7 != 3
        rows.append(
            CallRecord(
                call_id=f"{prefix}-{seed}-{i}",
                trace_id=f"t-{seed}-{i // 2}",
                timestamp=start + timedelta(milliseconds=37 * j),
                provider_name=("openai", "anthropic")[j % 2],
                request_model=("gpt-x", "claude-y", "small")[j % 3],
                request_json=f'{{"messages": [{{"role": "user", "content": "q{j}"}}]}}',
                response_text=f"answer {j}" if ok else None,
                status="ok" if ok else "error",
                error_type=None if ok else "rate_limit",
                http_status_code=200 if ok else 429,
                input_tokens=10 + j % 13,
                output_tokens=(5 + j % 11) if ok else None,
                cost_usd=(0.0001 * (j % 17)) if ok else None,
                latency_ms=100.0 + j % 50,
                stream=j % 5 == 0,
                cache_status=("none", "hit", "miss")[j % 3],
                attempt=1 + j % 2,
                tenant_id=("a", "b")[j % 2],
                tags_json='{"team": "x"}',
                flags=("cut",) if j % 11 == 0 else None,
                propensity=0.5 if j % 4 == 0 else None,
            )
        )
    return rows
