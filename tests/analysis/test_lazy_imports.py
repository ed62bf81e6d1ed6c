import subprocess
import sys

import pytest

import aigw_lab.analysis
import aigw_lab.report


def test_importing_the_packages_loads_no_heavy_dependency():
    code = (
        "import sys, aigw_lab.analysis, aigw_lab.notebook, aigw_lab.report\n"
        "heavy = [m for m in ('pandas', 'duckdb', 'plotly', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("package", [aigw_lab.analysis, aigw_lab.report])
def test_every_public_name_resolves(package):
    for name in package.__all__:
        assert getattr(package, name) is not None
    assert sorted(package.__all__) == dir(package)
