"""Logged calls, read from a call log, as the `LoggedBandit` that off-policy evaluation
(`aigw_lab.policy.ope`) weighs: one row per client call a routing policy decided.

A client call is one trace. Its *decision* is its first row: the target the policy chose
and the propensity it was chosen with (``calls.propensity``). Its *outcome* is its last
answered row (a retry or a fallback may have answered instead): the reward is the mean of
that row's scores from ``scorer`` (the ``scores`` table), and the cost is what every row of
the trace cost. Left out, and counted in ``dropped``: shadow calls (``shadow_of`` set: a
copy sent by the gateway, not a decision), calls no policy routed (``route_policy`` NULL:
cache hits, direct calls), calls whose first row has no propensity, answered calls without
a score, and failed calls unless ``failed_reward`` gives them one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aigw_lab.errors import ConfigError
from aigw_lab.policy.base import POLICY_TAG
from aigw_lab.policy.ope import LoggedBandit
from aigw_lab.types import ChatRequest

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.store import CallLog

__all__ = ["logged_bandit_from_log", "request_from_log"]

_CALLS_SQL = """
SELECT call_id, trace_id, timestamp, attempt, status, route_policy, propensity,
       provider_name || '/' || request_model AS target, cost_usd, request_json,
       tenant_id, user_id, metadata_json, tags_json
FROM calls
WHERE route_policy IS NOT NULL AND shadow_of IS NULL {policy}
ORDER BY timestamp, attempt, call_id
"""


def request_from_log(row: Any) -> ChatRequest:
    """The `ChatRequest` a logged row was addressed with (messages, tenant, user, metadata),
    so a candidate policy can decide on it again. The model is the logged target's."""
    try:
        body = json.loads(row["request_json"])
        messages = body["messages"]
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"call {row['call_id']}: its request_json cannot be read") from exc
    metadata = json.loads(row["metadata_json"]) if row.get("metadata_json") else {}
    tags = json.loads(row["tags_json"]) if row.get("tags_json") else {}
    # The route stage's own tag says which policy logged the call, not what was asked.
    tags = {k: v for k, v in (tags or {}).items() if k != POLICY_TAG}
    return ChatRequest.create(
        str(body.get("model") or row["target"]),
        messages,
        tenant=_text(row.get("tenant_id")),
        user=_text(row.get("user_id")),
        tags=tags,
        metadata=metadata or {},
    )


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def logged_bandit_from_log(
    log: CallLog,
    *,
    scorer: str | None = None,
    policy: str | None = None,
    targets: Sequence[str] | None = None,
    group_by: str | Callable[[ChatRequest], Any] | None = None,
    failed_reward: float | None = None,
) -> LoggedBandit:
    """The calls in ``log`` that a routing policy decided, as a `LoggedBandit` (see the
    module docstring). ``scorer``: whose scores are the reward (None: any scorer's, the
    mean). ``policy``: only calls routed by that policy name. ``targets``: the action space
    (default: every target the logged decisions used, dropped calls' included, sorted).
    ``group_by``: a tag or metadata key (tags first), or a function of the request,
    labelling each call for the reward model. ``failed_reward``: the reward of a call that
    ended in an error (None: leave such calls out)."""
    where = "AND route_policy = ?" if policy is not None else ""
    calls = log.query(_CALLS_SQL.format(policy=where), [policy] if policy is not None else [])
    dropped: dict[str, int] = {}
    if len(calls) == 0:
        return _empty(targets, dropped)
    scores = _scores(log, scorer)
    first_rows: list[Any] = []
    rewards: list[float] = []
    costs: list[float] = []
    seen: set[str] = set()
    for _, trace in calls.groupby("trace_id", sort=False):
        first = trace.iloc[0]
        seen.add(str(first["target"]))
        if first["propensity"] is None or not np.isfinite(first["propensity"]):
            _count(dropped, "no propensity")
            continue
        answered = trace[trace["status"] == "ok"]
        if len(answered):
            value = scores.get(answered.iloc[-1]["call_id"])
            if value is None:
                _count(dropped, "no score")
                continue
        elif failed_reward is None:
            _count(dropped, "failed")
            continue
        else:
            value = float(failed_reward)
        first_rows.append(first)
        rewards.append(value)
        costs.append(float(trace["cost_usd"].fillna(0.0).sum()))
    chosen = [str(r["target"]) for r in first_rows]
    space = tuple(targets) if targets is not None else tuple(sorted(seen))
    index = {t: j for j, t in enumerate(space)}
    unknown = sorted(set(chosen) - set(index))
    if unknown:
        raise ConfigError(
            f"logged calls chose targets outside `targets`: {', '.join(unknown)}",
            hint="leave targets=None, or list every target the logging policy used",
        )
    requests = tuple(request_from_log(r) for r in first_rows)
    groups = None
    if group_by is not None:
        if callable(group_by):
            labels = [group_by(r) for r in requests]
        else:
            labels = [r.tags.get(group_by, r.metadata.get(group_by)) for r in requests]
        groups = np.array(["" if v is None else str(v) for v in labels], dtype=object)
    return LoggedBandit(
        targets=space,
        actions=np.array([index[t] for t in chosen], dtype=int),
        propensities=np.array([float(r["propensity"]) for r in first_rows]),
        rewards=np.array(rewards, dtype=float),
        costs=np.array(costs, dtype=float),
        groups=groups,
        requests=requests,
        call_ids=tuple(str(r["call_id"]) for r in first_rows),
        dropped=dropped,
    )


def _scores(log: CallLog, scorer: str | None) -> dict[str, float]:
    sql = "SELECT call_id, avg(value) AS value FROM scores WHERE value IS NOT NULL"
    params: list[Any] = []
    if scorer is not None:
        sql += " AND scorer = ?"
        params.append(scorer)
    frame: pd.DataFrame = log.query(sql + " GROUP BY call_id", params)
    return dict(zip(frame["call_id"], frame["value"].astype(float), strict=True))


def _count(dropped: dict[str, int], reason: str) -> None:
    dropped[reason] = dropped.get(reason, 0) + 1


def _empty(targets: Sequence[str] | None, dropped: dict[str, int]) -> LoggedBandit:
    return LoggedBandit(
        targets=tuple(targets or ("none/none",)),
        actions=np.zeros(0, dtype=int),
        propensities=np.zeros(0),
        rewards=np.zeros(0),
        costs=np.zeros(0),
        requests=(),
        call_ids=(),
        dropped=dropped,
    )
