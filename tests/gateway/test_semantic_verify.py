"""The semantic cache's verification stage (`aigw_lab.gateway.semantic_verify`): each check
refuses its near miss and keeps its paraphrase; the cache asks the verifier about every
candidate above the threshold, serves the first it accepts, counts what it refuses, and can
be told to run without it (in Python and in the config file)."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigw_lab import ChatRequest, Gateway, Price
from aigw_lab.config import load_config
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.semantic_cache import LexicalVerifier, PairVerifier, SemanticCache
from aigw_lab.gateway.semantic_verify import CHECKS, profile_text
from aigw_lab.testing.fakes import FunctionProvider
from aigw_lab.types import ChatResponse, Usage

EMBEDDER = HashingEmbedder(256)
VERIFIER = LexicalVerifier()

# (category, cached prompt, the near miss asked after it). Written for these tests; the
# dev generator (bench/near_miss_dev.py) has its own phrasings.
NEAR_MISSES = [
    ("numbers", "How many legs do three spiders have?", "How many legs do four spiders have?"),
    ("numbers", "What is 12% of 250?", "What is 15% of 250?"),
    ("numbers", "Sum of the first ten primes", "Sum of the first eleven primes"),
    ("numbers", "Who was the third president?", "Who was the fourth president?"),
    ("numbers", "Is -3 less than 2?", "Is 3 less than 2?"),
    ("numbers", "Population in 1,500,000 households", "Population in 1,600,000 households"),
    ("units", "Convert 5 miles to km", "Convert 5 km to miles"),
    ("units", "How many ounces in a pound?", "How many pounds in an ounce?"),
    ("units", "Change 30 Celsius into Fahrenheit", "Change 30 Fahrenheit into Celsius"),
    ("units", "Express 2 hours in minutes", "Express 2 minutes in hours"),
    ("units", "convert gallons to liters", "convert liters to gallons"),
    ("antonyms", "How to increase swap on Ubuntu", "How to decrease swap on Ubuntu"),
    ("antonyms", "Pros of remote work", "Cons of remote work"),
    ("antonyms", "Sort the list in ascending order", "Sort the list in descending order"),
    ("antonyms", "Is it possible to divide by zero?", "Is it impossible to divide by zero?"),
    ("antonyms", "Why is this code legal in C?", "Why is this code illegal in C?"),
    ("antonyms", "Is caffeine useful for studying?", "Is caffeine useless for studying?"),
    ("negation", "Does aspirin thin the blood?", "Doesn't aspirin thin the blood?"),
    ("negation", "Which fruits contain vitamin C?", "Which fruits contain no vitamin C?"),
    ("negation", "Can I travel with a passport?", "Can I travel without a passport?"),
    ("dates", "Is the bank open on Sunday?", "Is the bank open on Saturday?"),
    ("dates", "Weather in Oslo tomorrow", "Weather in Oslo today"),
    ("dates", "What holidays fall in November?", "What holidays fall in December?"),
    ("dates", "Plan a trip for next week", "Plan a trip for next month"),
    ("language", "Say hello in Spanish", "Say hello in Italian"),
    ("language", "Answer in English: what is DNA?", "Answer in Japanese: what is DNA?"),
    ("language", "Parse JSON in Go", "Parse JSON in Rust"),
    ("language", "Write quicksort in Haskell", "Write quicksort in Scala"),
    ("code", "What does `git push -f` do?", "What does `git push -u` do?"),
    ("code", "Explain `tar -x` usage", "Explain `tar -c` usage"),
    ("code", "Why does a <= b fail here?", "Why does a < b fail here?"),
    ("code", "Difference between == and === in JS", "Difference between == and != in JS"),
    ("code", "What does np.argmax return?", "What does np.argmin return?"),
    ("code", "Meaning of `chmod 600`", "Meaning of `chmod 700`"),
    ("entities", "Who founded Microsoft?", "Who founded Apple?"),
    ("entities", "Tallest building in Dubai", "Tallest building in Shanghai"),
    ("roles", "Did Sparta defeat Athens?", "Did Athens defeat Sparta?"),
    ("roles", "Is a whale bigger than an elephant?", "Is an elephant bigger than a whale?"),
    ("roles", "Train times from Leeds to York", "Train times from York to Leeds"),
    ("roles", "Why does the cat chase the dog?", "Why does the dog chase the cat?"),
    # Glued units, currency before its number, times of day, one-letter names, versions,
    # contrast sets, adverbs, direction words in a short prompt.
    ("units", "convert 5kg to lbs", "convert 5lbs to kg"),
    ("units", "What's 100°F in Celsius?", "What's 100°C in Fahrenheit?"),
    ("numbers", "Tax rate on income over $40,000", "Tax rate on income over $400,000"),
    ("numbers", "Is 5G faster than wifi?", "Is 4G faster than wifi?"),
    ("dates", "Is the store open at 9 am?", "Is the store open at 9 pm?"),
    ("dates", "Forecast for this weekend", "Forecast for next weekend"),
    ("code", "What does print(x) output?", "What does print(y) output?"),
    ("code", "Is GPT-4 better at maths?", "Is GPT-3.5 better at maths?"),
    ("antonyms", "What is the boiling point of ethanol?", "What is the freezing point of ethanol?"),
    ("antonyms", "Why is my laptop charging slowly?", "Why is my laptop charging quickly?"),
    ("antonyms", "Translate this to English", "Translate this from English"),
    ("negation", "Is the API blocking?", "Is the API non-blocking?"),
    ("units", "Best laptop under 50000 INR", "Best laptop under 50000 USD"),
]

# Pairs that ask the same thing, with the detail each check looks at kept.
PARAPHRASES = [
    ("How many legs do three spiders have?", "How many legs do 3 spiders have?"),
    ("What is twenty five times four?", "What is 25 times 4?"),
    ("Which one is cheaper?", "Which is cheaper?"),
    ("Convert 5 miles to km", "How many kilometres is 5 miles?"),
    ("convert gallons to liters", "how do I go from gallons to litres"),
    ("How to increase swap on Ubuntu", "Ways to increase swap on Ubuntu"),
    ("Is it possible to divide by zero?", "Can you divide by zero, is it possible?"),
    ("Why isn't my code compiling?", "Why is my code not compiling?"),
    ("Is the bank open on Sunday?", "On Sunday, is the bank open?"),
    ("May I bring a dog?", "Can I bring a dog?"),
    ("Say hello in Spanish", "How do you say hello in Spanish?"),
    ("What does `git push -f` do?", "Explain git push -f"),
    ("Who founded Microsoft?", "Microsoft was founded by whom?"),
    ("Did Sparta defeat Athens?", "Was it Sparta that defeated Athens?"),
    ("Difference between TCP and UDP", "Difference between UDP and TCP"),
    ("No, it is not in version 2.1.", "Version 2.1 does not have it."),
    ("What's 100°F in Celsius?", "Convert 100 degrees Fahrenheit to Celsius"),
    ("convert 5kg to lbs", "how many pounds is 5 kg"),
    ("Is the store open at 9 am?", "Is the shop open at 9am?"),
    ("Is GPT-4 better at maths?", "Is GPT4 better at maths?"),
    ("Give me 5 tips for better sleep", "Five tips for sleeping better"),
    ("Read a CSV without streaming", "Read a CSV in non-streaming mode"),
    ("Steps: 1) open the file 2) read it", "Steps: open the file, then read it"),
    ("Which is the best phone under 10000 INR?", "Which is the best phone under 10000?"),
    ("How tall are the Rockies?", "How tall is the Rocky range?"),  # a name's plural
]


@pytest.mark.parametrize("category, cached, query", NEAR_MISSES)
def test_each_check_refuses_its_near_miss_on_its_own(category, cached, query):
    assert not VERIFIER.accept(query, cached, 0.99)
    assert not VERIFIER.accept(cached, query, 0.99)  # in either direction
    # That check alone refuses it (another may too: a swapped conversion is also a role
    # swap), and with no checks at all the pair would pass.
    assert LexicalVerifier(checks=[category]).difference(query, cached) == category
    assert LexicalVerifier(checks=()).accept(query, cached, 0.99)


@pytest.mark.parametrize("cached, query", PARAPHRASES)
def test_paraphrases_that_keep_the_detail_are_accepted(cached, query):
    assert VERIFIER.difference(query, cached) is None
    assert VERIFIER.difference(cached, query) is None  # in either direction


def test_the_text_is_normalised_before_it_is_compared():
    profile = profile_text("Isn’t it twenty-one or two hundred and 1,000.0 km? Not only that")
    assert profile.numbers == ("1000", "200", "21")
    assert profile.negations == 1  # "isn't"; "not only" negates nothing
    assert profile.quantities == (("1000", "km"),)
    assert profile_text("Which one?").numbers == () and profile_text("one mile").numbers == ("1",)
    assert profile_text("May I go in March 2024?").dates == ("march",)


def test_the_memo_is_bounded_and_reused():
    verifier = LexicalVerifier(memo=2)
    first = verifier.profile("a b c")
    assert verifier.profile("a b c") is first
    verifier.profile("d"), verifier.profile("e")
    assert verifier.profile("a b c") is not first  # evicted, read again


def test_extra_antonyms_extend_the_lexicon():
    pair = ("Is the analyst bullish on gold?", "Is the analyst bearish on gold?")
    assert VERIFIER.accept(*pair, 0.99)
    assert not LexicalVerifier(extra_antonyms=[("Bullish", "bearish")]).accept(*pair, 0.99)


def test_an_unknown_check_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="units"):
        LexicalVerifier(checks=["unit"])


# --- in the cache ---------------------------------------------------------------------------


PRICES = {"mock/m1": Price(1.0, 2.0)}
CACHED, NEAR = "Convert 5 miles to km please", "Convert 5 km to miles please"


def cosine(a, b):
    va, vb = EMBEDDER.embed([a, b])
    return float(va @ vb)


def answer(text):
    return ChatResponse(
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=3, output_tokens=2),
        provider="mock",
        model="m1",
    )


def echo_gateway(cache):
    fn = FunctionProvider(lambda r: "answer to " + r.messages[-1].text, name="mock", models=("m1",))
    return Gateway([fn], middleware=[cache], prices=PRICES, log=None), fn


def run(gw, mode, prompt):
    if mode == "chat":
        return gw.chat("mock/m1", prompt).text
    if mode == "stream":
        return "".join(gw.stream("mock/m1", prompt))
    if mode == "achat":
        return asyncio.run(gw.achat("mock/m1", prompt)).text

    async def consume():
        return "".join([t async for t in gw.astream("mock/m1", prompt)])

    return asyncio.run(consume())


@pytest.mark.parametrize("mode", ["chat", "achat", "stream", "astream"])
def test_a_near_miss_goes_upstream_in_every_call_mode_and_is_counted(mode):
    threshold = cosine(CACHED, NEAR) - 0.01  # similar enough to hit without verification
    verified = SemanticCache(EMBEDDER, threshold=threshold)
    unverified = SemanticCache(EMBEDDER, threshold=threshold, verifier=None)
    for cache, second in ((verified, "answer to " + NEAR), (unverified, "answer to " + CACHED)):
        gw, fn = echo_gateway(cache)
        with gw:
            assert run(gw, mode, CACHED) == "answer to " + CACHED
            assert run(gw, mode, NEAR) == second
    stats = verified.stats()
    assert (stats.hits, stats.misses, stats.rejected, stats.guarded) == (0, 2, 1, 1)
    assert "rejected by verification: 1" in str(stats)
    assert unverified.stats().rejected == 0 and unverified.stats().hits == 1


def test_the_best_candidate_the_verifier_accepts_is_served():
    query = "Convert 5 miles to km now"
    best, second = "Convert 5 km to miles now", "Please convert 5 miles to km"
    assert cosine(query, best) > cosine(query, second) > 0.3  # the verifier must skip the best
    cache = SemanticCache(EMBEDDER, threshold=0.3)
    for text in (best, second):
        cache.add(ChatRequest.create("m1", text), answer(text), provider="mock", model="m1")
    match = cache.lookup(ChatRequest.create("m1", query), provider="mock", model="m1")
    assert match.text == second
    assert cache.stats().rejected == 0  # lookup() counts nothing


def test_verifier_none_keeps_the_old_guards_and_off_is_the_same():
    # "possible"/"impossible" passes the old guards; numbers do not.
    cached, query = "Is it possible to cache this thing?", "Is it impossible to cache this thing?"
    threshold = cosine(cached, query) - 0.01
    for verifier, expected in (("lexical", None), (None, cached), ("off", cached)):
        cache = SemanticCache(EMBEDDER, threshold=threshold, verifier=verifier)
        cache.add(ChatRequest.create("m1", cached), answer("x"), provider="m", model="m1")
        match = cache.lookup(ChatRequest.create("m1", query), provider="m", model="m1")
        assert (match.text if match else None) == expected, verifier
    numbers = SemanticCache(EMBEDDER, threshold=0.3, verifier=None)
    numbers.add(ChatRequest.create("m1", "Is 17 prime?"), answer("x"), provider="m", model="m1")
    assert (
        numbers.lookup(ChatRequest.create("m1", "Is 19 prime?"), provider="m", model="m1") is None
    )


class Refuses:
    """A verifier that refuses everything and notes what it was asked."""

    def __init__(self):
        self.asked = []

    def accept(self, query, cached, similarity):
        self.asked.append((query, cached, round(similarity, 6)))
        return False


def test_a_custom_verifier_is_asked_about_each_candidate_above_the_threshold():
    verifier = Refuses()
    assert isinstance(verifier, PairVerifier)
    cache = SemanticCache(EMBEDDER, threshold=0.3, verifier=verifier, top_k=3)
    texts = ["Convert 5 miles to km", "convert 5 miles to km!", "Bake bread at home"]
    for text in texts:
        cache.add(ChatRequest.create("m1", text), answer(text), provider="m", model="m1")
    gw, fn = echo_gateway(cache)
    with gw:
        gw.chat("mock/m1", "Convert 5 miles to km?")  # another partition: nothing asked
    assert verifier.asked == []
    query = ChatRequest.create("m1", "Convert 5 miles to km?")
    assert cache.lookup(query, provider="m", model="m1") is None
    above = [t for t in texts if cosine("Convert 5 miles to km?", t) >= 0.3]
    assert [cached for _, cached, _ in verifier.asked] == sorted(
        above, key=lambda t: -cosine("Convert 5 miles to km?", t)
    )
    assert cache.describe()["verifier"] == repr(verifier)


@pytest.mark.parametrize("bad", ["lexicon", 3, object()])
def test_a_bad_verifier_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="verifier"):
        SemanticCache(EMBEDDER, verifier=bad)


def test_guard_flags_drop_the_default_verifiers_number_and_negation_checks():
    cache = SemanticCache(EMBEDDER, guard_numbers=False, guard_negation=False)
    assert "numbers" not in cache.verifier.checks and "negation" not in cache.verifier.checks
    assert "units" in cache.verifier.checks


def write(tmp_path, text):
    path = tmp_path / "aigw.toml"
    path.write_text(text + "\n[providers.sim]\nkind = 'simulated'\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("value, expected", [('"off"', None), ('"lexical"', LexicalVerifier)])
def test_the_config_key_turns_verification_on_and_off(tmp_path, value, expected):
    path = write(tmp_path, f"[semantic_cache]\nverifier = {value}\n")
    with Gateway.from_config(path, log=None) as gw:
        (cache,) = [m for m in gw.middleware if isinstance(m, SemanticCache)]
    if expected is None:
        assert cache.verifier is None
    else:
        assert isinstance(cache.verifier, expected)


def test_a_bad_config_value_names_the_key_and_the_choices(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[semantic_cache]\nverifier = "strict"\n'))
    assert "verifier" in str(info.value) and '"lexical" or "off"' in str(info.value)


def test_every_check_has_near_misses_above():
    assert {category for category, _, _ in NEAR_MISSES} == set(CHECKS)


def test_direction_words_count_in_short_prompts_only():
    short = ("Translate this to English", "Translate this from English")
    long = tuple(
        f"The guide explains, step by step and with examples, how data moves {w} the cloud "
        "storage bucket that the team configured last year for the analytics project"
        for w in ("to", "from")
    )
    assert VERIFIER.difference(*short) == "antonyms"
    assert VERIFIER.accept(*long, 0.99)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_any_text_is_read_and_a_text_always_answers_itself(a, b):
    assert isinstance(VERIFIER.accept(a, b, 0.95), bool)
    assert VERIFIER.accept(a, a, 1.0)
    assert VERIFIER.difference(a, b) in (None, *CHECKS)


@pytest.mark.parametrize(
    "hostile",
    [
        "1," * 30000,  # a number run with a separator at every other character
        "`" * 50000,  # backticks that never close
        "--a" * 20000,
        "x " * 50000,
        "\u0000\ud800" * 1000,  # a NUL and a lone surrogate
    ],
)
def test_hostile_prompts_are_read_without_error_and_not_memoised(hostile):
    verifier = LexicalVerifier()
    assert verifier.accept(hostile, hostile[:-1] + "?", 0.95) in (True, False)
    if len(hostile) > 8192:  # a huge prompt is read again rather than held
        assert len(verifier._memo) == 0


def test_a_hit_after_a_rejected_candidate_counts_both():
    query = "Convert 5 miles to km now"
    best, second = "Convert 5 km to miles now", "Please convert 5 miles to km"
    cache = SemanticCache(EMBEDDER, threshold=0.3)
    for text in (best, second):
        cache.add(ChatRequest.create("m1", text), answer(text), provider="mock", model="m1")
    gw, fn = echo_gateway(cache)
    with gw:
        assert gw.chat("mock/m1", query).text == second
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.rejected, stats.guarded) == (1, 0, 1, 1)
    assert not fn.requests
