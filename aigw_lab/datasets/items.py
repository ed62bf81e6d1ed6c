"""`Dataset` and `DatasetItem`: the one shape every evaluation set takes in aigw_lab.

Whatever the source (the bundled JSONL files, GSM8K, MMLU, MT-Bench, AlpacaEval, a pandas
DataFrame, a slice of the call log), a loader turns it into a `Dataset`: an ordered tuple of
items, each with a stable ``id`` (experiments key their resumable work and their scores on
it), the prompt, an optional reference answer, and the category and difficulty that the
analysis groups by.

    ds = Dataset.from_records("mine", [{"id": "q1", "prompt": "2+2?", "reference": "4"}])
    ds.sample(50, seed=0).filter(category="arithmetic")
    ds.to_frame()                       # one row per item
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.datasets.files import existing_file, iter_jsonl
from aigw_lab.errors import ConfigError
from aigw_lab.types import ChatRequest, Message

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Dataset", "DatasetItem"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_ITEM_FIELDS = ("id", "prompt", "reference", "category", "difficulty", "system", "history")


@dataclass(frozen=True, slots=True)
class DatasetItem:
    """One prompt of an evaluation set.

    ``prompt`` is the user turn to send; ``system`` an optional system prompt; ``history``
    earlier turns of a multi-turn conversation, sent before the prompt. ``reference`` is the
    reference answer scorers compare with (any JSON value: a number, a letter, a dict for
    extraction tasks), None when there is none. ``metadata`` carries everything else the
    source had (choices, answer type, distractors, source ids); it must be JSON-serialisable.
    """

    id: str
    prompt: str
    reference: Any = None
    category: str | None = None
    difficulty: str | None = None
    system: str | None = None
    history: tuple[Message, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(
                f"a dataset item has id {_short(self.id)}",
                hint="give every item a non-empty string id (experiments key their work on it)",
            )
        if not isinstance(self.prompt, str) or not self.prompt:
            raise ConfigError(
                f"dataset item {self.id!r} has no prompt text (prompt is {_short(self.prompt)})",
                hint="every item needs a non-empty string prompt",
            )
        for name in ("category", "difficulty", "system"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(
                    f"dataset item {self.id!r}: {name} is {_short(value)}, not a string",
                    hint=f"give {name} as a string, or leave it out",
                )

    def messages(self) -> tuple[Message, ...]:
        """The conversation to send: system prompt, earlier turns, then the prompt."""
        head = (Message("system", self.system),) if self.system else ()
        return (*head, *self.history, Message("user", self.prompt))

    def to_request(self, model: str, **params: Any) -> ChatRequest:
        """A chat request for this item to ``model``; ``params`` are `ChatRequest` fields
        (temperature, max_tokens, tags, metadata, ...)."""
        return ChatRequest(model=model, messages=self.messages(), **params)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the item's fields, metadata keys merged in at the top level
        (the bundled JSONL format)."""
        out: dict[str, Any] = dict(self.metadata)
        out.update(id=self.id, prompt=self.prompt, reference=self.reference)
        if self.category is not None:
            out["category"] = self.category
        if self.difficulty is not None:
            out["difficulty"] = self.difficulty
        if self.system is not None:
            out["system"] = self.system
        if self.history:
            out["history"] = [{"role": m.role, "content": m.text} for m in self.history]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetItem:
        """The inverse of `to_dict`: known keys become fields, the rest metadata."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"a dataset record is {type(data).__name__} {_short(data)}, not an object",
                hint='each record is an object like {"id": "q1", "prompt": "..."}',
            )
        if "id" not in data or "prompt" not in data:
            missing = [key for key in ("id", "prompt") if key not in data]
            raise ConfigError(
                f"a dataset record lacks {', '.join(missing)}: {_preview(data)}",
                hint="every record needs an id and a prompt",
            )
        item_id = data["id"]
        if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
            raise ConfigError(
                f"a dataset record has id {_short(item_id)}",
                hint="ids are strings (or integers), unique within the dataset",
            )
        return cls(
            id=str(item_id),
            prompt=data["prompt"],
            reference=data.get("reference"),
            category=data.get("category"),
            difficulty=data.get("difficulty"),
            system=data.get("system"),
            history=_history(data.get("history"), item_id),
            metadata=MappingProxyType({k: v for k, v in data.items() if k not in _ITEM_FIELDS}),
        )


@dataclass(frozen=True, slots=True)
class Dataset:
    """A named, ordered set of `DatasetItem` with unique ids.

    ``source`` says where it came from (a path, ``"bundled:mixed_v1"``, ``"calls:<filter>"``),
    for the experiment record. `fingerprint` identifies the content, so a resumed experiment
    can tell that its dataset changed.
    """

    name: str
    items: tuple[DatasetItem, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for item in self.items:
            if item.id in seen:
                raise ConfigError(
                    f"dataset {self.name!r} has two items with id {item.id!r}",
                    hint="item ids must be unique within a dataset",
                )
            seen.add(item.id)

    # --- building -------------------------------------------------------------------

    @classmethod
    def from_records(
        cls, name: str, records: Iterable[Mapping[str, Any]], *, source: str | None = None
    ) -> Dataset:
        """A dataset from dicts in the bundled JSONL shape (see `DatasetItem.from_dict`)."""
        return cls(name, tuple(DatasetItem.from_dict(r) for r in records), source)

    @classmethod
    def from_jsonl(cls, path: str | Path, *, name: str | None = None) -> Dataset:
        """Read a JSONL file of records in the bundled shape (one JSON object per line)."""
        path = existing_file(path, "dataset")
        items = []
        for number, record in iter_jsonl(path, "dataset"):
            try:
                items.append(DatasetItem.from_dict(record))
            except ConfigError as exc:
                raise ConfigError(f"{path}:{number}: {exc.message}", hint=exc.hint) from exc
        return cls(name or path.stem, tuple(items), str(path))

    # --- reading --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[DatasetItem]:
        return iter(self.items)

    def __getitem__(self, item_id: str) -> DatasetItem:
        """The item with this id."""
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.items)

    @property
    def categories(self) -> tuple[str, ...]:
        """The distinct categories, in first-seen order."""
        return tuple(dict.fromkeys(i.category for i in self.items if i.category is not None))

    def fingerprint(self) -> str:
        """A SHA-256 of the items' content (ids, prompts, references, conversation)."""
        digest = hashlib.sha256()
        for item in self.items:
            record = item.to_dict()
            digest.update(json.dumps(record, sort_keys=True, default=str).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    # --- deriving -------------------------------------------------------------------

    def filter(
        self,
        *,
        category: str | Sequence[str] | None = None,
        difficulty: str | Sequence[str] | None = None,
        ids: Iterable[str] | None = None,
    ) -> Dataset:
        """The items matching every given condition, in order."""
        categories = _as_set(category)
        difficulties = _as_set(difficulty)
        wanted = set(ids) if ids is not None else None
        kept = tuple(
            item
            for item in self.items
            if (categories is None or item.category in categories)
            and (difficulties is None or item.difficulty in difficulties)
            and (wanted is None or item.id in wanted)
        )
        return replace(self, items=kept)

    def sample(self, n: int, *, seed: int = 0) -> Dataset:
        """``n`` items drawn without replacement (all of them if ``n >= len``), kept in the
        dataset's order, the same for the same seed."""
        if n >= len(self.items):
            return self
        chosen = set(random.Random(seed).sample(range(len(self.items)), n))
        return replace(self, items=tuple(it for i, it in enumerate(self.items) if i in chosen))

    def head(self, n: int) -> Dataset:
        """The first ``n`` items."""
        return replace(self, items=self.items[:n])

    def to_frame(self) -> pd.DataFrame:
        """One row per item: id, prompt, reference, category, difficulty, system, metadata."""
        # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
        import pandas as pd

        return pd.DataFrame(
            {
                "item_id": [i.id for i in self.items],
                "prompt": [i.prompt for i in self.items],
                "reference": [i.reference for i in self.items],
                "category": [i.category for i in self.items],
                "difficulty": [i.difficulty for i in self.items],
                "system": [i.system for i in self.items],
                "metadata": [dict(i.metadata) for i in self.items],
            }
        )

    def to_jsonl(self, path: str | Path) -> Path:
        """Write the dataset as JSONL (readable by `from_jsonl`); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for item in self.items:
                out.write(json.dumps(item.to_dict(), ensure_ascii=False, default=str) + "\n")
        return path

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self.items)} items, source={self.source!r})"


def _as_set(value: str | Sequence[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


_ROLES = ("system", "user", "assistant")


def _history(turns: Any, item_id: Any) -> tuple[Message, ...]:
    """``history`` of a record: a list of ``{"role", "content"}`` objects with text content."""
    if turns is None:
        return ()
    hint = 'history is a list like [{"role": "user", "content": "..."}, ...], oldest first'
    if not isinstance(turns, list):
        raise ConfigError(
            f"dataset record {item_id!r}: history is {_short(turns)}, not a list", hint=hint
        )
    messages = []
    for index, turn in enumerate(turns):
        if (
            not isinstance(turn, Mapping)
            or turn.get("role") not in _ROLES
            or not isinstance(turn.get("content"), str)
        ):
            raise ConfigError(
                f"dataset record {item_id!r}: history[{index}] is {_short(turn)}, not "
                f'{{"role": one of {", ".join(_ROLES)}, "content": text}}',
                hint=hint,
            )
        messages.append(Message(role=turn["role"], content=turn["content"]))
    return tuple(messages)


def _short(value: Any) -> str:
    """``repr(value)``, cut to 80 characters: a bad value goes into a one-line message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _preview(data: Mapping[str, Any]) -> str:
    text = json.dumps(dict(data), default=str)
    return text if len(text) <= 120 else text[:117] + "..."
