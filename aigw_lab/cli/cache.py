"""`aigw-lab cache`: tools for the semantic cache.

    aigw-lab cache tune --pairs pairs.jsonl --false-hit-budget 0.05

``tune`` measures, on the user's labelled pairs (JSONL: ``{"a": ..., "b": ..., "same":
true|false}`` per line), every threshold of a grid with verification off and (when the
installed cache has it) on, end to end through a real semantic cache, and picks the most
permissive setting whose false-hit rate's 95% upper bound is within the budget
(`aigw_lab.evaluation.budget`). It prints the table and the ``[semantic_cache]`` lines to
paste. Exit 0 with a setting, 1 when no setting meets the budget, 2 for a mistake in the
command (a bad file, a budget outside (0, 1)).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import describe, finite_float, help_without_subcommand
from aigw_lab.cli._verbs import VERBS

__all__ = ["register", "run_tune", "build_embedder", "EXIT_NO_SETTING"]

#: Exit status when the command ran but no setting meets the budget.
EXIT_NO_SETTING = 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cache",
        help=VERBS["cache"],
        description="Tools for the semantic cache.",
    )
    verbs = parser.add_subparsers(dest="cache_command", metavar="SUBCOMMAND")
    tune = verbs.add_parser(
        "tune",
        help="the semantic-cache setting that meets a false-hit budget on your labelled pairs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=describe(
            "Measure the semantic cache on your labelled pairs, end to end (the real cache "
            "and embedding model: for each pair, prompt b is cached and prompt a is asked), "
            "at every threshold of a grid, with verification off and, when the installed "
            "cache has a verification stage, on. Print each setting's false-hit rate and "
            "recall with Wilson 95% intervals, and the most permissive setting whose "
            "false-hit rate's 95% upper bound is within the budget, as [semantic_cache] lines "
            "to paste into the gateway config.",
            'PAIRS is JSONL, one object per line: {"a": PROMPT, "b": PROMPT, "same": true} '
            "where same says whether b's answer also answers a (optional: id, category). "
            "At 5% the budget needs at least 73 pairs with same=false to be provable.",
            "Exit status: 0 with a setting, 1 when no setting meets the budget, 2 for a "
            "mistake in the command.",
        ),
    )
    tune.add_argument(
        "--pairs", type=Path, required=True, metavar="FILE", help="labelled pairs (JSONL)"
    )
    tune.add_argument(
        "--false-hit-budget",
        type=finite_float(),
        metavar="RATE",
        default=0.05,
        help="the highest false-hit rate you accept, in (0, 1) (default: %(default)s)",
    )
    tune.add_argument(
        "--thresholds",
        type=finite_float(),
        metavar="T",
        nargs="+",
        default=None,
        help="cosine thresholds to try (default: 0.7 to 0.98)",
    )
    tune.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="embedding model (default: all-MiniLM-L6-v2, offline)",
    )
    tune.add_argument(
        "--embedding-cache",
        type=Path,
        metavar="DIR",
        default=None,
        help="where embeddings are cached (default: the user cache folder)",
    )
    tune.set_defaults(func=run_tune)
    parser.set_defaults(func=help_without_subcommand(parser))


def build_embedder(model: str | None, cache_dir: Path | None) -> Any:
    """The embedder ``tune`` measures with: the model, its vectors cached on disk."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.embedding_cache import CachedEmbedder, EmbeddingCache
    from aigw_lab.embeddings import SentenceTransformerEmbedder

    return CachedEmbedder(SentenceTransformerEmbedder(model), EmbeddingCache(cache_dir))


def run_tune(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.errors import ConfigError
    from aigw_lab.evaluation.budget import setting_for_false_hit_budget
    from aigw_lab.evaluation.cache_runs import GRID
    from aigw_lab.evaluation.pairs import load_labelled_pairs

    budget = args.false_hit_budget
    if not 0 < budget < 1:
        raise ConfigError(
            f"--false-hit-budget {budget:g} is outside (0, 1)",
            hint="give the rate you accept as a fraction, e.g. --false-hit-budget 0.05 for 5%",
        )
    thresholds = tuple(args.thresholds) if args.thresholds else GRID
    bad = [t for t in thresholds if not 0 < t <= 1]
    if bad:
        raise ConfigError(
            f"--thresholds {bad[0]:g} is not a cosine similarity in (0, 1]",
            hint="give thresholds such as --thresholds 0.85 0.9 0.95",
        )
    pairs = load_labelled_pairs(args.pairs)
    different = sum(not p.same for p in pairs)
    print(
        f"{len(pairs)} labelled pairs from {args.pairs}: {different} that differ, "
        f"{len(pairs) - different} the same; false-hit budget {budget:g}"
    )
    choice = setting_for_false_hit_budget(
        pairs,
        build_embedder(args.model, args.embedding_cache),
        budget=budget,
        thresholds=thresholds,
    )
    print(choice.explain())
    if choice.chosen is None:
        return EXIT_NO_SETTING
    print("\nPaste into your gateway config:\n")
    print(choice.toml(model=args.model))
    return 0
