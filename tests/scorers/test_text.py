"""The text scorers on realistic good and bad answers."""

from __future__ import annotations

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.scorers import (
    ChoiceMatch,
    Contains,
    ExactMatch,
    KeyPoints,
    LabelMatch,
    NumericMatch,
    RegexMatch,
    extract_choice,
    extract_number,
)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Paris", True),
        ("  paris. ", True),
        ("PARIS!", True),
        ("Paris, France", False),
        ("Lyon", False),
    ],
)
def test_exact_match_ignores_case_whitespace_and_punctuation(item, respond, answer, expected):
    score = ExactMatch().score(item("Paris"), respond(answer))
    assert score.value == (1.0 if expected else 0.0)


def test_exact_match_options_can_make_it_strict(item, respond):
    strict = ExactMatch(ignore_case=False, ignore_punctuation=False, name="strict")
    assert strict.score(item("Paris"), respond("paris")).value == 0.0
    assert strict.score(item("Paris"), respond("Paris")).value == 1.0
    assert strict.score(item("Paris"), respond("Paris")).scorer == "strict"
    articles = ExactMatch(ignore_articles=True)
    assert articles.score(item("The Nile"), respond("Nile")).value == 1.0
    assert ExactMatch().score(item("The Nile"), respond("Nile")).value == 0.0


def test_exact_match_without_reference_cannot_score(item, respond):
    score = ExactMatch().score(item(None), respond("anything"))
    assert score.value is None and score.label == "no_reference"


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("1,000", "1000", True),
        ("1000", "1,000", True),
        ("The answer is 1,234.", "1234", True),
        ("-3", "-3", True),
        ("The temperature fell to -3 degrees.", "3", False),
        ("3.50", "3.5", True),
        ("$3.50", "3.5", True),
        ("It costs $3.50 in total.", 3.5, True),
        ("3/4", "0.75", True),
        ("#### 42", "42", True),
        ("6 * 7 = 42, so 6 rows of 7 make\n#### 42", 42, True),
        ("First 12, then 30, so the total is 42", "42", True),
        ("The answer is 42. Check: 40 + 2 = 42, done in 2 steps", "42", True),
        ("\\boxed{17}", "17", True),
        ("We get 41.", "42", False),
        ("I don't know.", "42", False),
        ("12.5%", "12.5", True),
        ("42.0001", "42", False),
    ],
)
def test_numeric_match_reads_the_final_number(item, respond, answer, reference, expected):
    score = NumericMatch().score(item(reference), respond(answer))
    assert score.value == (1.0 if expected else 0.0), (answer, reference, score)


def test_numeric_match_tolerance_and_labels(item, respond):
    assert NumericMatch(abs_tol=0.001).score(item("3.14159"), respond("about 3.14")).value == 0.0
    assert NumericMatch(abs_tol=0.002).score(item("3.14159"), respond("about 3.14")).value == 1.0
    missing = NumericMatch().score(item("42"), respond("forty-two"))
    assert (missing.value, missing.label) == (0.0, "no_number")
    no_ref = NumericMatch().score(item("none given"), respond("42"))
    assert no_ref.value is None
    with pytest.raises(ConfigError):
        NumericMatch(rel_tol=-1)


def test_extract_number_precedence():
    assert extract_number("Step 1: 5 + 7 = 12. Answer: 12 apples, 3 left over") == 12
    assert extract_number("#### 7\nThe other 9 are distractions") == 7
    assert extract_number("no digits here") is None
    assert extract_number("\u22127") == -7  # the Unicode minus sign


CHOICES = {"A": "Shark", "B": "Dolphin", "C": "Trout", "D": "Octopus"}


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("(b)", "B"),
        ("b.", "B"),
        ("Answer: B) Dolphin", "B"),
        ("The correct option is C", "C"),
        ("the answer is (d)", "D"),
        ("B) Dolphin, because it breathes air.", "B"),
        ("A dolphin is a mammal, so the answer must be B.", "B"),
        ("I would pick (c) here.", "C"),
        ("**Answer:** D", "D"),
        ("Dolphin", "B"),
        ("I am not sure.", None),
    ],
)
def test_extract_choice_finds_the_letter(answer, letter):
    assert extract_choice(answer, choices=CHOICES) == letter


def test_choice_match_scores_and_labels(item, respond):
    mc = item("B", metadata={"choices": CHOICES})
    right = ChoiceMatch().score(mc, respond("Answer: B) Dolphin"))
    wrong = ChoiceMatch().score(mc, respond("The correct option is C"))
    silent = ChoiceMatch().score(mc, respond("Hard to say."))
    assert (right.value, right.label) == (1.0, "B")
    assert (wrong.value, wrong.label) == (0.0, "C")
    assert (silent.value, silent.label) == (0.0, "no_choice")
    # Five options: E is a letter too when the item lists it.
    five = item("E", metadata={"choices": {**CHOICES, "E": "Eel"}})
    assert ChoiceMatch().score(five, respond("E")).value == 1.0
    assert ChoiceMatch().score(item("E"), respond("E")).value == 0.0


def test_label_match_takes_the_first_label_word(item, respond):
    cls = item("negative", metadata={"labels": ["positive", "negative", "neutral"]})
    assert LabelMatch().score(cls, respond("Negative.")).value == 1.0
    assert LabelMatch().score(cls, respond("The sentiment is negative")).value == 1.0
    assert LabelMatch().score(cls, respond("positive, not negative")).value == 0.0
    assert LabelMatch().score(cls, respond("unclear")).label == "no_label"
    assert LabelMatch(["yes", "no"]).score(item("no"), respond("No, it is not")).value == 1.0


def test_regex_match(item, respond):
    scorer = RegexMatch(r"^[A-D]$", fullmatch=True, name="one_letter")
    assert scorer.score(item(), respond(" C ")).value == 1.0
    assert scorer.score(item(), respond("C because")).value == 0.0
    found = RegexMatch(r"\d{4}-\d{2}-\d{2}").score(item(), respond("on 2024-05-01, yes"))
    assert (found.value, found.details["matched"]) == (1.0, "2024-05-01")
    assert RegexMatch("paris", ignore_case=True).score(item(), respond("PARIS")).value == 1.0
    with pytest.raises(ConfigError, match="does not compile"):
        RegexMatch("(unclosed")


def test_contains_matches_whole_words_and_aliases(item, respond):
    gold = item("Au")
    assert Contains().score(gold, respond("The symbol is Au.")).value == 1.0
    assert Contains().score(gold, respond("Gaul")).value == 0.0
    astana = item("Astana", metadata={"aliases": ["Nur-Sultan"]})
    hit = Contains().score(astana, respond("It was called Nur-Sultan then."))
    assert (hit.value, hit.details["matched"]) == (1.0, "Nur-Sultan")
    assert Contains(aliases=False).score(astana, respond("Nur-Sultan")).value == 0.0
    assert Contains("refund").score(item(), respond("We issued a REFUND.")).value == 1.0


def test_key_points_for_summaries(item, respond):
    summary = item(
        "ref",
        metadata={"key_points": [["8 a.m.", "8am", "earlier"], ["weekday"]], "max_words": 12},
    )
    good = KeyPoints().score(summary, respond("The library opens earlier on weekdays."))
    missing = KeyPoints().score(summary, respond("The library changes its hours."))
    long = KeyPoints().score(summary, respond("The library opens earlier on weekdays " + "x " * 20))
    assert (good.value, good.details["covered"]) == (1.0, 2)
    assert (missing.value, missing.label, missing.details["covered"]) == (0.0, "missing_points", 0)
    assert (long.value, long.label) == (0.0, "too_long")
    assert KeyPoints().score(item("ref"), respond("x")).value is None
