"""The end-to-end measurement through a real `SemanticCache` and the false-hit budget
chooser, on synthetic labelled pairs whose similarities are chosen (`ChosenSimilarity`)."""

from __future__ import annotations

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.evaluation.budget import budget_variants, setting_for_false_hit_budget
from aigw_lab.evaluation.cache_runs import (
    cache_variants,
    overall_rates,
    rate_table,
    served,
    supports_verifier,
)
from aigw_lab.evaluation.pairs import LabelledPair
from aigw_lab.gateway.semantic_cache import SemanticCache

from ._doubles import ChosenSimilarity, VerifyingCache, word

# The installed cache's variants: the guards, and cosine alone (its verifier off, if any).
COSINE, GUARDS = cache_variants()[:2]


def labelled(embedder, similarity, same, count, *, category=None):
    pairs = []
    for _ in range(count):
        a, b = embedder.pair(similarity)
        pairs.append(
            LabelledPair(
                id=f"{a}|{b}",
                a=a,
                b=b,
                same=same,
                category=category or ("paraphrase" if same else "different"),
            )
        )
    return pairs


def test_served_goes_through_the_real_cache_threshold_and_guards():
    embedder = ChosenSimilarity()
    close = labelled(embedder, 0.95, True, 2)
    far = labelled(embedder, 0.6, False, 2)
    a, b = embedder.pair(0.99, a="Is 17 a prime number?", b="Is 19 a prime number?")
    numbers = [LabelledPair(id="n", a=a, b=b, same=False, category="numbers")]
    pairs = close + far + numbers
    assert served(pairs, embedder, COSINE, 0.9).tolist() == [True, True, False, False, True]
    # The cache's number guard refuses the near miss at any similarity.
    assert served(pairs, embedder, GUARDS, 0.9).tolist() == [True, True, False, False, False]
    assert served(pairs, embedder, GUARDS, 0.5).tolist() == [True, True, True, True, False]
    assert not served(pairs, embedder, GUARDS, 0.96).any()


def test_each_pair_is_measured_alone():
    # Pair 2's stored prompt is pair 1's asked prompt: were the cache shared, pair 2's
    # question would find pair 1's entry.
    embedder = ChosenSimilarity()
    a, b = embedder.pair(0.5)
    pairs = [
        LabelledPair(id="1", a=a, b=b, same=False, category="x"),
        LabelledPair(id="2", a=b, b=a, same=False, category="x"),
    ]
    assert served(pairs, embedder, GUARDS, 0.9).tolist() == [False, False]


def test_rates_per_group_and_overall():
    embedder = ChosenSimilarity()
    pairs = labelled(embedder, 0.95, True, 3) + labelled(embedder, 0.95, False, 1, category="x")
    pairs += labelled(embedder, 0.5, False, 3, category="x")
    hit = served(pairs, embedder, GUARDS, 0.9)
    rows = {r["group"]: r for r in rate_table(pairs, hit)}
    assert (rows["paraphrase"]["rate"].hits, rows["paraphrase"]["rate"].n) == (3, 3)
    assert rows["paraphrase"]["same"] and not rows["x"]["same"]
    assert (rows["x"]["rate"].hits, rows["x"]["rate"].n) == (1, 4)
    overall = overall_rates(pairs, hit)
    assert (overall["false_hits"].hits, overall["false_hits"].n) == (1, 4)
    assert (overall["recall"].hits, overall["recall"].n) == (3, 3)
    assert (overall["precision"].hits, overall["precision"].n) == (3, 4)


def scenario(embedder):
    """100 pairs that differ (90 far apart, 10 at 0.82) and 100 the same (50 at 0.95, 50
    at 0.8)."""
    return (
        labelled(embedder, 0.4, False, 90)
        + labelled(embedder, 0.82, False, 10)
        + labelled(embedder, 0.95, True, 50)
        + labelled(embedder, 0.8, True, 50)
    )


def test_the_budget_picks_the_most_permissive_setting_within_its_upper_bound():
    embedder = ChosenSimilarity()
    pairs = scenario(embedder)
    strict = setting_for_false_hit_budget(
        pairs, embedder, budget=0.05, thresholds=[0.75, 0.85, 0.9, 0.97], variants=[GUARDS]
    )
    # 0.75 serves 10/100 false hits; 0.85 and 0.9 none (upper bound 0.037) with recall 1/2
    # (the tie goes to the higher threshold); 0.97 none and no recall.
    chosen = strict.chosen
    assert chosen is not None and (chosen.threshold, chosen.variant) == (0.9, "guards")
    assert (chosen.false_hits.hits, chosen.recall.hits) == (0, 50)
    assert chosen.false_hits.high == pytest.approx(0.0370, abs=1e-4)
    assert [s.threshold for s in strict.settings] == [0.75, 0.85, 0.9, 0.97]
    assert "threshold = 0.9" in strict.toml() and strict.toml().startswith("[semantic_cache]")
    assert "meets  <- chosen" in strict.explain()
    # A looser budget admits the 10% false hits (upper bound 0.174) for full recall.
    loose = setting_for_false_hit_budget(
        pairs, embedder, budget=0.2, thresholds=[0.75, 0.85, 0.9, 0.97], variants=[GUARDS]
    )
    assert loose.chosen is not None and loose.chosen.threshold == 0.75
    assert (loose.chosen.false_hits.hits, loose.chosen.recall.hits) == (10, 100)


def test_the_point_estimate_alone_does_not_meet_a_budget():
    # 3 false hits in 100 is 3%, under a 5% budget, but its upper bound (0.085) is not.
    embedder = ChosenSimilarity()
    pairs = (
        labelled(embedder, 0.4, False, 97)
        + labelled(embedder, 0.92, False, 3)
        + labelled(embedder, 0.95, True, 20)
    )
    choice = setting_for_false_hit_budget(
        pairs, embedder, budget=0.05, thresholds=[0.9], variants=[GUARDS]
    )
    assert choice.chosen is None and choice.toml() == ""
    assert "lowest 95% upper bound is 0.085" in choice.reason


def test_too_few_pairs_that_differ_cannot_prove_a_budget():
    embedder = ChosenSimilarity()
    pairs = labelled(embedder, 0.4, False, 30) + labelled(embedder, 0.95, True, 30)
    choice = setting_for_false_hit_budget(
        pairs, embedder, budget=0.05, thresholds=[0.9], variants=[GUARDS]
    )
    assert choice.chosen is None
    assert "with 30 pairs that differ" in choice.reason and "at least 73" in choice.reason


@pytest.mark.parametrize("budget", [0, 1, -0.1, 1.5, True, "0.05", float("nan")])
def test_a_budget_outside_zero_to_one_is_refused(budget):
    embedder = ChosenSimilarity()
    pairs = scenario(embedder)
    with pytest.raises(ConfigError, match="false-hit budget"):
        setting_for_false_hit_budget(pairs, embedder, budget=budget, variants=[GUARDS])


def test_pairs_of_one_kind_only_are_refused():
    embedder = ChosenSimilarity()
    with pytest.raises(ConfigError, match="none with same=false"):
        setting_for_false_hit_budget(labelled(embedder, 0.9, True, 5), embedder)
    with pytest.raises(ConfigError, match="none with same=true"):
        setting_for_false_hit_budget(labelled(embedder, 0.9, False, 5), embedder)
    with pytest.raises(ConfigError, match="thresholds"):
        setting_for_false_hit_budget(scenario(embedder), embedder, thresholds=[1.2])


def test_the_verifier_variant_appears_when_the_cache_takes_a_verifier():
    if not supports_verifier(SemanticCache):  # before the verification stage is merged
        assert [v.name for v in cache_variants(SemanticCache)] == ["cosine", "guards"]
    variants = cache_variants(VerifyingCache)
    assert [v.name for v in variants] == ["cosine", "guards", "verifier"]
    assert variants[0].options["verifier"] is None and variants[1].options == {"verifier": None}
    assert variants[2].verifier and variants[2].options == {}
    assert [v.name for v in budget_variants(VerifyingCache)] == ["guards", "verifier"]
    # Each variant names the [semantic_cache] lines that select it (the key takes a string).
    assert variants[0].config[-1] == variants[1].config[-1] == 'verifier = "off"'
    assert variants[2].config[-1] == 'verifier = "lexical"'


def test_the_budget_chooses_verification_when_only_it_meets_the_budget():
    embedder = ChosenSimilarity()
    pairs = labelled(embedder, 0.4, False, 80) + labelled(embedder, 0.95, True, 40)
    for n in range(20):  # near misses the similarity cannot tell apart; the verifier can
        a, b = embedder.pair(0.97, a=f"refuse this {word(n)}", b=f"keep this {word(n)}")
        pairs.append(LabelledPair(id=a, a=a, b=b, same=False, category="different"))
    choice = setting_for_false_hit_budget(
        pairs, embedder, budget=0.05, thresholds=[0.9], cache_class=VerifyingCache
    )
    by_variant = {s.variant: s for s in choice.settings}
    assert by_variant["guards"].false_hits.hits == 20
    assert by_variant["verifier"].false_hits.hits == 0
    assert choice.chosen is by_variant["verifier"] and choice.chosen.verifier
    assert choice.toml().splitlines()[1:] == [
        "threshold = 0.9",
        "guard_numbers = true",
        "guard_negation = true",
        'verifier = "lexical"',
    ]


class Counting(ChosenSimilarity):
    """Counts the model calls and the texts they embed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def embed(self, texts):
        self.calls.append(len(texts))
        return super().embed(texts)


def test_every_text_is_embedded_once_in_one_batch():
    embedder = Counting()
    pairs = scenario(embedder)
    choice = setting_for_false_hit_budget(
        pairs, embedder, budget=0.05, thresholds=[0.75, 0.85, 0.9, 0.97], variants=[GUARDS, COSINE]
    )
    assert len(choice.settings) == 8
    assert embedder.calls == [2 * len(pairs)]


def test_the_explanation_breaks_the_chosen_setting_down_by_category():
    embedder = ChosenSimilarity()
    pairs = (
        labelled(embedder, 0.4, False, 60, category="numbers")
        + labelled(embedder, 0.4, False, 59, category="dates")
        + labelled(embedder, 0.93, False, 1, category="dates")
        + labelled(embedder, 0.95, True, 20)
    )
    choice = setting_for_false_hit_budget(
        pairs, embedder, budget=0.05, thresholds=[0.9, 0.94], variants=[GUARDS]
    )
    assert choice.chosen is not None and choice.chosen.threshold == 0.94
    assert [(c, same, r.hits, r.n) for c, same, r in choice.chosen.by_category] == [
        ("numbers", False, 0, 60),
        ("dates", False, 0, 60),
        ("paraphrase", True, 20, 20),
    ]
    text = choice.explain()
    assert "By category, the chosen setting (threshold 0.94, guards):" in text
    assert "  dates                false hits 0.000 [0.000, 0.060] (0/60)" in text
    # Without a setting that meets the budget, the strictest is broken down instead.
    none = setting_for_false_hit_budget(
        pairs, embedder, budget=0.01, thresholds=[0.9, 0.94], variants=[GUARDS]
    )
    assert none.chosen is None and "the strictest setting (threshold 0.94" in none.explain()
