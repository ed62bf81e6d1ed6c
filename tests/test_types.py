import pytest

from aigw_lab.errors import InvalidRequestError
from aigw_lab.types import ChatRequest, ContentPart, Latency, Message, Usage


def test_create_from_prompt_and_system():
    req = ChatRequest.create("p/m", "Hi", system="Be brief", temperature=0.1, stop="END")
    assert [m.role for m in req.messages] == ["system", "user"]
    assert req.stop == ("END",)
    assert req.system_text == "Be brief"
    assert req.provider_name == "p"


def test_multipart_and_tool_messages_round_trip_to_dict():
    req = ChatRequest.create(
        "p/m",
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "u"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ],
    )
    d = req.to_dict()
    assert d["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": "u"}}
    assert d["messages"][1]["tool_calls"][0]["id"] == "c1"
    assert d["messages"][2]["tool_call_id"] == "c1"
    assert req.messages[0].text == "look"
    assert isinstance(req.messages[0].content[1], ContentPart)


@pytest.mark.parametrize(
    ("messages", "params", "fragment"),
    [
        ([{"role": "robot", "content": "x"}], {}, "role 'robot'"),
        ([{"role": "user", "content": 5}], {}, "content of type int"),
        ([{"role": "user", "content": [{"type": "text"}]}], {}, "without a string 'text'"),
        (["not a dict"], {}, None),
        ([], {}, "messages is empty"),
        ("hi", {"temperature": 3.0}, "temperature=3.0"),
        ("hi", {"max_tokens": 0}, "max_tokens=0"),
        ("hi", {"top_p": 0}, "top_p=0"),
        ("hi", {"temprature": 0.5}, "unknown request parameter(s): temprature"),
        (42, {}, "messages is a int"),
    ],
)
def test_malformed_requests_raise_typed_errors(messages, params, fragment):
    with pytest.raises(InvalidRequestError) as info:
        ChatRequest.create("p/m", messages, **params)
    assert info.value.hint  # every user error says how to fix it
    if fragment:
        assert fragment in str(info.value)


def test_plain_string_items_are_user_messages_only_via_dicts():
    # A bare string inside the list is not a message; the error says what to pass.
    with pytest.raises(InvalidRequestError, match="not a message"):
        ChatRequest.create("p/m", ["hello"])


def test_requests_are_frozen_and_hashable_by_identity_fields():
    req = ChatRequest.create("p/m", "Hi")
    with pytest.raises(AttributeError):
        req.model = "x"  # type: ignore[misc]


def test_usage_and_latency_arithmetic():
    assert (
        Usage(input_tokens=10, output_tokens=5, cache_read_tokens=2)
        + Usage(input_tokens=1, output_tokens=1, cache_read_tokens=0, cache_write_tokens=3)
    ).total_tokens == 17
    assert Latency(total_ms=12.0, upstream_ms=10.0).overhead_ms == pytest.approx(2.0)
    assert Latency(total_ms=12.0).overhead_ms is None


def test_message_coerce_keeps_message_objects():
    m = Message("user", "x")
    assert Message.coerce(m) is m
