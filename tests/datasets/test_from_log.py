"""dataset_from_log: the filters, conversation parsing, dedup and stable ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from aigw_lab.datasets.from_log import conversation_id, dataset_from_log
from aigw_lab.errors import ConfigError
from aigw_lab.gateway import Gateway
from aigw_lab.scorers import Score
from aigw_lab.store import CallLog
from aigw_lab.store.records import CallRecord
from aigw_lab.store.scores import record_feedback, write_scores
from aigw_lab.types import ChatRequest, Message

START = datetime(2026, 3, 1, tzinfo=UTC)


def _call(
    n,
    prompt,
    answer="ok",
    *,
    model="sim-small",
    provider="sim-openai",
    tags=None,
    minutes=0,
    **fields,
):
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    request = {"model": model, "messages": messages}
    return CallRecord(
        call_id=f"c{n}",
        trace_id=fields.pop("trace_id", f"t{n}"),
        timestamp=START + timedelta(minutes=minutes),
        provider_name=provider,
        request_model=model,
        request_json=json.dumps(request),
        response_text=answer,
        tags_json=json.dumps(tags) if tags else None,
        **fields,
    )


@pytest.fixture
def log(new_log_path):
    with CallLog(new_log_path) as call_log:
        call_log.append_many(
            [
                _call(1, "What is 2+2?", "4", tags={"category": "maths", "team": "a"}),
                _call(2, "What is 2+2?", "four", minutes=5),  # same prompt, later answer
                _call(
                    3,
                    "Capital of France?",
                    "Paris",
                    model="sim-large",
                    minutes=10,
                    experiment_id="e1",
                ),
                _call(
                    4, "Capital of Spain?", None, status="error", error_type="timeout", minutes=20
                ),
                _call(
                    5,
                    "Capital of Italy?",
                    "Rome",
                    provider="sim-anthropic",
                    model="sim-haikuish",
                    minutes=30,
                ),
                _call(6, "Rate this answer", "[[8]]", tags={"aigw_role": "judge"}, minutes=40),
                _call(
                    7,
                    [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                    ],
                    "Sunny.",
                    minutes=50,
                    tags={"team": "b"},
                ),
            ]
        )
        yield call_log


def test_every_ok_conversation_once_with_the_latest_answer(log):
    dataset = dataset_from_log(log, name="prod")
    assert [i.prompt for i in dataset] == [
        "What is 2+2?",
        "Capital of France?",
        "Capital of Italy?",
        "Weather?",
    ]
    first = dataset.items[0]
    assert first.reference == "four" and first.category == "maths"
    assert dict(first.metadata) == {
        "call_id": "c2",
        "trace_id": "t2",
        "model": "sim-openai/sim-small",
        "timestamp": (START + timedelta(minutes=5)).isoformat(),
        "calls": 2,
    }
    chat = dataset.items[-1]
    assert chat.system == "Be brief."
    assert chat.history == (Message("user", "Hi"), Message("assistant", "Hello!"))
    assert chat.id == conversation_id("Be brief.", chat.history, "Weather?")
    assert dataset.source == "calls:status=ok" and dataset.name == "prod"
    # Ids are a function of the conversation: the same slice gives the same ids.
    assert dataset_from_log(log, name="again").ids == dataset.ids
    assert first.id == conversation_id(None, (), "What is 2+2?")
    # An item re-sent as a request reproduces the logged conversation.
    assert [m.text for m in chat.to_request("m").messages] == [
        "Be brief.",
        "Hi",
        "Hello!",
        "Weather?",
    ]


def test_filters(log):
    def prompts(**filters):
        return [i.prompt for i in dataset_from_log(log, name="x", **filters)]

    assert prompts(model="sim-large") == ["Capital of France?"]
    assert prompts(model="sim-anthropic/sim-haikuish") == ["Capital of Italy?"]
    assert prompts(model="sim-anthropic/sim-large") == []
    assert prompts(provider="sim-anthropic") == ["Capital of Italy?"]
    assert prompts(tags={"team": "b"}) == ["Weather?"]
    assert prompts(tags={"team": "a", "category": "maths"}) == ["What is 2+2?"]
    assert prompts(experiment_id="e1") == ["Capital of France?"]
    assert prompts(since=START + timedelta(minutes=10), until="2026-03-01T00:31:00+00:00") == [
        "Capital of France?",
        "Capital of Italy?",
    ]
    assert prompts(since=datetime(2026, 3, 1, 0, 45)) == ["Weather?"]  # naive means UTC
    assert prompts(status="error") == ["Capital of Spain?"]
    assert len(prompts(status=None)) == 5
    assert prompts(
        include_judge=True, since=START + timedelta(minutes=40), until=START + timedelta(minutes=41)
    ) == ["Rate this answer"]
    assert prompts(limit=2) == ["What is 2+2?", "Capital of France?"]
    assert dataset_from_log(log, name="x", reference=None).items[0].reference is None
    assert prompts(tags={"team": "x' OR '1'='1"}) == []  # values are parameters


def test_feedback_filter_uses_the_latest_feedback_on_the_trace(log):
    record_feedback(log, "c3", thumbs=True)
    record_feedback(log, "c5", thumbs=True)
    record_feedback(log, "c5", thumbs=False)  # changed their mind
    write_scores(log, "c7", Score("exact", 1.0))  # a scorer's score is not feedback
    up = dataset_from_log(log, name="golden", feedback="up")
    down = dataset_from_log(log, name="bad", feedback="down")
    assert [i.prompt for i in up] == ["Capital of France?"]
    assert [i.prompt for i in down] == ["Capital of Italy?"]
    assert up.source == "calls:feedback=up,status=ok"


def test_bad_arguments_say_how_to_fix_them(log):
    with pytest.raises(ConfigError, match="reference"):
        dataset_from_log(log, name="x", reference="gold")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="feedback"):
        dataset_from_log(log, name="x", feedback="meh")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limit"):
        dataset_from_log(log, name="x", limit=0)
    with pytest.raises(ConfigError, match="ISO"):
        dataset_from_log(log, name="x", since="last tuesday")
    with pytest.raises(ConfigError, match="tag name"):
        dataset_from_log(log, name="x", tags={'a"b': "c"})


def test_a_golden_set_from_a_real_gateway(tmp_path):
    with Gateway.simulated_fleet(time_scale=0, log=tmp_path / "c.duckdb") as gw:
        gold = "What is the chemical symbol for gold? Answer in as few words as possible."
        liked = gw.chat(ChatRequest.create("sim-openai/sim-large", gold, temperature=0))
        record_feedback(gw.log, liked.call_id, thumbs=True)
        disliked = gw.chat("sim-openai/sim-large", "Hi", system="Be terse.")
        record_feedback(gw.log, disliked.call_id, thumbs=False)
        golden = dataset_from_log(gw.log, name="golden", feedback="up")
        empty = dataset_from_log(gw.log, name="none", model="sim-openai/sim-nano")
    assert [(i.prompt, i.reference) for i in golden] == [(gold, liked.text)]
    assert golden.items[0].metadata["call_id"] == liked.call_id
    assert len(empty) == 0


def test_an_experiment_becomes_a_recording_that_routers_train_on(tmp_path):
    """Your own experiment's logged outcomes, as a RecordedDataset: targets become models,
    scores and logged costs carry over, and a router trained on them routes in a gateway."""
    import pytest

    from aigw_lab import Gateway
    from aigw_lab.datasets import bundled_dataset, recorded_from_experiment
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.errors import ConfigError
    from aigw_lab.experiments import Experiment, Target, run_experiment
    from aigw_lab.policy.learned import train_router
    from aigw_lab.scorers import build_scorer

    dataset = bundled_dataset().filter(category=["arithmetic", "factual_qa"])
    targets = ["sim-openai/sim-nano", "sim-openai/sim-large"]
    with Gateway.simulated_fleet(time_scale=0, log=tmp_path / "x.duckdb") as gw:
        result = run_experiment(
            gw,
            Experiment("to route", dataset, [Target(model=t) for t in targets],
                       scorers=[build_scorer("auto")], repetitions=2),
            progress=False,
        )  # fmt: skip
        frame = result.frame
        recorded = recorded_from_experiment(gw.log, result.experiment_id, dataset, scorer="auto")
        with pytest.raises(ConfigError, match="no scores by 'bleu'"):
            recorded_from_experiment(gw.log, result.experiment_id, dataset, scorer="bleu")
    assert set(recorded.models) == set(targets) and len(recorded.dataset) == len(dataset)
    expected = frame.groupby(["item_id", "target"])[["score_auto", "cost_usd"]].mean()
    for row in recorded.outcomes.itertuples():
        assert row.score == pytest.approx(expected.loc[(row.item_id, row.model), "score_auto"])
        assert row.cost_usd == pytest.approx(expected.loc[(row.item_id, row.model), "cost_usd"])
    policy = train_router(
        recorded, "knn", name="nano-or-large", embedder=HashingEmbedder(256),
        targets={m: m for m in recorded.models}, params={"k": 5},
    )  # fmt: skip
    assert {policy.strong, policy.weak} == set(targets)
    with Gateway.simulated_fleet(time_scale=0, policies=[policy], log=None) as gw:
        answer = gw.chat("nano-or-large", dataset.items[0].prompt)
    assert f"{answer.provider}/{answer.model}" in targets
