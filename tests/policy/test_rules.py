"""Rules: conditions, first match wins, the by-category and cheapest-meeting helpers."""

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy import Condition, Rules, cheapest_meeting, policy_from_dict
from aigw_lab.providers.base import Price
from aigw_lab.types import ChatRequest

CHEAP = "sim-openai/sim-nano"
MID = "sim-openai/sim-small"
STRONG = "sim-anthropic/sim-sonnetish"


def req(prompt="hello", **kw):
    return ChatRequest.create("r", prompt, **kw)


@pytest.mark.parametrize(
    ("when", "request_kwargs", "expected"),
    [
        ({"category": "math"}, {"tags": {"category": "math"}}, True),
        ({"category": ["math", "code"]}, {"tags": {"category": "code"}}, True),
        ({"category": "math"}, {"tags": {"category": "chat"}}, False),
        ({"category": "math"}, {"metadata": {"aigw_experiment": {"category": "math"}}}, True),
        ({"tags": {"team": "a"}}, {"tags": {"team": "a", "x": "y"}}, True),
        ({"tags": {"team": "a"}}, {"tags": {"team": "b"}}, False),
        ({"metadata": {"tier": 2}}, {"metadata": {"tier": 2}}, True),
        ({"metadata": {"tier": 2}}, {}, False),
        ({"regex": r"\d+\s*[+*/-]\s*\d+"}, {"prompt": "what is 12 * 7?"}, True),
        ({"regex": r"\d+\s*[+*/-]\s*\d+"}, {"prompt": "tell me a story"}, False),
        ({"keywords": ["PROVE", "lemma"]}, {"prompt": "Please prove this"}, True),
        ({"keywords": ["prove"]}, {"prompt": "improve nothing"}, True),  # substring match
        ({"keywords": ["theorem"]}, {"prompt": "hello"}, False),
        ({"min_chars": 10}, {"prompt": "short"}, False),
        ({"min_chars": 5}, {"prompt": "short"}, True),
        ({"max_chars": 4}, {"prompt": "short"}, False),
        (
            {"requires": ["tools"]},
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            True,
        ),
        ({"requires": ["tools"]}, {}, False),
        ({"requires": ["json"]}, {"extra": {"response_format": {"type": "json_object"}}}, True),
        ({"requires": ["json"]}, {}, False),
        ({"category": "math", "max_chars": 100}, {"tags": {"category": "math"}}, True),
        ({"category": "math", "max_chars": 2}, {"tags": {"category": "math"}}, False),
    ],
)
def test_condition_matches(when, request_kwargs, expected):
    prompt = request_kwargs.pop("prompt", "hello")
    assert Condition.from_dict(when).matches(req(prompt, **request_kwargs)) is expected


def test_images_capability_looks_at_content_parts():
    with_image = ChatRequest.create(
        "r",
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                ],
            }
        ],
    )
    cond = Condition(requires=("images",))
    assert cond.matches(with_image)
    assert not cond.matches(req("what is this?"))


def test_text_conditions_look_at_the_last_user_message():
    request = ChatRequest.create(
        "r",
        [
            {"role": "user", "content": "solve 2 + 2"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "thanks"},
        ],
        system="math tutor",
    )
    assert not Condition(keywords=("solve",)).matches(request)
    assert Condition(keywords=("thanks",)).matches(request)


def test_first_match_wins_and_default_applies():
    policy = Rules(
        "by-task",
        [
            ({"keywords": ["proof"]}, STRONG),
            ({"max_chars": 20}, CHEAP),
            ({"keywords": ["proof"], "max_chars": 20}, MID),  # shadowed by rule 1
        ],
        default=MID,
    )
    decision = policy.decide(req("short proof"))
    assert decision.target == STRONG
    assert decision.reason == "rule 1: keywords=proof"
    assert policy.decide(req("hi")).target == CHEAP
    assert policy.decide(req("a long question about nothing in particular")).reason == "default"
    assert policy.targets() == (STRONG, CHEAP, MID)


def test_by_category_is_provider_selection_by_task_type():
    policy = Rules.by_category("task", {"math": STRONG, "chat": CHEAP}, default=MID)
    assert policy.decide(req(tags={"category": "math"})).target == STRONG
    assert policy.decide(req(tags={"category": "chat"})).target == CHEAP
    assert policy.decide(req()).target == MID


def test_cheapest_meeting_picks_the_cheapest_target_over_the_floor_per_category():
    quality = {
        CHEAP: {"math": 0.4, "chat": 0.9},
        MID: {"math": 0.8, "chat": 0.92},
        STRONG: {"math": 0.95, "chat": 0.95},
    }
    prices = {CHEAP: (0.05, 0.2), MID: Price(0.4, 1.6), STRONG: (3.0, 15.0)}
    policy = cheapest_meeting("frugal", quality, prices, floor=0.75)
    # Overall (mean) quality: CHEAP 0.65 (under), MID 0.86 -> default MID; per category:
    # math needs MID (same as the default, so no rule), chat is met by CHEAP.
    assert policy.default == MID
    assert [(r.when.category, r.target) for r in policy.rules] == [(("chat",), CHEAP)]
    assert policy.decide(req(tags={"category": "chat"})).target == CHEAP
    assert policy.decide(req(tags={"category": "math"})).target == MID


def test_cheapest_meeting_falls_back_to_the_best_when_nothing_meets_the_floor():
    policy = cheapest_meeting(
        "f", {CHEAP: 0.2, STRONG: 0.6}, {CHEAP: (0.05, 0.2), STRONG: (3.0, 15.0)}, floor=0.9
    )
    assert policy.default == STRONG and policy.rules == ()
    with pytest.raises(ConfigError, match="no price"):
        cheapest_meeting("f", {CHEAP: 0.2}, {}, floor=0.1)


def test_round_trip_through_to_dict():
    policy = Rules(
        "r",
        [
            ({"category": ["a", "b"], "regex": "^x", "requires": ["tools"]}, STRONG),
            ({"tags": {"t": "1"}, "metadata": {"m": 2}, "keywords": ["k"]}, CHEAP),
            ({"min_chars": 3, "max_chars": 9}, MID),
        ],
        default=MID,
    )
    spec = policy.to_dict()
    assert spec["kind"] == "rules" and spec["default"] == MID
    assert spec["rules"][0] == {
        "when": {"category": ["a", "b"], "regex": "^x", "requires": ["tools"]},
        "target": STRONG,
    }
    rebuilt = policy_from_dict(spec)
    assert isinstance(rebuilt, Rules)
    assert rebuilt.to_dict() == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "rules", "name": "r", "rules": [], "default": "nope"}, "not a gateway address"),
        ({"kind": "rules", "name": "", "rules": [], "default": MID}, "non-empty string name"),
        (
            {
                "kind": "rules",
                "name": "r",
                "rules": [{"when": {"colour": "x"}, "target": MID}],
                "default": MID,
            },
            "unknown key",
        ),
        (
            {
                "kind": "rules",
                "name": "r",
                "rules": [{"when": {"regex": "("}, "target": MID}],
                "default": MID,
            },
            "does not compile",
        ),
        (
            {
                "kind": "rules",
                "name": "r",
                "rules": [{"when": {"requires": ["fly"]}, "target": MID}],
                "default": MID,
            },
            "unknown capability",
        ),
        ({"kind": "telepathy", "name": "r"}, "unknown policy kind"),
        ({"name": "r"}, "no 'kind'"),
    ],
)
def test_bad_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        policy_from_dict(spec)
