"""The semantic-cache evaluation helpers: GPTCache's protocol and the threshold table, on
hand-made pairs whose answers can be worked out, and on a slice of the shared data."""

import os
from pathlib import Path

import pytest

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.evaluation.semantic_cache_eval import (
    GPTCACHE_PUBLISHED,
    gptcache_protocol,
    load_mock_pairs,
    load_qqp_pairs,
    shared_data_dir,
    threshold_table,
)

EMBEDDER = HashingEmbedder(512)
PAIRS_DIR = shared_data_dir() / "gptcache_semantic_cache_pairs"
needs_data = pytest.mark.skipif(
    not (PAIRS_DIR / "mock_data.json").exists(),
    reason=f"the shared GPTCache data is not at {PAIRS_DIR} (set AIGW_LAB_SHARED_DATA)",
)


def test_gptcache_protocol_counts_correct_and_wrong_hits():
    pairs = [
        ("What is the capital of France?", "what is the capital of france"),  # correct
        ("How do I bake bread?", "how do i bake bread"),  # correct
        ("Is it raining in Oslo?", "How do I bake bread, please?"),  # best: another origin
        ("Tell me a joke about cats", "zzzz qqqq xxxx"),  # no match at any threshold
    ]
    df = gptcache_protocol(pairs, EMBEDDER, [0.9, 0.5])
    high, low = df.iloc[0], df.iloc[1]
    assert (high.correct, high.wrong, high.misses) == (2, 0, 2)
    assert (low.correct, low.wrong, low.misses) == (2, 1, 1)
    assert low.hit_precision == pytest.approx(2 / 3)
    assert df.gptcache_correct.isna().tolist() == [False, True]  # nothing published at 0.5
    published = gptcache_protocol(pairs, EMBEDDER, [0.95, 0.9])
    assert list(published.gptcache_correct) == [425, 804]


def test_a_repeated_origin_counts_as_correct_and_guards_refuse_other_numbers():
    pairs = [
        ("Is 17 prime?", "is 17 prime"),
        ("Is 17 prime?", "Is 17 prime"),
        ("Is 18 prime?", "is 19 prime"),
    ]
    plain = gptcache_protocol(pairs, EMBEDDER, [0.5]).iloc[0]
    guarded = gptcache_protocol(pairs, EMBEDDER, [0.5], guards=True).iloc[0]
    assert (plain.correct, plain.wrong) == (2, 1)
    assert (guarded.correct, guarded.wrong, guarded.misses) == (2, 0, 1)


def test_threshold_table_precision_and_recall():
    pairs = [
        ("What is the capital of France?", "what is the capital of france", True),
        ("How do I bake bread?", "how do I bake bread", True),
        ("Reset my password", "How can I change the login secret I forgot?", True),  # missed
        ("Is it raining in Oslo?", "is it raining in oslo today", False),  # a false hit
        ("Tell me a joke", "zzzz qqqq", False),
    ]
    row = threshold_table(pairs, EMBEDDER, [0.7]).iloc[0]
    assert (row.hits, row.duplicates) == (3, 3)
    assert row.precision == pytest.approx(2 / 3) and row.recall == pytest.approx(2 / 3)
    assert row.false_hit_rate == pytest.approx(1 / 2) and row.hit_rate == pytest.approx(3 / 5)


def test_shared_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGW_LAB_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv("AIGW_LAB_SHARED_DATA")
    assert (
        shared_data_dir().resolve()
        == (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
    )


@needs_data
def test_the_protocol_on_a_slice_of_mock_data():
    pairs = load_mock_pairs()
    assert len(pairs) == 999 and sum(GPTCACHE_PUBLISHED[0.95]) <= 999
    df = gptcache_protocol(pairs[:60], EMBEDDER, [0.9, 0.6, 0.3])
    assert (df.hits == df.correct + df.wrong).all() and (df.hits + df.misses == 60).all()
    assert list(df.hits) == sorted(df.hits)  # a lower threshold never hits less


@needs_data
def test_qqp_sample_is_seeded():
    if not os.path.exists(PAIRS_DIR / "similiar_qqp_full.json.gz"):
        pytest.skip("the QQP archive is not in the shared data")
    first = load_qqp_pairs(sample=50, seed=3)
    assert first == load_qqp_pairs(sample=50, seed=3) != load_qqp_pairs(sample=50, seed=4)
    assert all(isinstance(label, bool) for _, _, label in first)


def test_near_miss_pairs_are_well_formed_and_balanced():
    from collections import Counter

    from aigw_lab.evaluation.semantic_cache_eval import guard_fires, load_near_miss_pairs

    pairs = load_near_miss_pairs()
    assert Counter(p["kind"] for p in pairs) == {"number": 30, "negation": 30, "paraphrase": 30}
    assert len({p["id"] for p in pairs}) == len(pairs)
    # The paraphrase controls keep their numbers and negations ("3" and "three" are equal),
    # so the guards must never fire on them: a firing would be a recall loss.
    assert not any(
        guard_fires(p["text_a"], p["text_b"]) for p in pairs if p["kind"] == "paraphrase"
    )
    # Every number pair differs in a number; the guard misses at most the lexical blind
    # spots (a prefix such as "illegal" is not a negation marker).
    assert all(guard_fires(p["text_a"], p["text_b"]) for p in pairs if p["kind"] == "number")
    missed = [
        p["id"]
        for p in pairs
        if p["kind"] == "negation" and not guard_fires(p["text_a"], p["text_b"])
    ]
    assert missed == ["negation-022"]  # "Is it legal" / "Is it illegal"


def test_near_miss_table_with_the_real_embedder(minilm):
    """The measurement in docs/semantic_cache.md: with all-MiniLM-L6-v2 at the default
    threshold 0.9, near misses that differ only in a number or a negation hit without the
    guards, and the guards stop them without costing the paraphrases a hit."""
    from aigw_lab.evaluation.semantic_cache_eval import load_near_miss_pairs, near_miss_table

    table = near_miss_table(load_near_miss_pairs(), minilm, [0.9])
    row = table.set_index("kind")
    wrong_without = row.loc[["number", "negation"], "hits_without_guards"].sum()
    wrong_with = row.loc[["number", "negation"], "hits_with_guards"].sum()
    assert wrong_without >= 20  # the embedding alone cannot tell them apart
    assert wrong_with <= 2
    assert (
        row.loc["paraphrase", "hits_with_guards"]
        == row.loc["paraphrase", "hits_without_guards"]
        > 0
    )
