"""Scorers that read an answer as text: exact match, the final number, a multiple-choice
letter, a label word, a regex, a substring, key points of a summary.

Each is pure and cheap (compiled patterns, no I/O). The pass/fail ones score 1.0 or 0.0;
an answer that holds no number, letter or label scores 0.0 with a label saying so
(``"no_number"``, ``"no_choice"``), since a model that does not answer is wrong, not
unscorable. ``None`` is kept for items the scorer cannot judge (no reference).

The extraction helpers (`normalise_text`, `extract_number`, `extract_choice`) are public:
the simulated judge and the auto scorer reuse them.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import ConfigError
from aigw_lab.scorers.base import Score, Scorer

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.types import ChatResponse

__all__ = [
    "ExactMatch",
    "NumericMatch",
    "ChoiceMatch",
    "LabelMatch",
    "RegexMatch",
    "Contains",
    "KeyPoints",
    "normalise_text",
    "extract_number",
    "extract_choice",
    "reference_text",
]

# Every punctuation character, ASCII and the common typographic ones, mapped to a space:
# "U.S.A." and "U S A" should not compare equal, but "Paris." and "Paris" should.
_PUNCTUATION = str.maketrans(
    {c: " " for c in string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014\u2026"}
)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalise_text(
    text: str,
    *,
    ignore_case: bool = True,
    ignore_punctuation: bool = True,
    collapse_whitespace: bool = True,
    ignore_articles: bool = False,
) -> str:
    """``text`` in comparable form: lower case, punctuation turned into spaces, articles
    dropped, runs of whitespace collapsed and the ends trimmed (each step optional)."""
    if ignore_case:
        text = text.lower()
    if ignore_punctuation:
        # An apostrophe inside a word joins it ("don't" -> "dont"), elsewhere punctuation
        # separates words.
        text = re.sub(r"(?<=\w)['\u2019](?=\w)", "", text).translate(_PUNCTUATION)
    if ignore_articles:
        text = _ARTICLES.sub(" ", text)
    if collapse_whitespace:
        text = " ".join(text.split())
    return text


def reference_text(reference: Any) -> str:
    """A reference answer as text (JSON for dicts and lists)."""
    if isinstance(reference, str):
        return reference
    return json.dumps(reference, ensure_ascii=False)


# --- numbers ----------------------------------------------------------------------------------

# A number as answers write it: optional sign, optional currency, digits with or without
# thousands separators, an optional decimal part, an optional "/denominator", an optional %.
# Not preceded by a letter, digit or dot, so "v2" and the "5" of "1.5" are not numbers.
_NUMBER = r"[-\u2212]?\s?[$\u20ac\u00a3]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?/\s?\d+)?%?"
_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUMBER}")
_FINAL_MARK = re.compile(rf"####\s*({_NUMBER})")
_BOXED = re.compile(rf"\\boxed\{{\s*({_NUMBER})\s*\}}")
_ANSWER_IS = re.compile(rf"\banswer\b(?:\s+is)?\s*[:=]?\s*(?:\*\*)?\s*({_NUMBER})", re.IGNORECASE)


def _parse_number(token: str) -> float | None:
    cleaned = token.replace("\u2212", "-")
    for junk in ("$", "\u20ac", "\u00a3", ",", "%", " "):
        cleaned = cleaned.replace(junk, "")
    try:
        if "/" in cleaned:
            return float(Fraction(cleaned))
        return float(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(text: str) -> float | None:
    """The final numeric answer in ``text``, GSM8K style, or None.

    In order of precedence: the number after the last ``####``; a LaTeX ``\\boxed{}``; the
    last "answer is N" / "Answer: N"; otherwise the last number in the text. Thousands
    separators, currency signs, percent signs and fractions ("3/4") are understood.
    """
    for pattern in (_FINAL_MARK, _BOXED, _ANSWER_IS):
        found = pattern.findall(text)
        if found:
            return _parse_number(found[-1])
    numbers = _NUMBER_RE.findall(text)
    return _parse_number(numbers[-1]) if numbers else None


# --- choice letters ---------------------------------------------------------------------------


def _choice_patterns(letters: str) -> tuple[re.Pattern[str], ...]:
    any_case = f"[{letters}{letters.lower()}]"
    upper = f"[{letters}]"
    # Keywords in any case, but an unbracketed letter only in upper case: "the answer is a
    # dolphin" picks no letter.
    keyword = r"\b(?i:answer|option|choice)\b(?:\s+is)?\s*[:=]?\s*(?i:option\s+)?(?:\*\*)?"
    return (
        # The whole answer is the letter: "B", "(b)", "C.", "D)".
        re.compile(rf"^\s*[(\[]?({any_case})[)\].:]?\s*$"),
        # "Answer: B", "the answer is (c)", "correct option is D", "Choice: A".
        re.compile(rf"{keyword}(?:({upper})\b|[(\[]({any_case})[)\]])"),
        # An answer opening with the letter: "B) Dolphin", "(C) ...", "D. 42".
        re.compile(rf"^\s*(?:\*\*)?[(\[]?({upper})[)\].:]"),
        # A letter in brackets anywhere: "I pick (b)".
        re.compile(rf"[(\[]({any_case})[)\]]"),
        # Last: a standalone capital letter (the caller skips the article "A").
        re.compile(rf"\b({upper})\b(?!['\u2019])"),
    )


_DEFAULT_LETTERS = "ABCD"
_WORD_FOLLOWS = re.compile(r"\s+[a-z]")
_PATTERN_CACHE: dict[str, tuple[re.Pattern[str], ...]] = {}


def extract_choice(
    text: str, *, letters: str = _DEFAULT_LETTERS, choices: Mapping[str, str] | None = None
) -> str | None:
    """The option letter an answer picks (upper case), or None.

    Understands "B", "(b)", "Answer: B) Dolphin", "The correct option is C", an answer
    opening with "D. ..."; then a standalone capital letter (not the article "A"); then,
    when ``choices`` maps letters to option texts, the one option whose text the answer
    contains.
    """
    patterns = _PATTERN_CACHE.get(letters)
    if patterns is None:
        patterns = _PATTERN_CACHE.setdefault(letters, _choice_patterns(letters))
    for pattern in patterns[:-1]:
        match = pattern.search(text)
        if match:
            return next(g for g in match.groups() if g).upper()
    for match in patterns[-1].finditer(text):
        letter = match.group(1)
        if letter == "A" and _WORD_FOLLOWS.match(text, match.end()):
            continue  # the article: "A dolphin is a mammal"
        return letter
    if choices:
        said = f" {normalise_text(text)} "
        hits = [
            letter
            for letter, option in choices.items()
            if f" {normalise_text(str(option))} " in said
        ]
        if len(hits) == 1:
            return hits[0].upper()
    return None


# --- scorers ----------------------------------------------------------------------------------


def _passed(name: str, ok: bool, label: str | None = None, **details: Any) -> Score:
    return Score(
        name, 1.0 if ok else 0.0, label=label or ("correct" if ok else "incorrect"), details=details
    )


def _no_reference(name: str) -> Score:
    return Score(
        name, None, label="no_reference", comment="the item has no reference answer to compare with"
    )


class ExactMatch(Scorer):
    """1.0 when the answer equals the reference after normalising (case, punctuation and
    whitespace ignored by default; articles optionally)."""

    def __init__(
        self,
        *,
        ignore_case: bool = True,
        ignore_punctuation: bool = True,
        collapse_whitespace: bool = True,
        ignore_articles: bool = False,
        name: str = "exact",
    ) -> None:
        self.name = name
        self._options = {
            "ignore_case": ignore_case,
            "ignore_punctuation": ignore_punctuation,
            "collapse_whitespace": collapse_whitespace,
            "ignore_articles": ignore_articles,
        }

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        if item.reference is None:
            return _no_reference(self.name)
        answer = normalise_text(response.text, **self._options)
        expected = normalise_text(reference_text(item.reference), **self._options)
        return _passed(self.name, answer == expected)


class NumericMatch(Scorer):
    """1.0 when the answer's final number (see `extract_number`) equals the reference
    number within ``rel_tol``/``abs_tol``: "1,000" matches 1000, "3.50" matches "3.5",
    "$3.50" matches 3.5, "3/4" matches 0.75."""

    def __init__(
        self, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9, name: str = "numeric"
    ) -> None:
        if rel_tol < 0 or abs_tol < 0:
            raise ConfigError(
                f"NumericMatch tolerances must be >= 0 (rel_tol={rel_tol}, abs_tol={abs_tol})",
                hint="use e.g. rel_tol=1e-6, abs_tol=0.01 for money",
            )
        self.name = name
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        reference = item.reference
        if isinstance(reference, (int, float)) and not isinstance(reference, bool):
            expected: float | None = float(reference)
        elif reference is None:
            return _no_reference(self.name)
        else:
            expected = extract_number(str(reference))
        if expected is None:
            return Score(
                self.name,
                None,
                label="no_reference",
                comment=f"the reference {reference!r} holds no number",
            )
        got = extract_number(response.text)
        if got is None:
            return _passed(self.name, False, "no_number", expected=expected)
        ok = math.isclose(got, expected, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return _passed(self.name, ok, answer=got, expected=expected)


class ChoiceMatch(Scorer):
    """1.0 when the option letter the answer picks (see `extract_choice`) is the reference
    letter. The letters are the keys of ``item.metadata["choices"]`` when present, else
    ``letters``; the answer's letter is the score's label."""

    def __init__(self, *, letters: str = _DEFAULT_LETTERS, name: str = "choice") -> None:
        if not letters.isalpha() or not letters.isupper():
            raise ConfigError(f"choice letters {letters!r} are invalid", hint='use e.g. "ABCD"')
        self.name = name
        self.letters = letters

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        if item.reference is None:
            return _no_reference(self.name)
        choices = item.metadata.get("choices")
        letters = self.letters
        if isinstance(choices, Mapping) and choices:
            letters = "".join(sorted(str(k).upper() for k in choices))
        else:
            choices = None
        picked = extract_choice(response.text, letters=letters, choices=choices)
        expected = str(item.reference).strip().strip("()").upper()
        if picked is None:
            return _passed(self.name, False, "no_choice", expected=expected)
        return Score(
            self.name,
            1.0 if picked == expected else 0.0,
            label=picked,
            details={"expected": expected},
        )


class LabelMatch(Scorer):
    """1.0 when the first allowed label word in the answer is the reference label.

    The labels are ``labels``, else ``item.metadata["labels"]`` (for the bundled set:
    positive, negative, neutral); without either, the answer's first word is its label.
    """

    def __init__(self, labels: Iterable[str] | None = None, *, name: str = "label") -> None:
        self.name = name
        self.labels = tuple(labels) if labels is not None else None

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        if item.reference is None:
            return _no_reference(self.name)
        labels = self.labels or tuple(item.metadata.get("labels") or ())
        words = normalise_text(response.text).split()
        expected = normalise_text(str(item.reference))
        picked: str | None
        if labels:
            wanted = {normalise_text(label): label for label in labels}
            picked = next((w for w in words if w in wanted), None)
        else:
            picked = words[0] if words else None
        if picked is None:
            return _passed(self.name, False, "no_label", expected=expected)
        return Score(
            self.name,
            1.0 if picked == expected else 0.0,
            label=picked,
            details={"expected": expected},
        )


class RegexMatch(Scorer):
    """1.0 when ``pattern`` is found in the answer (``fullmatch=True``: matches all of it,
    stripped). The pattern is compiled once; the matched text goes to details."""

    def __init__(
        self,
        pattern: str,
        *,
        ignore_case: bool = False,
        fullmatch: bool = False,
        name: str = "regex",
    ) -> None:
        try:
            self.pattern = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except re.error as exc:
            raise ConfigError(
                f"regex {pattern!r} does not compile: {exc}", hint="fix the regular expression"
            ) from exc
        self.fullmatch = fullmatch
        self.name = name

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        text = response.text
        match = (
            self.pattern.fullmatch(text.strip()) if self.fullmatch else self.pattern.search(text)
        )
        if match is None:
            return _passed(self.name, False, "no_match")
        return _passed(self.name, True, "match", matched=match.group(0))


class Contains(Scorer):
    """1.0 when the answer contains ``substring`` or, without one, the reference or one of
    ``item.metadata["aliases"]``, as whole words after normalising (so "Au" is not found
    in "Gaul", and "Paris." is found in "It is paris")."""

    def __init__(
        self,
        substring: str | None = None,
        *,
        ignore_case: bool = True,
        ignore_punctuation: bool = True,
        aliases: bool = True,
        name: str = "contains",
    ) -> None:
        self.substring = substring
        self.aliases = aliases
        self.name = name
        self._options = {"ignore_case": ignore_case, "ignore_punctuation": ignore_punctuation}

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        if self.substring is not None:
            wanted = [self.substring]
        elif item.reference is None:
            return _no_reference(self.name)
        else:
            wanted = [reference_text(item.reference)]
            if self.aliases:
                wanted += [str(a) for a in item.metadata.get("aliases") or ()]
        said = f" {normalise_text(response.text, **self._options)} "
        for phrase in wanted:
            needle = normalise_text(phrase, **self._options)
            if needle and f" {needle} " in said:
                return _passed(self.name, True, matched=phrase)
        return _passed(self.name, False)


class KeyPoints(Scorer):
    """For summaries: 1.0 when the answer states every key point (each a list of accepted
    phrasings, ``item.metadata["key_points"]``) and has at most ``max_words`` words
    (``item.metadata["max_words"]``). Details say how many points were covered."""

    def __init__(self, *, name: str = "key_points") -> None:
        self.name = name

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        points = item.metadata.get("key_points")
        if not points:
            return Score(
                self.name,
                None,
                label="no_key_points",
                comment="the item lists no key_points; "
                "score summaries with an embedding or judge scorer",
            )
        said = response.text.lower()
        covered = sum(1 for phrasings in points if any(p.lower() in said for p in phrasings))
        words = len(response.text.split())
        max_words = item.metadata.get("max_words")
        short_enough = max_words is None or words <= int(max_words)
        ok = covered == len(points) and short_enough
        label = "correct" if ok else ("too_long" if covered == len(points) else "missing_points")
        return _passed(self.name, ok, label, covered=covered, points=len(points), words=words)
