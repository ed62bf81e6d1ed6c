"""`aigw_lab.gateway.targets.with_model`: the per-call copy of a request for its provider
(``provider/model`` becomes ``model``) is exactly ``dataclasses.replace``'s value, built by
copying slots; that holds only while `ChatRequest` has no ``__post_init__`` and no field
left out of ``__init__``, which these tests pin."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from aigw_lab.gateway.targets import with_model
from aigw_lab.types import ChatRequest, Message

#: ChatRequest's fields that cache what other fields determine (`ChatRequest.labels_json`).
CACHES = {"_labels_json"}


def full_request() -> ChatRequest:
    """A request with every field set to a value other than its default."""
    return ChatRequest(
        "up/m",
        (Message(role="user", content="hi"),),
        temperature=0.3,
        top_p=0.9,
        max_tokens=12,
        stop=("x",),
        seed=7,
        tools=(MappingProxyType({"type": "function"}),),
        tool_choice="auto",
        user="u",
        tenant="t",
        tags=MappingProxyType({"k": "v"}),
        metadata=MappingProxyType({"m": 1}),
        extra=MappingProxyType({"top_k": 4}),
        experiment_id="e",
        timeout=3.0,
    )


def test_the_copy_equals_replace_field_by_field() -> None:
    request = full_request()
    copy = with_model(request, "m")
    expected = dataclasses.replace(request, model="m")
    assert copy == expected and type(copy) is ChatRequest
    for spec in dataclasses.fields(ChatRequest):
        if spec.name in CACHES:  # carried over: the copy's labels are the original's
            assert getattr(copy, spec.name) is getattr(request, spec.name)
            continue
        assert getattr(copy, spec.name) is getattr(expected, spec.name) or spec.name == "model"
    assert request.model == "up/m"  # the original is untouched


def test_the_labels_encoded_once_travel_with_the_copy() -> None:
    request = ChatRequest.create("up/m", "hi", tags={"k": "v"}, metadata={"m": 1})
    encoded = request.labels_json()
    copy = with_model(request, "m")
    assert copy.labels_json() is encoded  # not encoded again for the provider's copy
    assert copy.labels_json() == dataclasses.replace(request, model="m").labels_json()


def test_the_copy_is_frozen_like_the_original() -> None:
    copy = with_model(ChatRequest.create("up/m", "hi"), "m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.model = "other"  # type: ignore[misc]


def test_chat_request_keeps_what_the_slot_copy_relies_on() -> None:
    """A ``__post_init__`` (validation, derived fields) or an ``init=False`` field would
    make the slot copy differ from ``replace``: with_model must then go back to replace."""
    assert not hasattr(ChatRequest, "__post_init__")
    # The one field outside __init__ is the labels' encoded text, a cache of tags and
    # metadata (which the copy shares), left out of equality.
    assert {spec.name for spec in dataclasses.fields(ChatRequest) if not spec.init} == CACHES
    assert all(not spec.compare for spec in dataclasses.fields(ChatRequest) if not spec.init)
    assert set(ChatRequest.__slots__) == {spec.name for spec in dataclasses.fields(ChatRequest)}
