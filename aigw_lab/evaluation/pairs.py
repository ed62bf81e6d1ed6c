"""Labelled prompt pairs for measuring a semantic cache: two prompts and whether one's answer
answers the other (``same``).

- `load_labelled_pairs`: a user's JSONL file (``{"a": ..., "b": ..., "same": true}`` per
  line; ``id``, ``category`` and ``kind`` optional), read strictly: a malformed line is a
  `ConfigError` naming the file, the line and the fix.
- `load_near_miss_test`: the bundled held-out test set ``datasets/pairs/near_miss_test_v1.jsonl``
  (near misses in the seven categories of `NEAR_MISS_CATEGORIES`, which must not hit, and
  paraphrase controls, which must). See datasets/README.md for how it was written.
- `Rate`: a count out of a total with its Wilson 95% interval, the unit every table here
  reports in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from aigw_lab.analysis.breakdown import wilson_interval
from aigw_lab.datasets import bundled_datasets_dir
from aigw_lab.datasets.files import iter_jsonl
from aigw_lab.errors import ConfigError

__all__ = [
    "NEAR_MISS_CATEGORIES",
    "PARAPHRASE",
    "LabelledPair",
    "Rate",
    "load_labelled_pairs",
    "load_development_pairs",
    "load_near_miss_test",
    "near_miss_test_path",
]

#: The near-miss categories of issue 12, in the order tables list them.
NEAR_MISS_CATEGORIES: tuple[str, ...] = (
    "numbers",
    "units",
    "antonyms",
    "roles",
    "code",
    "dates",
    "language",
)
#: The category of the paraphrase controls (pairs that must hit).
PARAPHRASE = "paraphrase"
_TEST_FILE = "near_miss_test_v1.jsonl"
_HINT = (
    'each line is a JSON object {"a": PROMPT, "b": PROMPT, "same": true|false}, where same '
    "says whether b's answer also answers a ("
    '"id", "category" and "kind" are optional)'
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelledPair:
    """Two prompts and whether one's answer answers the other.

    The measurement caches ``b`` and asks ``a``: a hit on a pair with ``same=False`` is a
    wrong answer served (a false hit); on a pair with ``same=True`` it is a saving (recall).
    ``category`` groups pairs in tables (default ``"paraphrase"`` for same pairs and
    ``"different"`` for the others); ``kind`` is a finer label (for the bundled controls,
    the near-miss category whose feature they keep).
    """

    id: str
    a: str
    b: str
    same: bool
    category: str
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Rate:
    """``hits`` out of ``n`` with its Wilson score interval at 95% (NaN when ``n`` is 0)."""

    hits: int
    n: int

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.hits, self.n)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    def __str__(self) -> str:
        if not self.n:
            return "n/a (0 pairs)"
        low, high = self.interval
        return f"{self.rate:.3f} [{low:.3f}, {high:.3f}] ({self.hits}/{self.n})"


def near_miss_test_path() -> Path:
    """Where the bundled held-out near-miss test set lives."""
    return bundled_datasets_dir() / "pairs" / _TEST_FILE


def load_near_miss_test(path: str | Path | None = None) -> list[LabelledPair]:
    """The bundled held-out near-miss test set (or the same format at ``path``)."""
    return load_labelled_pairs(near_miss_test_path() if path is None else path)


def load_development_pairs() -> list[LabelledPair]:
    """The bundled development pairs the guards (and the verification stage) were built on,
    ``datasets/pairs/semantic_near_misses.jsonl`` (kinds ``number``, ``negation``,
    ``paraphrase``), as `LabelledPair`: set beside the held-out set, they show how far a
    result on development data carries."""
    path = bundled_datasets_dir() / "pairs" / "semantic_near_misses.jsonl"
    return [
        LabelledPair(
            id=str(record["id"]),
            a=str(record["text_a"]),
            b=str(record["text_b"]),
            same=bool(record["same_meaning"]),
            category=str(record["kind"]),
            kind=str(record["kind"]),
        )
        for _, record in iter_jsonl(path, "development pairs")
    ]


def load_labelled_pairs(path: str | Path, *, what: str = "labelled pairs") -> list[LabelledPair]:
    """Labelled pairs from a JSONL file, one object per line with ``a`` and ``b`` (non-empty
    strings) and ``same`` (true or false); ``id`` (default ``line-N``), ``category`` and
    ``kind`` (strings) are optional; other fields are ignored. A line that breaks any of
    this, a repeated id, or a file without a single pair is a `ConfigError` naming the line
    and the fix."""
    pairs: list[LabelledPair] = []
    seen: dict[str, int] = {}
    for number, record in iter_jsonl(path, what):
        where = f"{path}:{number}"
        texts = []
        for field in ("a", "b"):
            value = record.get(field)
            if not isinstance(value, str) or not value.strip():
                got = "is missing" if field not in record else f"is {value!r}"
                raise ConfigError(
                    f"{where}: field {field!r} {got}; it must be a non-empty prompt string",
                    hint=_HINT,
                )
            texts.append(value)
        same = record.get("same")
        if not isinstance(same, bool):
            got = "is missing" if "same" not in record else f"is {same!r}"
            raise ConfigError(f"{where}: field 'same' {got}; it must be true or false", hint=_HINT)
        optional = {}
        for field in ("id", "category", "kind"):
            value = record.get(field)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(
                    f"{where}: field {field!r} is {value!r}; it must be a non-empty string",
                    hint=_HINT,
                )
            optional[field] = value
        pair_id = optional["id"] or f"line-{number}"
        if pair_id in seen:
            raise ConfigError(
                f"{where}: id {pair_id!r} was already used on line {seen[pair_id]}",
                hint="give every pair its own id (or leave ids out)",
            )
        seen[pair_id] = number
        category = optional["category"] or (PARAPHRASE if same else "different")
        pairs.append(
            LabelledPair(
                id=pair_id,
                a=texts[0],
                b=texts[1],
                same=same,
                category=category,
                kind=optional["kind"] or category,
            )
        )
    if not pairs:
        raise ConfigError(f"{what} file {path} holds no pairs", hint=_HINT)
    return pairs
