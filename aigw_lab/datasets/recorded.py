"""`RecordedDataset`: an evaluation set together with the real recorded outcomes of several
models on it (their outputs and quality labels), for studying routers, cascades and caches
offline on what real models actually answered.

    rec = load_routellm("gsm8k")                 # GPT-4 vs Mixtral, correctness labels
    rec.label("gsm8k/0", "gpt-4-1106-preview")   # 1.0
    rec.wide_scores()                            # item x model
    train, test = rec.split(0.2, seed=0)         # deterministic, by item

The recordings carry no token usage, so token counts are an **estimate**, ceil(characters / 4)
(`estimate_tokens`), and costs are those estimated tokens times the model's list price
(`LIST_PRICES`, USD per million tokens). Quality labels and output texts are real.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.errors import ConfigError
from aigw_lab.providers.base import Price

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHARS_PER_TOKEN",
    "LIST_PRICES",
    "PRICE_BASIS",
    "OUTCOME_COLUMNS",
    "RecordedDataset",
    "RecordedOutcome",
    "estimate_tokens",
]

#: Characters per token of the token *estimate* (a common rule of thumb for English text
#: with GPT-style tokenizers; real counts differ by model and language).
CHARS_PER_TOKEN = 4

#: Columns of `RecordedDataset.outcomes`, one row per (item, model).
OUTCOME_COLUMNS = (
    "item_id",
    "model",
    "output",
    "score",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)

# (model, input USD/1M tokens, output USD/1M tokens, basis). From the shared data README's
# "suggested list prices", which it says to check before use: official list prices at the
# time of each recording for the proprietary models; Together.ai prices (as in RouterBench's
# routers/common.py and RouteLLM) for Mixtral, Mistral-7B and Llama-2-70b; and a price by
# size class on hosted APIs for the other open models (an assumption). PaLM 2 chat-bison and
# the GSM8K paper's GPT-3 models have no price here: their costs stay unknown (None).
_PRICE_TABLE: tuple[tuple[str, float, float, str], ...] = (
    ("gpt-4-1106-preview", 10.0, 30.0, "OpenAI list price"),
    ("gpt4_1106_preview", 10.0, 30.0, "OpenAI list price (AlpacaEval's name)"),
    ("gpt-4-0314", 30.0, 60.0, "OpenAI list price"),
    ("claude-2.1", 8.0, 24.0, "Anthropic list price"),
    ("claude-1", 8.0, 24.0, "Anthropic list price"),
    ("claude-instant-1", 0.8, 2.4, "Anthropic list price"),
    ("claude-instant-1.2", 0.8, 2.4, "Anthropic list price"),
    ("gpt-3.5-turbo-1106", 1.0, 2.0, "OpenAI list price"),
    ("gpt-3.5-turbo", 1.5, 2.0, "OpenAI list price (gpt-3.5-turbo-0613)"),
    ("Mixtral-8x7B-Instruct-v0.1", 0.6, 0.6, "Together.ai price (RouterBench, RouteLLM)"),
    ("Mistral-7B-Instruct-v0.1", 0.2, 0.2, "Together.ai price (RouterBench)"),
    ("Llama-2-70b-chat", 0.9, 0.9, "Together.ai price (RouterBench)"),
    ("Starling-LM-7B-alpha", 0.2, 0.2, "assumed: 7-9B size class"),
    ("openchat_3.5", 0.2, 0.2, "assumed: 7-9B size class"),
    ("OpenHermes-2.5-Mistral-7B", 0.2, 0.2, "assumed: 7-9B size class"),
    ("gemma-7b-it", 0.2, 0.2, "assumed: 7-9B size class"),
    ("FuseChat-Llama-3.1-8B-Instruct", 0.2, 0.2, "assumed: 7-9B size class"),
    ("llama-13b", 0.3, 0.3, "assumed: 13-14B size class"),
    ("Qwen-14B-Chat", 0.3, 0.3, "assumed: 13-14B size class"),
    ("vicuna-33b-v1.3", 0.8, 0.8, "assumed: 33B size class"),
    ("FuseChat-Llama-3.2-1B-Instruct", 0.06, 0.06, "assumed: 1B size class"),
)

#: Prices of the recorded models in USD per million tokens (see `PRICE_BASIS` for where
#: each comes from).
LIST_PRICES: Mapping[str, Price] = MappingProxyType(
    {model: Price(p_in, p_out) for model, p_in, p_out, _ in _PRICE_TABLE}
)
#: Where each price of `LIST_PRICES` comes from.
PRICE_BASIS: Mapping[str, str] = MappingProxyType(
    {model: basis for model, _, _, basis in _PRICE_TABLE}
)


def estimate_tokens(text: str | None) -> int | None:
    """An **estimate** of a text's token count, ceil(characters / `CHARS_PER_TOKEN`); None
    for no text. The recordings have no usage data, so this is all there is."""
    if text is None:
        return None
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _item_chars(item: DatasetItem) -> int:
    """Characters of everything an item sends: system prompt, earlier turns, the prompt."""
    return sum(len(message.text) for message in item.messages())


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedOutcome:
    """What one model did on one item: its output (None when the source recorded none),
    its quality label on the dataset's score scale (None when unjudged), the estimated token
    counts and the estimated cost in USD (None when the model's price is unknown)."""

    item_id: str
    model: str
    output: str | None
    score: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None


class RecordedDataset:
    """A `Dataset` plus the recorded outcomes of several models on its items.

    ``outcomes`` is a tidy DataFrame with the `OUTCOME_COLUMNS` (score NaN = no label, cost
    NaN = unknown price). ``score_name``/``score_scale`` say what a score is (for example
    ``("correct", (0, 1))`` or ``("judge_grade", (1, 10))``); ``prices`` maps each priced
    model to its `Price`; ``source`` says where the recording came from; ``notes`` holds the
    caveats a user should know (estimated tokens, judge biases, choices made when loading).
    """

    def __init__(
        self,
        dataset: Dataset,
        outcomes: pd.DataFrame,
        *,
        score_name: str,
        score_scale: tuple[float, float],
        source: str,
        prices: Mapping[str, Price] | None = None,
        models: Iterable[str] | None = None,
        notes: str = "",
    ) -> None:
        missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
        if missing:
            raise ConfigError(
                f"the outcomes of {dataset.name!r} lack column(s) {', '.join(missing)}",
                hint=f"outcomes need the columns {', '.join(OUTCOME_COLUMNS)}",
            )
        self.dataset = dataset
        self.outcomes = outcomes.loc[:, list(OUTCOME_COLUMNS)].reset_index(drop=True)
        self.models: tuple[str, ...] = (
            tuple(models) if models is not None else tuple(dict.fromkeys(outcomes["model"]))
        )
        unlisted = set(self.outcomes["model"]) - set(self.models)
        if unlisted:
            raise ConfigError(
                f"the outcomes of {dataset.name!r} name model(s) {', '.join(sorted(unlisted))} "
                f"missing from models={self.models}",
                hint="list every model of the outcomes, or leave models out",
            )
        self.prices: dict[str, Price] = dict(prices or {})
        self.score_name = score_name
        self.score_scale = score_scale
        self.source = source
        self.notes = notes
        self._positions: dict[tuple[str, str], int] | None = None
        self._known_items = frozenset(dataset.ids)

    @classmethod
    def from_outputs(
        cls,
        dataset: Dataset,
        frame: pd.DataFrame,
        *,
        score_name: str,
        score_scale: tuple[float, float],
        source: str,
        prices: Mapping[str, Price] | None = None,
        models: Iterable[str] | None = None,
        notes: str = "",
    ) -> RecordedDataset:
        """Build from a frame with ``item_id, model, output, score``, estimating the token
        counts (`estimate_tokens` of the item's messages and of the output) and the cost
        (estimated tokens times ``prices``, default `LIST_PRICES`; a missing output adds no
        output cost; an unpriced model gets NaN). Columns ``input_tokens``,
        ``output_tokens`` and ``cost_usd`` already in ``frame`` are kept as they are."""
        # lazy: numpy and pandas load in ~0.4 s; only building a frame needs them
        import numpy as np
        import pandas as pd

        frame = frame.copy()
        prices = dict(LIST_PRICES if prices is None else prices)
        if "input_tokens" not in frame.columns:
            chars = {item.id: _item_chars(item) for item in dataset.items}
            frame["input_tokens"] = np.ceil(frame["item_id"].map(chars) / CHARS_PER_TOKEN)
            frame["input_tokens"] = frame["input_tokens"].astype("Int64")
        if "output_tokens" not in frame.columns:
            lengths = frame["output"].map(lambda t: len(t) if isinstance(t, str) else np.nan)
            frame["output_tokens"] = np.ceil(lengths.astype(float) / CHARS_PER_TOKEN)
            frame["output_tokens"] = frame["output_tokens"].astype("Int64")
        if "cost_usd" not in frame.columns:
            per_in = frame["model"].map({m: p.input_per_mtok for m, p in prices.items()})
            per_out = frame["model"].map({m: p.output_per_mtok for m, p in prices.items()})
            tokens_in = frame["input_tokens"].astype(float)
            tokens_out = frame["output_tokens"].astype(float).fillna(0.0)
            frame["cost_usd"] = (
                tokens_in * per_in.astype(float) + tokens_out * per_out.astype(float)
            ) / 1e6
        frame["score"] = pd.to_numeric(frame["score"], errors="coerce").astype(float)
        frame["output"] = frame["output"].astype(object).where(frame["output"].notna(), None)
        used = tuple(models) if models is not None else tuple(dict.fromkeys(frame["model"]))
        return cls(
            dataset,
            frame,
            score_name=score_name,
            score_scale=score_scale,
            source=source,
            prices={m: prices[m] for m in used if m in prices},
            models=used,
            notes=notes,
        )

    # --- the dataset ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def items(self) -> tuple[DatasetItem, ...]:
        return self.dataset.items

    @property
    def ids(self) -> tuple[str, ...]:
        return self.dataset.ids

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[DatasetItem]:
        return iter(self.dataset)

    def __repr__(self) -> str:
        return (
            f"RecordedDataset({self.name!r}, {len(self)} items, {len(self.models)} models, "
            f"score={self.score_name!r} on {self.score_scale}, source={self.source!r})"
        )

    # --- looking up -----------------------------------------------------------------------

    def outcome(self, item_id: str, model: str) -> RecordedOutcome:
        """What ``model`` did on item ``item_id``; a `ConfigError` if either is unknown."""
        row = self._position(item_id, model)
        frame = self.outcomes
        values = [frame.iat[row, frame.columns.get_loc(c)] for c in OUTCOME_COLUMNS[2:]]
        output, score, input_tokens, output_tokens, cost = (_plain(v) for v in values)
        return RecordedOutcome(
            item_id=item_id,
            model=model,
            output=output,
            score=None if score is None else float(score),
            input_tokens=None if input_tokens is None else int(input_tokens),
            output_tokens=None if output_tokens is None else int(output_tokens),
            cost_usd=None if cost is None else float(cost),
        )

    def label(self, item_id: str, model: str) -> float | None:
        """The recorded score of ``model`` on ``item_id`` (None when it has no label)."""
        return self.outcome(item_id, model).score

    def has_outcome(self, item_id: str, model: str) -> bool:
        """Whether a recorded outcome of ``model`` on ``item_id`` exists."""
        return (item_id, model) in self._index()

    def _index(self) -> dict[tuple[str, str], int]:
        if self._positions is None:
            pairs = zip(self.outcomes["item_id"], self.outcomes["model"], strict=True)
            self._positions = {pair: row for row, pair in enumerate(pairs)}
        return self._positions

    def _position(self, item_id: str, model: str) -> int:
        row = self._index().get((item_id, model))
        if row is not None:
            return row
        if model not in self.models:
            raise ConfigError(
                f"{self.name!r} has no recordings of model {model!r}",
                hint=f"use one of: {', '.join(self.models)}",
            )
        if item_id not in self._known_items:
            raise ConfigError(
                f"{self.name!r} has no item {item_id!r}",
                hint=f"use an id from .ids (for example {self.ids[0]!r})" if self.ids else None,
            )
        raise ConfigError(
            f"{self.name!r} has no recorded outcome of {model!r} on item {item_id!r}",
            hint="check .has_outcome(item_id, model) first; not every model answered every item",
        )

    # --- views ----------------------------------------------------------------------------

    def wide_scores(self) -> pd.DataFrame:
        """Scores as an item x model table (index: item ids in dataset order; NaN = none)."""
        wide = self.outcomes.pivot(index="item_id", columns="model", values="score")
        wide = wide.reindex(index=list(self.ids), columns=list(self.models))
        wide.columns.name = "model"
        return wide

    def mean_scores(self) -> pd.Series:
        """Each model's mean score over its labelled outcomes."""
        return self.outcomes.groupby("model", sort=False)["score"].mean().reindex(self.models)

    def summary(self) -> pd.DataFrame:
        """Per model: outcomes, labelled outcomes, mean score, total and mean estimated cost,
        mean estimated output tokens."""
        grouped = self.outcomes.groupby("model", sort=False)
        table = grouped.agg(
            outcomes=("item_id", "size"),
            labelled=("score", "count"),
            mean_score=("score", "mean"),
            total_cost_usd=("cost_usd", lambda s: s.sum(min_count=1)),
            mean_cost_usd=("cost_usd", "mean"),
            mean_output_tokens_est=("output_tokens", "mean"),
        )
        return table.reindex(self.models)

    # --- deriving -------------------------------------------------------------------------

    def subset(self, ids: Iterable[str]) -> RecordedDataset:
        """The items ``ids`` (kept in dataset order) with their outcomes."""
        wanted = set(ids)
        unknown = wanted - self._known_items
        if unknown:
            some = ", ".join(sorted(map(repr, unknown))[:3])
            raise ConfigError(
                f"{self.name!r} has no item(s) {some}"
                + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""),
                hint="pass ids from .ids",
            )
        kept = self.outcomes[self.outcomes["item_id"].isin(wanted)]
        return RecordedDataset(
            self.dataset.filter(ids=wanted),
            kept,
            score_name=self.score_name,
            score_scale=self.score_scale,
            source=self.source,
            prices=self.prices,
            models=self.models,
            notes=self.notes,
        )

    def split(
        self, test_fraction: float = 0.2, seed: int = 0
    ) -> tuple[RecordedDataset, RecordedDataset]:
        """(train, test) by item: round(len * test_fraction) items go to test.

        Deterministic: an item's side depends only on its id and ``seed`` (items are ranked
        by a hash of both), never on the dataset's order or the Python hash seed, so a
        router trained on train is evaluated on the same test items in every run.
        """
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(
                f"test_fraction={test_fraction!r} is not between 0 and 1",
                hint="use a fraction such as 0.2",
            )
        ranked = sorted(self.ids, key=lambda item_id: _rank(seed, item_id))
        test_ids = set(ranked[: round(len(ranked) * test_fraction)])
        train_ids = [i for i in self.ids if i not in test_ids]
        return self.subset(train_ids), self.subset(test_ids)


def _rank(seed: int, item_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x1f{item_id}".encode(), digest_size=8).digest()


def _plain(value: Any) -> Any:
    """A DataFrame cell as a plain value: NaN and NA become None."""
    if value is None:
        return None
    try:
        if value != value:  # NaN
            return None
    except TypeError:  # pd.NA refuses comparison
        return None
    return value
