"""`ReplayMatrix`: your own call log as prompts x targets, each cell holding what that target
answered to that prompt, what it cost, how long it took and how it scored.

    matrix = ReplayMatrix.from_log(gateway.log, scorer="numeric")
    matrix.summary()              # per target: cells filled, mean score, cost, latency
    matrix.empty_cells()          # (prompt_id, target) pairs no call has answered yet
    plan = plan_fill(matrix, gateway)            # aigw_lab.experiments.replay_fill
    print(plan.describe())                       # the estimate, at batch and live prices
    matrix = fill(plan, gateway, max_cost_usd=0.50).matrix
    rec = matrix.to_recorded_dataset()           # what learned routers train and evaluate on

Rows come from the ``calls`` table: ok rows only, never cache hits (the answer was not the
target's), never an LLM judge's own calls. Live rows always; shadow rows (``shadow_of`` set)
and batch rows (the ``aigw_batch`` tag) unless left out; experiments' rows only when asked
(``include_experiments``). A row's target is ``provider/model`` as called, so the targets a
routing policy chose are cells of their own.

The prompts are every conversation of the selected rows, whichever target answered it. A
prompt is a conversation, keyed as `aigw_lab.datasets.from_log` keys its items
(`conversation_id`: the system prompt, earlier turns and last user message, hashed); request
parameters (temperature, max_tokens) are not part of the key. A cell's ``answer`` is its
latest answer; ``cost_usd``, ``latency_ms`` and the token counts are means over its calls
(latency over calls that have one: batch rows have none); ``live_cost_usd`` prices batch
rows back at the live price (their logged cost divided by `BATCH_DISCOUNT`); ``score`` is
the mean of ``scorer``'s scores on the cell's calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.batch import BATCH_DISCOUNT
from aigw_lab.datasets.from_log import _conversation, conversation_id
from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.datasets.recorded import RecordedDataset
from aigw_lab.errors import ConfigError
from aigw_lab.experiments.replay_matrix_log import (
    MatrixOptions,
    check_targets,
    connection,
    params_of,
    read_rows,
    read_scores,
)
from aigw_lab.store.scores import score_rows
from aigw_lab.types import ChatResponse, Usage

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from aigw_lab.gateway import Gateway
    from aigw_lab.providers.base import Price
    from aigw_lab.scorers.base import Scorer
    from aigw_lab.store.calllog import CallLog

__all__ = ["ReplayMatrix", "CELL_COLUMNS", "SOURCES"]

#: Columns of `ReplayMatrix.to_frame`, one row per (prompt, target), empty cells included.
CELL_COLUMNS: tuple[str, ...] = (
    "prompt_id",
    "target",
    "calls",
    "answer",
    "score",
    "scores",
    "cost_usd",
    "live_cost_usd",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "sources",
    "call_id",
)
# A score row's copy of its call's coordinates (as `aigw_lab.store.scores.write_scores`).
_COORDINATES = ("trace_id", "experiment_id", "run_id", "item_id", "target")
#: Where a cell's calls came from: a live call, a shadow call, a batch, an experiment.
SOURCES: tuple[str, ...] = ("live", "shadow", "batch", "experiment")


class ReplayMatrix:
    """Prompts x targets from a call log (build it with `from_log`).

    ``prompts`` is a `Dataset` whose items are the log's conversations (ids from
    `conversation_id`; ``metadata["params"]`` holds the latest logged request's sampling
    parameters, which a fill sends again); ``targets`` the ``provider/model`` columns;
    ``cells`` the non-empty cells (`CELL_COLUMNS`); ``scorer`` the scorer whose scores
    are the quality (None when the log has none).
    """

    def __init__(
        self,
        prompts: Dataset,
        targets: Sequence[str],
        cells: pd.DataFrame,
        *,
        scorer: str | None,
        source: Any = None,
        options: MatrixOptions | None = None,
    ) -> None:
        self.prompts = prompts
        self.targets: tuple[str, ...] = tuple(targets)
        self.cells = cells
        self.scorer = scorer
        self.source = source
        self._options = options

    # -- reading -----------------------------------------------------------------------------

    @classmethod
    def from_log(
        cls,
        log: CallLog | Any,
        *,
        targets: Iterable[str] | None = None,
        scorer: str | None = None,
        include_shadow: bool = True,
        include_batch: bool = True,
        include_experiments: bool = False,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> ReplayMatrix:
        """The matrix of ``log`` (a `CallLog`, a DuckDB connection such as
        `CallLog.snapshot`'s, or the path of a .duckdb file, read from a snapshot).

        ``targets`` fixes the columns (``provider/model``; default: every target with an
        ok row), so a target never called yet shows as a column of empty cells. ``scorer``
        names the scores to use (default: the scorer with the most scores on the rows).
        ``since``/``until`` bound the calls' start time (ISO strings or datetimes).
        """
        wanted = check_targets(targets)
        options = MatrixOptions(
            targets=wanted,
            scorer=scorer,
            include_shadow=include_shadow,
            include_batch=include_batch,
            include_experiments=include_experiments,
            since=None if since is None else str(since),
            until=None if until is None else str(until),
        )
        conn, close = connection(log)
        try:
            rows = read_rows(conn, options)
            chosen, scores = read_scores(conn, rows, scorer)
        finally:
            if close:
                conn.close()
        return cls._build(rows, scores, chosen, options, source=log)

    def reload(self, log: CallLog | Any | None = None) -> ReplayMatrix:
        """The same matrix read again (after a fill, or new traffic) from ``log`` (default:
        the log it was read from)."""
        options = self._options or MatrixOptions(None, self.scorer, True, True, False, None, None)
        source = self.source if log is None else log
        if source is None:
            raise ConfigError("this matrix was not read from a log", hint="pass log=")
        return ReplayMatrix.from_log(
            source,
            targets=options.targets or self.targets,
            scorer=options.scorer or self.scorer,
            include_shadow=options.include_shadow,
            include_batch=options.include_batch,
            include_experiments=options.include_experiments,
            since=options.since,
            until=options.until,
        )

    @classmethod
    def _build(
        cls,
        rows: pd.DataFrame,
        scores: pd.DataFrame,
        scorer: str | None,
        options: MatrixOptions,
        *,
        source: Any,
    ) -> ReplayMatrix:
        # lazy: pandas loads in ~0.3 s; only building a matrix needs it
        import pandas as pd

        # A request body recurs (the same prompt, again and again): each distinct one is
        # parsed and hashed once.
        parsed: dict[Any, tuple[Any, str] | None] = {}
        latest: dict[str, tuple[Any, Any, Any]] = {}
        keys: list[str | None] = []
        for request_json, category in zip(rows["request_json"], rows["category"], strict=True):
            if request_json not in parsed:
                conversation = _conversation(request_json)
                parsed[request_json] = (
                    None if conversation is None else (conversation, conversation_id(*conversation))
                )
            found = parsed[request_json]
            if found is None:
                keys.append(None)
                continue
            conversation, key = found
            keys.append(key)
            # Later rows win (a dict keeps its first-seen order): a fill sends the latest
            # request's parameters.
            latest[key] = (conversation, request_json, category)
        items = {
            key: DatasetItem(
                id=key,
                prompt=prompt,
                system=system,
                history=tuple(history),
                category=category if isinstance(category, str) else None,
                metadata=MappingProxyType({"params": params_of(request_json)}),
            )
            for key, ((system, history, prompt), request_json, category) in latest.items()
        }
        rows = rows.assign(prompt_id=keys).dropna(subset=["prompt_id"])
        rows = rows[rows["target"].isin(options.targets)] if options.targets else rows
        rows = rows.merge(scores, on="call_id", how="left")
        batch = rows["source"] == "batch"
        rows = rows.assign(
            live_cost=rows["cost_usd"].where(~batch, rows["cost_usd"] / BATCH_DISCOUNT)
        )
        grouped = rows.groupby(["prompt_id", "target"], sort=False)
        cells = grouped.agg(
            calls=("call_id", "size"),
            answer=("response_text", "last"),
            score=("score_value", "mean"),
            scores=("score_value", "count"),
            cost_usd=("cost_usd", "mean"),
            live_cost_usd=("live_cost", "mean"),
            latency_ms=("latency_ms", "mean"),
            input_tokens=("input_tokens", "mean"),
            output_tokens=("output_tokens", "mean"),
            call_id=("call_id", "last"),
        ).reset_index()
        # Which sources each cell's calls came from, over the distinct triples only (a
        # per-group Python function was most of the read time).
        found_in: dict[tuple[str, str], set[str]] = {}
        distinct = rows[["prompt_id", "target", "source"]].drop_duplicates()
        for prompt_id, target, kind in distinct.itertuples(index=False):
            found_in.setdefault((prompt_id, target), set()).add(kind)
        cells["sources"] = pd.Series(
            [
                ",".join(x for x in SOURCES if x in found_in[cell])
                for cell in zip(cells["prompt_id"], cells["target"], strict=True)
            ],
            index=cells.index,
            dtype=object,
        )
        cells = cells.loc[:, list(CELL_COLUMNS)]
        targets = options.targets or tuple(dict.fromkeys(sorted(rows["target"])))
        # Every prompt of the selected rows, whichever target answered it: a column of a
        # target never called is all empty cells, to fill.
        prompts = Dataset("replay-matrix", tuple(items.values()))
        return cls(
            prompts,
            targets,
            pd.DataFrame(cells),
            scorer=scorer,
            source=source,
            options=options,
        )

    # -- views -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"<ReplayMatrix {len(self.prompts)} prompts x {len(self.targets)} targets, "
            f"{len(self.cells)} cells filled, {len(self.empty_cells())} empty, "
            f"scorer={self.scorer!r}>"
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(prompts, targets)."""
        return len(self.prompts), len(self.targets)

    def to_frame(self) -> pd.DataFrame:
        """One row per (prompt, target), empty cells included (``calls`` 0, values NaN),
        with the prompt's text; prompts in first-seen order, targets in column order."""
        # lazy: pandas loads in ~0.3 s; only building a frame needs it
        import pandas as pd

        grid = pd.MultiIndex.from_product(
            [list(self.prompts.ids), list(self.targets)], names=["prompt_id", "target"]
        )
        frame = self.cells.set_index(["prompt_id", "target"]).reindex(grid).reset_index()
        frame["calls"] = frame["calls"].fillna(0).astype(int)
        frame["scores"] = frame["scores"].fillna(0).astype(int)
        frame["sources"] = frame["sources"].fillna("")
        texts = {item.id: item.prompt for item in self.prompts.items}
        frame.insert(1, "prompt", frame["prompt_id"].map(texts))
        return frame

    def wide(self, value: str = "score") -> pd.DataFrame:
        """Prompts x targets of one cell column (``score``, ``cost_usd``, ``latency_ms``,
        ``calls``, ``answer``, ...); NaN where a cell is empty."""
        if value not in CELL_COLUMNS or value in ("prompt_id", "target"):
            raise ConfigError(
                f"{value!r} is not a cell value",
                hint=f"use one of {', '.join(CELL_COLUMNS[2:])}",
            )
        wide = self.cells.pivot(index="prompt_id", columns="target", values=value)
        wide = wide.reindex(index=list(self.prompts.ids), columns=list(self.targets))
        wide.columns.name = "target"
        return wide

    def empty_cells(self, targets: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(prompt_id, target) of every cell no ok call has answered, prompts in order;
        ``targets`` limits it to those columns (they need not be columns yet)."""
        columns = self.targets if targets is None else check_targets(targets) or ()
        filled = set(zip(self.cells["prompt_id"], self.cells["target"], strict=True))
        return [(p, t) for p in self.prompts.ids for t in columns if (p, t) not in filled]

    def unscored_cells(self) -> list[tuple[str, str]]:
        """(prompt_id, target) of the cells with an answer but no score by `scorer`."""
        unscored = self.cells[self.cells["scores"] == 0]
        return list(zip(unscored["prompt_id"], unscored["target"], strict=True))

    def summary(self) -> pd.DataFrame:
        """Per target: prompts answered, empty cells, scored cells, mean score, mean cost
        (as paid, and at live prices), mean latency, and the cells' sources."""
        frame = self.to_frame()
        filled = frame[frame["calls"] > 0]
        grouped = filled.groupby("target", sort=False)
        table = grouped.agg(
            filled=("prompt_id", "size"),
            scored=("scores", lambda s: int((s > 0).sum())),
            mean_score=("score", "mean"),
            mean_cost_usd=("cost_usd", "mean"),
            mean_live_cost_usd=("live_cost_usd", "mean"),
            mean_latency_ms=("latency_ms", "mean"),
        ).reindex(list(self.targets))
        table["filled"] = table["filled"].fillna(0).astype(int)
        table["scored"] = table["scored"].fillna(0).astype(int)
        table.insert(1, "empty", len(self.prompts) - table["filled"])
        counts = {t: _source_counts(filled[filled["target"] == t]) for t in self.targets}
        table["sources"] = [counts[t] for t in self.targets]
        table.index.name = "target"
        return table

    def describe(self) -> str:
        """A few lines for a terminal: the shape, the scorer, each target's row."""
        lines = [
            f"{len(self.prompts)} prompts x {len(self.targets)} targets: "
            f"{len(self.cells)} cells filled, {len(self.empty_cells())} empty; "
            f"quality = {self.scorer or '(no scores in the log)'}"
        ]
        for target, row in self.summary().iterrows():
            lines.append(
                f"  {target:<34} filled {row['filled']:>4}  empty {row['empty']:>4}  "
                f"scored {row['scored']:>4}  score {_fmt(row['mean_score'], 3)}  "
                f"cost/call ${_fmt(row['mean_live_cost_usd'], 6)} (live)  "
                f"latency {_fmt(row['mean_latency_ms'], 0)} ms  [{row['sources']}]"
            )
        return "\n".join(lines)

    # -- what routers train on ---------------------------------------------------------------

    def complete_prompts(self, targets: Iterable[str] | None = None) -> list[str]:
        """Ids of the prompts every one of ``targets`` (default: all) answered with a score:
        the rows a router can be trained and evaluated on."""
        columns = list(self.targets if targets is None else targets)
        wide = self.wide("score")[columns]
        return [str(i) for i in wide.index[wide.notna().all(axis=1)]]

    def to_recorded_dataset(
        self,
        targets: Iterable[str] | None = None,
        *,
        complete: bool = True,
        score_scale: tuple[float, float] = (0.0, 1.0),
        cost: str = "live",
        prices: Mapping[str, Price] | Gateway | None = None,
    ) -> RecordedDataset:
        """The matrix as a `RecordedDataset` (models = targets; real logged tokens and costs,
        not estimates), which `train_router`, `out_of_fold` and `evaluate_router` take.

        ``complete`` keeps only the prompts every target answered with a score (routers
        are scored counterfactually: every choice needs a known outcome). ``cost="live"``
        uses live prices (what a router's choice costs when it routes live traffic);
        ``"paid"`` what the cells' calls cost (batch rows at the batch price).
        ``prices`` (``{target: Price}``, or a `Gateway` whose price book has them) are the
        list prices a learned router estimates a request's cost with; without them its
        cost estimates are 0 and a lambda router only ever sees quality.
        """
        if cost not in ("live", "paid"):
            raise ConfigError(f"cost={cost!r}", hint='use "live" or "paid"')
        if self.scorer is None:
            raise ConfigError(
                "the matrix has no scores, so no quality to train a router on",
                hint="score its cells first (matrix.score(log, scorer)) or pick a scorer the "
                "log has scores by",
            )
        columns = list(self.targets if targets is None else targets)
        unknown = [t for t in columns if t not in self.targets]
        if unknown:
            raise ConfigError(
                f"the matrix has no target(s) {', '.join(unknown)}",
                hint=f"use among {', '.join(self.targets)}",
            )
        ids = set(self.complete_prompts(columns)) if complete else set(self.prompts.ids)
        if not ids:
            raise ConfigError(
                f"no prompt has a scored answer from every target ({', '.join(columns)})",
                hint="fill the empty cells (plan_fill / fill) and score them, or pick "
                "fewer targets",
            )
        cells = self.cells[self.cells["target"].isin(columns) & self.cells["prompt_id"].isin(ids)]
        outcomes = cells.rename(columns={"prompt_id": "item_id", "target": "model"}).assign(
            output=cells["answer"],
            cost_usd=cells["live_cost_usd" if cost == "live" else "cost_usd"],
        )
        for name in ("input_tokens", "output_tokens"):
            outcomes[name] = outcomes[name].round().astype("Int64")
        dataset = self.prompts.filter(ids=ids)
        return RecordedDataset.from_outputs(
            dataset,
            outcomes[["item_id", "model", "output", "score", "input_tokens", "output_tokens",
                      "cost_usd"]],
            score_name=self.scorer,
            score_scale=score_scale,
            source=f"replay matrix of {_where(self.source)}",
            prices=_prices(prices, columns),
            models=columns,
            notes=f"logged usage and {cost} cost per cell (means over its calls); quality = "
            f"mean {self.scorer} score",
        )  # fmt: skip

    def arrays(self, targets: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(quality, cost) arrays (prompts x targets, live prices) over the complete
        prompts, in `complete_prompts` order: what the evaluation metrics take."""
        columns = list(self.targets if targets is None else targets)
        ids = self.complete_prompts(columns)
        quality = self.wide("score").loc[ids, columns].to_numpy(dtype=float)
        cost = self.wide("live_cost_usd").loc[ids, columns].to_numpy(dtype=float)
        return quality, cost

    # -- scoring -----------------------------------------------------------------------------

    def score(
        self,
        log: CallLog,
        scorer: Scorer,
        *,
        references: Dataset | None = None,
    ) -> int:
        """Score every cell with an answer but no score by ``scorer.name`` (each cell's
        latest call), write the scores to ``log``'s ``scores`` table and return how many.

        ``references`` is a dataset whose items' references (matched by prompt text, as
        the simulated fleet matches them) the scorer compares with; without it the scorer
        sees no reference (a reference-free scorer). Call `reload` afterwards.
        """
        if self.scorer not in (None, scorer.name):
            raise ConfigError(
                f"the matrix's quality is {self.scorer!r}, not {scorer.name!r}",
                hint=f"read it with ReplayMatrix.from_log(log, scorer={scorer.name!r}) first",
            )
        by_text = {}
        if references is not None:
            by_text = {" ".join(i.prompt.lower().split()): i for i in references.items}
        items = {item.id: item for item in self.prompts.items}
        todo = self.cells if self.scorer is None else self.cells[self.cells["scores"] == 0]
        todo = todo[todo["answer"].map(lambda a: isinstance(a, str))]
        if todo.empty:
            return 0
        # One lookup of the calls' coordinates and one insert for all the scores: a lookup
        # or an insert per cell waits for the log's writer each time (tens of ms a cell).
        coordinates = {
            found[0]: dict(zip(_COORDINATES, found[1:], strict=True))
            for found in log.execute(
                f"SELECT call_id, {', '.join(_COORDINATES)} FROM calls "
                "WHERE call_id IN (SELECT unnest(?))",
                [list(todo["call_id"])],
            )
        }
        rows: list[dict[str, Any]] = []
        for row in todo.itertuples(index=False):
            item = items[row.prompt_id]
            known = by_text.get(" ".join(item.prompt.lower().split()))
            if known is not None:
                item = DatasetItem(
                    id=item.id, prompt=item.prompt, reference=known.reference,
                    category=known.category, system=item.system, history=item.history,
                    metadata=known.metadata,
                )  # fmt: skip
            provider, _, model = str(row.target).partition("/")
            response = ChatResponse(
                text=row.answer, finish_reason="stop", usage=Usage(), provider=provider,
                model=model, call_id=row.call_id,
            )  # fmt: skip
            rows += score_rows(
                [scorer.score(item, response)],
                call_id=row.call_id,
                **coordinates.get(row.call_id, {}),
            )
        log.insert("scores", rows)
        return len(rows)


def _prices(prices: Mapping[str, Price] | Gateway | None, targets: list[str]) -> dict[str, Price]:
    """``{target: Price}`` of the targets with a known price."""
    if prices is None:
        return {}
    book = getattr(prices, "prices", None)
    if book is not None and hasattr(book, "price"):  # a Gateway: ask its price book
        found = {t: book.price(*t.split("/", 1)) for t in targets}
        return {t: p for t, p in found.items() if p is not None}
    if not isinstance(prices, Mapping):
        raise ConfigError(
            f"prices is a {type(prices).__name__}",
            hint="pass {target: Price} or the Gateway whose price book has them",
        )
    return {t: prices[t] for t in targets if t in prices}


def _source_counts(frame: pd.DataFrame) -> str:
    counts: dict[str, int] = {}
    for sources in frame["sources"]:
        for source in filter(None, str(sources).split(",")):
            counts[source] = counts.get(source, 0) + 1
    return ", ".join(f"{s} {counts[s]}" for s in SOURCES if s in counts)


def _fmt(value: Any, digits: int) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if number != number else f"{number:.{digits}f}"


def _where(source: Any) -> str:
    path = getattr(source, "path", source)
    return str(path) if isinstance(path, (str, Path)) else type(source).__name__
