# ruff: noqa: E501  (wire text is kept byte-for-byte, one JSON document per line)
"""Provider payloads as they travel on the wire, for the conformance suite.

Shapes follow the providers' public API references (OpenAI "The chat completion object" and
"The chat completion chunk object"; Anthropic "Messages", "Streaming Messages" and "Errors";
Cloudflare "Workers AI REST API", "Streaming" and "Workers AI errors"); ids, texts and
numbers are our own. The streamed answer carries multi-byte UTF-8 (—, “ ”, ☀️, é) so that
byte-level chunk splits land inside characters.
"""

from __future__ import annotations

from typing import Any

#: The answer text every fixture carries, streamed or not.
ANSWER = "Paris — the “City of Light” ☀️ café."

# --- OpenAI Chat Completions ------------------------------------------------------------------

OPENAI_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-AqX7uTn2Lw9Ke4",
    "object": "chat.completion",
    "created": 1736942400,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": ANSWER,
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1340,
        "completion_tokens": 12,
        "total_tokens": 1352,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 4,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_f7d56a8a2c",
}

OPENAI_STREAM = """\
data: {"id":"chatcmpl-AqX8sPq3Mz1Rb7","object":"chat.completion.chunk","created":1736942460,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f7d56a8a2c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AqX8sPq3Mz1Rb7","object":"chat.completion.chunk","created":1736942460,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f7d56a8a2c","choices":[{"index":0,"delta":{"content":"Paris — "},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AqX8sPq3Mz1Rb7","object":"chat.completion.chunk","created":1736942460,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f7d56a8a2c","choices":[{"index":0,"delta":{"content":"the “City of Light”"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AqX8sPq3Mz1Rb7","object":"chat.completion.chunk","created":1736942460,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f7d56a8a2c","choices":[{"index":0,"delta":{"content":" ☀️ café."},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AqX8sPq3Mz1Rb7","object":"chat.completion.chunk","created":1736942460,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f7d56a8a2c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-AqX8sPq3Mz1Rb7","object":"chat.completion.chunk","created":1736942460,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f7d56a8a2c","choices":[],"usage":{"prompt_tokens":1340,"completion_tokens":12,"total_tokens":1352,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":4,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]

"""

OPENAI_TOOL_CALL_STREAM = """\
data: {"id":"chatcmpl-AqX9tool","object":"chat.completion.chunk","created":1736942470,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_Wk3nZ8","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-AqX9tool","object":"chat.completion.chunk","created":1736942470,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-AqX9tool","object":"chat.completion.chunk","created":1736942470,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"Paris\\"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-AqX9tool","object":"chat.completion.chunk","created":1736942470,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: [DONE]

"""


def openai_error(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --- Anthropic Messages -----------------------------------------------------------------------

ANTHROPIC_MESSAGE: dict[str, Any] = {
    "id": "msg_01HqT5sVd8yKf3Lr9Pn2Wm4B",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-haiku-20241022",
    "content": [{"type": "text", "text": ANSWER}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 40,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 1000,
        "output_tokens": 15,
        "service_tier": "standard",
    },
}

ANTHROPIC_STREAM = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_01J2kXw7Gz5Vb8Nc3Qr6Tp1D","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":40,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Paris — "}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"the “City of Light”"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" ☀️ café."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"""

ANTHROPIC_TOOL_USE_STREAM = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_01ToolUse","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":380,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01Xy9","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": "}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\\"Paris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":41}}

event: message_stop
data: {"type":"message_stop"}

"""

ANTHROPIC_OVERLOADED_EVENT = """\
event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

"""


def anthropic_error(type_: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }


# --- Cloudflare Workers AI (native /ai/run) ---------------------------------------------------

WORKERS_AI_RESULT: dict[str, Any] = {
    "result": {
        "response": ANSWER,
        "tool_calls": [],
        "usage": {"prompt_tokens": 31, "completion_tokens": 14, "total_tokens": 45},
    },
    "success": True,
    "errors": [],
    "messages": [],
}

WORKERS_AI_STREAM = """\
data: {"response":"Paris — ","p":"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123"}

data: {"response":"the “City of Light”","p":"abcdefghijklmnopqrstuvwx"}

data: {"response":" ☀️ café.","p":"abcdefghijklmnopqrstuvwxyz0123456789abcdefghij"}

data: {"response":"","usage":{"prompt_tokens":31,"completion_tokens":14,"total_tokens":45}}

data: [DONE]

"""


def cloudflare_error(code: int, message: str) -> dict[str, Any]:
    return {
        "result": None,
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
    }


# --- Workers AI's OpenAI-compatible endpoint (/ai/v1/chat/completions) ------------------------

WORKERS_AI_OPENAI_COMPLETION: dict[str, Any] = {
    "id": "id-1736942400123",
    "object": "chat.completion",
    "created": 1736942400,
    "model": "@cf/meta/llama-3.1-8b-instruct",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER, "tool_calls": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 31, "completion_tokens": 14, "total_tokens": 45},
}

WORKERS_AI_OPENAI_STREAM = """\
data: {"id":"id-1736942460456","object":"chat.completion.chunk","created":1736942460,"model":"@cf/meta/llama-3.1-8b-instruct","choices":[{"index":0,"delta":{"role":"assistant","content":"Paris — "},"logprobs":null,"finish_reason":null}]}

data: {"id":"id-1736942460456","object":"chat.completion.chunk","created":1736942460,"model":"@cf/meta/llama-3.1-8b-instruct","choices":[{"index":0,"delta":{"content":"the “City of Light”"},"logprobs":null,"finish_reason":null}]}

data: {"id":"id-1736942460456","object":"chat.completion.chunk","created":1736942460,"model":"@cf/meta/llama-3.1-8b-instruct","choices":[{"index":0,"delta":{"content":" ☀️ café."},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"id-1736942460456","object":"chat.completion.chunk","created":1736942460,"model":"@cf/meta/llama-3.1-8b-instruct","choices":[],"usage":{"prompt_tokens":31,"completion_tokens":14,"total_tokens":45}}

data: [DONE]

"""
