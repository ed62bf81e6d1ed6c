"""Progress output: tqdm's bar on a terminal, a few plain lines anywhere else (a pipe, a file,
a CI log), never tqdm's carriage-return redraws flooding a log."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aigw_lab.experiments.progress import (
    LINE_EVERY_FRACTION,
    LINE_HEARTBEAT_S,
    LINE_MIN_INTERVAL_S,
    ProgressTracker,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "experiment.toml"
#: Start and end lines, plus one per LINE_EVERY_FRACTION of the run at most.
MAX_PLAIN_LINES = 2 + round(1 / LINE_EVERY_FRACTION)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def tracker(total: int, stream, clock=None, skipped: int = 0) -> ProgressTracker:
    return ProgressTracker(
        experiment_id="e",
        run_id="r",
        totals={"t": total},
        skipped={"t": skipped},
        description="demo run",
        stream=stream,
        clock=clock or FakeClock(),
    )


def run_units(progress: ProgressTracker, clock: FakeClock, units: int, seconds_each: float):
    for _ in range(units):
        clock.now += seconds_each
        progress.unit_finished("t", ok=True, cost_usd=0.01)
    progress.close("completed")


def test_off_a_terminal_a_fast_run_prints_a_start_and_an_end_line():
    out, clock = io.StringIO(), FakeClock()
    run_units(tracker(1000, out, clock), clock, 1000, 0.001)
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "demo run: started, 1000 units",
        "demo run: completed, 1000/1000 units, $10.0000, 0 errors, 1.0s",
    ]


def test_off_a_terminal_a_long_run_prints_a_line_per_tenth():
    out, clock = io.StringIO(), FakeClock()
    # Half a second a unit: a tenth takes 50 s, under the heartbeat's minute.
    run_units(tracker(1000, out, clock), clock, 1000, 0.5)
    lines = out.getvalue().splitlines()
    assert len(lines) == MAX_PLAIN_LINES - 1  # no progress line at 100%: the end line says it
    assert lines[1] == "demo run: 100/1000 units (10%), $1.0000, 0 errors, 50s"
    assert lines[-2].startswith("demo run: 900/1000 units (90%)")


def test_off_a_terminal_lines_are_at_least_the_minimum_interval_apart():
    out, clock = io.StringIO(), FakeClock()
    # 40 units, each a tenth is 4 units = 4 s: lines wait for LINE_MIN_INTERVAL_S.
    run_units(tracker(40, out, clock), clock, 40, 1.0)
    progress_lines = out.getvalue().splitlines()[1:-1]
    assert progress_lines and len(progress_lines) <= 40 / LINE_MIN_INTERVAL_S
    assert progress_lines[0].startswith("demo run: 5/40 units")


def test_off_a_terminal_a_slow_run_still_says_it_is_alive():
    out, clock = io.StringIO(), FakeClock()
    progress = tracker(10_000, out, clock, skipped=4)
    clock.now += LINE_HEARTBEAT_S + 1  # one slow unit: far from a tenth, but a minute passed
    progress.unit_finished("t", ok=False, cost_usd=None)
    lines = out.getvalue().splitlines()
    assert lines == [
        "demo run: started, 10000 units (4 done before)",
        f"demo run: 5/10000 units (0%), $0.0000, 1 errors, {LINE_HEARTBEAT_S + 1:.0f}s",
    ]


def test_on_a_terminal_the_tqdm_bar_is_drawn():
    out, clock = Terminal(), FakeClock()
    run_units(tracker(50, out, clock), clock, 50, 0.01)
    text = out.getvalue()
    assert "\r" in text and "50/50" in text and "$0.5000, 0 errors" in text


def test_a_broken_stream_does_not_stop_the_run():
    out = io.StringIO()
    progress = tracker(3, out)
    out.close()
    progress.unit_finished("t", ok=True, cost_usd=None)
    progress.close("completed")  # no ValueError from writing to a closed stream


def cli(tmp_path: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "aigw_lab.cli.main",
            "run",
            str(EXAMPLE),
            "--db",
            str(tmp_path / "experiments.duckdb"),
        ],
        stdout=subprocess.PIPE,
        timeout=180,
        **kwargs,
    )


def test_aigw_lab_run_with_stderr_piped_writes_a_few_plain_lines(tmp_path):
    done = cli(tmp_path, stderr=subprocess.PIPE)
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    # tqdm redrew its bar with \r about ten times a second: ~800 bytes for these 96 units.
    assert "\r" not in err
    progress = [line for line in err.splitlines() if line.startswith("sim fleet comparison:")]
    assert 2 <= len(progress) <= MAX_PLAIN_LINES
    assert progress[-1].startswith("sim fleet comparison: completed, 96/96 units")
    assert len(err.encode()) < 120 * MAX_PLAIN_LINES


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_aigw_lab_run_on_a_terminal_draws_the_bar(tmp_path):
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    # 24 rows, 100 columns: a fresh pty is 0 x 0, which tqdm draws as an empty bar.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        done = cli(tmp_path, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    assert done.returncode == 0
    err = b"".join(chunks).decode(errors="replace")
    assert "\r" in err and "96/96" in err and "unit/s" in err


def test_the_notebook_widget_is_recognised_only_when_tqdm_auto_picked_it(monkeypatch):
    import types

    from tqdm.auto import tqdm as auto_tqdm

    from aigw_lab.experiments.progress import _is_notebook_tqdm

    # Outside a kernel tqdm.auto is the text bar (with asyncio support mixed in).
    assert not _is_notebook_tqdm(auto_tqdm)

    class Widget:  # stands for tqdm.notebook.tqdm
        pass

    class Picked(Widget):  # what tqdm.auto builds in a Jupyter kernel
        pass

    monkeypatch.setitem(sys.modules, "tqdm.notebook", types.SimpleNamespace(tqdm=Widget))
    assert _is_notebook_tqdm(Picked) and not _is_notebook_tqdm(auto_tqdm)


@pytest.mark.parametrize("stream", [io.StringIO, Terminal])
def test_an_experiment_name_cannot_inject_control_characters(stream):
    out, clock = stream(), FakeClock()
    progress = ProgressTracker(
        experiment_id="e",
        run_id="r",
        totals={"t": 2},
        skipped={},
        description="evil\x1b[2J\nname\r" + "x" * 200,
        stream=out,
        clock=clock,
    )
    run_units(progress, clock, 2, 0.01)
    text = out.getvalue()
    assert "\x1b[2J" not in text and "\nname" not in text
    assert "evil?[2J?name?xxx" in text and "x" * 60 not in text
    if stream is io.StringIO:
        assert len(text.splitlines()) == 2


def test_in_a_notebook_kernel_the_run_shows_the_widget_not_text(tmp_path):
    """A real Jupyter kernel (its stderr is no terminal either): the run still gets tqdm's
    widget, and no progress text or carriage returns reach the cell's output."""
    import json

    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipywidgets")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "aigw_lab tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    manager = KernelManager(
        kernel_name="python3",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    code = (
        "from aigw_lab import Experiment, Gateway, bundled_dataset, run_experiment\n"
        f"gw = Gateway.simulated_fleet(log={str(tmp_path / 'nb.duckdb')!r}, time_scale=0)\n"
        "exp = Experiment('notebook run', bundled_dataset().sample(5), "
        "['sim-openai/sim-nano'])\n"
        "result = run_experiment(gw, exp)\n"
        "gw.close()\n"
        "print('status', result.status)\n"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    client = nbclient.NotebookClient(notebook, km=manager, kernel_name="python3", timeout=120)
    client.execute()
    outputs = notebook.cells[0].outputs
    widgets = [
        o
        for o in outputs
        if o.output_type == "display_data"
        and "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert widgets, outputs
    assert "status completed" in streams
    assert "\r" not in streams and "notebook run:" not in streams


KERNEL_WITHOUT_WIDGETS = r"""
import importlib.abc, io, json, sys, types, warnings

class NotInstalled(importlib.abc.MetaPathFinder):  # the notebook extra is not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("ipywidgets", "IPython"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())

class ZMQInteractiveShell:  # what a Jupyter kernel's get_ipython() returns
    config = {"IPKernelApp": {}}

shell = ZMQInteractiveShell()
sys.modules["IPython"] = types.SimpleNamespace(get_ipython=lambda: shell)
sys.modules["ipykernel"] = types.ModuleType("ipykernel")
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")

from aigw_lab.experiments.progress import _make_display

out = io.StringIO()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    display = _make_display(
        total=4, initial=0, description="run", stream=out, clock=lambda: 0.0
    )
print(json.dumps({
    "display": type(display).__name__,
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
}))
"""


def test_a_kernel_without_the_notebook_extra_gets_plain_lines_and_no_tqdm_warning():
    # Failed before: tqdm.auto, asked in a kernel without ipywidgets, warned "IProgress not
    # found. Please update jupyter and ipywidgets." on every run of a core install.
    done = subprocess.run(
        [sys.executable, "-c", KERNEL_WITHOUT_WIDGETS], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"display": "_LineDisplay", "warnings": []}


def test_tqdm_auto_is_asked_only_in_a_kernel_with_ipywidgets(monkeypatch):
    from aigw_lab.experiments import progress

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not progress._widgets_possible()  # a script: tqdm.auto would be the text bar
    monkeypatch.setitem(sys.modules, "IPython", object())
    assert progress._widgets_possible()  # ipywidgets is installed here (dev)
    monkeypatch.setattr(progress, "missing_modules", lambda names: list(names))
    assert not progress._widgets_possible()
