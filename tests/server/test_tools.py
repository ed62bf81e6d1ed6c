"""Tool use through the server: Anthropic's tool blocks become the neutral (OpenAI-shaped)
request the gateway routes, and tool calls come back in each caller's format."""

from __future__ import annotations

import json

import pytest

from aigw_lab.gateway.gateway import Gateway
from aigw_lab.providers.base import Price
from aigw_lab.testing.fakes import MockProvider
from aigw_lab.types import ChatResponse, Usage

from .helpers import Served

CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
TOOL_REPLY = ChatResponse(
    text="",
    finish_reason="tool_calls",
    usage=Usage(input_tokens=20, output_tokens=8),
    provider="mock",
    model="m",
    tool_calls=(CALL,),
)
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def mock_served(serve_config, tmp_path) -> tuple[Served, MockProvider]:
    provider = MockProvider("mock", default="It is sunny.")
    gateway = Gateway(
        [provider], log=str(tmp_path / "tools.duckdb"), prices={"mock/m": Price(0.5, 1.5)}
    )
    return serve_config(gateway=gateway), provider


def test_anthropic_tool_conversation_reaches_the_gateway_in_the_neutral_shape(
    mock_served,
) -> None:
    served, provider = mock_served
    message = served.anthropic().messages.create(
        model="mock/m",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ],
    )  # fmt: skip
    assert message.content[0].text == "It is sunny."
    request = provider.requests[-1]
    assert [m.role for m in request.messages] == ["user", "assistant", "tool", "user"]
    assistant, tool = request.messages[1], request.messages[2]
    assert assistant.text == "Let me check."
    assert json.loads(assistant.tool_calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert (tool.tool_call_id, tool.text) == ("toolu_1", "18C, sunny")
    assert request.tools[0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]
    assert request.tool_choice == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_calls_come_back_as_tool_use_blocks(mock_served) -> None:
    served, provider = mock_served
    provider.enqueue(TOOL_REPLY, TOOL_REPLY)
    client = served.anthropic()
    ask = {
        "model": "mock/m",
        "max_tokens": 100,
        "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    message = client.messages.create(**ask)
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert (block.type, block.id, block.name, block.input) == (
        "tool_use",
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    with client.messages.stream(**ask) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].input == {"city": "Paris"}


def test_tool_calls_come_back_in_the_openai_shape(mock_served) -> None:
    served, provider = mock_served
    provider.enqueue(TOOL_REPLY, TOOL_REPLY)
    client = served.openai()
    ask = {"model": "mock/m", "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    completion = client.chat.completions.create(**ask)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.arguments == '{"city": "Paris"}'
    chunks = list(client.chat.completions.create(**ask, stream=True))
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert calls[0][0].function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
