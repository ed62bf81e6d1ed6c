"""A seeded generator of near-miss prompt pairs: the DEV set the semantic cache's verifier
(`aigw_lab.gateway.semantic_verify`) was tuned on. Not a test set: the held-out near-miss
set is written independently and never read here.

Each category has several phrasings and vocabularies, so the verifier is not tuned to one
surface form. A pair is either a *near miss* (``same_meaning`` false: one detail changed
that changes the answer: a hit would serve the wrong answer) or a *paraphrase control*
(``same_meaning`` true: reworded, the detail kept: a hit is right).

    python bench/near_miss_dev.py --seed 0 --per-category 40 > /tmp/near_miss_dev.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable

NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()
ITEMS = "apples books chairs coins eggs pens tickets marbles shirts cookies boxes cars".split()
PEOPLE = "Alice Bob Carol Dave Emma Frank Grace Henry Ivy Jack Kate Liam Maya Noah".split()
TEAMS = (
    "France|Spain|Brazil|Germany|Italy|Argentina|Japan|Mexico|Portugal|Croatia|Ghana|"
    "the Lakers|the Celtics|Real Madrid|Barcelona|Chelsea|Arsenal|the Yankees|the Red Sox"
).split("|")
COUNTRIES = "France Germany Spain Italy Japan Canada Brazil Egypt India Kenya Peru Norway".split()
LANGS = "French German Spanish Italian Portuguese Japanese Korean Russian Dutch Arabic".split()
CODE_LANGS = "Python JavaScript Java Rust Ruby TypeScript Kotlin PHP".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February April June July September October November December".split()
CITIES = "Paris London Berlin Tokyo Madrid Rome Boston Chicago Seattle Denver Lisbon".split()
UNIT_PAIRS = [
    ("miles", "kilometers"),
    ("kilograms", "pounds"),
    ("Celsius", "Fahrenheit"),
    ("inches", "centimeters"),
    ("liters", "gallons"),
    ("feet", "meters"),
    ("ounces", "grams"),
    ("dollars", "euros"),
]
ANTONYMS = [
    ("increase", "decrease"),
    ("maximize", "minimize"),
    ("enable", "disable"),
    ("encrypt", "decrypt"),
    ("upload", "download"),
    ("buy", "sell"),
    ("import", "export"),
    ("add", "remove"),
    ("compress", "decompress"),
    ("raise", "lower"),
]
ANTONYM_OBJECTS = (
    "the heap size in Java|the volume on my laptop|the font size in VS Code|"
    "the page margins in Word|the timeout in nginx|my credit limit|the swap space on Linux"
).split("|")
ADJECTIVES = [
    ("possible", "impossible"),
    ("legal", "illegal"),
    ("safe", "unsafe"),
    ("healthy", "unhealthy"),
    ("ethical", "unethical"),
    ("useful", "useless"),
    ("honest", "dishonest"),
    ("secure", "insecure"),
    ("likely", "unlikely"),
    ("regular", "irregular"),
]
ADJ_SUBJECTS = (
    "to travel faster than light|to drink coffee every day|to store passwords in plain "
    "text|to drive without a license|to eat raw eggs|to use public wifi for banking|"
    "to sleep four hours a night|to swim after eating"
).split("|")
# (past, base) forms of verbs whose subject and object play different roles.
VERBS = [
    tuple(p.split("/"))
    for p in "beat/beat defeated/defeat sued/sue hired/hire married/marry called/call "
    "overtook/overtake acquired/acquire outscored/outscore blocked/block".split()
]
COMMANDS = [
    ("ls -a", "ls -l"),
    ("rm -r", "rm -f"),
    ("git reset --soft", "git reset --hard"),
    ("grep -i", "grep -v"),
    ("tar -czf", "tar -xzf"),
    ("docker run -d", "docker run -it"),
    ("pip install -U", "pip install -e"),
    ("chmod 755", "chmod 644"),
]
CONDITIONS = [
    ("x > 0", "x >= 0"),
    ("a == b", "a != b"),
    ("i < n", "i <= n"),
    ("x += 1", "x -= 1"),
    ("a && b", "a || b"),
    ("n % 2 == 0", "n % 2 == 1"),
    ("x * 2", "x / 2"),
]
IDENTIFIERS = [
    ("os.path.join", "os.path.split"),
    ("list.append", "list.extend"),
    ("str.strip", "str.split"),
    ("dict.get", "dict.pop"),
    ("json.loads", "json.dumps"),
]


def _numbers(r: random.Random) -> tuple[str, str, str]:
    n = r.randint(2, 12)
    m = r.choice([x for x in range(2, 13) if x != n])
    item = r.choice(ITEMS)
    word = r.random() < 0.5
    a_n, b_n = (NUMBER_WORDS[n], NUMBER_WORDS[m]) if word else (str(n), str(m))
    templates = [
        (f"If I have {a_n} {item} and eat one, how many are left?", None),
        (f"What is {a_n} times {r.randint(3, 9)}?", None),
        (f"Split {a_n} {item} evenly among 2 friends: how many each?", None),
        (f"Is {a_n * 1 if not word else a_n} an even number?", None),
        (f"Give me {a_n} ideas for a birthday party", None),
        (f"How many {item} are in {a_n} dozen?", None),
        (f"List {a_n} facts about the Moon", None),
    ]
    text, _ = r.choice(templates)
    near = text.replace(a_n, b_n, 1)
    para_n = str(n) if word else NUMBER_WORDS[n]
    para = text.replace(a_n, para_n, 1)
    return text, near, para


def _units(r: random.Random) -> tuple[str, str, str]:
    u, v = r.choice(UNIT_PAIRS)
    q = r.choice(["5", "10", "12", "3.5", "100", "42"])
    forms = [
        (f"Convert {q} {u} to {v}", f"Convert {q} {v} to {u}", f"How many {v} is {q} {u}?"),
        (f"How many {v} are in {q} {u}?", f"How many {u} are in {q} {v}?", f"{q} {u} in {v}"),
        (
            f"What is {q} {u} in {v}?",
            f"What is {q} {v} in {u}?",
            f"Please convert {q} {u} into {v}",
        ),
        (f"convert {u} to {v}", f"convert {v} to {u}", f"how do I convert from {u} to {v}"),
        (
            f"Formula to go from {u} to {v}",
            f"Formula to go from {v} to {u}",
            f"What's the formula for converting {u} to {v}?",
        ),
    ]
    return r.choice(forms)


def _antonyms(r: random.Random) -> tuple[str, str, str]:
    a, b = r.choice(ANTONYMS)
    obj = r.choice(ANTONYM_OBJECTS)
    if r.random() < 0.5:
        a, b = b, a
    forms = [
        (f"How do I {a} {obj}?", f"How do I {b} {obj}?", f"What's the way to {a} {obj}?"),
        (f"Steps to {a} {obj}", f"Steps to {b} {obj}", f"How can I {a} {obj}?"),
        (
            f"What is the best way to {a} {obj}?",
            f"What is the best way to {b} {obj}?",
            f"Best method to {a} {obj}",
        ),
    ]
    return r.choice(forms)


def _prefix(r: random.Random) -> tuple[str, str, str]:
    a, b = r.choice(ADJECTIVES)
    subj = r.choice(ADJ_SUBJECTS)
    if r.random() < 0.5:
        a, b = b, a
    forms = [
        (f"Is it {a} {subj}?", f"Is it {b} {subj}?", f"Would it be {a} {subj}?"),
        (f"Why is it {a} {subj}?", f"Why is it {b} {subj}?", f"Explain why it's {a} {subj}"),
        (
            f"Tell me whether it is {a} {subj}",
            f"Tell me whether it is {b} {subj}",
            f"Is it {a} {subj}? Tell me.",
        ),
    ]
    return r.choice(forms)


def _negation(r: random.Random) -> tuple[str, str, str]:
    subj = r.choice(ADJ_SUBJECTS)
    adj, _ = r.choice(ADJECTIVES)
    forms = [
        (f"Is it {adj} {subj}?", f"Is it not {adj} {subj}?", f"Would it be {adj} {subj}?"),
        (
            f"Why is it {adj} {subj}?",
            f"Why isn't it {adj} {subj}?",
            f"Explain why it's {adj} {subj}",
        ),
        (
            f"Should I {r.choice(['use', 'learn', 'pick'])} {r.choice(CODE_LANGS)} for this?",
            None,
            None,
        ),
    ]
    text, near, para = r.choice(forms)
    if near is None:  # "should I" -> "should I not" / "shouldn't I"
        near = text.replace("Should I", r.choice(["Should I not", "Shouldn't I"]))
        para = text.replace("Should I", "Is it a good idea to").replace(" for this?", " here?")
    return text, near, para


def _roles(r: random.Random) -> tuple[str, str, str]:
    x, y = r.sample(PEOPLE + TEAMS, 2)
    verb, base = r.choice(VERBS)
    year = r.choice(["", " in 2019", " last season", " in the final"])
    forms = [
        (f"Did {x} {base} {y}{year}?", None),
        (f"Why {x} {verb} {y}{year}", None),
        (f"When {x} {verb} {y}{year}, what happened next?", None),
        (f"Is {x} older than {y}?", None),
        (f"Flights from {r.choice(CITIES)} to {r.choice(CITIES)}", None),
        (f"How far is it from {r.choice(CITIES)} to {r.choice(CITIES)}?", None),
    ]
    text, _ = r.choice(forms)
    if text.startswith(("Flights", "How far")):
        cities = [c for c in CITIES if c in text]
        if len(cities) < 2 or cities[0] == cities[1]:
            return _roles(r)
        c1, c2 = cities[0], cities[1]
        near = text.replace(c1, "\0").replace(c2, c1).replace("\0", c2)
        para = (
            f"Show me flights from {c1} to {c2}"
            if text.startswith("Flights")
            else f"What's the distance from {c1} to {c2}?"
        )
        return text, near, para
    near = text.replace(x, "\0").replace(y, x).replace("\0", y)
    para = text.replace(x, x)  # a light rewording of the frame keeps the roles
    para = para.replace("Did ", "Was it true that ").replace("Why ", "For what reason ")
    para = para.replace("Is ", "Would you say ").replace("When ", "After ")
    return text, near, para


def _code(r: random.Random) -> tuple[str, str, str]:
    kind = r.randrange(3)
    if kind == 0:
        a, b = r.choice(COMMANDS)
        forms = [
            (f"What does `{a}` do?", f"What does `{b}` do?", f"Explain the command {a}"),
            (f"what does {a} do", f"what does {b} do", f"explain `{a}` please"),
            (f"Difference of {a} from plain use", f"Difference of {b} from plain use", None),
        ]
    elif kind == 1:
        a, b = r.choice(CONDITIONS)
        lang = r.choice(CODE_LANGS)
        forms = [
            (
                f"In {lang}, what does `if {a}` check?",
                f"In {lang}, what does `if {b}` check?",
                None,
            ),
            (f"Explain the expression {a}", f"Explain the expression {b}", None),
            (f"When is {a} true?", f"When is {b} true?", f"In which cases is {a} true?"),
        ]
    else:
        a, b = r.choice(IDENTIFIERS)
        forms = [
            (f"How does {a}() work in Python?", f"How does {b}() work in Python?", None),
            (f"Example of {a}", f"Example of {b}", f"Show an example using {a}"),
        ]
    text, near, para = r.choice(forms)
    if para is None:
        para = "Please tell me: " + text[0].lower() + text[1:]
    return text, near, para


def _dates(r: random.Random) -> tuple[str, str, str]:
    if r.random() < 0.5:
        a, b = r.sample(DAYS, 2)
    else:
        a, b = r.sample(MONTHS, 2)
    rel = r.sample(["today", "tomorrow", "yesterday", "next week", "this weekend"], 2)
    city = r.choice(CITIES)
    forms = [
        (f"What's the weather in {city} on {a}?", f"What's the weather in {city} on {b}?"),
        (f"Is the museum open on {a}?", f"Is the museum open on {b}?"),
        (f"Book a table for {a} evening", f"Book a table for {b} evening"),
        (f"Events in {city} {rel[0]}", f"Events in {city} {rel[1]}"),
        (f"What should I plant in {a}?", f"What should I plant in {b}?"),
    ]
    text, near = r.choice(forms)
    para = "Could you tell me: " + text[0].lower() + text[1:]
    return text, near, para


def _language(r: random.Random) -> tuple[str, str, str]:
    if r.random() < 0.6:
        a, b = r.sample(LANGS, 2)
        phrase = r.choice(["good morning", "thank you very much", "where is the station"])
        forms = [
            (
                f"Translate '{phrase}' into {a}",
                f"Translate '{phrase}' into {b}",
                f"How do you say '{phrase}' in {a}?",
            ),
            (
                f"Write a short poem about the sea in {a}",
                f"Write a short poem about the sea in {b}",
                f"Compose a brief poem on the sea, in {a}",
            ),
            (
                f"Reply in {a}: what is photosynthesis?",
                f"Reply in {b}: what is photosynthesis?",
                f"In {a}, explain what photosynthesis is",
            ),
        ]
    else:
        a, b = r.sample(CODE_LANGS, 2)
        forms = [
            (
                f"How do I read a file line by line in {a}?",
                f"How do I read a file line by line in {b}?",
                f"Reading a file line by line with {a}",
            ),
            (
                f"Write a {a} function that reverses a string",
                f"Write a {b} function that reverses a string",
                f"Give me a function in {a} to reverse a string",
            ),
        ]
    return r.choice(forms)


def _entities(r: random.Random) -> tuple[str, str, str]:
    a, b = r.sample(COUNTRIES, 2)
    forms = [
        (f"What is the capital of {a}?", f"What is the capital of {b}?", f"{a}'s capital city?"),
        (
            f"What currency is used in {a}?",
            f"What currency is used in {b}?",
            f"Which currency does {a} use?",
        ),
        (
            f"Population of {a} in 2020",
            f"Population of {b} in 2020",
            f"How many people lived in {a} in 2020?",
        ),
    ]
    return r.choice(forms)


CATEGORIES: dict[str, Callable[[random.Random], tuple[str, str, str]]] = {
    "numbers": _numbers,
    "units": _units,
    "antonyms": _antonyms,
    "prefix_negation": _prefix,
    "negation": _negation,
    "roles": _roles,
    "code": _code,
    "dates": _dates,
    "language": _language,
    "entities": _entities,
}


def generate(seed: int = 0, per_category: int = 40) -> list[dict[str, object]]:
    """``per_category`` near misses and as many paraphrase controls per category, drawn
    with ``seed``; duplicates within a category are drawn again (a bounded number of
    times)."""
    r = random.Random(seed)
    rows: list[dict[str, object]] = []
    for category, make in CATEGORIES.items():
        seen: set[tuple[str, str]] = set()
        tries = 0
        while len(seen) < per_category and tries < per_category * 20:
            tries += 1
            text, near, para = make(r)
            if (text, near) in seen or text == near:
                continue
            seen.add((text, near))
            base = {"category": category, "text_a": text}
            rows.append({**base, "text_b": near, "same_meaning": False})
            rows.append({**base, "text_b": para, "same_meaning": True})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-category", type=int, default=40)
    args = parser.parse_args()
    for row in generate(args.seed, args.per_category):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
