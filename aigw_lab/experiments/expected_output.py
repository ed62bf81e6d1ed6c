"""How many tokens a unit of an experiment is expected to answer with, for its cost estimate.

The estimate used to assume every answer runs to ``max_tokens`` (or 256 tokens), which put
it at 11-12 times the actual cost of the bundled examples: their answers are a few tokens
long. Now each unit's output is taken from the best source at hand, in this order:

``recorded``
    the target's provider is a replay (`aigw_lab.sim.replay.ReplayProvider`) that has
    the answer to this item: its recorded (or logged) usage, which is what the run will log.
``log_item``
    the call log holds ok calls of this provider/model on this item id (an earlier run, any
    experiment on a dataset of the same name): their mean output tokens.
``reference_log``
    the item has a reference answer, and the log holds ok calls of this model on at least
    `MIN_CALIBRATION_ITEMS` other items of the dataset that have one too: the reference's
    tokens times the model's ratio of answer tokens to reference tokens on those (a chatty
    model that explains its answers gets a ratio above 1 from a small trial run).
``log_dataset``
    the log holds ok calls of this model on at least `MIN_CALIBRATION_ITEMS` items of the
    dataset, but too few of them with a reference to give a ratio (some datasets have
    references for some categories only): the model's mean answer on those items.
``reference``
    the item has a reference answer: its tokens (characters / 4, rounded up; JSON for a
    non-string reference). Right for prompts that ask for a short answer, as the bundled
    datasets do; low for a model that adds explanations until the log has calls to
    calibrate it (``reference_log``).
``log_model``
    the log holds ok calls of this provider/model (any prompt): their mean output tokens.
``max_tokens``
    the request's ``max_tokens``: an upper bound, the only thing known.
``default``
    none of the above: `DEFAULT_OUTPUT_TOKENS` (256).

Every expectation is capped at the request's ``max_tokens`` when it sets one. Cache hits
(attempt 0) and failed calls are not counted from the log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aigw_lab.tokens import CHARS_PER_TOKEN

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.store import CallLog

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "MIN_CALIBRATION_ITEMS",
    "OUTPUT_SOURCES",
    "OutputExpectations",
    "reference_tokens",
]

#: Output tokens assumed per call when nothing better is known and ``max_tokens`` is unset.
DEFAULT_OUTPUT_TOKENS = 256
#: Items of the dataset a model must have answered in the log before its answer/reference
#: ratio is used (fewer give too noisy a ratio).
MIN_CALIBRATION_ITEMS = 3
#: The sources of an expected output, best first (see the module docstring).
OUTPUT_SOURCES = (
    "recorded",
    "log_item",
    "reference_log",
    "log_dataset",
    "reference",
    "log_model",
    "max_tokens",
    "default",
)

# Per provider/model: summed output tokens and ok calls, per item id of an experiment on a
# dataset of this name (None: another dataset's item, whose id may name something else, or
# a call outside experiments).
_LOGGED_OUTPUTS = """
SELECT c.provider_name, c.request_model,
       CASE WHEN e.dataset_name = $dataset THEN c.item_id END,
       sum(c.output_tokens)::DOUBLE, count(*)
FROM calls AS c
LEFT JOIN (SELECT DISTINCT experiment_id, dataset_name FROM experiments) AS e
  ON c.experiment_id = e.experiment_id
WHERE c.status = 'ok' AND c.attempt >= 1 AND c.output_tokens IS NOT NULL
  AND c.provider_name IN (SELECT unnest($providers))
  AND c.request_model IN (SELECT unnest($models))
GROUP BY ALL
"""


def reference_tokens(item: DatasetItem) -> int | None:
    """Tokens of the item's reference answer (characters / 4, rounded up, at least 1; a
    non-string reference as compact JSON), or None when it has none."""
    reference = item.reference
    if reference is None:
        return None
    if isinstance(reference, str):
        text = reference
    else:
        try:
            text = json.dumps(reference, ensure_ascii=False, separators=(", ", ": "))
        except (TypeError, ValueError):  # not JSON after all: its text is a fair stand-in
            text = str(reference)
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass(slots=True)
class _Logged:
    """One provider/model's past ok calls: mean output tokens per item, and over all."""

    by_item: dict[str, float] = field(default_factory=dict)
    tokens: float = 0.0
    calls: int = 0
    #: answer tokens / reference tokens over this dataset's logged items (None: too few).
    ratio: float | None = None
    #: mean answer tokens over this dataset's logged items (None: too few).
    dataset_mean: float | None = None


class OutputExpectations:
    """The expected output tokens of an experiment's units, from the sources above.

    Built once per estimate (one query of ``log``, restricted to ``addresses``, the
    ``(provider, model)`` pairs of the targets); `expect` then answers per unit. ``items``
    are the dataset's items (for the reference ratio); logged calls count as answers to an
    item only when their experiment's dataset is called ``dataset_name`` too (ids such as
    "q1" recur across datasets). ``default`` replaces `DEFAULT_OUTPUT_TOKENS`.
    """

    def __init__(
        self,
        *,
        log: CallLog | None,
        addresses: Iterable[tuple[str, str]],
        items: Iterable[DatasetItem],
        dataset_name: str | None = None,
        default: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        self.default = default
        self.dataset_name = dataset_name
        self._references = {item.id: reference_tokens(item) for item in items}
        self._logged: dict[tuple[str, str], _Logged] = {}
        pairs = sorted(set(addresses))
        if log is not None and pairs:
            self._read_log(log, pairs)

    def _read_log(self, log: CallLog, pairs: list[tuple[str, str]]) -> None:
        rows = log.execute(
            _LOGGED_OUTPUTS,
            {
                "providers": sorted({p for p, _ in pairs}),
                "models": sorted({m for _, m in pairs}),
                "dataset": self.dataset_name,
            },
        )
        wanted = set(pairs)
        for provider, model, item_id, tokens, calls in rows:
            if (provider, model) not in wanted or not calls:
                continue
            logged = self._logged.setdefault((provider, model), _Logged())
            logged.tokens += tokens
            logged.calls += calls
            if item_id is not None:
                logged.by_item[item_id] = tokens / calls
        for logged in self._logged.values():
            in_dataset = [
                (tokens, self._references[item_id])
                for item_id, tokens in logged.by_item.items()
                if item_id in self._references
            ]
            answered = [(tokens, ref) for tokens, ref in in_dataset if ref]
            if len(answered) >= MIN_CALIBRATION_ITEMS:
                logged.ratio = sum(t for t, _ in answered) / sum(r for _, r in answered)
            if len(in_dataset) >= MIN_CALIBRATION_ITEMS:
                logged.dataset_mean = sum(t for t, _ in in_dataset) / len(in_dataset)

    def expect(
        self,
        provider: str | None,
        model: str | None,
        item: DatasetItem,
        params: Mapping[str, Any],
    ) -> tuple[int, str]:
        """``(output tokens, source)`` expected of ``item`` sent to ``provider``/``model``
        with request ``params``, from every source but ``recorded`` (which needs the
        provider: the estimate asks it first). ``provider`` None: an address that is not a
        provider's model (a routing policy), so the log cannot be asked about it."""
        cap = params.get("max_tokens")
        logged = self._logged.get((provider, model)) if provider is not None else None
        reference = self._references.get(item.id)
        if reference is None and item.id not in self._references:
            reference = reference_tokens(item)  # an item from outside the dataset given
        tokens: float
        if logged is not None and item.id in logged.by_item:
            tokens, source = logged.by_item[item.id], "log_item"
        elif reference is not None and logged is not None and logged.ratio is not None:
            tokens, source = reference * logged.ratio, "reference_log"
        elif logged is not None and logged.dataset_mean is not None:
            tokens, source = logged.dataset_mean, "log_dataset"
        elif reference is not None:
            tokens, source = reference, "reference"
        elif logged is not None and logged.calls:
            tokens, source = logged.tokens / logged.calls, "log_model"
        elif cap:
            return int(cap), "max_tokens"
        else:
            return self.default, "default"
        expected = max(1, math.ceil(tokens))
        return (min(expected, int(cap)) if cap else expected), source
