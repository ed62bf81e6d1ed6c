"""A synthetic experiment written into a real `CallLog`: for tests, benchmarks and demos of
the analysis, without running a gateway.

Every row it writes is marked as what it is: provider ``sim-synthetic``, ``simulated`` true
(unless a target says otherwise, to exercise mixed logs), ids prefixed ``syn-``. Alongside
the log it returns the ground truth of every unit, computed here from the generated events,
so tests can check the SQL against an independent calculation.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aigw_lab.store.records import CallRecord

if TYPE_CHECKING:
    from aigw_lab.store.calllog import CallLog

__all__ = [
    "SyntheticTarget",
    "SyntheticUnit",
    "SyntheticExperiment",
    "DEFAULT_SYNTHETIC_TARGETS",
    "synthetic_experiment_log",
]

_PROVIDER = "sim-synthetic"
_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SyntheticTarget:
    """A made-up target: its chance of a correct answer, typical latency and price."""

    name: str
    accuracy: float
    latency_ms: float
    cost_usd: float
    ttft_ms: float | None = None
    simulated: bool = True


DEFAULT_SYNTHETIC_TARGETS: tuple[SyntheticTarget, ...] = (
    SyntheticTarget("syn/cheap", accuracy=0.55, latency_ms=300, cost_usd=0.0002, ttft_ms=80),
    SyntheticTarget("syn/balanced", accuracy=0.75, latency_ms=700, cost_usd=0.001, ttft_ms=150),
    SyntheticTarget("syn/strong", accuracy=0.9, latency_ms=1500, cost_usd=0.006, ttft_ms=400),
)


@dataclass(frozen=True, slots=True)
class SyntheticUnit:
    """Ground truth for one unit, as the shared semantics define it."""

    target: str
    item_id: str
    repetition: int
    status: str
    error_type: str | None
    latency_ms: float
    cost_usd: float
    spent_usd: float
    attempts: int
    fell_back: bool
    cache_hit: bool
    quality: float | None


@dataclass
class SyntheticExperiment:
    """What `synthetic_experiment_log` wrote."""

    experiment_id: str
    run_ids: list[str]
    scorer: str
    targets: tuple[SyntheticTarget, ...]
    units: list[SyntheticUnit] = field(default_factory=list)
    calls: int = 0


def synthetic_experiment_log(
    log: CallLog,
    *,
    n_items: int = 30,
    targets: Sequence[SyntheticTarget] = DEFAULT_SYNTHETIC_TARGETS,
    repetitions: int = 1,
    seed: int = 0,
    experiment_id: str = "syn-exp",
    scorer: str = "exact_match",
    retry_rate: float = 0.1,
    fallback_rate: float = 0.05,
    error_rate: float = 0.05,
    cache_hit_rate: float = 0.05,
    resume_rate: float = 0.05,
    start: datetime = _EPOCH,
) -> SyntheticExperiment:
    """Append a synthetic experiment to ``log``: calls, scores, the experiment and its runs.

    Each unit (item x target x repetition) is one trace, shaped at random (seeded) as: a
    clean call; a retry (429, then ok); a fallback (503 on the target's primary, ok on a
    backup, ``fallback_from`` set); a failure (two 503s); or a cache hit (free, fast). With
    ``resume_rate`` a unit first fails in run 1 and succeeds in a later run 2, so it has two
    traces. Successful units get a 0/1 score by ``scorer`` drawn with the target's accuracy.
    The log is flushed before returning.
    """
    rng = random.Random(seed)
    run_ids = [f"syn-run-{experiment_id}-1", f"syn-run-{experiment_id}-2"]
    result = SyntheticExperiment(experiment_id, run_ids, scorer, tuple(targets))
    records: list[CallRecord] = []
    scores: list[dict[str, object]] = []
    clock = [start]
    resumed_units: list[tuple[int, SyntheticTarget, int]] = []

    def emit_trace(
        item: int, target: SyntheticTarget, rep: int, run_id: str, shape: str
    ) -> SyntheticUnit:
        trace_id = f"syn-trace-{len(records):08d}"
        item_id = f"item-{item:04d}"
        coords = {"run_id": run_id, "item_id": item_id, "target": target.name, "repetition": rep}
        metadata = json.dumps({"aigw_experiment": coords})
        begin = clock[0]
        # Each row: (status, error_type, http status, latency, cost, fallback_from, cache).
        latency = target.latency_ms * rng.uniform(0.6, 1.6)
        cost = target.cost_usd * rng.uniform(0.8, 1.2)
        if shape == "cache_hit":
            rows = [("ok", None, None, 2.0, 0.0, None, "hit")]
        elif shape == "retry":
            rows = [
                ("error", "rate_limited", 429, 40.0, 0.0, None, "miss"),
                ("ok", None, None, latency, cost, None, "miss"),
            ]
        elif shape == "fallback":
            rows = [
                ("error", "provider_server_error", 503, 120.0, 0.0, None, "miss"),
                ("ok", None, None, latency, cost, f"{_PROVIDER}/primary", "miss"),
            ]
        elif shape == "error":
            rows = [
                ("error", "provider_server_error", 503, 90.0, 0.0, None, "miss"),
                ("error", "provider_server_error", 503, 95.0, 0.0, None, "miss"),
            ]
        else:
            rows = [("ok", None, None, latency, cost, None, "miss")]
        at = begin
        end = begin
        call_id = ""
        for attempt, (status, error_type, http, lat, price, fb_from, cache) in enumerate(rows, 1):
            call_id = f"syn-call-{len(records):08d}"
            ok = status == "ok"
            records.append(
                CallRecord(
                    call_id=call_id,
                    trace_id=trace_id,
                    timestamp=at,
                    provider_name=_PROVIDER,
                    request_model=target.name.split("/")[-1],
                    status=status,
                    error_type=error_type,
                    error_message=f"synthetic {error_type}" if error_type else None,
                    http_status_code=http,
                    response_text="synthetic answer" if ok else None,
                    cost_usd=price,
                    latency_ms=lat,
                    ttft_ms=target.ttft_ms if ok and cache != "hit" else None,
                    stream=target.ttft_ms is not None,
                    cache_status=cache,
                    attempt=attempt,
                    fallback_from=fb_from,
                    experiment_id=experiment_id,
                    metadata_json=metadata,
                    simulated=target.simulated,
                    run_id=run_id,
                    item_id=item_id,
                    target=target.name,
                    repetition=rep,
                )
            )
            end = at + timedelta(milliseconds=lat)
            # A backoff between attempts: logical latency must include it.
            at = end + timedelta(milliseconds=rng.choice((5.0, 25.0, 50.0)))
        clock[0] = at + timedelta(seconds=rng.uniform(1, 30))
        final_ok = rows[-1][0] == "ok"
        quality = float(rng.random() < target.accuracy) if final_ok else None
        if quality is not None:
            scores.append(
                {
                    "score_id": f"syn-score-{len(scores):08d}",
                    "call_id": call_id,
                    "trace_id": trace_id,
                    "experiment_id": experiment_id,
                    "run_id": run_id,
                    "item_id": item_id,
                    "target": target.name,
                    "scorer": scorer,
                    "kind": "scorer",
                    "value": quality,
                    "created_at": end,
                }
            )
        # Logical latency from the microsecond timestamps the log keeps.
        logical = rows[0][3] if len(rows) == 1 else (end - begin).total_seconds() * 1000
        spent = sum(r[4] for r in rows)
        status, error_type, _, _, _, fallback_from, cache_status = rows[-1]
        unit = SyntheticUnit(
            target=target.name,
            item_id=item_id,
            repetition=rep,
            status=status,
            error_type=error_type,
            latency_ms=logical,
            cost_usd=spent,
            spent_usd=spent,
            attempts=len(rows),
            fell_back=fallback_from is not None,
            cache_hit=cache_status == "hit",
            quality=quality,
        )
        return unit

    shapes = ("retry", "fallback", "error", "cache_hit", "resume")
    weights = (retry_rate, fallback_rate, error_rate, cache_hit_rate, resume_rate)
    clean = max(0.0, 1.0 - sum(weights))
    for item in range(n_items):
        for target in targets:
            for rep in range(repetitions):
                shape = rng.choices((*shapes, "clean"), weights=(*weights, clean))[0]
                if shape == "resume":
                    failed = emit_trace(item, target, rep, run_ids[0], "error")
                    resumed_units.append((item, target, rep))
                    result.units.append(failed)  # replaced when run 2 retries it
                else:
                    unit = emit_trace(item, target, rep, run_ids[0], shape)
                    result.units.append(unit)
    # Run 2 (a resume) retries the units that failed by "resume" and succeeds.
    index = {(u.target, u.item_id, u.repetition): i for i, u in enumerate(result.units)}
    for item, target, rep in resumed_units:
        first = result.units[index[(target.name, f"item-{item:04d}", rep)]]
        unit = emit_trace(item, target, rep, run_ids[1], "clean")
        # The unit's result is the new trace; what it spent includes the failed one.
        result.units[index[(target.name, f"item-{item:04d}", rep)]] = replace(
            unit, spent_usd=first.spent_usd + unit.cost_usd
        )

    log.append_many(records)
    log.flush()
    if scores:
        log.insert("scores", scores)
    log.insert(
        "experiments",
        [
            {
                "experiment_id": experiment_id,
                "name": f"synthetic {experiment_id}",
                "dataset_name": "synthetic",
                "repetitions": repetitions,
                "targets_json": json.dumps([t.name for t in targets]),
                "created_at": start,
            }
        ],
    )
    log.insert(
        "experiment_runs",
        [
            {
                "run_id": run_id,
                "experiment_id": experiment_id,
                "status": "completed",
                "started_at": start,
                "ended_at": clock[0],
            }
            for run_id in run_ids[: 1 + bool(resumed_units)]
        ],
    )
    result.calls = len(records)
    return result
