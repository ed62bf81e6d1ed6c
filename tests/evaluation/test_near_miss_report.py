"""The published near-miss section: rendered from a run's results, spliced into a document
between its markers, and present in docs/semantic_cache.md in the generated format (its
numbers are whatever the last run measured; only the format is checked here)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from aigw_lab.evaluation.cache_runs import GRID, CacheVariant, cache_variants, served
from aigw_lab.evaluation.near_miss_report import (
    END,
    HEADING,
    PUBLIC_THRESHOLDS,
    START,
    NearMissResults,
    measure,
    render_section,
    replace_section,
)
from aigw_lab.evaluation.pairs import NEAR_MISS_CATEGORIES, LabelledPair, load_near_miss_test

from ._doubles import ChosenSimilarity, VerifyingCache

DOC = Path(__file__).resolve().parents[2] / "docs" / "semantic_cache.md"
# The installed cache's variants: the guards, and cosine alone (its verifier off, if any).
COSINE, GUARDS = cache_variants()[:2]


def synthetic_pairs(embedder: ChosenSimilarity) -> list[LabelledPair]:
    pairs = []
    for category in NEAR_MISS_CATEGORIES:
        for similarity in (0.5, 0.93):
            a, b = embedder.pair(similarity)
            pairs.append(LabelledPair(id=a, a=a, b=b, same=False, category=category))
    a, b = embedder.pair(0.97, a="Is 17 a prime number?", b="Is 19 a prime number?")
    pairs.append(LabelledPair(id=a, a=a, b=b, same=False, category="numbers"))
    for kind in (*NEAR_MISS_CATEGORIES, "general"):
        a, b = embedder.pair(0.95)
        pairs.append(LabelledPair(id=a, a=a, b=b, same=True, category="paraphrase", kind=kind))
    return pairs


def synthetic_results(names: list[str]) -> NearMissResults:
    embedder = ChosenSimilarity()
    pairs = synthetic_pairs(embedder)
    # The installed cache's own verifier stays off: the format must not hang on what it
    # makes of synthetic prompts (an empty cell prints as n/a).
    variants = [
        CacheVariant(name=n, options=COSINE.options if n == "cosine" else GUARDS.options)
        for n in names
    ]
    mock = [embedder.pair(0.9) for _ in range(6)]
    qqp, *samples = [
        [(*embedder.pair(s), s > 0.8) for s in (0.97, 0.5, 0.85, 0.7)] for _ in range(3)
    ]
    return measure(
        embedder,
        pairs=pairs,
        variants=variants,
        mock_pairs=mock,
        qqp_pairs=qqp,
        qqp_samples=samples,
        dev_pairs=[
            LabelledPair(id=a, a=a, b=b, same=s > 0.94, category="dev")
            for s in (0.5, 0.93, 0.5, 0.93, 0.95, 0.95)
            for a, b in [embedder.pair(s)]
        ],
    )


def test_measure_runs_every_variant_through_the_cache():
    embedder = ChosenSimilarity()
    pairs = synthetic_pairs(embedder)
    results = measure(embedder, pairs=pairs, variants=[COSINE, GUARDS], thresholds=[0.9, 0.96])
    assert sorted(results.grid["guards"]) == [0.9, 0.96]
    numbers = {r["group"]: r["rate"] for r in results.categories["guards"]}["numbers"]
    assert (numbers.hits, numbers.n) == (1, 3)  # the guard refuses 17/19; 0.93 still hits
    cosine = {r["group"]: r["rate"] for r in results.categories["cosine"]}["numbers"]
    assert cosine.hits == 2
    recall = results.grid["guards"][0.9]["recall"]
    assert (recall.hits, recall.n) == (8, 8)
    kinds = {r["group"]: r["rate"].n for r in results.kinds["guards"]}
    assert kinds == dict.fromkeys((*NEAR_MISS_CATEGORIES, "general"), 1)
    assert results.gptcache == {} and results.qqp == {}
    expected = served(pairs, embedder, GUARDS, 0.96)
    assert results.grid["guards"][0.96]["false_hits"].hits == int(
        expected[~np.array([p.same for p in pairs])].sum()
    )


def test_the_section_has_every_table_and_the_verdict():
    section = render_section(
        synthetic_results(["cosine", "guards"]),
        embedder_name="test-double",
        date="2026-12-06",
        machine="2-core test box",
    )
    assert section.startswith(START) and section.endswith(END)
    assert "on 2026-12-06, 2-core test box; embedder test-double" in section
    assert "| category | pairs | cosine | guards |" in section
    assert "| numbers (false hits) | 3 | 0.667 [" in section
    assert "| **paraphrase controls (recall)** | 8 | **1.000 [0.676, 1.000]** |" in section
    for heading in (
        "### Held-out near-miss test set",
        "### Over the threshold grid",
        "### GPTCache's mock_data.json",
        "### Quora Question Pairs",
    ):
        assert heading in section
    grid_rows = [line for line in section.splitlines() if re.match(r"\| 0\.\d+ \|", line)]
    assert len(grid_rows) == len(set(GRID) | {0.9}) + 3 * len(PUBLIC_THRESHOLDS)
    assert "| 0.85 | 1.000 to 1.000 | 1.000 to 1.000 |" in section  # the spread over samples
    assert "| development | false hits | 4 | 0.500 [" in section
    assert "| held-out | recall | 8 | 1.000 [" in section
    assert "- `guards`: false hits" in section and "not met" in section


def test_replace_section_appends_then_replaces_in_place():
    body = f"{START}\nold\n{END}"
    appended = replace_section("# Title\n\nText.\n", body)
    assert appended == f"# Title\n\nText.\n\n{HEADING}\n\n{body}\n"
    updated = replace_section(appended + "\n## Later\n", f"{START}\nnew\n{END}")
    assert "old" not in updated and f"{START}\nnew\n{END}" in updated
    assert updated.endswith("\n## Later\n") and updated.count(HEADING) == 1


def skeleton(text: str) -> list[str]:
    """The section's table and heading lines with every number replaced: its format."""
    lines = [line for line in text.splitlines() if line.startswith(("|", "#"))]
    return [re.sub(r"\d+(\.\d+)?", "N", line) for line in lines]


def test_docs_carry_the_section_in_the_generated_format():
    doc = DOC.read_text(encoding="utf-8")
    assert doc.count(HEADING) == 1 and doc.count(START) == 1 and doc.count(END) == 1
    assert doc.index(HEADING) < doc.index(START) < doc.index(END)
    published = doc[doc.index(START) : doc.index(END) + len(END)]
    assert "Generated by `python -m aigw_lab.evaluation.near_miss_report" in published
    assert re.search(r"on \d{4}-\d\d-\d\d, ", published)
    header = next(line for line in published.splitlines() if line.startswith("| category |"))
    names = [cell.strip() for cell in header.strip("|").split("|")][2:]
    assert names[:2] == ["cosine", "guards"]
    expected = render_section(
        synthetic_results(names), embedder_name="x", date="2026-12-06", machine="m"
    )
    pairs = len(load_near_miss_test())
    assert f"### Held-out near-miss test set ({pairs} pairs)" in published
    assert skeleton(published) == skeleton(expected)


@pytest.mark.slow  # the real model: seconds to load
def test_the_guards_catch_number_near_misses_with_the_real_model(minilm):
    """The held-out numbers category through a real cache and all-MiniLM-L6-v2 at 0.9: the
    similarity alone serves many of them; the number guard refuses most of those."""
    pairs = [p for p in load_near_miss_test() if p.category == "numbers"]
    results = measure(minilm, pairs=pairs, variants=[COSINE, GUARDS], thresholds=[0.9])
    cosine = results.grid["cosine"][0.9]["false_hits"]
    guards = results.grid["guards"][0.9]["false_hits"]
    assert cosine.n == guards.n == len(pairs) >= 40
    assert cosine.hits >= 10  # the embedding cannot tell these apart
    assert guards.hits <= cosine.hits // 2


def test_a_cache_with_a_verifier_gets_its_own_column_and_verdict():
    embedder = ChosenSimilarity()
    pairs = synthetic_pairs(embedder)
    for n in range(4):  # near misses only the verifier refuses
        a, b = embedder.pair(0.99, a=f"refuse this {n * 'x'}y", b=f"keep this {n * 'x'}y")
        pairs.append(LabelledPair(id=a, a=a, b=b, same=False, category="roles"))
    mock = [embedder.pair(0.93) for _ in range(5)]
    results = measure(embedder, pairs=pairs, mock_pairs=mock, cache_class=VerifyingCache)
    assert [v.name for v in results.variants] == ["cosine", "guards", "verifier"]
    roles = {
        name: {r["group"]: r["rate"] for r in rows}["roles"]
        for name, rows in results.categories.items()
    }
    assert (roles["guards"].hits, roles["verifier"].hits) == (5, 1)
    section = render_section(results, embedder_name="x", date="d", machine="m")
    assert "| category | pairs | cosine | guards | verifier |" in section
    assert "- `verifier`: false hits" in section
    assert "GPTCache recall 100.0% of `guards`': met" in section
