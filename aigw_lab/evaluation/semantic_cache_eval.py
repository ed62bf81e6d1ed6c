"""How well does a semantic cache tell paraphrases from different questions? Measured on
labelled public data, per similarity threshold, as notebook-ready DataFrames.

- `gptcache_protocol`: GPTCache's benchmark on its ``mock_data.json`` (999 paraphrase
  pairs): every ``origin`` goes in the cache, every ``similar`` is a query; a hit is
  *correct* when its best match is its own origin, *wrong* when it is another one.
- `threshold_table`: labelled pairs (such as Quora Question Pairs): at each threshold, how
  many pairs would hit, and how many of those hits are true duplicates (precision), and
  how many true duplicates hit (recall).
- `near_miss_table`: the number and negation guards measured where they matter: on the
  bundled near-miss pairs (``datasets/pairs/semantic_near_misses.jsonl``: questions that
  differ only in a number or a negation, and paraphrase controls that keep them), and on
  the slice of labelled pairs where a guard fires (`guard_fires`).

The data lives outside the repository (`shared_data_dir`); nothing is copied into it.

    python -m aigw_lab.evaluation.semantic_cache_eval --qqp 2000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aigw_lab.datasets import bundled_datasets_dir
from aigw_lab.embeddings import Embedder, SentenceTransformerEmbedder
from aigw_lab.gateway.semantic_cache import same_meaning_markers

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GPTCACHE_PUBLISHED",
    "DEFAULT_THRESHOLDS",
    "shared_data_dir",
    "load_mock_pairs",
    "load_qqp_pairs",
    "gptcache_protocol",
    "threshold_table",
    "load_near_miss_pairs",
    "near_miss_table",
    "guard_fires",
]

#: GPTCache's published results on mock_data.json (999 queries), threshold -> (correct hits,
#: wrong hits), from the README of zilliztech/GPTCache ``examples/benchmark``. Their score is
#: their own (ONNX ALBERT embedding, distance-based evaluation), not a cosine similarity.
GPTCACHE_PUBLISHED: dict[float, tuple[int, int]] = {
    0.95: (425, 25),
    0.90: (804, 77),
    0.80: (904, 92),
}
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.95, 0.90, 0.85, 0.80, 0.75, 0.70)
_PAIRS_DIR = "gptcache_semantic_cache_pairs"


def shared_data_dir() -> Path:
    """The shared data folder: ``$AIGW_LAB_SHARED_DATA``, else ``../shared/data`` next to
    the repository root."""
    override = os.environ.get("AIGW_LAB_SHARED_DATA")
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def load_mock_pairs(path: str | Path | None = None) -> list[tuple[str, str]]:
    """GPTCache's ``mock_data.json`` as ``(origin, similar)`` pairs."""
    path = Path(path) if path else shared_data_dir() / _PAIRS_DIR / "mock_data.json"
    with open(path, encoding="utf-8") as f:
        return [(item["origin"], item["similar"]) for item in json.load(f)]


def load_qqp_pairs(
    path: str | Path | None = None, *, sample: int | None = 2000, seed: int = 0
) -> list[tuple[str, str, bool]]:
    """Quora Question Pairs from GPTCache's ``similiar_qqp_full.json.gz`` (a tar.gz of one
    JSON array) as ``(text_a, text_b, is_duplicate)``; ``sample`` pairs drawn with ``seed``
    (None: all 80,854)."""
    path = Path(path) if path else shared_data_dir() / _PAIRS_DIR / "similiar_qqp_full.json.gz"
    with tarfile.open(path) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(".json"))
        handle = archive.extractfile(member)
        assert handle is not None  # a .json member is a regular file
        items = json.load(handle)
    pairs = [(i["text_a"], i["text_b"], bool(int(i["label"]))) for i in items]
    if sample is not None and sample < len(pairs):
        pairs = random.Random(seed).sample(pairs, sample)
    return pairs


def gptcache_protocol(
    pairs: Sequence[tuple[str, str]],
    embedder: Embedder,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    guards: bool = False,
    top_k: int = 4,
) -> pd.DataFrame:
    """GPTCache's benchmark protocol: cache every origin, query with every ``similar``.

    Per threshold: ``hits`` (best match at or above it), ``correct`` (the best match is the
    query's own origin, or a copy of the same text: mock_data repeats some origins), ``wrong``
    (another origin), ``misses`` and ``hit_precision``. With ``guards``, the best of the
    ``top_k`` matches above the threshold that passes the semantic cache's number and
    negation guards is taken, as `SemanticCache` does. GPTCache's published counts are in
    ``gptcache_correct``/``gptcache_wrong`` where they exist (NaN elsewhere).
    """
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    origins = [o for o, _ in pairs]
    queries = [s for _, s in pairs]
    similarity = embedder.embed(queries) @ embedder.embed(origins).T
    k = min(top_k, len(origins))
    ranked = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    markers = [same_meaning_markers(t) for t in origins] if guards else []
    query_markers = [same_meaning_markers(t) for t in queries] if guards else []
    rows = []
    for threshold in thresholds:
        correct = wrong = 0
        for q, candidates in enumerate(ranked):
            best = None
            for c in candidates:
                if similarity[q, c] < threshold:
                    break
                if guards and markers[c] != query_markers[q]:
                    continue
                best = c
                break
            if best is None:
                continue
            if origins[best] == origins[q]:
                correct += 1
            else:
                wrong += 1
        hits = correct + wrong
        published = GPTCACHE_PUBLISHED.get(round(threshold, 4))
        rows.append(
            {
                "threshold": threshold,
                "queries": len(queries),
                "hits": hits,
                "correct": correct,
                "wrong": wrong,
                "misses": len(queries) - hits,
                "hit_precision": correct / hits if hits else float("nan"),
                "gptcache_correct": published[0] if published else float("nan"),
                "gptcache_wrong": published[1] if published else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def threshold_table(
    pairs: Sequence[tuple[str, str, bool]],
    embedder: Embedder,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    guards: bool = False,
) -> pd.DataFrame:
    """For labelled pairs ``(text_a, text_b, is_duplicate)``: at each threshold, the share
    of pairs whose similarity reaches it (``hit_rate``), the share of those that are true
    duplicates (``precision``), the share of duplicates that reach it (``recall``) and the
    share of non-duplicates that do (``false_hit_rate``). ``guards`` applies the semantic
    cache's number and negation guards on top of the threshold."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    a = embedder.embed([p[0] for p in pairs])
    b = embedder.embed([p[1] for p in pairs])
    similarity = np.einsum("ij,ij->i", a, b)
    label = np.array([p[2] for p in pairs], dtype=bool)
    allowed = np.ones(len(pairs), dtype=bool)
    if guards:
        allowed = np.array(
            [same_meaning_markers(x) == same_meaning_markers(y) for x, y, _ in pairs], dtype=bool
        )
    positives, negatives = int(label.sum()), int((~label).sum())
    rows = []
    for threshold in thresholds:
        hit = (similarity >= threshold) & allowed
        hits, true_hits = int(hit.sum()), int((hit & label).sum())
        rows.append(
            {
                "threshold": threshold,
                "pairs": len(pairs),
                "duplicates": positives,
                "hits": hits,
                "hit_rate": hits / len(pairs) if len(pairs) else float("nan"),
                "precision": true_hits / hits if hits else float("nan"),
                "recall": true_hits / positives if positives else float("nan"),
                "false_hit_rate": (hits - true_hits) / negatives if negatives else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def load_near_miss_pairs(path: str | Path | None = None) -> list[dict[str, object]]:
    """The bundled near-miss pairs: ``{id, kind, text_a, text_b, same_meaning}`` with kind
    ``number`` or ``negation`` (different questions that differ only in a number or a
    negation: a hit would be wrong) or ``paraphrase`` (the same question reworded, numbers
    and negations kept: a hit is right)."""
    if path is None:
        path = bundled_datasets_dir() / "pairs" / "semantic_near_misses.jsonl"
    with Path(path).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def guard_fires(text_a: str, text_b: str) -> bool:
    """True when the number or negation guard would refuse ``text_b`` as a hit for
    ``text_a`` (their numbers or negation counts differ)."""
    return same_meaning_markers(text_a) != same_meaning_markers(text_b)


def near_miss_table(
    pairs: Sequence[dict[str, object]],
    embedder: Embedder,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> pd.DataFrame:
    """Per kind of pair and threshold: how many pairs would hit without the guards and with
    them. For pairs that differ in meaning those hits are wrong answers served; for
    paraphrases they are right ones. Also the median similarity of each kind, which shows
    how close the embedding puts the near misses."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    a = embedder.embed([str(p["text_a"]) for p in pairs])
    b = embedder.embed([str(p["text_b"]) for p in pairs])
    similarity = np.einsum("ij,ij->i", a, b)
    kinds = np.array([str(p["kind"]) for p in pairs])
    same = np.array([bool(p["same_meaning"]) for p in pairs])
    allowed = np.array([not guard_fires(str(p["text_a"]), str(p["text_b"])) for p in pairs])
    rows = []
    for kind in dict.fromkeys(kinds.tolist()):
        mask = kinds == kind
        for threshold in thresholds:
            hit = mask & (similarity >= threshold)
            rows.append(
                {
                    "kind": kind,
                    "same_meaning": bool(same[mask].all()),
                    "threshold": threshold,
                    "pairs": int(mask.sum()),
                    "median_similarity": float(np.median(similarity[mask])),
                    "hits_without_guards": int(hit.sum()),
                    "hits_with_guards": int((hit & allowed).sum()),
                }
            )
    return pd.DataFrame(rows)


def _markdown(df: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return "" if value != value else f"{value:.3f}".rstrip("0").rstrip(".")
        return str(value)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run both evaluations with the bundled all-MiniLM-L6-v2 and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=None, help="sentence-transformers model (default MiniLM)"
    )
    parser.add_argument("--qqp", type=int, default=2000, help="QQP pairs to sample (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--guard-slice",
        type=int,
        default=20000,
        help="QQP pairs to sample for the guard slice, the pairs where a guard fires (0: skip)",
    )
    args = parser.parse_args(argv)

    embedder = SentenceTransformerEmbedder(args.model)
    mock = load_mock_pairs()
    thresholds = (0.95, 0.90, 0.85, 0.80, 0.75, 0.70)
    near = load_near_miss_pairs()
    print(f"## Near-miss pairs ({len(near)}, bundled), {embedder.name}\n")
    print(_markdown(near_miss_table(near, embedder, thresholds)))
    if args.guard_slice:
        sample = load_qqp_pairs(sample=args.guard_slice, seed=args.seed)
        fired = [p for p in sample if guard_fires(p[0], p[1])]
        print(
            f"\n## QQP guard slice: the {len(fired)} of {len(sample)} sampled pairs where a "
            f"guard fires ({sum(p[2] for p in fired)} duplicates), no guards\n"
        )
        print(_markdown(threshold_table(fired, embedder, thresholds)))
    print(f"## GPTCache protocol on mock_data.json ({len(mock)} queries), {embedder.name}\n")
    print(_markdown(gptcache_protocol(mock, embedder, thresholds)))
    print("\nwith the number and negation guards:\n")
    print(_markdown(gptcache_protocol(mock, embedder, thresholds, guards=True)))
    if args.qqp:
        qqp = load_qqp_pairs(sample=args.qqp, seed=args.seed)
        print(f"\n## QQP, {len(qqp)} pairs sampled with seed {args.seed}, {embedder.name}\n")
        print(_markdown(threshold_table(qqp, embedder, thresholds)))
        print("\nwith the number and negation guards:\n")
        print(_markdown(threshold_table(qqp, embedder, thresholds, guards=True)))


if __name__ == "__main__":
    main()
