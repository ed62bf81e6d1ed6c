"""Helpers for the scorer tests: responses and items built from plain values."""

from __future__ import annotations

from typing import Any

import pytest

from aigw_lab.datasets import DatasetItem
from aigw_lab.types import ChatResponse, Usage


def make_response(text: str, model: str = "sim-small", call_id: str | None = None) -> ChatResponse:
    return ChatResponse(
        text=text,
        finish_reason="stop",
        usage=Usage(),
        provider="sim-openai",
        model=model,
        call_id=call_id,
    )


def make_item(reference: Any = None, prompt: str = "Question?", **fields: Any) -> DatasetItem:
    metadata = fields.pop("metadata", {})
    return DatasetItem(
        id=fields.pop("id", "q1"), prompt=prompt, reference=reference, metadata=metadata, **fields
    )


@pytest.fixture
def respond():
    return make_response


@pytest.fixture
def item():
    return make_item
