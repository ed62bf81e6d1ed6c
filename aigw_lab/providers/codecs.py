"""The default codec of each API format, by name: the one module that knows every codec
(the codec modules themselves import `aigw_lab.providers.codec` for its shared types, so
the lookup lives here rather than there)."""

from __future__ import annotations

from aigw_lab.errors import ConfigError
from aigw_lab.providers.anthropic import AnthropicCodec
from aigw_lab.providers.codec import Codec
from aigw_lab.providers.openai import OpenAICodec
from aigw_lab.providers.workers_ai import WorkersAICodec

__all__ = ["get_codec"]


def get_codec(api_format: str) -> Codec:
    """The default codec of an API format: ``"openai"`` (also ``"workers-ai-openai"`` and
    ``"openai-compatible"``), ``"anthropic"`` or ``"workers-ai"``."""
    if api_format in ("openai", "workers-ai-openai", "openai-compatible"):
        return OpenAICodec()
    if api_format == "anthropic":
        return AnthropicCodec()
    if api_format == "workers-ai":
        return WorkersAICodec()
    raise ConfigError(
        f"no codec for API format {api_format!r}",
        hint="use 'openai', 'anthropic', 'workers-ai', 'workers-ai-openai' or 'openai-compatible'",
    )
