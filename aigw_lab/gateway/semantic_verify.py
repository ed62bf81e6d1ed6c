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
- ``negation``: the count of negation markers (not, never, no, without, n't, ...);
- ``roles``: the same words with two parts swapped ("A beat B" / "B beat A");
- ``code``: flags, operators and identifiers (`-a`/`-l`, `>`/`>=`, `foo_bar`);
- ``dates``: weekdays, months, relative dates (today, tomorrow, next week);
- ``language``: the natural or programming language named ("in French"/"in German");
- ``entities``: a capitalised name swapped for another ("capital of France"/"of Germany").

Everything runs on the two strings in pure Python: tens of microseconds per pair
(``bench/bench_verifier.py``), no model, no training. The word lists are in
`aigw_lab.gateway.semantic_lexicon`.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import NamedTuple, Protocol, runtime_checkable

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_lexicon import (
    AMBIGUOUS_MONTHS,
    ANTONYM_PAIRS,
    CAPITALISED_LANGUAGES,
    CONTRACTIONS,
    CONTRAST_SETS,
    DATE_MODIFIERS,
    DIRECTION_MAX_WORDS,
    DIRECTION_PAIRS,
    LANGUAGES,
    MONTHS,
    NEGATING_PREFIXES,
    NEGATING_SUFFIXES,
    NEGATION_WORDS,
    NUMBER_WORDS,
    ORDINALS,
    RELATIVE_DATES,
    SCALE_WORDS,
    STOPWORDS,
    SYMMETRIC_JOINS,
    UNITS,
    WEEKDAYS,
)

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


# --- reading a text -------------------------------------------------------------------------

# Backticked code, then words (with inner ' . _ + # / - for identifiers, c++, km/h), numbers
# with separators and a sign, flags, operators, and single symbols.
_TOKEN = re.compile(
    r"(?P<flag>(?<![\w-])--?[A-Za-z][\w-]*)"
    r"|(?P<number>(?<![\w.])[-+]?\d+(?:[,.]\d+)*(?:st|nd|rd|th)?(?![\w]))"
    r"|(?P<cur>[$£€¥])"
    r"|(?P<word>[A-Za-z_°%][\w'’]*(?:[.+#/-][\w'’]+)*(?:\+\+|#)?(?:\(\))?)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||<<|>>|->|=>|\*\*|//|\+=|-=|\*=|/=|[<>=+*/%^&|~!-])"
    r"|(?P<other>\S)"
)
# `code` or ``code``: a span starts only where a run of backticks starts, so a long run of
# backticks is scanned once (linear on any input).
_CODE_SPAN = re.compile(r"(?<!`)(`+)([^`]+)\1(?!`)")
# A number glued to its unit or time of day: "5km", "100F", "3pm" (read as "5 km").
# (Not after a separator either: each start then scans its run once, so "1,1,1,...x"
# stays linear.)
_GLUED = re.compile(r"(?<![\w.,])(\d+(?:[.,]\d+)*)([A-Za-z°]+)\b")
_TEMPERATURE_LETTERS = {"F": "fahrenheit", "C": "celsius", "K": "kelvin"}
_TIMES_OF_DAY = frozenset(("am", "pm", "a.m", "p.m"))
_CAMEL = re.compile(r"^[a-z]+[A-Z][A-Za-z0-9]*$")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'"})
_ORDINAL_SUFFIX = re.compile(r"(st|nd|rd|th)$")
# Operators that are also prose punctuation ("Python - how to", "and/or"): code only
# between two operands that look like code (a number or a one-letter name).
_PROSE_OPS = frozenset(("-", "/", "!", "&", "+", "*", "~"))
_SENTENCE_END = frozenset(".!?:;\n")
_ANTONYMS: dict[str, frozenset[str]] = {}
_CONTRASTS = [(a, b) for group in CONTRAST_SETS for a in group for b in group if a != b]
_DIRECTIONS = frozenset(DIRECTION_PAIRS)
_CURRENCIES = frozenset(("usd", "eur", "gbp", "jpy", "inr", "cny"))
# Adverbs of the adjectives: "quick"/"slow" gives "quickly"/"slowly".
_ADVERBS = [(a + "ly", b + "ly") for a, b in ANTONYM_PAIRS if len(a) > 3 and len(b) > 3]
for _a, _b in (*ANTONYM_PAIRS, *_CONTRASTS, *_ADVERBS):
    _ANTONYMS[_a] = _ANTONYMS.get(_a, frozenset()) | {_b}
    _ANTONYMS[_b] = _ANTONYMS.get(_b, frozenset()) | {_a}
del _a, _b


class TextProfile(NamedTuple):
    """What the verifier compares in one text (built once per text, by `profile_text`)."""

    words: tuple[str, ...]  # normalised tokens, in order (numbers as digits)
    numbers: tuple[str, ...]  # sorted numbers
    ordinals: tuple[str, ...]  # sorted ordinals ("first" -> "1")
    loose_ones: int  # "one" not read as a number ("which one"): may match a bare 1
    units: tuple[str, ...]  # canonical units, in order of mention
    quantities: tuple[tuple[str, str], ...]  # (number, unit) written together, sorted
    negations: int
    negated: frozenset[str]  # the stems negation markers apply to ("not safe" -> "safe")
    stems: frozenset[str]  # every word's stem
    dates: tuple[str, ...]
    languages: tuple[str, ...]
    code: tuple[str, ...]  # flags and operators (case kept), sorted, unique
    identifiers: frozenset[str]  # foo_bar, os.path, len(), camelCase (lower-cased)
    spans: tuple[str, ...]  # the words inside backticks, sorted
    entities: frozenset[str]  # capitalised names, lower-cased


def _number_value(text: str) -> str:
    """One spelling per number: "1,000" -> "1000", "5.0" -> "5", "+3" -> "3"."""
    text = text.lstrip("+").replace(",", "")
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _is_capitalised(raw: str) -> bool:
    return raw[:1].isupper()


def profile_text(text: str) -> TextProfile:
    """Read ``text`` into the parts the verifier compares (see `TextProfile`)."""
    text = text.translate(_APOSTROPHES)
    spans = sorted(w for _, span in _CODE_SPAN.findall(text) for w in span.split())
    plain = _GLUED.sub(_unglue, text.replace("`", " "))
    raw_tokens = [(m.lastgroup or "other", m.group(), m.start()) for m in _TOKEN.finditer(plain)]
    words: list[str] = []
    kinds: list[str] = []
    raws: list[str] = []
    starts: list[bool] = []  # the token starts a sentence
    at_start = True
    for k, (kind, raw, where) in enumerate(raw_tokens):
        follow = raw_tokens[k + 1][1] if k + 1 < len(raw_tokens) else ""
        if kind == "other" or (kind == "op" and raw in ".,"):
            at_start = at_start or raw in _SENTENCE_END
            continue
        if kind == "number" and _is_list_marker(
            plain, where, follow, raw_tokens[k - 1][1] if k else ""
        ):
            at_start = True  # "1) ..." and "2. ..." number a list; they ask nothing
            continue
        if kind == "cur":
            kind = "word"  # "$" is a unit, read before its number
        lower = raw.lower()
        if kind == "word" and lower == "no" and at_start and follow in (",", ".", "!", ";"):
            continue  # an answer's "No, ..." opening negates nothing that follows
        if kind == "word":
            lower = lower.rstrip("'")
            expanded = CONTRACTIONS.get(lower)
            if expanded is None and lower.endswith("n't"):
                expanded = lower[:-3] + " not"
            elif expanded is None and lower.endswith(("'s", "'re", "'ve", "'ll", "'d")):
                expanded = lower.split("'")[0]
            elif expanded is None and "-" in lower:
                pieces = lower.split("-")  # "twenty-one", "two-step", "non-streaming"
                if pieces[0] == "non" or any(p in NUMBER_WORDS or p in SCALE_WORDS for p in pieces):
                    expanded = " ".join(pieces)
            parts = expanded.split() if expanded else [lower]
            for i, part in enumerate(parts):
                words.append(part)
                kinds.append("word")
                raws.append(raw if i == 0 else part)
                starts.append(at_start and i == 0)
        else:
            words.append(lower)
            kinds.append(kind)
            raws.append(raw)
            starts.append(at_start)
        at_start = raw in _SENTENCE_END
    return _profile(words, kinds, raws, starts, tuple(spans))


def _unglue(match: re.Match[str]) -> str:
    if match.group(2).lower() in ("st", "nd", "rd", "th"):
        return match.group(0)  # an ordinal: "3rd"
    return f"{match.group(1)} {match.group(2)}"


def _unit_at(words: list[str], raws: list[str], j: int) -> str | None:
    """The unit written at ``words[j]`` after a number ("5 km", "100 F", "100 degrees
    Fahrenheit": the degree names the scale that follows it)."""
    if j >= len(words):
        return None
    unit = UNITS.get(words[j]) or _TEMPERATURE_LETTERS.get(raws[j])
    if unit == "degree" and j + 1 < len(words):
        scale = UNITS.get(words[j + 1]) or _TEMPERATURE_LETTERS.get(raws[j + 1])
        if scale in ("celsius", "fahrenheit", "kelvin"):
            return scale
    return unit


def _is_list_marker(text: str, where: int, follow: str, before: str) -> bool:
    """A number that numbers a list item: "1)" (not "(1)"), or "2." at a line's start."""
    if follow == ")" and before != "(":
        return True
    line_start = text.rfind("\n", 0, where) + 1
    return follow == "." and not text[line_start:where].strip()


def _stem(word: str) -> str:
    """A crude stem, so "exists", "existed" and "existing" meet "exist"."""
    if len(word) >= 6 and word.endswith("ing"):
        return word[:-3]
    if len(word) >= 5 and word.endswith("ied"):
        return word[:-3] + "y"
    if len(word) >= 5 and word.endswith("ed"):
        return word[:-2] if not word.endswith("eed") else word
    if len(word) >= 5 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) >= 5 and word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) >= 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _profile(
    words: list[str], kinds: list[str], raws: list[str], starts: list[bool], spans: tuple
) -> TextProfile:
    n = len(words)
    numbers: list[str] = []
    ordinals: list[str] = []
    negated: set[str] = set()
    identifiers: set[str] = set()
    quantities: list[tuple[str, str]] = []
    units: list[str] = []
    dates: list[str] = []
    languages: list[str] = []
    code: list[str] = []
    entities: set[str] = set()
    negations = loose_ones = 0
    normal = list(words)
    i = 0
    while i < n:
        word, kind, raw = words[i], kinds[i], raws[i]
        prev = normal[i - 1] if i else ""
        nxt = words[i + 1] if i + 1 < n else ""
        if kind == "number":
            value = raw
            ordinal = _ORDINAL_SUFFIX.search(value)
            if ordinal:
                ordinals.append(_number_value(value[: ordinal.start()]))
                i += 1
                continue
            else:
                value = _number_value(value)
                # "5 million": one number
                scale = SCALE_WORDS.get(nxt) or _AMOUNT_LETTERS.get(nxt)
                if scale:
                    value = _number_value(str(float(value) * scale))
                    normal[i] = ""
                    i += 1
            numbers.append(value)
            normal[i] = value
            unit = _unit_at(words, raws, i + 1)
            if unit is None and prev in UNITS and kinds[i - 1] == "word" and prev in "$£€¥":
                unit = UNITS[prev]  # "$40"
            if unit is not None:
                quantities.append((value, unit))
            i += 1
            continue
        if kind == "word" and (word in NUMBER_WORDS and word not in ("half",)):
            # A run of number words: "twenty five", "two hundred", "one thousand five".
            j, total, current, counted = i, 0, 0, False
            while j < n and (words[j] in NUMBER_WORDS or words[j] in SCALE_WORDS):
                w = words[j]
                if w in SCALE_WORDS:
                    current = max(current, 1) * SCALE_WORDS[w]
                    if SCALE_WORDS[w] >= 1000:
                        total, current = total + current, 0
                else:
                    current += NUMBER_WORDS[w]
                j += 1
                counted = counted or w != "one" or j - i > 1
            following = words[j] if j < n else ""
            if word == "one" and j - i == 1:
                counted = following in UNITS or following in SCALE_WORDS
            if counted:
                value = _number_value(str(total + current))
                numbers.append(value)
                unit = _unit_at(words, raws, j)
                if unit is not None:
                    quantities.append((value, unit))
                normal[i:j] = [""] * (j - i - 1) + [value]
                i = j
                continue
            loose_ones += 1
        if kind == "word" and word in ORDINALS and (word != "second" or prev == "the"):
            if word != "last" or prev == "the":
                ordinals.append(str(ORDINALS[word]))
        if kind == "word" and word in NEGATION_WORDS:
            # "not only ... but also" negates nothing.
            if not (word == "not" and nxt == "only"):
                negations += 1
                head = _negated_head(words, i)
                if head:
                    negated.add(head)
        after_number = prev[:1].isdigit()
        if kind == "word" or kind == "op":
            unit = UNITS.get(word)
            if unit is None and after_number and raw in _TEMPERATURE_LETTERS:
                unit = _TEMPERATURE_LETTERS[raw]
            if unit == "degree" and UNITS.get(nxt) in ("celsius", "fahrenheit", "kelvin"):
                unit = None  # "degrees Fahrenheit" names one unit
            if unit is not None and not _unit_is_word(word, raw, prev):
                units.append(unit)
        if kind == "word":
            if word in WEEKDAYS:
                dates.append(WEEKDAYS[word])
            elif word in MONTHS and (
                word not in AMBIGUOUS_MONTHS
                or (_is_capitalised(raw) and not starts[i])
                or kinds[i - 1 if i else i] == "number"
                or (i + 1 < n and kinds[i + 1] == "number")
            ):
                dates.append(MONTHS[word])
            elif word in ("week", "month", "year", "weekend") and prev in DATE_MODIFIERS:
                dates.append(f"{prev} {word}")
            elif word in RELATIVE_DATES:
                dates.append(word)
            elif word.rstrip(".") in _TIMES_OF_DAY and after_number:
                dates.append(word.replace(".", ""))
            lang = CAPITALISED_LANGUAGES.get(raw)
            if lang is None and word in LANGUAGES:
                lang = LANGUAGES[word]
            if lang is not None and not (len(raw) == 1 and (starts[i] or after_number)):
                languages.append(lang)
            elif _is_code_word(raw):
                identifier = raw.lower().rstrip(".")
                if any(c.isdigit() for c in identifier):  # "GPT-4" is "gpt4"
                    identifier = identifier.replace("-", "").replace("_", "")
                identifiers.add(identifier)
            elif (
                _is_capitalised(raw)
                and not starts[i]
                and word not in STOPWORDS
                and word not in MONTHS
                and word not in WEEKDAYS
            ):
                entities.add(word)
        elif kind == "flag":
            code.append(raw)
        elif kind == "op":
            if raw not in _PROSE_OPS or _code_operands(kinds, words, i):
                code.append(raw)
        i += 1
    return TextProfile(
        words=tuple(w for w in normal if w),
        numbers=tuple(sorted(numbers)),
        ordinals=tuple(sorted(ordinals)),
        loose_ones=loose_ones,
        units=tuple(units),
        quantities=tuple(sorted(quantities)),
        negations=negations,
        negated=frozenset(negated),
        stems=frozenset(_stem(w) for w in normal if w),
        dates=tuple(sorted(dates)),
        languages=tuple(sorted(set(languages))),
        code=tuple(sorted(set(code))),
        identifiers=frozenset(identifiers),
        spans=spans,
        entities=frozenset(entities),
    )


# Words skipped when looking for what a negation applies to: "is not a safe" -> "safe".
_NOT_HEADS = frozenset(
    (
        "a an the any all some be been being is are was were am do does did have has had "
        "i you he she it we they me my your his her its our their this that these those "
        "so very too even only ever quite really yet at all to of for one"
    ).split()
)


def _negated_head(words: list[str], i: int) -> str | None:
    """The stem of the word the negation at ``words[i]`` applies to: the first word after
    it that is not an article, a pronoun or an auxiliary (within four words)."""
    for word in words[i + 1 : i + 5]:
        if word not in _NOT_HEADS and word not in NEGATION_WORDS:
            return _stem(word)
    return None


# "5k", "2m", "3bn" after a number: amounts, not units.
_AMOUNT_LETTERS = {"k": 1_000, "bn": 1_000_000_000}
_SHOUTED_UNITS = frozenset("kb mb gb tb usd eur gbp jpy inr cny kw kwh mph kmh".split())


def _unit_is_word(word: str, raw: str, prev: str) -> bool:
    """A unit's spelling used as a plain word: "in" (the preposition), "m", "s", "min"
    alone, "ML" (machine learning), "second" as an ordinal; "day", "week"... count as
    units only after a number or in a conversion ("how many days", "in weeks")."""
    after_number = prev[:1].isdigit()
    if word in ("in", "m", "s", "g", "l", "h", "min", "sec", "mi", "cal", "bit", "bits", "stone"):
        return not after_number
    if raw.isupper() and len(raw) <= 3 and word not in _SHOUTED_UNITS:
        return not after_number
    if word in ("second", "day", "days", "week", "weeks", "month", "months", "year", "years"):
        return not after_number and prev not in ("many", "per", "in", "to", "into")
    return False


def _is_code_word(raw: str) -> bool:
    """An identifier, a path or a call: ``foo_bar``, ``os.path``, ``len()``, ``camelCase``,
    ``c++``. Plain words and sentence punctuation are not."""
    core = raw.rstrip(".")
    if len(core) == 1:  # a one-letter name ("x > 0"), not the words "a" and "I"
        return core.islower() and core not in ("a", "i")
    if any(c.isdigit() for c in core):  # ipv4, python3, gpt-4, mp3
        return core[:1].isalpha()
    if core.endswith("()") or "_" in core:
        return any(c.isalpha() for c in core)
    if "." in core:  # os.path, np.argmax; not "e.g" or "U.S"
        return max(len(part) for part in core.split(".")) >= 3 and "/" not in core
    return _CAMEL.match(core) is not None


def _code_operands(kinds: list[str], words: list[str], i: int) -> bool:
    def operand(j: int) -> bool:
        return 0 <= j < len(words) and (kinds[j] == "number" or len(words[j]) == 1)

    return operand(i - 1) and operand(i + 1)


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
        self._antonyms = dict(_ANTONYMS)
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
        only_a = {e for e in a.entities if e not in b.words and _stem(e) not in b.stems}
        only_b = {e for e in b.entities if e not in a.words and _stem(e) not in a.stems}
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
            if stem in others and _stem(stem) not in negated:
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
