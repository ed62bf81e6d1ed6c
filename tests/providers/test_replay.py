"""`ReplayProvider` through a real `Gateway` with a DuckDB call log: recorded datasets (a small
hand-made one, and the shared RouteLLM GSM8K recording) and call-log replays."""

from __future__ import annotations

import pandas as pd
import pytest

from aigw_lab.datasets import Dataset, RecordedDataset, shared_data_dir_or_none
from aigw_lab.errors import InvalidRequestError, UnknownModelError
from aigw_lab.gateway import Gateway
from aigw_lab.providers.base import Price, Provider
from aigw_lab.sim.fleet import fleet_specs
from aigw_lab.sim.replay import ReplayProvider
from aigw_lab.store import CallLog
from aigw_lab.types import ChatRequest, Message, StreamEnd, TextDelta

PRICES = {"big": Price(10.0, 30.0), "small": Price(1.0, 2.0)}
SOURCE = "toy-recording"


def toy_recording() -> RecordedDataset:
    dataset = Dataset.from_records(
        "toy",
        [
            {"id": "add", "prompt": "What is 2 + 2?", "reference": "4"},
            {"id": "capital", "prompt": "Capital of France?", "system": "Answer briefly."},
            {"id": "add-again", "prompt": "What is   2 + 2?"},  # same prompt, another id
            {"id": "label-only", "prompt": "Pick A or B."},
        ],
    )
    rows = [
        ("add", "big", "2 + 2 = 4. The answer is 4.", 1.0),
        ("add", "small", "5", 0.0),
        ("capital", "big", "Paris.", 1.0),
        ("add-again", "big", "Four.", 1.0),
        ("label-only", "big", None, 1.0),
    ]
    frame = pd.DataFrame(rows, columns=["item_id", "model", "output", "score"])
    return RecordedDataset.from_outputs(
        dataset, frame, score_name="correct", score_scale=(0.0, 1.0), source=SOURCE, prices=PRICES
    )


@pytest.fixture
def recording() -> RecordedDataset:
    return toy_recording()


@pytest.fixture
def log(new_log_path):
    with CallLog(new_log_path) as call_log:
        yield call_log


def calls(log: CallLog) -> pd.DataFrame:
    return log.query(
        "SELECT provider_name, request_model, status, error_type, response_text, cost_usd, "
        "input_tokens, output_tokens, simulated, stream FROM calls ORDER BY timestamp, call_id"
    )


def test_replay_provider_is_a_provider(recording) -> None:
    replay = ReplayProvider(recording)
    assert isinstance(replay, Provider)
    assert replay.name == "replay" and replay.simulated is False
    assert replay.models == ("big", "small") and replay.price_for("big") == PRICES["big"]


def test_chat_returns_the_recorded_output_priced_and_logged(recording, log) -> None:
    with Gateway(providers=[ReplayProvider(recording)], log=log) as gateway:
        response = gateway.chat("replay/big", "What is 2 + 2?")
    outcome = recording.outcome("add", "big")
    assert response.text == "2 + 2 = 4. The answer is 4."
    assert response.raw == {
        "recorded": {"item_id": "add", "model": "big", "score": 1.0, "source": SOURCE}
    }
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        outcome.input_tokens,
        outcome.output_tokens,
    )
    expected_cost = (outcome.input_tokens * 10.0 + outcome.output_tokens * 30.0) / 1e6
    assert response.cost_usd == pytest.approx(expected_cost)
    assert response.simulated is False and response.provider == "replay"
    row = calls(log).iloc[0]
    assert (row.provider_name, row.request_model, row.status) == ("replay", "big", "ok")
    assert row.response_text == response.text and row.cost_usd == pytest.approx(expected_cost)
    assert not row.simulated


async def test_achat_and_astream_replay_the_same_answer(recording, log) -> None:
    async with Gateway(providers=[ReplayProvider(recording)], log=log) as gateway:
        response = await gateway.achat("replay/small", "What is 2 + 2?")
        stream = gateway.astream("replay/big", "Capital of France?", system="Answer briefly.")
        pieces = [piece async for piece in stream]
    assert response.text == "5" and response.raw["recorded"]["score"] == 0.0
    assert "".join(pieces) == "Paris."
    rows = calls(log)
    assert list(rows.status) == ["ok", "ok"] and list(rows.stream) == [False, True]
    assert rows.cost_usd.notna().all()


def test_stream_sends_word_pieces_then_the_priced_response(recording, log) -> None:
    with Gateway(providers=[ReplayProvider(recording)], log=log) as gateway:
        stream = gateway.stream("replay/big", "What is 2 + 2?")
        pieces = list(stream)
    assert pieces == ["2 ", "+ ", "2 ", "= ", "4. ", "The ", "answer ", "is ", "4."]
    assert stream.response.text == "".join(pieces)
    assert stream.response.cost_usd == pytest.approx(calls(log).cost_usd[0])
    assert calls(log).stream[0]


def test_provider_stream_events_end_with_one_stream_end(recording) -> None:
    request = ChatRequest("big", (Message("user", "What is 2 + 2?"),))
    events = list(ReplayProvider(recording).stream(request))
    assert all(isinstance(e, TextDelta) for e in events[:-1])
    assert (
        isinstance(events[-1], StreamEnd)
        and events[-1].response.text == "2 + 2 = 4. The answer is 4."
    )


def test_prompts_match_after_whitespace_normalisation_and_with_their_system_prompt(
    recording,
) -> None:
    replay = ReplayProvider(recording)
    spaced = ChatRequest(
        "big", (Message("system", " Answer\n briefly. "), Message("user", "Capital   of\nFrance? "))
    )
    assert replay.chat(spaced).text == "Paris."
    no_system = ChatRequest("big", (Message("user", "Capital of France?"),))
    with pytest.raises(InvalidRequestError, match="no item of 'toy' has the prompt"):
        replay.chat(no_system)


def test_a_repeated_prompt_is_answered_for_the_experiments_item(recording) -> None:
    replay = ReplayProvider(recording)
    plain = ChatRequest("big", (Message("user", "What is 2 + 2?"),))
    assert replay.chat(plain).raw["recorded"]["item_id"] == "add"  # first in dataset order
    tagged = ChatRequest.create(
        "big", "What is 2 + 2?", metadata={"aigw_experiment": {"item_id": "add-again"}}
    )
    response = replay.chat(tagged)
    assert response.text == "Four." and response.raw["recorded"]["item_id"] == "add-again"


def test_unknown_prompt_and_model_are_typed_errors_logged_by_the_gateway(recording, log) -> None:
    with Gateway(providers=[ReplayProvider(recording)], log=log) as gateway:
        with pytest.raises(InvalidRequestError, match="'Tell me a joke.'") as caught:
            gateway.chat("replay/big", "Tell me a joke.")
        assert "fix:" in str(caught.value)
        with pytest.raises(UnknownModelError, match="'huge'"):
            gateway.chat("replay/huge", "What is 2 + 2?")
        with pytest.raises(InvalidRequestError, match="no answer of 'small' to item 'capital'"):
            gateway.chat("replay/small", "Capital of France?", system="Answer briefly.")
    rows = calls(log)
    assert list(rows.status) == ["error"] * 3
    assert list(rows.error_type) == ["invalid_request", "unknown_model", "invalid_request"]


def test_direct_calls_with_an_unknown_model_raise_a_typed_error(recording) -> None:
    request = ChatRequest("huge", (Message("user", "What is 2 + 2?"),))
    with pytest.raises(UnknownModelError, match="big, small"):
        ReplayProvider(recording).chat(request)


def test_label_only_items_need_a_placeholder(recording) -> None:
    request = ChatRequest("big", (Message("user", "Pick A or B."),))
    with pytest.raises(InvalidRequestError, match="kept only the label"):
        ReplayProvider(recording).chat(request)
    response = ReplayProvider(recording, placeholder="").chat(request)
    assert response.text == "" and response.raw["recorded"]["score"] == 1.0


def test_latency_is_zero_unless_a_latency_function_is_given(recording) -> None:
    slept: list[float] = []
    request = ChatRequest("big", (Message("user", "What is 2 + 2?"),))
    assert ReplayProvider(recording, sleep=slept.append).chat(request).latency.total_ms == 0.0
    assert slept == []
    timed = ReplayProvider(recording, latency_ms=lambda r: 250.0, sleep=slept.append)
    assert timed.chat(request).latency.total_ms == 250.0
    list(timed.stream(request))
    assert slept == [0.25, 0.25]


async def test_async_latency_uses_the_async_sleep(recording) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    replay = ReplayProvider(recording, latency_ms=lambda r: 40.0, async_sleep=fake_sleep)
    request = ChatRequest("big", (Message("user", "What is 2 + 2?"),))
    await replay.achat(request)
    [event async for event in replay.astream(request)]
    assert slept == [0.04, 0.04]


def test_a_recorded_cost_is_used_when_the_model_has_no_list_price() -> None:
    dataset = Dataset.from_records("rb", [{"id": "1", "prompt": "Hi"}])
    frame = pd.DataFrame(
        [{"item_id": "1", "model": "m", "output": "Hello", "score": 1.0, "cost_usd": 0.0123}]
    )
    recorded = RecordedDataset.from_outputs(
        dataset, frame, score_name="performance", score_scale=(0, 1), source="rb", prices={}
    )
    with Gateway(providers=[ReplayProvider(recorded)], log=None) as gateway:
        assert gateway.chat("replay/m", "Hi").cost_usd == 0.0123


# --- call-log replays -----------------------------------------------------------------------


def record_calls(path):
    """Two calls to the simulated fleet, logged to ``path``; returns their responses."""
    with Gateway(providers=fleet_specs(time_scale=0), log=path) as gateway:
        first = gateway.chat(
            "sim-openai/sim-small", "What is the capital of France?", temperature=0
        )
        second = gateway.chat(
            "sim-openai/sim-small", "What is the capital of France?", temperature=0.5, max_tokens=20
        )
    return first, second


def test_call_log_replay_answers_identical_requests_with_the_logged_response(tmp_path) -> None:
    first, second = record_calls(tmp_path / "recorded.duckdb")
    replay = ReplayProvider.from_call_log(tmp_path / "recorded.duckdb")
    assert replay.models == ("sim-openai/sim-small",) and replay.simulated is True
    with (
        CallLog(tmp_path / "replayed.duckdb") as log,
        Gateway(providers=[replay], log=log) as gateway,
    ):
        again = gateway.chat(
            "replay/sim-openai/sim-small", "What is the capital of France?", temperature=0
        )
        streamed = gateway.stream(
            "replay/sim-openai/sim-small",
            "What is the capital of France?",
            temperature=0.5,
            max_tokens=20,
        )
        text = "".join(streamed)
        with pytest.raises(InvalidRequestError, match="no earlier identical request"):
            gateway.chat(
                "replay/sim-openai/sim-small", "What is the capital of France?", temperature=0.7
            )
        rows = calls(log)
    assert (again.text, again.usage, again.cost_usd) == (first.text, first.usage, first.cost_usd)
    assert again.raw["replayed"]["call_id"] == first.call_id
    assert text == second.text and streamed.response.cost_usd == second.cost_usd
    assert list(rows.status) == ["ok", "ok", "error"] and rows.simulated[:2].all()


def test_call_log_replay_of_one_provider_uses_bare_model_names(tmp_path, log) -> None:
    with Gateway(providers=fleet_specs(time_scale=0), log=log) as gateway:
        original = gateway.chat("sim-anthropic/sim-haikuish", "Hello there", max_tokens=30)
        gateway.chat("sim-openai/sim-nano", "Hello there")
    replay = ReplayProvider.from_call_log(log, provider="sim-anthropic", name="again")
    assert replay.models == ("sim-haikuish",)
    with Gateway(providers=[replay], log=None) as gateway:
        assert (
            gateway.chat("again/sim-haikuish", "Hello there", max_tokens=30).text == original.text
        )
        with pytest.raises(UnknownModelError):
            gateway.chat("again/sim-nano", "Hello there")


# --- the shared recordings ------------------------------------------------------------------


def test_replayed_gsm8k_answers_are_gpt4s_recorded_text_and_label(log) -> None:
    data_dir = shared_data_dir_or_none()
    if data_dir is None:
        pytest.skip("shared data folder absent: set AIGW_LAB_SHARED_DATA to run this check")
    from aigw_lab.datasets import load_routellm

    recorded = load_routellm("gsm8k", data_dir=data_dir)
    wrong = recorded.outcomes.query("model == 'gpt-4-1106-preview' and score == 0").item_id.iloc[0]
    with Gateway(providers=[ReplayProvider(recorded)], log=log) as gateway:
        for item_id in ("gsm8k/3", wrong):
            item = recorded.dataset[item_id]
            response = gateway.chat("replay/gpt-4-1106-preview", item.prompt)
            outcome = recorded.outcome(item_id, "gpt-4-1106-preview")
            assert response.text == outcome.output
            assert response.raw["recorded"]["score"] == outcome.score
            assert response.cost_usd == pytest.approx(outcome.cost_usd)
    assert recorded.label(wrong, "gpt-4-1106-preview") == 0.0
    assert calls(log).cost_usd.notna().all()
