"""The semantic cache's verification stage: after the vector search has found a stored
request similar enough, decide whether its answer answers the new request.

Embeddings place "convert 5 miles to km" next to "convert 5 km to miles" (cosine above
0.98), "Did France beat Spain?" next to "Did Spain beat France?", and `ls -a` next to
`ls -l`: no threshold separates those from paraphrases. `LexicalVerifier` reads both texts,
normalised (case, contractions, number words to numbers), and refuses a candidate when
they differ in one of the typed things that change an answer while leaving the embedding
where it was:

- ``numbers``: numbers and quantities (digits, number words, ordinals, signs);
- ``units``: the units mentioned and the direction of a conversion;
- ``antonyms``: a word on one side and its opposite on the other ("increase"/"decrease"),
  or a negating prefix or suffix ("possible"/"impossible", "useful"/"useless");
- ``negation``: a word negated on one side (not, never, no, without, n't, non-) and
  asserted on the other;
- ``roles``: the same words with two parts swapped ("A beat B" / "B beat A");
- ``code``: flags, operators and identifiers (`-a`/`-l`, `>`/`>=`, `foo_bar`);
- ``dates``: weekdays, months, relative dates (today, tomorrow, next week);
- ``language``: the natural or programming language named ("in French"/"in German");
- ``entities``: a capitalised name swapped for another ("capital of France"/"of Germany").

Everything runs on the two strings in pure Python: a few hundred microseconds per pair
(``bench/bench_verifier.py``), no model, no training. How a text is read is in
`aigw_lab.gateway.semantic_profile`; the word lists are in
`aigw_lab.gateway.semantic_lexicon`.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_lexicon import (
    ANTONYM_PAIRS,
    CONTRAST_SETS,
    DIRECTION_MAX_WORDS,
    DIRECTION_PAIRS,
    NEGATING_PREFIXES,
    NEGATING_SUFFIXES,
    STOPWORDS,
    SYMMETRIC_JOINS,
)
from aigw_lab.gateway.semantic_profile import TextProfile, profile_text, word_stem

__all__ = ["PairVerifier", "LexicalVerifier", "CHECKS", "TextProfile", "profile_text"]

#: The checks `LexicalVerifier` runs, in the order it runs them.
CHECKS: tuple[str, ...] = (
    "numbers",
    "units",
    "antonyms",
    "negation",
    "dates",
    "language",
    "code",
    "entities",
    "roles",
)


@runtime_checkable
class PairVerifier(Protocol):
    """Decides whether the answer stored for ``cached`` answers ``query``, given the
    cosine ``similarity`` the vector search found between them. `SemanticCache` asks it
    about each candidate at or above its threshold, best first, and serves the first one
    it accepts."""

    def accept(self, query: str, cached: str, similarity: float) -> bool: ...


_DIRECTIONS = frozenset(DIRECTION_PAIRS)
_CURRENCIES = frozenset(("usd", "eur", "gbp", "jpy", "inr", "cny"))


def _antonym_table() -> dict[str, frozenset[str]]:
    """Each word of the lexicon -> the words that ask its opposite: the antonym pairs,
    every two members of a contrast set, and the adverbs of the antonyms ("quickly" /
    "slowly"). Built per verifier (it then adds the caller's pairs)."""
    contrasts = [(a, b) for group in CONTRAST_SETS for a in group for b in group if a != b]
    adverbs = [(a + "ly", b + "ly") for a, b in ANTONYM_PAIRS if len(a) > 3 and len(b) > 3]
    table: dict[str, frozenset[str]] = {}
    for a, b in (*ANTONYM_PAIRS, *contrasts, *adverbs):
        table[a] = table.get(a, frozenset()) | {b}
        table[b] = table.get(b, frozenset()) | {a}
    return table


# --- comparing two texts --------------------------------------------------------------------


class LexicalVerifier:
    """The default `PairVerifier`: typed differences between the two texts (see the
    module's docstring for the checks). ``checks``: which of `CHECKS` to run (all by
    default; `SemanticCache`'s ``guard_numbers=False``/``guard_negation=False`` drop
    ``numbers``/``negation``). ``extra_antonyms``: more ``(word, opposite)`` pairs for
    your domain. ``memo``: how many texts' profiles are kept (stored prompts are read
    again on every lookup that finds them)."""

    def __init__(
        self,
        *,
        checks: Iterable[str] = CHECKS,
        extra_antonyms: Iterable[tuple[str, str]] = (),
        memo: int = 4096,
    ) -> None:
        chosen = tuple(checks)
        unknown = [c for c in chosen if c not in CHECKS]
        if unknown:
            raise ConfigError(
                f"LexicalVerifier checks {unknown!r} are unknown",
                hint=f"choose among {', '.join(CHECKS)}",
            )
        self.checks = tuple(c for c in CHECKS if c in chosen)
        self._antonyms = _antonym_table()
        for a, b in extra_antonyms:
            a, b = a.lower(), b.lower()
            self._antonyms[a] = self._antonyms.get(a, frozenset()) | {b}
            self._antonyms[b] = self._antonyms.get(b, frozenset()) | {a}
        self._memo: OrderedDict[str, TextProfile] = OrderedDict()
        self._memo_size = memo
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LexicalVerifier(checks={self.checks!r})"

    def accept(self, query: str, cached: str, similarity: float) -> bool:
        """True when no check finds a difference that changes the answer."""
        return self.difference(query, cached) is None

    def difference(self, query: str, cached: str) -> str | None:
        """The first check (a name in `CHECKS`) on which the texts differ, or None."""
        if query == cached:
            return None
        a, b = self.profile(query), self.profile(cached)
        for check in self.checks:
            if _DIFFERS[check](self, a, b):
                return check
        return None

    def profile(self, text: str) -> TextProfile:
        """``text`` read by `profile_text`, memoised (stored prompts recur on lookups)."""
        with self._lock:
            found = self._memo.get(text)
            if found is not None:
                self._memo.move_to_end(text)
                return found
        found = profile_text(text)
        if len(text) > _MEMO_MAX_CHARS:
            return found  # a huge prompt is read again rather than held
        with self._lock:
            self._memo[text] = found
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return found

    # --- the checks, each True when the two profiles differ in what it looks at ------------

    def _numbers(self, a: TextProfile, b: TextProfile) -> bool:
        # Ordinals count when both sides have one: "the first step" / "the initial step".
        if a.ordinals and b.ordinals and a.ordinals != b.ordinals:
            return True
        if a.numbers == b.numbers:
            return False
        only_a = Counter(a.numbers) - Counter(b.numbers)
        only_b = Counter(b.numbers) - Counter(a.numbers)
        # "one apple" read as a word on one side, "1 apple" as a number on the other.
        if not only_b and set(only_a) == {"1"} and only_a["1"] <= b.loose_ones:
            return False
        return not (not only_a and set(only_b) == {"1"} and only_b["1"] <= a.loose_ones)

    def _units(self, a: TextProfile, b: TextProfile) -> bool:
        if not a.units and not b.units:
            return False
        # A currency named on one side only ("under 10000" / "under 10000 INR") says the
        # same amount; a currency swapped for another does not.
        if not (set(a.units) & _CURRENCIES) or not (set(b.units) & _CURRENCIES):
            a = a._replace(
                units=tuple(u for u in a.units if u not in _CURRENCIES),
                quantities=tuple(q for q in a.quantities if q[1] not in _CURRENCIES),
            )
            b = b._replace(
                units=tuple(u for u in b.units if u not in _CURRENCIES),
                quantities=tuple(q for q in b.quantities if q[1] not in _CURRENCIES),
            )
        if Counter(a.units) != Counter(b.units):
            return True
        if Counter(u for _, u in a.quantities) != Counter(u for _, u in b.quantities):
            return True  # "5 miles in km" vs "5 km in miles": the measured unit moved
        if a.quantities or len(set(a.units)) < 2:
            return False
        # No quantity: the conversion's direction is the order of mention, unless one side
        # asks "how many X in Y" (target first).
        return _direction(a) != _direction(b)

    def _antonyms_(self, a: TextProfile, b: TextProfile) -> bool:
        only_a = set(a.words) - set(b.words)
        only_b = set(b.words) - set(a.words)
        if not only_a or not only_b:
            return False
        short = max(len(a.words), len(b.words)) <= DIRECTION_MAX_WORDS
        for word in only_a:
            opposites = self._antonyms.get(word)
            if opposites and opposites & only_b:
                return True
            if short and any(
                (word, other) in _DIRECTIONS or (other, word) in _DIRECTIONS for other in only_b
            ):
                return True
            if _flipped(word, only_b, b.negated):
                return True
        return any(_flipped(word, only_a, a.negated) for word in only_b)

    def _negation(self, a: TextProfile, b: TextProfile) -> bool:
        # A different count of negations matters when one side negates a word the other
        # says plainly ("is it safe" / "is it not safe"); "doesn't have any" against "in
        # the absence of" negates nothing the other side asserts.
        if a.negations == b.negations:
            return False
        return bool(a.negated & (b.stems - b.negated)) or bool(b.negated & (a.stems - a.negated))

    def _dates(self, a: TextProfile, b: TextProfile) -> bool:
        return a.dates != b.dates

    def _language(self, a: TextProfile, b: TextProfile) -> bool:
        # One language swapped for another; naming one on one side only is a rewording
        # ("in a Pythonic way" / "using Python").
        return bool(set(a.languages) - set(b.languages)) and bool(
            set(b.languages) - set(a.languages)
        )

    def _code(self, a: TextProfile, b: TextProfile) -> bool:
        if a.code != b.code:  # flags and operators: exactly the same ones
            return True
        if a.spans and b.spans and set(a.spans) != set(b.spans):
            return _substituted(set(a.spans), set(b.spans), a, b)
        # An identifier swapped for another (not one named on one side only).
        return _substituted(a.identifiers, b.identifiers, a, b)

    def _entities(self, a: TextProfile, b: TextProfile) -> bool:
        # A name or two on each side that the other side does not mention at all: a
        # substitution ("France" for "Germany"), not a paraphrase that adds, drops or
        # spells out names ("Random Access Memory" / "RAM").
        only_a = {e for e in a.entities if e not in b.words and word_stem(e) not in b.stems}
        only_b = {e for e in b.entities if e not in a.words and word_stem(e) not in a.stems}
        return 1 <= len(only_a) == len(only_b) <= 2

    def _roles(self, a: TextProfile, b: TextProfile) -> bool:
        if Counter(a.words) != Counter(b.words) or a.words == b.words:
            return False
        return _swapped(a.words, b.words) or _swapped(_content(a.words), _content(b.words))


#: Texts longer than this are not memoised (the memo's memory stays bounded).
_MEMO_MAX_CHARS = 8192

_DIFFERS = {
    "numbers": LexicalVerifier._numbers,
    "units": LexicalVerifier._units,
    "antonyms": LexicalVerifier._antonyms_,
    "negation": LexicalVerifier._negation,
    "dates": LexicalVerifier._dates,
    "language": LexicalVerifier._language,
    "code": LexicalVerifier._code,
    "entities": LexicalVerifier._entities,
    "roles": LexicalVerifier._roles,
}


def _substituted(a: set[str], b: set[str], pa: TextProfile, pb: TextProfile) -> bool:
    """Each side has an item the other does not mention, even as a plain word."""
    only_a = {x for x in a - b if x not in pb.words}
    only_b = {x for x in b - a if x not in pa.words}
    return bool(only_a) and bool(only_b)


def _flipped(word: str, others: set[str], negated: frozenset[str] = frozenset()) -> bool:
    """``word`` is a negating prefix or suffix away from a word in ``others`` (which the
    other side does not negate itself: "non-streaming" / "without streaming")."""
    for prefix in NEGATING_PREFIXES:
        least = 5 if prefix == "de" else 4  # "decompress", not "decode"/"code"
        if word.startswith(prefix) and len(word) - len(prefix) >= least:
            stem = word[len(prefix) :].lstrip("-")
            if stem in others and word_stem(stem) not in negated:
                return True
    for yes, no in NEGATING_SUFFIXES:
        if word.endswith(no) and word[: -len(no)] + yes in others:
            return True
    return False


def _direction(p: TextProfile) -> tuple[str, ...]:
    """The order a conversion goes, from its words: "how many km in a mile" names the
    target first, every other phrasing ("miles to km", "from miles into km") the source."""
    order = tuple(dict.fromkeys(p.units))
    words = p.words
    for i, w in enumerate(words[:-1]):
        if w == "how" and words[i + 1] in ("many", "much"):
            return order[::-1]
    return order


def _content(words: Iterable[str]) -> tuple[str, ...]:
    return tuple(w for w in words if w not in STOPWORDS and not w.isdigit())


def _swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """``a`` is ``P X M Y S`` and ``b`` is ``P Y M X S`` (X, Y non-empty and different, M
    non-empty and not a symmetric join like "and"): two parts traded places around a verb
    or a preposition, as in "A beat B" / "B beat A" or "from A to B" / "from B to A"."""
    if len(a) != len(b) or a == b:
        return False
    start = 0
    while a[start] == b[start]:
        start += 1
    end = len(a)
    while a[end - 1] == b[end - 1]:
        end -= 1
    ma, mb = a[start:end], b[start:end]
    size = len(ma)
    if size > 24:
        return False
    for x in range(1, size - 1):
        for y in range(1, size - x):
            middle = ma[x : size - y]
            if mb == ma[size - y :] + middle + ma[:x] and ma[:x] != ma[size - y :]:
                return not all(w in SYMMETRIC_JOINS for w in middle)
    return False
