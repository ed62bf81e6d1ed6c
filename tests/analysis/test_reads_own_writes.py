"""A young batch is never missed by a reader in the same process (issue 13 §1, session 9).

A spooled log's batches wait up to 2 s (``[log] flush_interval``) before their insert; every
read through the `CallLog` (the analysis functions, the rollups' refresh, `Gateway.summary`
and `Gateway.query`) flushes first, so none of them waits for, or misses, a row already
logged. Each test holds rows in memory (an hour's age, a batch far from full) and reads."""

from __future__ import annotations

from aigw_lab import Gateway, Price
from aigw_lab.analysis import cost_over_time, refresh_rollups, target_summary, unit_frame
from aigw_lab.store import CallLog
from aigw_lab.testing.fakes import MockProvider

from .conftest import row

UNITS = 6


def young_log(path) -> CallLog:  # noqa: ANN001
    log = CallLog(path, batch_size=100_000, flush_interval=3600)
    for i in range(UNITS):
        log.append(row(f"c{i}", f"t{i}", at_ms=i, cost_usd=0.5), built=True)
    assert log.pending_rows == UNITS  # all still waiting for their batch's age
    return log


def test_analysis_functions_read_rows_still_waiting_for_their_batch(new_log_path):
    with young_log(new_log_path) as log:
        summary = target_summary(log, experiment_id="exp", n_boot=10)
        assert log.pending_rows == 0
        assert int(summary["units"].sum()) == UNITS
    with young_log(new_log_path.with_name("b.duckdb")) as log:
        spent = cost_over_time(log, freq="day", experiment_id="exp")
        assert round(float(spent["cost_usd"].sum()), 9) == UNITS * 0.5
    with young_log(new_log_path.with_name("c.duckdb")) as log:
        assert len(unit_frame(log, experiment_id="exp")) == UNITS


def test_a_rollup_refresh_merges_rows_still_waiting_for_their_batch(new_log_path):
    with young_log(new_log_path) as log:
        refreshed = refresh_rollups(log)
        assert refreshed.calls == UNITS


def test_gateway_summary_counts_calls_still_waiting_for_their_batch(tmp_path):
    mock = MockProvider("mock", models=("m1",))
    log = CallLog(tmp_path / "g.duckdb", batch_size=100_000, flush_interval=3600)
    gateway = Gateway([mock], log=log, prices={"mock/m1": Price(1.0, 2.0)})
    try:
        for i in range(4):
            gateway.chat("mock/m1", f"question {i}")
        assert log.pending_rows == 4
        assert int(gateway.summary()["calls"].sum()) == 4
    finally:
        gateway.close()
        log.close()
