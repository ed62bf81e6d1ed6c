"""How the semantic cache's verifier reads one prompt: `profile_text` turns a text into a
`TextProfile` (its normalised words, numbers, units and quantities, negations and what they
negate, dates, languages, code tokens, names), which `aigw_lab.gateway.semantic_verify`
compares between two prompts. Split out of that module for size; the word lists are in
`aigw_lab.gateway.semantic_lexicon`.

Every pattern here is linear on any input (no nested quantifier can backtrack over a run):
prompts are hostile input.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from aigw_lab.gateway.semantic_lexicon import (
    AMBIGUOUS_MONTHS,
    CAPITALISED_LANGUAGES,
    CONTRACTIONS,
    DATE_MODIFIERS,
    LANGUAGES,
    MONTHS,
    NEGATION_WORDS,
    NUMBER_WORDS,
    ORDINALS,
    RELATIVE_DATES,
    SCALE_WORDS,
    STOPWORDS,
    UNITS,
    WEEKDAYS,
)

__all__ = ["TextProfile", "profile_text", "word_stem"]

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


def word_stem(word: str) -> str:
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
        stems=frozenset(word_stem(w) for w in normal if w),
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
            return word_stem(word)
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
