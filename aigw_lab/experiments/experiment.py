"""`Experiment`: what to compare - a dataset, the targets, the scorers, how many repetitions -
and the *units* it is made of.

A unit is one (item, target, repetition). It is the grain of everything the runner does: it
sends one logical call per unit, scores it, skips it on resume once it is done, and the
results hold one row per unit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from aigw_lab.errors import ConfigError
from aigw_lab.experiments.targets import Target, check_params, coerce_targets

if TYPE_CHECKING:
    from aigw_lab.datasets.items import Dataset, DatasetItem
    from aigw_lab.scorers.base import Scorer

__all__ = ["Experiment", "Unit", "default_experiment_id", "item_hash"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


class Unit(NamedTuple):
    """One piece of an experiment's work: ``item`` sent to ``target``, ``repetition``-th time
    (0-based)."""

    item: DatasetItem
    target: Target
    repetition: int

    @property
    def key(self) -> tuple[str, str, int]:
        """``(item_id, target name, repetition)``: how the call log identifies the unit."""
        return (self.item.id, self.target.label, self.repetition)


@dataclass(frozen=True)
class Experiment:
    """A comparison of ``targets`` on ``dataset``, graded by ``scorers``.

    ``repetitions`` sends each item to each target that many times (sampling noise);
    ``concurrency`` bounds the calls in flight; ``budget_usd`` caps what the experiment may
    spend, over all its runs (the runner refuses to start when the estimate exceeds what is
    left, and stops scheduling once it is spent); ``params`` are request fields every target
    sends unless it sets its own (``max_tokens``, ``temperature``, ...).

    ``provenance`` says how the dataset and gateway were chosen when the experiment object
    cannot know it (an experiment file's dataset reference, categories, sample size and
    seed, the simulated fleet's settings): it changes nothing in the run and is recorded in
    the log's ``config_json`` for reports.

    ``experiment_id`` defaults to a stable id derived from ``name``, so running the same
    experiment again resumes it instead of starting over.
    """

    name: str
    dataset: Dataset
    targets: Sequence[Target | str | Mapping[str, Any]]
    scorers: Sequence[Scorer] = ()
    repetitions: int = 1
    concurrency: int = 8
    budget_usd: float | None = None
    experiment_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    provenance: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(
                f"experiment name {self.name!r} is empty", hint="give the experiment a name"
            )
        if not hasattr(self.dataset, "items") or not hasattr(self.dataset, "fingerprint"):
            raise ConfigError(
                f"experiment {self.name!r}: dataset is a {type(self.dataset).__name__}",
                hint="pass an aigw_lab.datasets.Dataset (e.g. bundled_dataset())",
            )
        if not self.dataset.items:
            raise ConfigError(
                f"experiment {self.name!r}: dataset {self.dataset.name!r} has no items",
                hint="check the dataset's filters (categories, sample)",
            )
        object.__setattr__(self, "targets", coerce_targets(self.targets))
        object.__setattr__(self, "scorers", tuple(self.scorers))
        _check_scorers(self.scorers)
        _check_int(self.repetitions, "repetitions")
        _check_int(self.concurrency, "concurrency")
        if self.budget_usd is not None and (
            isinstance(self.budget_usd, bool)
            or not isinstance(self.budget_usd, (int, float))
            or self.budget_usd != self.budget_usd  # NaN: every comparison false, no limit
            or self.budget_usd < 0
        ):
            raise ConfigError(
                f"budget_usd = {self.budget_usd!r} is not a non-negative number of dollars",
                hint="write budget_usd = 0.50, or leave it out for no limit",
            )
        if self.unit_count > MAX_UNITS:
            raise ConfigError(
                f"experiment {self.name!r} has {self.unit_count:,} units ({len(self.dataset)} "
                f"items x {len(self.targets)} targets x {self.repetitions} repetitions), over "
                f"the {MAX_UNITS:,} one run lists in memory",
                hint="lower repetitions, sample the dataset, or split it into experiments",
            )
        if not isinstance(self.params, Mapping):
            raise ConfigError("experiment params must be a mapping of request fields")
        params = MappingProxyType(dict(self.params))
        check_params(params, f"experiment {self.name!r} params")
        object.__setattr__(self, "params", params)
        if not isinstance(self.provenance, Mapping):
            raise ConfigError("experiment provenance must be a mapping")
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))
        if self.experiment_id is None:
            object.__setattr__(self, "experiment_id", default_experiment_id(self.name))
        elif not isinstance(self.experiment_id, str) or not self.experiment_id:
            raise ConfigError(
                f"experiment_id {self.experiment_id!r} is not a non-empty string",
                hint="leave it out to derive one from the name",
            )

    # --- derived ------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The experiment id (``experiment_id``, never None after construction)."""
        return self.experiment_id or default_experiment_id(self.name)

    @property
    def unit_count(self) -> int:
        return len(self.dataset.items) * len(self.targets) * self.repetitions

    def units(self) -> Iterator[Unit]:
        """Every unit, repetition-major then item then target: a run stopped early (budget,
        Ctrl-C) leaves every target with about the same items done, so partial results
        still compare like with like."""
        for repetition in range(self.repetitions):
            for item in self.dataset.items:
                for target in self.targets:  # type: ignore[union-attr]
                    yield Unit(item, target, repetition)  # type: ignore[arg-type]

    def target_records(self) -> list[dict[str, Any]]:
        """Each target's name, model and effective params, JSON-ready."""
        return [t.describe(self.params) for t in self.targets]  # type: ignore[union-attr]

    def config(self) -> dict[str, Any]:
        """The experiment's definition as JSON-ready data (the ``config_json`` of its record).

        ``item_hashes`` (a short content hash per item id) lets a resumed run tell an item
        whose content changed from one that was only added or removed.
        """
        return {
            "name": self.name,
            "experiment_id": self.id,
            "dataset": {
                "name": self.dataset.name,
                "source": self.dataset.source,
                "fingerprint": self.dataset.fingerprint(),
                "items": len(self.dataset.items),
            },
            "item_hashes": {item.id: item_hash(item) for item in self.dataset.items},
            "targets": self.target_records(),
            "scorers": [s.name for s in self.scorers],
            "repetitions": self.repetitions,
            "concurrency": self.concurrency,
            "budget_usd": self.budget_usd,
            "params": dict(self.params),
            **({"provenance": dict(self.provenance)} if self.provenance else {}),
        }


def default_experiment_id(name: str) -> str:
    """A stable, readable id for an experiment name: its slug plus 8 hex digits of the
    name's SHA-256 (names that slug alike, "A b" and "a-b", still get distinct ids)."""
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")[:48] or "experiment"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def item_hash(item: DatasetItem) -> str:
    """12 hex digits identifying an item's content (prompt, reference, conversation)."""
    text = json.dumps(item.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


#: The most units one experiment may have: a run lists every unit (and its key) in memory.
MAX_UNITS = 10_000_000


def _check_int(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} = {value!r} must be a positive integer", hint=f"e.g. {key} = 1")


def _check_scorers(scorers: Iterable[Any]) -> None:
    names: set[str] = set()
    for scorer in scorers:
        if not callable(getattr(scorer, "ascore", None)) or not isinstance(
            getattr(scorer, "name", None), str
        ):
            raise ConfigError(
                f"scorer {scorer!r} is not a Scorer",
                hint="pass aigw_lab.scorers.Scorer objects (or names in a TOML spec)",
            )
        if scorer.name in names:
            raise ConfigError(
                f"two scorers are named {scorer.name!r}",
                hint="scorer names key the scores table: give each scorer its own name",
            )
        names.add(scorer.name)
