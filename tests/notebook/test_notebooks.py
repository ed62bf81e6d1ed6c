"""The notebooks run top to bottom in a fresh Python kernel, offline, and do their job.

Each notebook is executed with nbclient in a kernel started from *this* interpreter (a
kernelspec written to a temporary folder, so the test does not depend on what kernels the
machine has installed), with a temporary working directory and ``HF_HUB_OFFLINE=1``. The
network tripwire of the test session does not reach the kernel process, so the notebooks are
offline by construction (simulated fleet, replayed recordings, a locally packaged embedder).

Besides "no cell raised", each test checks an output that shows the notebook did its work.
Parts that need the shared data folder print a reason and skip inside the notebook when it
is absent; the assertions follow the same rule.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from aigw_lab.datasets import shared_data_dir_or_none  # noqa: E402

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK_NAMES = (
    "01_quickstart",
    "02_compare_providers",
    "03_semantic_cache",
    "04_routing_policies",
    "05_reliability",
)
# Generous: the budget is about a minute each on 2 cores; this only stops a hung kernel.
CELL_TIMEOUT_S = 300


@pytest.fixture
def kernel_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A kernel manager whose ``python3`` kernel runs this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (aigw_lab tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def run_notebook(name: str, kernel_manager: Any, workdir: Path) -> Any:
    """Execute notebook ``name`` and return it with its outputs (raises on a cell error)."""
    notebook = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        km=kernel_manager,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return notebook


def stream_text(notebook: Any) -> str:
    """Everything the notebook printed."""
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )


def plotly_figures(notebook: Any) -> list[dict[str, Any]]:
    """The plotly figures the notebook displayed (their JSON)."""
    return [
        output["data"]["application/vnd.plotly.v1+json"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type in ("display_data", "execute_result")
        and "application/vnd.plotly.v1+json" in output.get("data", {})
    ]


def values(array: Any) -> list[float]:
    """A plotly JSON array as floats: a plain list, or plotly's typed-array encoding
    (``{"dtype": "f8", "bdata": base64}``) that plotly 6+ uses for numpy arrays."""
    if isinstance(array, dict) and "bdata" in array:
        import base64

        import numpy as np

        raw = base64.b64decode(array["bdata"])
        return np.frombuffer(raw, dtype=np.dtype(array.get("dtype", "f8"))).astype(float).tolist()
    return [float(v) for v in array]


def acceptance(text: str) -> dict[str, Any]:
    line = next(line for line in text.splitlines() if line.startswith("acceptance: "))
    return json.loads(line.removeprefix("acceptance: "))


def test_every_notebook_is_listed_and_valid() -> None:
    found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert found == sorted(NOTEBOOK_NAMES)
    for name in NOTEBOOK_NAMES:
        notebook = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {index} has outputs: run strip_outputs.py"
            assert cell.execution_count is None, f"{name} cell {index} has an execution count"


def test_quickstart(kernel_manager: Any, tmp_path: Path) -> None:
    notebook = run_notebook("01_quickstart", kernel_manager, tmp_path)
    text = stream_text(notebook)
    assert "calls mentioning 'tides': 1" in text
    # Three chats and one stream, each priced (simulated prices) and logged.
    assert "4 calls, $" in text
    assert "simulated" in notebook.cells[0].source.lower()


def test_compare_providers(kernel_manager: Any, tmp_path: Path) -> None:
    notebook = run_notebook("02_compare_providers", kernel_manager, tmp_path)
    check = acceptance(stream_text(notebook))
    assert len(check["simulated_targets"]) >= 4
    assert all(t.startswith("sim-") for t in check["simulated_targets"])
    if shared_data_dir_or_none() is None:
        assert check["real_data"].startswith("skipped")
    else:
        assert check["real_data"] == "used"
        assert len(check["real_models"]) >= 4
        assert not any(t.startswith("sim-") for t in check["real_models"])
    # quality vs cost, cost bars, latency (+ the real models' quality vs cost).
    assert len(plotly_figures(notebook)) >= 3


def test_semantic_cache(kernel_manager: Any, tmp_path: Path) -> None:
    notebook = run_notebook("03_semantic_cache", kernel_manager, tmp_path)
    text = stream_text(notebook)
    statuses = json.loads(
        next(
            line.removeprefix("cache statuses: ").replace("'", '"')
            for line in text.splitlines()
            if line.startswith("cache statuses: ")
        )
    )
    assert statuses.get("hit", 0) >= 1 and statuses.get("miss", 0) >= 1
    figures = plotly_figures(notebook)
    if shared_data_dir_or_none() is None:
        assert "SKIPPING" in text
    else:
        (sweep,) = figures
        names = [trace["name"] for trace in sweep["data"]]
        assert "precision" in names and "recall" in names
        recall = values(next(t for t in sweep["data"] if t["name"] == "recall")["y"])
        # Thresholds go from high to low, so recall can only grow along the curve.
        assert recall == sorted(recall)


def test_routing_policies(kernel_manager: Any, tmp_path: Path) -> None:
    notebook = run_notebook("04_routing_policies", kernel_manager, tmp_path)
    text = stream_text(notebook)
    check = acceptance(text)
    if shared_data_dir_or_none() is None:
        assert "SKIPPED" in text
        assert check["real_data"].startswith("skipped")
        return
    assert check["real_data"] == "used"
    assert "The oracle reaches" in text
    figures = plotly_figures(notebook)
    (baselines,) = [
        f for f in figures if any(str(t["name"]).startswith("always ") for t in f["data"])
    ]
    random_line = next(t for t in baselines["data"] if t["name"] == "random routing")
    assert len(values(random_line["x"])) == 11
    oracle = next(t for t in baselines["data"] if t["name"] == "oracle")
    single = [t for t in baselines["data"] if str(t["name"]).startswith("always ")]
    assert len(single) == 2
    # The oracle is at least as accurate as either single model.
    assert values(oracle["y"])[0] >= max(values(t["y"])[0] for t in single)
    (curves,) = [f for f in figures if "kNN router" in {t["name"] for t in f["data"]}]
    assert "cross-fitted" in curves["layout"]["title"]["text"]
    knn = next(t for t in curves["data"] if t["name"] == "kNN router")
    shares = values(knn["x"])
    assert shares[0] == 0.0 and shares[-1] == 1.0  # the sweep spans every strong-call share

    # Cross-fitted over every question, so more test items than the single test split.
    assert check["folds"] >= 2
    assert check["items"] > check["test_items"] > 0
    cis = (
        "apgr",
        "cpt50",
        "random_apgr",
        "random_cpt50",
        "oracle_apgr",
        "oracle_cpt50",
        "apgr_gain_over_random",
        "test_apgr",
        "calibrated_share",
    )
    for metric in cis:
        ci = check[metric]
        assert ci["low"] <= ci["value"] <= ci["high"], metric
    # Oracle above the router above random routing, on the same questions: in APGR, and in
    # the share of GPT-4 calls needed to recover half the gap (fewer is better).
    assert check["oracle_apgr"]["value"] > check["apgr"]["value"] > check["random_apgr"]["value"]
    assert check["oracle_cpt50"]["value"] < check["cpt50"]["value"] < check["random_cpt50"]["value"]
    # The paired gain is the router's APGR minus random routing's on the same items, and the
    # notebook's verdict follows whether its interval excludes 0.
    gain = check["apgr_gain_over_random"]
    assert gain["value"] == pytest.approx(check["apgr"]["value"] - check["random_apgr"]["value"])
    assert ("The gain's interval excludes 0" in text) == (gain["low"] > 0)
    assert ("the gain's interval includes 0" in text) == (gain["low"] <= 0)
    # More items, a narrower interval than the deployed router's single test split gives.
    width = {m: check[m]["high"] - check[m]["low"] for m in ("apgr", "test_apgr")}
    assert width["apgr"] < width["test_apgr"]
    # Calibrated for 50% GPT-4 calls, met from below on the calibration items.
    assert 0.2 <= check["calibrated_share"]["value"] <= 0.6

    # The slider, driven from code: as the threshold rises, share and cost fall together.
    moves = [
        (float(m[1]), float(m[2]), float(m[3]))
        for m in re.finditer(
            r"explorer: threshold ([-\d.]+): ([\d.]+)% strong calls, .*?\$([\d.]+) per query",
            text,
        )
    ]
    rising = moves[:3]
    assert [t for t, _, _ in rising] == sorted(t for t, _, _ in rising)
    assert [s for _, s, _ in rising] == sorted((s for _, s, _ in rising), reverse=True)
    assert [c for _, _, c in rising] == sorted((c for _, _, c in rising), reverse=True)
    assert rising[0][1] > rising[-1][1]
    # After calibration the slider shows the calibrated share.
    assert moves[3][1] == pytest.approx(100 * check["calibrated_share"]["value"], abs=0.06)

    # Exported to our runtime and the three production gateways; served and matched.
    assert set(check["exported_targets"]) == {"aigw_lab", "litellm", "portkey", "cloudflare"}
    assert "APPROXIMATION" in text and "measured on" in text
    assert check["served_calls"] >= 4
    assert check["served_matched"] == check["served_calls"]
    assert len(check["served_targets"]) == 2


def test_reliability(kernel_manager: Any, tmp_path: Path) -> None:
    notebook = run_notebook("05_reliability", kernel_manager, tmp_path)
    text = stream_text(notebook)
    failed = [int(line.split()[0]) for line in text.splitlines() if " of 90 units failed" in line]
    without_retries, with_retries = failed
    assert without_retries > with_retries
    assert "calls refused" in text and "RateLimitedError" in text
    assert "failed attempts in the resilient run's log" in text
    (breakdown,) = plotly_figures(notebook)
    assert {trace["name"] for trace in breakdown["data"]} >= {"rate_limited"}


def test_strip_outputs_script(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "strip_outputs", NOTEBOOKS_DIR / "strip_outputs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print('hi')")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    notebook.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    path = tmp_path / "t.ipynb"
    nbformat.write(notebook, path)

    assert module.main(["--check", str(path)]) == 1
    assert nbformat.read(path, as_version=4).cells[1].outputs  # --check changes nothing
    assert module.main([str(path)]) == 0
    stripped = nbformat.read(path, as_version=4).cells[1]
    assert stripped.outputs == [] and stripped.execution_count is None
    assert "execution" not in stripped.metadata
    assert module.main(["--check", str(path)]) == 0
