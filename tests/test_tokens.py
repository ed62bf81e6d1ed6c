"""Token counting for budgets: tiktoken where its encoding is on disk, the documented
estimate otherwise, and never a download."""

import importlib.util
from pathlib import Path

import pytest

from aigw_lab.gateway.budget_limits import estimate_input_tokens
from aigw_lab.tokens import TokenCounter, cached_encoding_path
from aigw_lab.types import ChatRequest, Message

TEXT = "Summarise the quarterly report for the board, in three bullet points, in plain English."


def _litellm_encodings() -> Path | None:
    # litellm ships tiktoken's o200k/cl100k files in tiktoken's cache layout: a real copy of
    # the encodings that works offline (litellm is a dev dependency, never imported here).
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


def test_without_a_cached_encoding_it_estimates_and_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: nothing cached
    counter = TokenCounter()
    assert cached_encoding_path("o200k_base") is None
    assert counter.method("gpt-4o") == "chars/4"
    assert counter.count(TEXT, "gpt-4o") == -(-len(TEXT) // 4)  # the tripwire saw no download


def test_estimate_only_mode_never_uses_tiktoken(monkeypatch):
    folder = _litellm_encodings()
    if folder is None:
        pytest.skip("litellm (which carries tiktoken's encodings) is not installed")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))
    assert TokenCounter(use_tiktoken=False).method("gpt-4o") == "chars/4"


def test_openai_models_are_counted_by_tiktoken_when_the_encoding_is_cached(monkeypatch):
    tiktoken = pytest.importorskip("tiktoken")
    folder = _litellm_encodings()
    if folder is None or not (folder / "fb374d419588a4632f3f557e76b4b70aebbca790").is_file():
        pytest.skip("no cached o200k_base encoding (litellm not installed)")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))
    counter = TokenCounter()
    assert counter.method("gpt-4o") == "tiktoken:o200k_base"
    assert counter.method("openai/gpt-4") == "tiktoken:cl100k_base"
    exact = len(tiktoken.get_encoding("o200k_base").encode(TEXT))
    assert counter.count(TEXT, "gpt-4o") == exact != -(-len(TEXT) // 4)
    # Models tiktoken does not know are not OpenAI's tokenizer: estimated.
    assert counter.method("claude-sonnet-4") == "chars/4"
    request = ChatRequest(model="gpt-4o", messages=(Message("user", TEXT),))
    assert estimate_input_tokens(request, counter) == exact + 4  # + the per-message framing
