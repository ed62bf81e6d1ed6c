"""Scorers from outside aigw_lab: `FunctionScorer` wraps any Python function, and
`RecordedLabel` reads labels that came with a recorded dataset."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aigw_lab.errors import ConfigError
from aigw_lab.scorers.base import Score, Scorer

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.types import ChatResponse

__all__ = ["FunctionScorer", "RecordedLabel", "LabelSource"]


class FunctionScorer(Scorer):
    """A scorer from a function ``fn(item, response)`` returning a bool (1.0 / 0.0), a
    number, None (could not score) or a ready `Score` (renamed to ``name``). A function of
    one argument gets the answer text only, so ``FunctionScorer(lambda text: "sorry" not
    in text, "no_apology")`` works. Async functions are awaited by `ascore`.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        *,
        scale: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not callable(fn):
            raise ConfigError(
                f"FunctionScorer needs a function, got {type(fn).__name__}",
                hint="pass fn(item, response) -> bool | float | Score",
            )
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")
        if self.name == "<lambda>":
            raise ConfigError(
                "a FunctionScorer over a lambda needs a name",
                hint='pass one: FunctionScorer(lambda text: ..., "my_check")',
            )
        self.scale = scale  # type: ignore[misc]  # per instance: a function has its own scale
        self._text_only = _takes_one_argument(fn)
        self._is_async = inspect.iscoroutinefunction(fn)

    def _call(self, item: DatasetItem, response: ChatResponse) -> Any:
        return self.fn(response.text) if self._text_only else self.fn(item, response)

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        if self._is_async:
            raise ConfigError(
                f"scorer {self.name!r} wraps an async function",
                hint="call ascore (the experiment runner does)",
            )
        return self._to_score(self._call(item, response))

    async def ascore(self, item: DatasetItem, response: ChatResponse) -> Score:
        result = self._call(item, response)
        if inspect.isawaitable(result):
            result = await result
        return self._to_score(result)

    def _to_score(self, result: Any) -> Score:
        if isinstance(result, Score):
            return Score(
                self.name,
                result.value,
                label=result.label,
                comment=result.comment,
                details=result.details,
                judge_trace_id=result.judge_trace_id,
                kind=result.kind,
            )
        if result is None:
            return Score(self.name, None)
        if isinstance(result, bool):
            return Score(self.name, 1.0 if result else 0.0, label="pass" if result else "fail")
        if isinstance(result, (int, float)) and math.isfinite(result):
            return Score(self.name, float(result))
        raise ConfigError(
            f"scorer {self.name!r} returned {result!r}",
            hint="return a bool, a finite number, None or a Score",
        )


def _takes_one_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume (item, response)
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    return len(positional) == 1 and not has_varargs


class LabelSource(Protocol):
    """Anything with precomputed labels, such as
    ``aigw_lab.datasets.recorded.RecordedDataset``: ``label(item_id, model)`` is the
    recorded score of ``model``'s answer to the item, or None when there is none."""

    def label(self, item_id: str, model: str) -> float | None: ...


class RecordedLabel(Scorer):
    """Scores from labels recorded with a dataset (for example, per-model correctness that
    came with a published benchmark's outputs): looks up
    ``recorded.label(item.id, response.model)``. ``kind`` is ``"recorded"``; an item or model
    without a label scores None."""

    kind = "recorded"

    def __init__(self, recorded: LabelSource, *, name: str = "recorded") -> None:
        if not callable(getattr(recorded, "label", None)):
            raise ConfigError(
                f"RecordedLabel needs an object with a label(item_id, model) method, "
                f"got {type(recorded).__name__}",
                hint="pass a RecordedDataset (aigw_lab.datasets.recorded)",
            )
        self.recorded = recorded
        self.name = name

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        value = self.recorded.label(item.id, response.model)
        if value is None:
            return Score(
                self.name,
                None,
                label="no_label",
                comment=f"no recorded label for item {item.id!r} and model {response.model!r}",
                kind="recorded",
            )
        return Score(self.name, float(value), kind="recorded", details={"model": response.model})
