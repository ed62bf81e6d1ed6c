"""The layers of docs/architecture.md hold: import-linter checks `.importlinter` in CI.

Runs ``lint-imports`` in a subprocess, as CI would, on this checkout (it must pass) and on a
copy of the package with one upward import added (it must fail, naming that import), so
the contract is known to be able to fail. Skipped when import-linter is not installed (it
is in the ``[dev]`` extra).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aigw_lab

pytest.importorskip(
    "importlinter", reason='import-linter is not installed (pip install -e ".[dev]")'
)

ROOT = Path(aigw_lab.__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
# lint-imports's own entry point, run by this interpreter (the script may not be on PATH).
LINT = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LINT, "--config", str(config), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layer_contract_holds():
    done = lint_imports(ROOT, CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(
        ROOT / "aigw_lab", tmp_path / "aigw_lab", ignore=shutil.ignore_patterns("__pycache__")
    )
    config = tmp_path / ".importlinter"
    shutil.copy(CONFIG, config)
    budget = tmp_path / "aigw_lab" / "gateway" / "budget.py"
    # Even inside a function (where 128 of the old cycles hid), an import counts.
    budget.write_text(
        budget.read_text()
        + "\n\ndef _upward():\n    from aigw_lab.report import write_report\n\n"
        + "    return write_report\n"
    )
    done = lint_imports(tmp_path, config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "aigw_lab.gateway.budget -> aigw_lab.report" in done.stdout
    assert "0 kept, 1 broken" in done.stdout


def test_a_new_top_level_module_must_be_placed_in_a_layer(tmp_path):
    shutil.copytree(
        ROOT / "aigw_lab", tmp_path / "aigw_lab", ignore=shutil.ignore_patterns("__pycache__")
    )
    config = tmp_path / ".importlinter"
    shutil.copy(CONFIG, config)
    (tmp_path / "aigw_lab" / "unplaced.py").write_text('"""A module in no layer."""\n')
    done = lint_imports(tmp_path, config)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "aigw_lab.unplaced" in done.stdout


def test_a_type_only_upward_import_is_allowed(tmp_path):
    # Under `if TYPE_CHECKING:` an import never runs: the way to name a type from above.
    shutil.copytree(
        ROOT / "aigw_lab", tmp_path / "aigw_lab", ignore=shutil.ignore_patterns("__pycache__")
    )
    config = tmp_path / ".importlinter"
    shutil.copy(CONFIG, config)
    budget = tmp_path / "aigw_lab" / "gateway" / "budget.py"
    assert "from typing import TYPE_CHECKING" in budget.read_text()
    budget.write_text(
        budget.read_text()
        + "\n\nif TYPE_CHECKING:  # budget.py imports it from typing\n"
        + "    from aigw_lab.report import write_report  # noqa: F401\n"
    )
    done = lint_imports(tmp_path, config)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_upward_import_is_excepted():
    # Issue 11 removed the last excepted upward imports (the route stage, from_config, the
    # simulator's URLs). An exception added later must name the work that removes it; this
    # test then checks that comment instead.
    parser = configparser.ConfigParser()
    parser.read_string(CONFIG.read_text())
    assert "ignore_imports" not in parser["importlinter:contract:layers"]
