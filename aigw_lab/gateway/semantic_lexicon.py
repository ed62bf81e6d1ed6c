"""The small word lists the semantic cache's verification stage reads (`semantic_verify`):
number words, units, antonyms, negation prefixes, dates, language names, contractions.

Written by hand for this project (no corpus was copied). Each list holds the words whose
substitution changes what a question asks while leaving its embedding almost where it was:
the false hits a vector search cannot see. Kept as plain data so a reader can audit it and
a user can extend it (`LexicalVerifier(extra_antonyms=...)`).
"""

from __future__ import annotations

__all__ = [
    "NUMBER_WORDS",
    "SCALE_WORDS",
    "ORDINALS",
    "UNITS",
    "ANTONYM_PAIRS",
    "NEGATING_PREFIXES",
    "NEGATION_WORDS",
    "WEEKDAYS",
    "MONTHS",
    "RELATIVE_DATES",
    "LANGUAGES",
    "CONTRACTIONS",
    "CONTRAST_SETS",
    "DIRECTION_PAIRS",
    "STOPWORDS",
    "SYMMETRIC_JOINS",
]

#: Number words and their values. "one" is here, but the verifier reads it as a number only
#: where it counts something ("one mile", "twenty one"): "which one" has no number in it.
NUMBER_WORDS: dict[str, int] = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
NUMBER_WORDS.update(
    twenty=20, thirty=30, forty=40, fifty=50, sixty=60, seventy=70, eighty=80, ninety=90
)
NUMBER_WORDS.update(half=0.5, quarter=0.25)  # "half a cup"
NUMBER_WORDS.update(twice=2, thrice=3, triple=3, quadruple=4)  # "twice the dose"
#: Multipliers: "two hundred" is 200. Alone ("thousands of files") they are vague amounts,
#: not numbers, so a paraphrase saying "several thousand" still matches.
SCALE_WORDS: dict[str, int] = {
    "hundred": 100,
    "thousand": 1_000,
    "million": 1_000_000,
    "billion": 1_000_000_000,
    "trillion": 1_000_000_000_000,
    "dozen": 12,
}
#: Ordinal words -> their number ("the third step" is not "the fourth step"). "second" is
#: also a unit of time: the verifier reads it as an ordinal only after "the".
ORDINALS: dict[str, int] = {
    w: i + 1
    for i, w in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()
    )
}
ORDINALS.update(last=-1)  # "the last element" differs from "the first element"

# Units: every spelling -> one canonical name. Their order tells a conversion's direction.
_UNIT_SPELLINGS = {
    "km": "kilometer kilometers kilometre kilometres km kms",
    "mile": "mile miles mi",
    "m": "m meter meters metre metres",
    "cm": "centimeter centimeters centimetre centimetres cm",
    "mm": "millimeter millimeters millimetre millimetres mm",
    "ft": "foot feet ft",
    "in": "inch inches",
    "yd": "yard yards yd",
    "kg": "kilogram kilograms kilo kilos kg kgs",
    "g": "gram grams",
    "mg": "milligram milligrams mg",
    "lb": "pound pounds lb lbs",
    "oz": "ounce ounces oz",
    "stone": "stone stones",
    "ton": "ton tons tonne tonnes",
    "l": "liter liters litre litres",
    "ml": "milliliter milliliters millilitre millilitres ml",
    "gal": "gallon gallons gal",
    "cup": "cup cups",
    "tbsp": "tablespoon tablespoons tbsp",
    "tsp": "teaspoon teaspoons tsp",
    "pint": "pint pints",
    "quart": "quart quarts",
    "celsius": "celsius centigrade °c",
    "fahrenheit": "fahrenheit °f",
    "kelvin": "kelvin",
    "s": "second seconds sec secs",
    "min": "minute minutes mins",
    "h": "hour hours hr hrs",
    "day": "day days",
    "week": "week weeks",
    "month": "month months",
    "year": "year years",
    "ms": "millisecond milliseconds",
    "usd": "dollar dollars usd $",
    "eur": "euro euros eur €",
    "gbp": "sterling gbp £",
    "jpy": "yen jpy ¥",
    "inr": "rupee rupees inr rs",
    "cny": "yuan rmb cny",
    "byte": "byte bytes",
    "bit": "bit bits",
    "kb": "kilobyte kilobytes kb",
    "mb": "megabyte megabytes mb",
    "gb": "gigabyte gigabytes gb",
    "tb": "terabyte terabytes tb",
    "mph": "mph",
    "kmh": "kph kmh km/h",
    "acre": "acre acres",
    "hectare": "hectare hectares",
    "calorie": "calorie calories kcal cal",
    "joule": "joule joules",
    "watt": "watt watts",
    "kw": "kilowatt kilowatts kw",
    "kwh": "kwh",
    "percent": "percent percentage %",
    "degree": "degree degrees",
    "radian": "radian radians",
}
UNITS: dict[str, str] = {
    spelling: unit for unit, spellings in _UNIT_SPELLINGS.items() for spelling in spellings.split()
}

#: Words that ask the opposite thing. Matched after lower-casing, on whole words.
ANTONYM_PAIRS: tuple[tuple[str, str], ...] = tuple(
    tuple(pair.split("/"))  # type: ignore[misc]
    for pair in (
        "increase/decrease increases/decreases increasing/decreasing increased/decreased "
        "increase/reduce raise/lower rise/fall rises/falls rising/falling "
        "more/less more/fewer most/least many/few higher/lower highest/lowest high/low "
        "larger/smaller largest/smallest large/small bigger/smaller biggest/smallest "
        "big/small greater/less greatest/least longer/shorter longest/shortest long/short "
        "taller/shorter tallest/shortest faster/slower fastest/slowest fast/slow quick/slow "
        "heavier/lighter heaviest/lightest heavy/light older/younger oldest/youngest "
        "old/new old/young newer/older newest/oldest cheaper/expensive cheapest/dearest "
        "hotter/colder hottest/coldest hot/cold warm/cold warmer/cooler wider/narrower "
        "stronger/weaker strongest/weakest strong/weak harder/easier hardest/easiest "
        "hard/easy difficult/easy better/worse best/worst good/bad max/min maximum/minimum "
        "maximize/minimize maximise/minimise before/after above/below over/under "
        "inside/outside internal/external input/output inbound/outbound incoming/outgoing "
        "import/export imports/exports buy/sell buying/selling bought/sold lend/borrow "
        "win/lose wins/loses won/lost winning/losing winner/loser victory/defeat "
        "add/remove adding/removing added/removed insert/delete create/delete "
        "enable/disable enabled/disabled enabling/disabling allow/deny allow/block "
        "accept/reject accepted/rejected include/exclude including/excluding "
        "encrypt/decrypt encryption/decryption encode/decode encoding/decoding "
        "compress/decompress compression/decompression zip/unzip serialize/deserialize "
        "upload/download uploading/downloading push/pull send/receive sent/received "
        "open/close opening/closing start/stop start/end begin/end beginning/end "
        "first/last top/bottom left/right up/down north/south east/west "
        "northern/southern eastern/western positive/negative plus/minus add/subtract "
        "addition/subtraction multiply/divide multiplication/division sum/difference "
        "ascending/descending asc/desc forward/backward forwards/backwards "
        "true/false yes/no on/off online/offline synchronous/asynchronous sync/async "
        "sync/unsync lowercase/uppercase upper/lower horizontal/vertical horizontally/vertically "
        "row/column rows/columns inner/outer import/export public/private static/dynamic "
        "client/server frontend/backend front/back local/remote stack/queue "
        "odd/even male/female men/women man/woman boy/girl husband/wife father/mother "
        "king/queen brother/sister son/daughter his/her he/she "
        "early/late earlier/later earliest/latest morning/evening day/night dawn/dusk "
        "sunrise/sunset summer/winter spring/autumn past/future present/past "
        "advantage/disadvantage advantages/disadvantages pros/cons benefit/drawback "
        "benefits/drawbacks strength/weakness strengths/weaknesses profit/loss "
        "gain/lose gain/loss asset/liability assets/liabilities debit/credit "
        "safe/dangerous safest/most healthy/harmful cause/cure causes/cures "
        "love/hate like/dislike agree/disagree true/untrue legal/banned "
        "rich/poor richest/poorest wealthy/poor success/failure succeed/fail "
        "pass/fail passed/failed valid/invalid always/never everything/nothing "
        "everyone/nobody all/none full/empty wet/dry light/dark bright/dark "
        "sweet/sour sweet/bitter thick/thin deep/shallow loud/quiet noisy/quiet "
        "wide/narrow far/near farther/closer furthest/closest distant/close "
        "attack/defend attacker/defender offense/defense offensive/defensive "
        "import/export imported/exported export/import exporting/importing "
        "inflation/deflation expand/shrink expand/collapse grow/shrink growth/decline "
        "appreciate/depreciate surplus/deficit upgrade/downgrade install/uninstall "
        "mount/unmount lock/unlock freeze/unfreeze hide/show visible/hidden "
        "join/leave enter/exit arrive/depart arrival/departure entry/exit "
        "predecessor/successor parent/child parents/children prefix/suffix head/tail "
        "minimum/max min/maximum lowest/top cheapest/priciest cheap/expensive "
        "acid/base acidic/basic acidic/alkaline anode/cathode cation/anion "
        "oxidation/reduction oxidize/reduce endothermic/exothermic "
        "mitosis/meiosis aerobic/anaerobic systolic/diastolic hyper/hypo "
        "hyperthyroidism/hypothyroidism hypertension/hypotension "
        "hyperglycemia/hypoglycemia inhale/exhale inhaling/exhaling "
        "vegetarian/vegan read/write reading/writing reader/writer "
        "get/set getter/setter often/rarely usually/rarely frequently/rarely "
        "approve/deny permit/forbid allow/forbid allow/prohibit uncle/aunt nephew/niece "
        "grandfather/grandmother grandson/granddaughter singular/plural vowel/consonant "
        "numerator/denominator derivative/integral differentiate/integrate "
        "prime/composite sunrise/sunset import/require lend/borrow lender/borrower "
        "employer/employee landlord/tenant buyer/seller seller/buyer debtor/creditor "
        "teacher/student doctor/patient predator/prey"
    ).split()
)

#: Direction words: opposites in a short prompt ("translate this to English" / "from
#: English"), too common in long texts to compare there (the verifier checks them only
#: when both texts have at most `DIRECTION_MAX_WORDS` words).
DIRECTION_PAIRS: tuple[tuple[str, str], ...] = (("to", "from"), ("into", "from"))
DIRECTION_MAX_WORDS = 16

#: Groups of words that stand for different things of one kind: asking about one is not
#: asking about another ("boiling point" / "freezing point", "mean" / "median").
CONTRAST_SETS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        "boiling freezing melting",
        "mean median mode",
        "bold italic underline strikethrough",
        "light sound",
        "sin cos tan sine cosine tangent",
        "latitude longitude",
        "area perimeter circumference volume",
        "radius diameter",
        "tcp udp",
        "http https",
        "ram rom",
        "cpu gpu tpu",
        "ipv4 ipv6",
        "sql nosql",
        "dna rna",
        "virus bacteria",
        "weather climate",
        "noun verb adjective adverb pronoun",
        "breakfast lunch dinner",
        "spring summer autumn winter",
        "morning afternoon evening night",
        "solstice equinox",
        "proton neutron electron",
        "mitosis meiosis",
        "arteries veins",
        "artery vein",
        "herbivore carnivore omnivore",
        "mammal reptile amphibian bird fish insect",
        "gold silver bronze",
        "red blue green yellow orange purple black white",
        "iphone android",
        "windows linux macos mac ubuntu",
        "chrome firefox safari edge",
        "aws azure gcp",
        "mysql postgresql postgres sqlite mongodb redis",
        "react vue angular svelte",
        "django flask fastapi",
        "numpy pandas",
        "pytorch tensorflow",
        "docker kubernetes",
        "git svn",
        "npm yarn pip",
        "stocks bonds",
        "stock bond",
        "roth traditional",
        "credit debit",
        "bachelor master masters bachelors phd",
        "cats dogs",
        "cat dog",
        "tea coffee",
        "beer wine",
        "sun moon",
        "earth mars venus jupiter saturn mercury neptune uranus pluto",
    )
)

#: Prefixes that negate a word: "possible"/"impossible", "legal"/"illegal". The verifier
#: refuses a pair when one side has the bare word and the other the prefixed one.
NEGATING_PREFIXES: tuple[str, ...] = (
    "un",
    "in",
    "im",
    "il",
    "ir",
    "dis",
    "non",
    "mis",
    "anti",
    "de",
)
#: Suffix pairs that flip a word: "useful"/"useless".
NEGATING_SUFFIXES: tuple[tuple[str, str], ...] = (("ful", "less"),)

#: Negation markers, counted after contractions are expanded ("isn't" -> "is not").
NEGATION_WORDS: frozenset[str] = frozenset(
    "not no never none nothing nobody nowhere neither nor without cannot non".split()
)

WEEKDAYS: dict[str, str] = {
    d: d for d in "monday tuesday wednesday thursday friday saturday sunday".split()
}
WEEKDAYS.update(mon="monday", tues="tuesday", weds="wednesday", thurs="thursday")
MONTHS: dict[str, str] = {
    m: m
    for m in (
        "january february march april may june july august september october november december"
    ).split()
}
MONTHS.update(jan="january", feb="february", apr="april", jun="june", jul="july")
MONTHS.update(aug="august", sept="september", oct="october", nov="november", dec="december")
#: Months that are also ordinary English words: read as months only when capitalised
#: mid-sentence or next to a number ("May 5", "in March 2024").
AMBIGUOUS_MONTHS: frozenset[str] = frozenset(("may", "march", "august", "jan", "dec", "oct"))
#: Relative dates, holidays and parts of the week or year that change the answer.
RELATIVE_DATES: frozenset[str] = frozenset(
    (
        "today tomorrow yesterday tonight weekend weekday weekdays weekends noon midnight "
        "christmas easter thanksgiving halloween ramadan diwali hanukkah"
    ).split()
)
#: Words that make a following "week", "month" or "year" a date ("next week").
DATE_MODIFIERS: frozenset[str] = frozenset(("next", "last", "this", "previous", "coming"))

#: Language names (natural and programming) -> one canonical name. The answer to "in
#: French" is not the answer to "in German". Spellings that are also common words ("go",
#: "swift", "rust", "c", "r") are read as languages only when capitalised.
LANGUAGES: dict[str, str] = {
    name: name
    for name in (
        "english french german spanish italian portuguese dutch swedish norwegian danish "
        "finnish polish czech slovak hungarian romanian bulgarian greek turkish russian "
        "ukrainian arabic hebrew persian farsi hindi urdu bengali punjabi tamil telugu "
        "marathi gujarati chinese mandarin cantonese japanese korean vietnamese thai "
        "indonesian malay tagalog filipino swahili amharic yoruba zulu afrikaans latin "
        "esperanto catalan basque welsh irish icelandic estonian latvian lithuanian serbian "
        "croatian "
        "python javascript typescript java kotlin scala ruby php perl haskell clojure elixir "
        "erlang fortran cobol pascal lua julia matlab dart groovy bash powershell sql "
        "html css golang c++ c# f# objective-c zig ocaml lisp prolog"
    ).split()
}
LANGUAGES.update(
    farsi="persian",
    mandarin="chinese",
    filipino="tagalog",
    golang="go",
    js="javascript",
    ts="typescript",
    cpp="c++",
    csharp="c#",
    py="python",
)
#: Languages whose name is also an ordinary word: only when written capitalised.
CAPITALISED_LANGUAGES: dict[str, str] = {
    "Go": "go",
    "Swift": "swift",
    "Rust": "rust",
    "C": "c",
    "R": "r",
    "Ruby": "ruby",
    "Julia": "julia",
    "Scheme": "scheme",
    "Assembly": "assembly",
}

#: Contractions expanded before comparing ("isn't" and "is not" ask the same thing).
CONTRACTIONS: dict[str, str] = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "shan't": "shall not",
    "ain't": "is not",
    "let's": "let us",
    "i'm": "i am",
    "what's": "what is",
    "where's": "where is",
    "how's": "how is",
    "who's": "who is",
    "when's": "when is",
    "why's": "why is",
    "that's": "that is",
    "there's": "there is",
    "it's": "it is",
    "he's": "he is",
    "she's": "she is",
}

#: Words dropped before comparing the order of the content words (role swaps).
STOPWORDS: frozenset[str] = frozenset(
    (
        "a an the of to in on at by for from with about as into onto than then and or but "
        "is are was were be been being do does did done doing have has had having will would "
        "shall should can could may might must i me my we our you your it its this that these "
        "those there here what which who whom whose when where why how please tell explain "
        "me us them they their his her him she he if so just also very really some any "
        "show give get let know want need"
    ).split()
)
#: Joins across which swapping the two sides keeps the meaning ("X and Y", "X vs Y").
SYMMETRIC_JOINS: frozenset[str] = frozenset(("and", "or", "vs", "versus", "&", ",", "with", "nor"))
