"""Counting prompt tokens before a call, for budgets: a real tokenizer where one is at hand,
a documented estimate everywhere else.

`TokenCounter` uses `tiktoken` for the models tiktoken knows (OpenAI's: gpt-4o, gpt-4,
gpt-3.5-turbo, o1, ...) when tiktoken is installed *and its encoding file is already on disk*:
in ``$TIKTOKEN_CACHE_DIR``, ``$DATA_GYM_CACHE_DIR`` or tiktoken's default cache folder. It
never downloads one: a budget check in the middle of a call must not reach the internet. To
cache an encoding once, on a machine with internet:

    python -c "import tiktoken; tiktoken.get_encoding('o200k_base')"

Every other model, and OpenAI's when no encoding is cached, is estimated at
`CHARS_PER_TOKEN` characters a token, rounded up. `TokenCounter.method(model)` says which
applies. Encodings are loaded once per counter, not per process: no global state.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "TokenCounter", "cached_encoding_path"]

#: The estimate's rule: this many characters of text make one token (English, BPE tokenizers).
CHARS_PER_TOKEN = 4
_ESTIMATE = f"chars/{CHARS_PER_TOKEN}"
# Where tiktoken's encodings are published; its cache names each file by the SHA-1 of this URL.
_ENCODING_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "p50k_base": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
    "r50k_base": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
}


def cached_encoding_path(encoding: str) -> Path | None:
    """The file tiktoken would read ``encoding`` from without downloading it, if present."""
    url = _ENCODING_URLS.get(encoding)
    if url is None:
        return None
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        folder = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        folder = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        folder = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not folder:
        return None  # tiktoken's "no cache" setting: it would download every time
    path = Path(folder) / hashlib.sha1(url.encode()).hexdigest()
    return path if path.is_file() else None


class TokenCounter:
    """Counts the tokens of text sent to a model: exactly with tiktoken where it can (see the
    module docstring), else by the `CHARS_PER_TOKEN` estimate. ``use_tiktoken=False`` always
    estimates. Thread-safe."""

    def __init__(self, *, use_tiktoken: bool = True) -> None:
        self._use_tiktoken = use_tiktoken
        self._lock = threading.Lock()
        # model -> the tiktoken Encoding, or None for "estimate"
        self._by_model: dict[str, Any] = {}

    def count(self, text: str, model: str) -> int:
        """Tokens of ``text`` for ``model``."""
        if not text:
            return 0
        encoding = self._encoding(model)
        if encoding is None:
            return -(-len(text) // CHARS_PER_TOKEN)
        return len(encoding.encode(text, disallowed_special=()))

    def method(self, model: str) -> str:
        """How ``model`` is counted: ``"tiktoken:<encoding>"`` or ``"chars/4"``."""
        encoding = self._encoding(model)
        return _ESTIMATE if encoding is None else f"tiktoken:{encoding.name}"

    def _encoding(self, model: str) -> Any:
        try:
            return self._by_model[model]
        except KeyError:
            pass
        with self._lock:
            if model not in self._by_model:
                self._by_model[model] = self._load(model) if self._use_tiktoken else None
            return self._by_model[model]

    @staticmethod
    def _load(model: str) -> Any:
        try:
            # lazy: optional: tiktoken counts tokens only when installed
            import tiktoken
        except ImportError:
            return None
        try:
            name = tiktoken.encoding_name_for_model(model.rpartition("/")[2])
        except KeyError:
            return None  # not a model tiktoken knows: not OpenAI's tokenizer
        if cached_encoding_path(name) is None:
            return None  # would download: estimate instead
        return tiktoken.get_encoding(name)

    def __repr__(self) -> str:
        return f"TokenCounter(use_tiktoken={self._use_tiktoken})"
