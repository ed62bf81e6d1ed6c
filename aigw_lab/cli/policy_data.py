"""What the ``policy`` verbs share about their data: the recorded datasets a ``--data`` name
stands for, the train / calibration / test split, and the embedder a command uses. Its own
module so that ``policy`` and ``policy export`` both import it at the top (neither imports
the other's internals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab.errors import ConfigError

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset
    from aigw_lab.policy.learned import LearnedRouter

__all__ = ["DATASETS", "load_data", "split_three", "held_out_split", "use_cached_embedder"]

DATASETS = ("routellm/mmlu", "routellm/gsm8k", "routellm/mt_bench", "arena_bench", "alpaca_eval")


def load_data(name: str, data_dir: str | None = None) -> RecordedDataset:
    """The recorded dataset a ``--data`` name stands for."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.datasets import recorded_sources as sources

    if (
        name.startswith("routellm/")
        and name.removeprefix("routellm/") in sources.ROUTELLM_BENCHMARKS
    ):
        return sources.load_routellm(name.removeprefix("routellm/"), data_dir=data_dir)  # type: ignore[arg-type]
    if name == "arena_bench":
        return sources.load_arena_bench(data_dir=data_dir)
    if name == "alpaca_eval":
        return sources.load_alpaca_eval(include_reference=False, data_dir=data_dir)
    raise ConfigError(f"unknown dataset {name!r}", hint=f"use one of {', '.join(DATASETS)}")


def split_three(
    data: RecordedDataset, test_fraction: float, calibration_fraction: float, seed: int
) -> tuple[RecordedDataset, RecordedDataset, RecordedDataset]:
    """(train, calibration, test): test first (``test_fraction`` of all items), then the
    calibration items (``calibration_fraction`` of all items) from the rest."""
    if not 0 < test_fraction < 1 or not 0 < calibration_fraction < 1 - test_fraction:
        raise ConfigError(
            f"fractions test={test_fraction}, calibration={calibration_fraction} are invalid",
            hint="use two fractions in (0, 1) that add up to less than 1, e.g. 0.2 and 0.2",
        )
    rest, test = data.split(test_fraction, seed=seed)
    train, calibration = rest.split(calibration_fraction / (1 - test_fraction), seed=seed + 1)
    return train, calibration, test


def held_out_split(
    router: LearnedRouter, data_name: str | None, data_dir: str | None
) -> RecordedDataset:
    """The held-out (test) items of the data ``router`` was trained on, split as `train`
    split them (the policy file records the fractions and seed)."""
    info = router.train_info
    name = data_name or info.get("data")
    if not name:
        raise ConfigError(
            f"policy {router.name!r} does not say which data it was trained on",
            hint="pass --data",
        )
    data = load_data(str(name), data_dir)
    _, _, test = split_three(
        data,
        float(info.get("test_fraction", 0.2)),
        float(info.get("calibration_fraction", 0.2)),
        int(info.get("seed", 0)),
    )
    return test


def use_cached_embedder(router: LearnedRouter, cache_dir: str | None) -> None:
    """Give ``router`` one embedder for the whole command, behind the on-disk embedding
    cache: prompts embedded by an earlier command are read back, and the model is loaded
    (once) only if some prompt is new."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.embedding_cache import CachedEmbedder
    from aigw_lab.policy.learned.features import cached_embedder, make_embedder

    current = router._embedder  # an embedder set by --embedder, else none loaded yet
    if isinstance(current, CachedEmbedder):
        current = current.embedder
    router.embedder = cached_embedder(current or make_embedder(router.embedder_name), cache_dir)
