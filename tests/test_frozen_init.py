"""`aigw_lab._frozen.fast_init`: the hot frozen values built through their slots give the
objects the dataclass's own ``__init__`` gives, refuse what it refuses, and stay frozen."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from types import MappingProxyType
from typing import Any

import pytest

from aigw_lab._frozen import fast_init
from aigw_lab.providers.codec import Decoded, EncodedRequest
from aigw_lab.providers.sse import SSEEvent
from aigw_lab.types import (
    ChatRequest,
    ChatResponse,
    Latency,
    Message,
    StreamEnd,
    TextDelta,
    Usage,
)

USAGE = Usage(input_tokens=3, output_tokens=4)
RESPONSE = ChatResponse(text="hi", finish_reason="stop", usage=USAGE, provider="p", model="m")

#: Each fast class and the argument sets it is built with: (args, kwargs).
CASES: list[tuple[type, list[tuple[tuple[Any, ...], dict[str, Any]]]]] = [
    (Message, [(("user", "hi"), {}), (("tool", "x"), {"tool_call_id": "t", "name": "n"})]),
    (
        ChatRequest,
        [
            (("m", (Message("user", "hi"),)), {}),
            (
                ("m", ()),
                {"temperature": 0.5, "max_tokens": 9, "tags": MappingProxyType({"a": "b"})},
            ),
        ],
    ),
    (Usage, [((), {}), ((), {"input_tokens": 1, "known": False, "reasoning_tokens": 2})]),
    (Latency, [((), {}), ((), {"total_ms": 1.5, "ttfb_ms": 0.5, "upstream_ms": None})]),
    (
        ChatResponse,
        [
            (
                (),
                {
                    "text": "t",
                    "finish_reason": "stop",
                    "usage": USAGE,
                    "provider": "p",
                    "model": "m",
                },
            ),
            (
                (),
                {
                    "text": "t",
                    "finish_reason": "length",
                    "usage": USAGE,
                    "provider": "p",
                    "model": "m",
                    "latency": Latency(total_ms=2.0),
                    "cost_usd": 0.25,
                    "call_id": "c",
                    "trace_id": "r",
                    "raw": {"k": 1},
                },
            ),
        ],
    ),
    (TextDelta, [(("x",), {})]),
    (StreamEnd, [((RESPONSE,), {})]),
    (EncodedRequest, [(("/p", {"a": 1}), {}), (("/p", {}), {"headers": {"h": "v"}})]),
    (Decoded, [((), {"text": "t", "finish_reason": "stop", "usage": USAGE, "raw": [1]})]),
    (
        SSEEvent,
        [((), {"event": "message", "data": "d"}), ((), {"event": "e", "data": "", "id": "1"})],
    ),
]


def _slow_twin(cls: type) -> type:
    """The same dataclass, rebuilt from its fields with the dataclass's own ``__init__``."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    specs = []
    for item in dataclasses.fields(cls):
        kwargs: dict[str, Any] = {"init": item.init, "kw_only": item.kw_only}
        if item.default is not dataclasses.MISSING:
            kwargs["default"] = item.default
        if item.default_factory is not dataclasses.MISSING:
            kwargs["default_factory"] = item.default_factory
        specs.append((item.name, item.type, dataclasses.field(**kwargs)))
    return dataclasses.make_dataclass(
        f"Slow{cls.__name__}", specs, frozen=params.frozen, slots=True
    )


def _values(obj: Any) -> dict[str, Any]:
    return {item.name: getattr(obj, item.name) for item in dataclasses.fields(obj)}


@pytest.mark.parametrize("cls, calls", CASES, ids=[c.__name__ for c, _ in CASES])
def test_fast_init_builds_what_the_dataclass_builds(cls: type, calls: list) -> None:
    slow = _slow_twin(cls)
    # The fast __init__ is in place: it stores through the slots' descriptors (``_set_*``),
    # where the dataclass's own calls object.__setattr__.
    assert any(name.startswith("_set_") for name in cls.__init__.__code__.co_names)
    assert not any(name.startswith("_set_") for name in slow.__init__.__code__.co_names)
    assert inspect.signature(cls.__init__) == inspect.signature(slow.__init__)
    for args, kwargs in calls:
        fast_obj, slow_obj = cls(*args, **kwargs), slow(*args, **kwargs)
        assert _values(fast_obj) == _values(slow_obj)
        assert fast_obj == cls(*args, **kwargs)
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast_obj.__setattr__(dataclasses.fields(cls)[0].name, None)
        assert copy.copy(fast_obj) == fast_obj  # through __getstate__/__setstate__
        assert dataclasses.replace(fast_obj) == fast_obj


def test_default_factories_run_per_object_and_init_false_fields_get_their_default() -> None:
    @fast_init
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Box:
        items: list[int] = dataclasses.field(default_factory=list)
        seen: int = dataclasses.field(default=7, init=False)
        made: list[int] = dataclasses.field(default_factory=lambda: [1], init=False)

    first, second = Box(), Box()
    assert first.items == [] and first.items is not second.items
    assert first.seen == 7 and first.made == [1] and first.made is not second.made
    given = [5]
    assert Box(items=given).items is given
    request = ChatRequest("m", ())
    assert request.tags == {} and request._labels_json is None


def test_calls_the_dataclass_refuses_are_refused() -> None:
    with pytest.raises(TypeError):
        Usage(1, 2)  # type: ignore[misc]  # keyword only
    with pytest.raises(TypeError):
        ChatResponse(text="t")  # type: ignore[call-arg]  # required fields missing
    with pytest.raises(TypeError):
        Latency(total=1.0)  # type: ignore[call-arg]  # no such field
    with pytest.raises(TypeError):
        TextDelta()  # type: ignore[call-arg]


def test_only_frozen_slotted_dataclasses_without_post_init() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: dataclasses.InitVar[int] = 0

    for cls in (NoSlots, NotFrozen, PostInit, WithInitVar, int):
        with pytest.raises(TypeError):
            fast_init(cls)
