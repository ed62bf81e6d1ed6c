"""Scoring shadow traffic: the candidate's answers against the live ones, from the log.

A gateway with a `aigw_lab.gateway.shadow.Shadow` logs each shadow call with ``shadow_of``
= the ``call_id`` of the live call it duplicated. This module reads those pairs
(`shadow_pairs`), scores them (`score_shadow_pairs`: a scorer on both answers, or a
pairwise LLM judge on the candidate's against the live one), writes the scores to the
``scores`` table, and sums them up (`shadow_report`): win / tie / loss of the candidate
with 95% Wilson intervals per share, the net win rate (win 1, tie 0.5, loss 0) and the
cost and latency deltas (candidate minus live, per pair) with bootstrap intervals over
pairs.

    report = shadow_report(gateway.log, scorer="auto", dataset=bundled_dataset())
    print(report.summary())
    report.pairs        # one row per pair: both answers, scores, outcome, deltas
    report.frame()      # the summary as a tidy DataFrame (one row per measure)

    report = shadow_report(log, judge="sim-openai/sim-large", gateway=judge_gateway)

Who wins a pair: with a scorer, the candidate wins when its score is higher than the live
answer's by more than ``tie_tolerance``, loses when lower by more, ties otherwise; with a
pairwise judge, the judge's verdict (asked twice, answers swapped; an inconsistent pair is
a tie). A pair either side of which could not be scored (no reference for a scorer that
needs one, a failed shadow call, an unparsed verdict) is *unscored*: counted, and left out
of the shares. Scores already in the table for a call and scorer are reused, not paid for
again (``reuse=False`` rescores).

Everything here reads and writes the log given; nothing is sent except the judge's calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aigw_lab.analysis.breakdown import wilson_interval
from aigw_lab.analysis.stats import MeanCI, bootstrap_mean_ci
from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.errors import ConfigError
from aigw_lab.scorers.base import Scorer
from aigw_lab.scorers.judge import PairwiseJudge
from aigw_lab.scorers.registry import build_scorer
from aigw_lab.store.scores import write_scores
from aigw_lab.types import ChatResponse, Latency, Score, Usage

if TYPE_CHECKING:
    import pandas as pd

    from aigw_lab.gateway import Gateway
    from aigw_lab.store import CallLog

__all__ = [
    "PAIR_COLUMNS",
    "OUTCOMES",
    "ShareCI",
    "ShadowReport",
    "shadow_pairs",
    "score_shadow_pairs",
    "shadow_report",
    "summarise",
]

#: The outcomes of a pair, from the candidate's side (None: unscored).
OUTCOMES: tuple[str, ...] = ("win", "tie", "loss")
_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}

#: Columns of `shadow_pairs`, in order.
PAIR_COLUMNS: tuple[str, ...] = (
    "live_call_id",
    "shadow_call_id",
    "timestamp",
    "live_target",
    "shadow_target",
    "item_id",
    "experiment_id",
    "request_json",
    "live_text",
    "shadow_text",
    "live_status",
    "shadow_status",
    "live_cost_usd",
    "shadow_cost_usd",
    "live_latency_ms",
    "shadow_latency_ms",
    "live_output_tokens",
    "shadow_output_tokens",
    "live_simulated",
    "shadow_simulated",
)

# Per live call, its shadow's last row (one row per shadow call with a provider target; a
# policy target's fallbacks may log more, and the answer is the last).
_PAIRS_SQL = """
WITH shadow AS (
    SELECT * FROM calls WHERE shadow_of IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY shadow_of ORDER BY (status = 'ok') DESC, "timestamp" DESC, attempt DESC
    ) = 1
)
SELECT
    l.call_id AS live_call_id,
    s.call_id AS shadow_call_id,
    l."timestamp" AS "timestamp",
    l.provider_name || '/' || l.request_model AS live_target,
    s.provider_name || '/' || s.request_model AS shadow_target,
    l.item_id AS item_id,
    l.experiment_id AS experiment_id,
    l.request_json AS request_json,
    l.response_text AS live_text,
    s.response_text AS shadow_text,
    l.status AS live_status,
    s.status AS shadow_status,
    l.cost_usd AS live_cost_usd,
    s.cost_usd AS shadow_cost_usd,
    l.latency_ms AS live_latency_ms,
    s.latency_ms AS shadow_latency_ms,
    l.output_tokens AS live_output_tokens,
    s.output_tokens AS shadow_output_tokens,
    l.simulated AS live_simulated,
    s.simulated AS shadow_simulated
FROM shadow s JOIN calls l ON l.call_id = s.shadow_of
WHERE {where}
ORDER BY l."timestamp", l.call_id
"""


def shadow_pairs(
    log: CallLog,
    *,
    shadow_target: str | None = None,
    live_target: str | None = None,
    since: Any = None,
) -> pd.DataFrame:
    """Every (live call, shadow call) pair in ``log`` (columns `PAIR_COLUMNS`, oldest live
    call first), optionally only those whose candidate is ``shadow_target`` or whose live
    answer came from ``live_target`` (``"provider/model"``), or live calls at or after
    ``since`` (a datetime)."""
    clauses: list[str] = []
    params: list[Any] = []
    if shadow_target is not None:
        clauses.append("s.provider_name || '/' || s.request_model = ?")
        params.append(shadow_target)
    if live_target is not None:
        clauses.append("l.provider_name || '/' || l.request_model = ?")
        params.append(live_target)
    if since is not None:
        clauses.append('l."timestamp" >= ?')
        params.append(since)
    sql = _PAIRS_SQL.format(where=" AND ".join(clauses) or "TRUE")
    return log.query(sql, params)


def score_shadow_pairs(
    log: CallLog,
    pairs: pd.DataFrame,
    *,
    scorer: str | Mapping[str, Any] | Scorer | None = None,
    judge: str | None = None,
    gateway: Gateway | None = None,
    dataset: Dataset | Iterable[DatasetItem] | None = None,
    tie_tolerance: float = 0.0,
    write: bool = True,
    reuse: bool = True,
) -> pd.DataFrame:
    """``pairs`` (from `shadow_pairs`) with ``live_score``, ``shadow_score`` and
    ``outcome`` (``"win"``, ``"tie"``, ``"loss"`` from the candidate's side, None when
    unscored) and ``scorer``; the scores are written to ``log``'s ``scores`` table linked
    to each call (``write``), and scores already there for a call and this scorer are used
    instead of scoring again (``reuse``).

    Exactly one of ``scorer`` (a `Scorer`, or a name or table for `build_scorer`; both
    answers are scored) and ``judge`` (``"provider/model"`` of a pairwise LLM judge called
    through ``gateway``; the candidate's answer is judged against the live one, and its
    score, on the shadow call, is the outcome) must be given. ``dataset``: items whose
    references the scorer compares with, matched by the live call's ``item_id``, else by
    the prompt's text."""
    if (scorer is None) == (judge is None):
        raise ConfigError(
            "score shadow pairs with a scorer or a judge",
            hint='pass scorer="auto" (or another scorer), or judge="provider/model"',
        )
    if not 0 <= tie_tolerance < math.inf:
        raise ConfigError(f"tie_tolerance={tie_tolerance!r} is invalid", hint="use a number >= 0")
    frame = pairs.copy()
    known = _lookup(dataset)
    items = [_item(row, known) for row in frame.to_dict("records")]
    if judge is not None:
        if gateway is None:
            raise ConfigError(
                "a judge needs a gateway to call it through",
                hint="pass gateway=Gateway(...) (the simulated fleet can judge offline)",
            )
        # The live answer is the judge's baseline; a failed live call has none (unscored).
        baseline = {
            item.id: row["live_text"]
            for item, row in _rows(items, frame)
            if row["live_status"] == "ok" and row["live_text"] is not None
        }
        judging = PairwiseJudge(gateway, judge, baseline=baseline, name="shadow_judge")
        name = judging.name
        live_scores: list[_Scored | None] = [None] * len(items)
        shadow_scores = [
            _score(log, judging, item, row, "shadow", reuse=reuse)
            for item, row in _rows(items, frame)
        ]
        outcomes = [_judged(scored) for scored in shadow_scores]
    else:
        built = build_scorer(scorer, gateway=gateway)  # type: ignore[arg-type]
        name = built.name
        live_scores = [
            _score(log, built, item, row, "live", reuse=reuse) for item, row in _rows(items, frame)
        ]
        shadow_scores = [
            _score(log, built, item, row, "shadow", reuse=reuse)
            for item, row in _rows(items, frame)
        ]
        outcomes = [
            _compared(live, shadow, tie_tolerance)
            for live, shadow in zip(live_scores, shadow_scores, strict=True)
        ]
    if write:
        sides = zip(frame.to_dict("records"), live_scores, shadow_scores, strict=True)
        for row, live, shadow in sides:
            for side, scored in (("live", live), ("shadow", shadow)):
                if scored is not None and not scored.reused:
                    write_scores(log, row[f"{side}_call_id"], [scored.score])
    frame["scorer"] = name
    frame["live_score"] = [None if s is None else s.score.value for s in live_scores]
    frame["shadow_score"] = [None if s is None else s.score.value for s in shadow_scores]
    frame["outcome"] = outcomes
    frame["cost_delta_usd"] = frame["shadow_cost_usd"] - frame["live_cost_usd"]
    frame["latency_delta_ms"] = frame["shadow_latency_ms"] - frame["live_latency_ms"]
    return frame


@dataclass(frozen=True, slots=True)
class ShareCI:
    """A share of the scored pairs with its Wilson interval at ``confidence``."""

    count: int
    n: int
    share: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """Candidate vs live over the scored shadow pairs (see the module docstring).

    ``pairs``: `score_shadow_pairs`' frame; ``win`` / ``tie`` / ``loss``: `ShareCI` of the
    scored pairs; ``net``: mean of win 1, tie 0.5, loss 0 with its bootstrap interval (one
    win and one loss added to the resampled pairs, see `_net_win_rate`; 0.5 = no
    difference); ``cost_delta_usd`` / ``latency_delta_ms``: mean candidate minus live
    per pair (pairs where both are known) with bootstrap intervals; ``unscored``: pairs
    left out of the shares."""

    scorer: str
    n_pairs: int
    n_scored: int
    unscored: int
    win: ShareCI
    tie: ShareCI
    loss: ShareCI
    net: MeanCI
    cost_delta_usd: MeanCI
    latency_delta_ms: MeanCI
    live_cost_usd: float
    shadow_cost_usd: float
    live_targets: tuple[str, ...]
    shadow_targets: tuple[str, ...]
    simulated: bool
    confidence: float = 0.95
    pairs: Any = field(default=None, repr=False)

    def frame(self) -> pd.DataFrame:
        """The summary as a tidy DataFrame: one row per measure (``measure``, ``value``,
        ``low``, ``high``, ``n``)."""
        # lazy: pandas loads in ~0.3 s; the CLI's --help never needs it
        import pandas as pd

        rows = [
            {"measure": f"{name}_share", "value": s.share, "low": s.low, "high": s.high, "n": s.n}
            for name, s in (("win", self.win), ("tie", self.tie), ("loss", self.loss))
        ]
        for name, m in (
            ("net_win_rate", self.net),
            ("cost_delta_usd", self.cost_delta_usd),
            ("latency_delta_ms", self.latency_delta_ms),
        ):
            rows.append({"measure": name, "value": m.mean, "low": m.low, "high": m.high, "n": m.n})
        return pd.DataFrame(rows, columns=["measure", "value", "low", "high", "n"])

    def summary(self) -> str:
        """A few printable lines."""
        pct = round(self.confidence * 100)
        lines = [
            f"shadow report ({'SIMULATED' if self.simulated else 'logged'} calls; scorer "
            f"{self.scorer}): candidate {', '.join(self.shadow_targets) or '-'} vs live "
            f"{', '.join(self.live_targets) or '-'}",
            f"pairs: {self.n_pairs}, scored: {self.n_scored}, unscored: {self.unscored}",
        ]
        for name, s in (("win", self.win), ("tie", self.tie), ("loss", self.loss)):
            lines.append(
                f"  {name:<5}{s.count:>6}  {_pct(s.share)}  [{_pct(s.low)}, {_pct(s.high)}] "
                f"({pct}% Wilson)"
            )
        lines.append(
            f"  net win rate {_rate(self.net.mean)} [{_rate(self.net.low)}, "
            f"{_rate(self.net.high)}] ({pct}% bootstrap over pairs, +1 win +1 loss; "
            "0.5 = no difference)"
        )
        lines.append(
            f"cost per call, candidate - live: {_num(self.cost_delta_usd.mean, 6)} USD "
            f"[{_num(self.cost_delta_usd.low, 6)}, {_num(self.cost_delta_usd.high, 6)}] "
            f"(n={self.cost_delta_usd.n}); spent live {self.live_cost_usd:.6f}, "
            f"shadow {self.shadow_cost_usd:.6f} USD"
        )
        lines.append(
            f"latency, candidate - live: {_num(self.latency_delta_ms.mean, 1)} ms "
            f"[{_num(self.latency_delta_ms.low, 1)}, {_num(self.latency_delta_ms.high, 1)}] "
            f"(n={self.latency_delta_ms.n}; shadows run after their live call, in the "
            "background)"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def shadow_report(
    log: CallLog,
    *,
    scorer: str | Mapping[str, Any] | Scorer | None = None,
    judge: str | None = None,
    gateway: Gateway | None = None,
    dataset: Dataset | Iterable[DatasetItem] | None = None,
    shadow_target: str | None = None,
    live_target: str | None = None,
    since: Any = None,
    tie_tolerance: float = 0.0,
    write: bool = True,
    reuse: bool = True,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> ShadowReport:
    """Read the shadow pairs of ``log`` (`shadow_pairs`), score them
    (`score_shadow_pairs`) and sum them up as a `ShadowReport`. Raises `ConfigError` when
    the log holds no pairs (matching the filters)."""
    pairs = shadow_pairs(log, shadow_target=shadow_target, live_target=live_target, since=since)
    if pairs.empty:
        raise ConfigError(
            "the call log holds no shadow pairs"
            + (" matching the filters" if shadow_target or live_target or since else ""),
            hint="run a gateway with shadow=Shadow(...) (or [shadow] in its config) first",
        )
    scored = score_shadow_pairs(
        log,
        pairs,
        scorer=scorer,
        judge=judge,
        gateway=gateway,
        dataset=dataset,
        tie_tolerance=tie_tolerance,
        write=write,
        reuse=reuse,
    )
    return summarise(scored, confidence=confidence, n_boot=n_boot, seed=seed)


def summarise(
    scored: pd.DataFrame, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> ShadowReport:
    """The `ShadowReport` of a `score_shadow_pairs` frame."""
    # lazy: numpy loads in ~0.1 s; the CLI's --help never needs it
    import numpy as np

    outcomes = [o for o in scored["outcome"] if o in _VALUE]
    n = len(outcomes)

    def share(name: str) -> ShareCI:
        count = outcomes.count(name)
        low, high = wilson_interval(count, n, confidence)
        return ShareCI(count, n, count / n if n else math.nan, low, high)

    def mean(values: Any) -> MeanCI:
        data = np.asarray(values, dtype=float)
        return bootstrap_mean_ci(
            data, confidence=confidence, n_boot=n_boot, rng=np.random.default_rng(seed)
        )

    both_cost = scored.dropna(subset=["live_cost_usd", "shadow_cost_usd"])
    both_latency = scored.dropna(subset=["live_latency_ms", "shadow_latency_ms"])
    return ShadowReport(
        scorer=str(scored["scorer"].iloc[0]) if len(scored) else "",
        n_pairs=len(scored),
        n_scored=n,
        unscored=len(scored) - n,
        win=share("win"),
        tie=share("tie"),
        loss=share("loss"),
        net=_net_win_rate([_VALUE[o] for o in outcomes], mean),
        cost_delta_usd=mean(both_cost["shadow_cost_usd"] - both_cost["live_cost_usd"]),
        latency_delta_ms=mean(both_latency["shadow_latency_ms"] - both_latency["live_latency_ms"]),
        live_cost_usd=float(scored["live_cost_usd"].fillna(0).sum()),
        shadow_cost_usd=float(scored["shadow_cost_usd"].fillna(0).sum()),
        live_targets=tuple(sorted(set(scored["live_target"]))),
        shadow_targets=tuple(sorted(set(scored["shadow_target"]))),
        simulated=bool(scored["live_simulated"].all() and scored["shadow_simulated"].all()),
        confidence=confidence,
        pairs=scored,
    )


# --- helpers --------------------------------------------------------------------------


def _rows(items: list[DatasetItem], frame: pd.DataFrame) -> Iterable[tuple[DatasetItem, dict]]:
    return zip(items, frame.to_dict("records"), strict=True)


_Lookup = tuple[dict[str, DatasetItem], dict[str, DatasetItem]]


def _item(row: Mapping[str, Any], known: _Lookup | None) -> DatasetItem:
    """The item a pair is scored as: the live call's prompt, with the reference of the
    dataset item it matches (by item id, else by prompt text), under the live call's id."""
    system, prompt = _prompt(row.get("request_json"))
    match = None
    if known:
        by_id, by_prompt = known
        match = by_id.get(row.get("item_id") or "") or by_prompt.get(_norm(prompt))
    if match is not None:
        return DatasetItem(
            id=str(row["live_call_id"]),
            prompt=match.prompt,
            reference=match.reference,
            category=match.category,
            difficulty=match.difficulty,
            system=match.system,
            history=match.history,
            metadata={**match.metadata, "dataset_item_id": match.id},
        )
    return DatasetItem(id=str(row["live_call_id"]), prompt=prompt or "(no prompt)", system=system)


def _lookup(dataset: Dataset | Iterable[DatasetItem] | None) -> _Lookup | None:
    """The dataset's items by id and by normalised prompt text."""
    if dataset is None:
        return None
    items = list(dataset)
    return {i.id: i for i in items}, {_norm(i.prompt): i for i in items}


def _norm(text: str | None) -> str:
    return " ".join((text or "").lower().split())


def _prompt(request_json: str | None) -> tuple[str | None, str | None]:
    """(system, last user message text) of a logged request."""
    try:
        request = json.loads(request_json) if request_json else None
    except ValueError:
        return None, None
    if not isinstance(request, dict):
        return None, None
    messages = request.get("messages")
    if not isinstance(messages, list):
        return None, None
    system = request.get("system") if isinstance(request.get("system"), str) else None
    prompt = None
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = _text(message.get("content"))
        if message.get("role") == "user" and text:
            prompt = text
        elif message.get("role") == "system" and text and system is None:
            system = text
    return system, prompt


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _response(row: Mapping[str, Any], side: str) -> ChatResponse | None:
    """The logged answer of one side of a pair, as a scorer takes it (None: it failed)."""
    if row.get(f"{side}_status") != "ok" or row.get(f"{side}_text") is None:
        return None
    provider, _, model = str(row[f"{side}_target"]).partition("/")
    output = row.get(f"{side}_output_tokens")
    output = 0 if output is None or output != output else int(output)
    latency = row.get(f"{side}_latency_ms")
    return ChatResponse(
        text=row[f"{side}_text"],
        finish_reason="stop",
        usage=Usage(input_tokens=0, output_tokens=output),
        provider=provider,
        model=model,
        latency=Latency(total_ms=float(latency)) if latency == latency and latency else Latency(),
        cost_usd=row.get(f"{side}_cost_usd"),
        simulated=bool(row.get(f"{side}_simulated")),
        call_id=row[f"{side}_call_id"],
    )


@dataclass(frozen=True, slots=True)
class _Scored:
    score: Score
    reused: bool


def _score(
    log: CallLog,
    scorer: Scorer,
    item: DatasetItem,
    row: Mapping[str, Any],
    side: str,
    *,
    reuse: bool,
) -> _Scored | None:
    """``scorer``'s score of one side's answer (a score already logged for that call and
    scorer when ``reuse``); None for a side with no answer."""
    call_id = row[f"{side}_call_id"]
    if reuse:
        found = log.execute(
            "SELECT value, label FROM scores WHERE call_id = ? AND scorer = ? "
            "ORDER BY created_at DESC LIMIT 1",
            [call_id, scorer.name],
        )
        if found:
            value, label = found[0]
            return _Scored(Score(scorer.name, value, label=label), reused=True)
    response = _response(row, side)
    if response is None:
        return None
    return _Scored(scorer.score(item, response), reused=False)


def _compared(live: _Scored | None, shadow: _Scored | None, tolerance: float) -> str | None:
    if live is None or shadow is None:
        return None
    live_value, shadow_value = live.score.value, shadow.score.value
    if live_value is None or shadow_value is None:
        return None
    difference = float(shadow_value) - float(live_value)
    if difference > tolerance:
        return "win"
    if difference < -tolerance:
        return "loss"
    return "tie"


def _judged(scored: _Scored | None) -> str | None:
    if scored is None or scored.score.value is None:
        return None
    return {1.0: "win", 0.5: "tie", 0.0: "loss"}.get(float(scored.score.value))


def _pct(value: float) -> str:
    return "   n/a" if value != value else f"{value * 100:5.1f}%"


def _num(value: float, digits: int) -> str:
    return "n/a" if value != value else f"{value:+.{digits}f}"


def _net_win_rate(values: list[float], mean: Any) -> MeanCI:
    """The mean of ``values`` (win 1, tie 0.5, loss 0) with a bootstrap interval over pairs
    that counts one more win and one more loss. Why: with few pairs, or all ties, the plain
    percentile bootstrap is too narrow (its interval of five ties is [0.5, 0.5]);
    bench/shadow_coverage.py measured its coverage of the true rate on the simulated fleet
    at 0.785 with ~8 pairs and 0.927 with ~16, against 0.992 and 0.976 with the two pairs
    added (0.983 with ~47; nominal 0.95)."""
    if not values:
        return MeanCI(math.nan, math.nan, math.nan, 0)
    padded = mean([*values, 1.0, 0.0])
    return MeanCI(sum(values) / len(values), padded.low, padded.high, len(values))


def _rate(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"
