"""Streams handed to callers: iterate for text, read `.response` at the end.

    with gateway.stream("sim-openai/sim-small", "Hi") as s:
        for text in s:
            print(text, end="")
    s.response.usage

Leaving the ``with`` block (or calling `close`) early stops the upstream stream; the call is
then logged as ``cancelled`` with the text received so far.

`AsyncChatStream` is written once in `aigw_lab.gateway._async.stream`; `ChatStream` is
generated from it (`aigw_lab.gateway._sync.stream`, by ``.ci/unasync.py``).
"""

from __future__ import annotations

from aigw_lab.gateway._async.stream import AsyncChatStream
from aigw_lab.gateway._sync.stream import ChatStream

__all__ = ["ChatStream", "AsyncChatStream"]
