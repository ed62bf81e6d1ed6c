"""The end-to-end measurement agrees with the older, similarity-only evaluation
(`semantic_cache_eval`) where both apply: on GPTCache's mock_data and on Quora pairs, the
real cache's hits are the protocol's hits, with and without the guards."""

from __future__ import annotations

import pytest

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.evaluation.cache_runs import cache_variants, gptcache_rates, qqp_rates
from aigw_lab.evaluation.semantic_cache_eval import (
    gptcache_protocol,
    load_mock_pairs,
    load_qqp_pairs,
    shared_data_dir,
    threshold_table,
)

EMBEDDER = HashingEmbedder(512)
FOLDER = shared_data_dir() / "gptcache_semantic_cache_pairs"
# The installed cache's variants: the guards, and cosine alone (its verifier off, if any).
COSINE, GUARDS = cache_variants()[:2]
THRESHOLDS = (0.9, 0.7, 0.5)


@pytest.mark.skipif(
    not (FOLDER / "mock_data.json").exists(), reason=f"no GPTCache mock_data.json in {FOLDER}"
)
@pytest.mark.parametrize(("variant", "guards"), [(COSINE, False), (GUARDS, True)])
def test_gptcache_through_the_cache_matches_the_protocol(variant, guards):
    pairs = load_mock_pairs()[:150]
    table = gptcache_protocol(pairs, EMBEDDER, THRESHOLDS, guards=guards).set_index("threshold")
    for threshold in THRESHOLDS:
        rates = gptcache_rates(pairs, EMBEDDER, variant, threshold)
        row = table.loc[threshold]
        assert (rates["recall"].hits, rates["wrong"].hits) == (row.correct, row.wrong)
        assert rates["recall"].n == 150


@pytest.fixture(scope="module")
def quora():
    """300 Quora pairs (the archive is read once for the module)."""
    if not (FOLDER / "similiar_qqp_full.json.gz").exists():
        pytest.skip(f"no Quora pairs in {FOLDER}")
    return load_qqp_pairs(sample=300, seed=1)


@pytest.mark.parametrize(("variant", "guards"), [(COSINE, False), (GUARDS, True)])
def test_quora_through_the_cache_matches_the_threshold_table(quora, variant, guards):
    pairs = quora
    table = threshold_table(pairs, EMBEDDER, THRESHOLDS, guards=guards).set_index("threshold")
    for threshold in THRESHOLDS:
        rates = qqp_rates(pairs, EMBEDDER, variant, threshold)
        row = table.loc[threshold]
        assert rates["precision"].n == row.hits
        assert rates["recall"].n == row.duplicates
        assert rates["recall"].rate == pytest.approx(row.recall)
        assert rates["false_hits"].rate == pytest.approx(row.false_hit_rate)
