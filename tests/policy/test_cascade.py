"""Cascades: accept or escalate by a scorer, a callable or self-consistency; every call is
sent (so paid and logged) and the whole cascade's cost is reported."""

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.policy import Cascade, CascadeStep, SelfConsistency, policy_from_dict
from aigw_lab.policy.cascade import request_item
from aigw_lab.scorers.base import Score, Scorer
from aigw_lab.types import ChatRequest, ChatResponse, Usage

CHEAP, MID, STRONG = "p/cheap", "p/mid", "p/strong"
COST = {CHEAP: 0.001, MID: 0.01, STRONG: 0.1}


class Fleet:
    """A `send` whose targets answer from scripted lists (cycling), at a fixed cost."""

    def __init__(self, answers, costs=COST):
        self.answers = {t: list(a) for t, a in answers.items()}
        self.costs = costs
        self.sent = []

    def __call__(self, target, request):
        self.sent.append((target, request.temperature))
        script = self.answers[target]
        text = script[(sum(1 for t, _ in self.sent if t == target) - 1) % len(script)]
        provider, _, model = target.partition("/")
        return ChatResponse(
            text=text,
            finish_reason="stop",
            usage=Usage(input_tokens=3, output_tokens=3),
            provider=provider,
            model=model,
            cost_usd=self.costs.get(target),
        )

    async def asend(self, target, request):
        return self(target, request)


class LengthAtMost(Scorer):
    """1.0 for answers of at most ``limit`` characters: scores an answer on its own."""

    name = "short"

    def __init__(self, limit):
        self.limit = limit

    def score(self, item, response):
        assert item.reference is None and item.prompt == "the question"
        return Score(self.name, float(len(response.text) <= self.limit))


REQUEST = ChatRequest.create("frugal", "the question", system="be brief")


def test_accepts_the_cheap_answer_when_the_scorer_passes():
    fleet = Fleet({CHEAP: ["ok"], STRONG: ["strong"]})
    cascade = Cascade("frugal", [CascadeStep(CHEAP, LengthAtMost(5), 1.0), CascadeStep(STRONG)])
    response = cascade.call(REQUEST, fleet)
    assert response.text == "ok" and fleet.sent == [(CHEAP, None)]
    assert response.cost_usd == COST[CHEAP]


def test_escalates_through_every_step_and_reports_the_total_cost():
    fleet = Fleet({CHEAP: ["a long answer"], MID: ["also long"], STRONG: ["final"]})
    cascade = Cascade(
        "frugal",
        [
            CascadeStep(CHEAP, LengthAtMost(5), 1.0),
            CascadeStep(MID, lambda request, response: 0.2, 0.5),
            CascadeStep(STRONG),
        ],
    )
    response = cascade.call(REQUEST, fleet)
    assert response.text == "final"
    assert [t for t, _ in fleet.sent] == [CHEAP, MID, STRONG]
    assert response.cost_usd == pytest.approx(sum(COST.values()))
    assert cascade.targets() == (CHEAP, MID, STRONG)
    assert cascade.decide(REQUEST).target == CHEAP


def test_unknown_cost_anywhere_makes_the_total_unknown():
    fleet = Fleet({CHEAP: ["a long answer"], STRONG: ["x"]}, costs={STRONG: 0.1})
    cascade = Cascade("c", [CascadeStep(CHEAP, LengthAtMost(1), 1.0), CascadeStep(STRONG)])
    assert cascade.call(REQUEST, fleet).cost_usd is None


@pytest.mark.parametrize(
    ("samples", "accepted_from"),
    [
        (["The answer is 42", "42", "#### 42"], CHEAP),  # all three agree
        (["The answer is 42", "41", "42"], CHEAP),  # 2 of 3 >= 0.6
        (["The answer is 42", "41", "40"], STRONG),  # 1 of 3
    ],
)
def test_self_consistency_samples_the_cheap_model_and_accepts_on_agreement(samples, accepted_from):
    fleet = Fleet({CHEAP: samples, STRONG: ["strong"]})
    cascade = Cascade(
        "sc", [CascadeStep(CHEAP, SelfConsistency(k=3, answer="number"), 0.6), CascadeStep(STRONG)]
    )
    response = cascade.call(REQUEST, fleet)
    assert response.provider == accepted_from.partition("/")[0]
    assert response.model == accepted_from.partition("/")[2]
    # The first answer at the request's temperature, then two samples at 0.7; all paid.
    assert fleet.sent[:3] == [(CHEAP, None), (CHEAP, 0.7), (CHEAP, 0.7)]
    expected = 3 * COST[CHEAP] + (COST[STRONG] if accepted_from == STRONG else 0.0)
    assert response.cost_usd == pytest.approx(expected)


def test_self_consistency_agreement_and_extraction():
    sc = SelfConsistency(k=3, answer="choice")
    first = ChatResponse(
        text="Answer: B", finish_reason="stop", usage=Usage(), provider="p", model="m"
    )
    others = [
        ChatResponse(text=t, finish_reason="stop", usage=Usage(), provider="p", model="m")
        for t in ("(b)", "C")
    ]
    assert sc.agreement(first, others) == pytest.approx(2 / 3)
    unreadable = ChatResponse(
        text="no idea", finish_reason="stop", usage=Usage(), provider="p", model="m"
    )
    assert SelfConsistency(answer="number").agreement(unreadable, others) == 0.0
    with pytest.raises(ConfigError, match="only works as a cascade"):
        sc.score(request_item(REQUEST), first)
    with pytest.raises(ConfigError, match="k=1"):
        SelfConsistency(k=1)


async def test_async_cascade_with_an_async_scorer():
    class SlowJudge(Scorer):
        name = "judge"

        async def ascore(self, item, response):
            return Score(self.name, 0.9 if response.text == "good" else 0.1)

    fleet = Fleet({CHEAP: ["bad"], MID: ["good"], STRONG: ["x"]})
    cascade = Cascade(
        "c",
        [
            CascadeStep(CHEAP, SlowJudge(), 0.5),
            CascadeStep(MID, SlowJudge(), 0.5),
            CascadeStep(STRONG),
        ],
    )
    response = await cascade.acall(REQUEST, fleet.asend)
    assert response.text == "good" and [t for t, _ in fleet.sent] == [CHEAP, MID]

    sc = Cascade("sc", [CascadeStep(CHEAP, SelfConsistency(k=2), 1.0), CascadeStep(STRONG)])
    again = Fleet({CHEAP: ["same"], STRONG: ["x"]})
    assert (await sc.acall(REQUEST, again.asend)).text == "same"


def test_request_item_carries_prompt_history_system_and_category():
    request = ChatRequest.create(
        "c",
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": "second"},
        ],
        system="sys",
        tags={"category": "math"},
    )
    item = request_item(request)
    assert item.prompt == "second" and item.system == "sys" and item.category == "math"
    assert [m.text for m in item.history] == ["first", "reply"]
    assert item.reference is None


def test_round_trip_with_scorer_specs():
    cascade = Cascade(
        "c",
        [
            {
                "target": CHEAP,
                "accept": {"scorer": {"type": "self_consistency", "k": 3}, "threshold": 0.67},
            },
            {
                "target": MID,
                "accept": {"scorer": {"type": "regex", "pattern": "^\\d+$"}, "threshold": 1.0},
            },
            {"target": STRONG},
        ],
    )
    spec = cascade.to_dict()
    assert spec["steps"][1] == {
        "target": MID,
        "accept": {"scorer": {"type": "regex", "pattern": "^\\d+$"}, "threshold": 1.0},
    }
    assert spec["steps"][0]["accept"]["scorer"]["type"] == "self_consistency"
    assert policy_from_dict(spec).to_dict() == spec
    fleet = Fleet({CHEAP: ["1", "2", "3"], MID: ["123"], STRONG: ["x"]})
    assert policy_from_dict(spec).call(REQUEST, fleet).text == "123"


def test_invalid_cascades_and_unsaveable_callables():
    with pytest.raises(ConfigError, match="at least two steps"):
        Cascade("c", [CascadeStep(STRONG)])
    with pytest.raises(ConfigError, match="no accept scorer"):
        Cascade("c", [CascadeStep(CHEAP), CascadeStep(STRONG)])
    with pytest.raises(ConfigError, match="nothing to escalate to"):
        Cascade(
            "c",
            [CascadeStep(CHEAP, LengthAtMost(1), 1.0), CascadeStep(STRONG, LengthAtMost(1), 1.0)],
        )
    with pytest.raises(ConfigError, match="needs a threshold"):
        CascadeStep(CHEAP, LengthAtMost(1))
    in_memory = Cascade("c", [CascadeStep(CHEAP, lambda q, r: 1.0, 0.5), CascadeStep(STRONG)])
    with pytest.raises(ConfigError, match="cannot be saved"):
        in_memory.to_dict()
