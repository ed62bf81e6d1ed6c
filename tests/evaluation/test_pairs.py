"""Labelled pairs: the strict loader, `Rate`'s Wilson intervals, and the bundled held-out
near-miss test set's shape."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.evaluation.budget import pairs_needed
from aigw_lab.evaluation.pairs import (
    NEAR_MISS_CATEGORIES,
    PARAPHRASE,
    Rate,
    load_labelled_pairs,
    load_near_miss_test,
)


def write(tmp_path, *lines: str):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"a": "Is 17 prime?", "b": "Is 19 prime?", "same": False})


def test_a_valid_file_loads_with_defaults(tmp_path):
    path = write(
        tmp_path,
        GOOD,
        "",
        json.dumps({"id": "p1", "a": "x y", "b": "y x", "same": True, "category": "mine"}),
    )
    first, second = load_labelled_pairs(path)
    assert (first.id, first.same, first.category, first.kind) == (
        "line-1",
        False,
        "different",
        "different",
    )
    assert (second.id, second.category, second.a, second.b) == ("p1", "mine", "x y", "y x")


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("{not json", ":2 is not valid JSON"),
        ("[1, 2]", ":2 holds a list, not an object"),
        (json.dumps({"b": "x", "same": True}), ":2: field 'a' is missing"),
        (json.dumps({"a": "  ", "b": "x", "same": True}), ":2: field 'a' is '  '"),
        (json.dumps({"a": "x", "b": 3, "same": True}), ":2: field 'b' is 3"),
        (json.dumps({"a": "x", "b": "y"}), ":2: field 'same' is missing"),
        (json.dumps({"a": "x", "b": "y", "same": "true"}), ":2: field 'same' is 'true'"),
        (json.dumps({"a": "x", "b": "y", "same": 1}), ":2: field 'same' is 1"),
        (json.dumps({"a": "x", "b": "y", "same": True, "id": 7}), ":2: field 'id' is 7"),
        (json.dumps({"a": "x", "b": "y", "same": True, "id": "line-1"}), "already used on line 1"),
    ],
)
def test_a_malformed_line_is_a_typed_error_naming_it(tmp_path, bad, needle):
    path = write(tmp_path, GOOD, bad)
    with pytest.raises(ConfigError) as raised:
        load_labelled_pairs(path)
    assert needle in raised.value.message
    assert raised.value.hint  # says what a line must be


def test_an_empty_or_missing_file_is_a_typed_error(tmp_path):
    with pytest.raises(ConfigError, match="holds no pairs"):
        load_labelled_pairs(write(tmp_path, "", "  "))
    with pytest.raises(ConfigError, match="does not exist"):
        load_labelled_pairs(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    ("hits", "n", "low", "high"),
    [
        (5, 10, 0.2366, 0.7634),  # the textbook example
        (0, 10, 0.0, 0.2775),  # z^2 / (n + z^2)
        (10, 10, 0.7225, 1.0),
        (1, 100, 0.0018, 0.0545),
        (81, 263, 0.2553, 0.3662),
    ],
)
def test_rate_carries_the_wilson_interval(hits, n, low, high):
    rate = Rate(hits, n)
    assert rate.rate == pytest.approx(hits / n)
    assert rate.low == pytest.approx(low, abs=1e-4)
    assert rate.high == pytest.approx(high, abs=1e-4)
    assert str(rate).endswith(f"({hits}/{n})")


def test_an_empty_rate_is_nan_and_says_so():
    rate = Rate(0, 0)
    assert rate.rate != rate.rate and rate.high != rate.high
    assert str(rate) == "n/a (0 pairs)"


def test_pairs_needed_is_where_zero_false_hits_first_fit_the_budget():
    needed = pairs_needed(0.05)
    assert needed == 73
    assert Rate(0, needed).high <= 0.05 < Rate(0, needed - 1).high
    for budget in (0.01, 0.1, 0.3):
        n = pairs_needed(budget)
        assert Rate(0, n).high <= budget < Rate(0, n - 1).high


# --- the bundled held-out set ------------------------------------------------------------


def normalised(text: str) -> str:
    # Case is kept: `\\d+` and `\\D+` are different regexes (code-014).
    return " ".join(text.split())


def test_the_held_out_set_covers_every_category_with_at_least_40_pairs():
    pairs = load_near_miss_test()
    counts = Counter(p.category for p in pairs)
    assert set(counts) == {*NEAR_MISS_CATEGORIES, PARAPHRASE}
    assert all(counts[c] >= 40 for c in NEAR_MISS_CATEGORIES), counts
    assert counts[PARAPHRASE] >= 200
    # Near misses must not hit, controls must; every control says which feature it keeps.
    assert all(p.same == (p.category == PARAPHRASE) for p in pairs)
    kinds = Counter(p.kind for p in pairs if p.same)
    assert set(NEAR_MISS_CATEGORIES) <= set(kinds)
    assert all(kinds[c] >= 20 for c in NEAR_MISS_CATEGORIES), kinds


def test_the_held_out_set_has_unique_ids_and_no_pair_twice():
    pairs = load_near_miss_test()
    assert len({p.id for p in pairs}) == len(pairs)
    seen: dict[frozenset[str], str] = {}
    for pair in pairs:
        key = frozenset((normalised(pair.a), normalised(pair.b)))
        assert len(key) == 2, f"{pair.id}: its two prompts are the same"
        assert key not in seen, f"{pair.id} repeats {seen.get(key)}"
        seen[key] = pair.id


def test_no_category_is_one_pattern():
    # A crude check that the pairs were not stamped out of one template: within each
    # category, the first three words of prompt a vary widely.
    pairs = load_near_miss_test()
    for category in NEAR_MISS_CATEGORIES:
        starts = Counter(" ".join(p.a.lower().split()[:3]) for p in pairs if p.category == category)
        total = sum(starts.values())
        assert len(starts) >= total // 2, (category, starts.most_common(3))
        assert starts.most_common(1)[0][1] <= total // 4, (category, starts.most_common(3))


def test_the_development_pairs_load_as_labelled_pairs():
    from aigw_lab.evaluation.pairs import load_development_pairs

    pairs = load_development_pairs()
    assert Counter((p.category, p.same) for p in pairs) == {
        ("number", False): 30,
        ("negation", False): 30,
        ("paraphrase", True): 30,
    }
    # The held-out set shares no prompt with the development set.
    held_out = {t for p in load_near_miss_test() for t in (normalised(p.a), normalised(p.b))}
    shared = [p.id for p in pairs if {normalised(p.a), normalised(p.b)} & held_out]
    assert shared == []
