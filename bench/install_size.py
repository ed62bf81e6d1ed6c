"""How much disk does the core install take, and what is it made of? (issue 10 §1: the core
at most 300 MB on disk.)

    python bench/install_size.py [--quick] [--venv PATH] [--keep DIR] [--versions [SPEC ...]]

Builds fresh virtual environments under a temporary folder with this interpreter
(``python -m venv``), installs into each with its own pip as a user would (from PyPI, pip's
default bytecode compilation, no files deleted), and measures them:

- ``empty venv``: ``python -m venv`` alone, the base every install pays (pip, setuptools);
- ``core``: ``pip install <this tree>`` (non-editable, so aigw_lab's own files count; pip
  builds a copy of the tree, which keeps build/ and aigw_lab.egg-info out of it);
- without ``--quick``, also: ``pip install -e <this tree>`` (the README's command), the core
  with the ``notebook`` extra (``pip install "<this tree>[notebook]"``: plotly, ipywidgets and
  the IPython they bring), the same with IPython's ``jedi`` and ``prompt_toolkit``'s
  ``wcwidth`` held at their older, smaller releases (a constraints file), and the core
  without ``genai-prices`` (a real install each).

For each: the venv's size on disk as ``du`` counts it (allocated blocks of every file and
folder, hard links once) and the files' apparent bytes. For the core it prints every
distribution (files from its RECORD plus any bytecode beside them; allocated blocks,
apparent bytes, the bytecode's share) with the chain of requirements that brings it in
from aigw-lab, and for each direct core dependency what leaving it out would save (the
distributions only it brings in). ``--venv PATH`` measures an existing venv instead of
building any. MB are 10**6 bytes; ``du -sh`` prints MiB (2**20). Every interpreter of a
venv runs isolated (``-I``, no ``PYTHONPATH``), and each install is checked to hold aigw-lab.

Sizes do not depend on the machine's load (printed for the record); pip's downloads come
from its cache after the first run. ``--quick`` takes 1-2 minutes (2-4 at load 10-20); the
full run's seven installs took 9 minutes at load 13-17 (2026-12-07, before the notebook
extra), and ``--versions`` one more (wheels cached).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 300.0
MB = 1e6

#: Run by each venv's own interpreter: its distributions, their requirements and the
#: absolute paths of the files their RECORDs list (standard library only).
DUMP = r"""
import importlib.metadata as md, json, os, sys
out = []
for dist in md.distributions():
    files = []
    for f in dist.files or ():
        files.append(os.path.realpath(dist.locate_file(f)))
    out.append({"name": dist.metadata["Name"], "version": dist.version,
                "requires": dist.requires or [], "files": files})
print(json.dumps({"prefix": sys.prefix, "dists": out}))
"""

#: Older releases of two packages IPython (the notebook extra's) brings, which are far smaller
#: (jedi 0.20 ships a larger typeshed; wcwidth 0.3+ ships its tables as Python). Not ours to
#: cap: measured only, to show what they weigh.
SMALL_PINS = ["jedi<0.20", "wcwidth<0.3"]

#: ``--versions`` with no names: releases of the large core packages and of IPython's
#: large parts, each installed alone (``--no-deps --target``) and measured the same way.
VERSIONS = [
    "plotly==5.24.1", "plotly==6.0.1", "plotly==6.1.2", "plotly==6.2.0", "plotly==6.5.2",
    "plotly==7.1.0", "pandas==2.2.3", "pandas==2.3.3", "pandas==3.0.2", "pandas==3.1.1",
    "numpy==1.26.4", "numpy==2.2.6", "numpy==2.4.6", "duckdb==1.2.2", "duckdb==1.4.4",
    "duckdb==2.0.1", "jedi==0.19.2", "jedi==0.20.1", "wcwidth==0.2.14", "wcwidth==0.9.5",
    "ipython==8.37.0", "ipython==9.19.1",
]  # fmt: skip


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def core_requirements() -> list[str]:
    """pyproject.toml's core dependencies (no extras)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(data["project"]["dependencies"])


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def clean_env() -> dict[str, str]:
    """This process's environment without what would let a venv's interpreter (or a build
    pip starts) see packages outside the venv: with this tree on ``PYTHONPATH`` pip takes
    the ``aigw_lab.egg-info`` a build leaves in it for an installed aigw-lab and skips it."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"}
    return {key: value for key, value in os.environ.items() if key not in drop}


def dump(venv: Path) -> dict:
    """The venv's distributions as its own interpreter sees them."""
    done = subprocess.run(
        [str(venv_python(venv)), "-I", "-c", DUMP],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(),
    )
    return json.loads(done.stdout)


def disk_usage(root: Path) -> tuple[int, int]:
    """(allocated bytes, apparent bytes) of every file and folder under ``root``, each
    inode once, symlinks as themselves: what ``du -s`` and ``du -s --apparent-size`` say."""
    seen: set[tuple[int, int]] = set()
    blocks = apparent = 0
    for folder, dirs, files in os.walk(root):  # symlinked folders: counted, not followed
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        for path in [folder, *(os.path.join(folder, name) for name in [*files, *links])]:
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            blocks += st.st_blocks * 512
            apparent += st.st_size
    return blocks, apparent


def dist_sizes(listing: dict) -> dict[str, dict]:
    """Per distribution (canonical name): version, requires, allocated and apparent bytes of
    its files, the bytecode's share and the file count. A file is counted once, for the
    first distribution that lists it; bytecode pip wrote beside a listed .py counts too."""
    owned: set[str] = set()
    out = {}
    for dist in listing["dists"]:
        paths = {p for p in dist["files"] if os.path.isfile(p)}
        for path in [p for p in paths if p.endswith(".py")]:
            cache = Path(path).parent / "__pycache__"
            if cache.is_dir():
                paths.update(str(c) for c in cache.glob(Path(path).stem + ".*.pyc"))
        paths -= owned
        blocks = apparent = pyc = 0
        for path in paths:
            st = os.lstat(path)
            blocks += st.st_blocks * 512
            apparent += st.st_size
            if path.endswith(".pyc"):
                pyc += st.st_blocks * 512
        owned |= paths
        out[canonical(dist["name"])] = {
            "name": dist["name"],
            "version": dist["version"],
            "requires": dist["requires"],
            "blocks": blocks,
            "apparent": apparent,
            "pyc": pyc,
            "files": len(paths),
        }
    return out


def requirement_names(requires: list[str]) -> list[str]:
    """The distributions ``requires`` asks for on this interpreter, with no extra chosen."""
    names = []
    for text in requires:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(canonical(req.name))
    return names


def closure(requires: dict[str, list[str]], roots: list[str]) -> dict[str, list[str]]:
    """Every installed distribution ``roots`` bring in -> the chain of names that brings it
    (breadth first: the shortest chain). ``requires``: canonical name -> its requirements,
    for the installed distributions only."""
    chains = {root: [root] for root in roots if root in requires}
    queue = deque(chains)
    while queue:
        name = queue.popleft()
        for child in requirement_names(requires[name]):
            if child in requires and child not in chains:
                chains[child] = [*chains[name], child]
                queue.append(child)
    return chains


def mb(value: float) -> str:
    return f"{value / MB:,.1f}"


def pip_install(venv: Path, args: list[str]) -> None:
    """``pip install ARGS`` with the venv's own pip; exits with pip's output on failure."""
    done = subprocess.run(
        [str(venv_python(venv)), "-I", "-m", "pip", "install", "-q",
         "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(
            f"pip install {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-I", "-m", "venv", str(path)], check=True, env=clean_env())
    return path


def source_copy(scratch: Path) -> Path:
    """This tree's sources copied under ``scratch`` (once): pip builds a local project in
    place, and would leave build/ and aigw_lab.egg-info in the tree."""
    copy = scratch / "source"
    if not copy.exists():
        junk = (".git", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "*.duckdb")
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*junk))
    return copy


def build_wheel(folder: Path, source: Path) -> Path:
    """The tree as a wheel (so the variants install aigw-lab itself without its deps)."""
    subprocess.run(
        [sys.executable, "-I", "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder),
         str(source)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )  # fmt: skip
    return next(folder.glob("aigw_lab-*.whl"))


def without(requirements: list[str], names: set[str]) -> list[str]:
    return [r for r in requirements if canonical(Requirement(r).name) not in names]


def scenarios(quick: bool) -> list[tuple[str, object]]:
    """(label, install) pairs; ``install(venv, scratch)`` fills a fresh venv."""
    core = core_requirements()

    def tree(venv, scratch):
        pip_install(venv, [str(source_copy(scratch))])

    def editable(venv, scratch):
        pip_install(venv, ["-e", str(source_copy(scratch))])

    def notebook(venv, scratch):
        pip_install(venv, [f"{source_copy(scratch)}[notebook]"])

    def small_pins(venv, scratch):
        constraints = scratch / "small-pins.txt"
        constraints.write_text("\n".join(SMALL_PINS) + "\n", encoding="utf-8")
        pip_install(venv, ["-c", str(constraints), f"{source_copy(scratch)}[notebook]"])

    def leaving(*names):
        def install(venv, scratch):
            wheel = scratch / "wheel"
            found = sorted(wheel.glob("aigw_lab-*.whl"))
            found = found or [build_wheel(wheel, source_copy(scratch))]
            pip_install(venv, ["--no-deps", str(found[0])])
            pip_install(venv, without(core, set(names)))

        return install

    chosen = [("empty venv", None), ("core: pip install .", tree)]
    if not quick:
        chosen += [
            ("core: pip install -e . (README)", editable),
            ("core + notebook: pip install .[notebook]", notebook),
            ("core + notebook, -c " + " ".join(SMALL_PINS), small_pins),
            ("core without genai-prices", leaving("genai-prices")),
        ]
    return chosen


def print_versions(specs: list[str], scratch: Path) -> None:
    """Each of ``specs`` installed alone into its own folder, without its dependencies."""
    print(f"\n{'release, installed alone':<28} {'disk MB':>8} {'apparent':>9}")
    for spec in specs:
        folder = scratch / re.sub(r"[^A-Za-z0-9.]+", "_", spec)
        done = subprocess.run(
            [sys.executable, "-I", "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "--target", str(folder), spec],
            capture_output=True,
            text=True,
            env=clean_env(),
        )  # fmt: skip
        if done.returncode != 0:
            print(f"{spec:<28} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        blocks, apparent = disk_usage(folder)
        print(f"{spec:<28} {mb(blocks):>8} {mb(apparent):>9}", flush=True)


def print_breakdown(venv: Path, base_blocks: int | None) -> None:
    """Every distribution in ``venv`` with the chain that brings it, and what each direct
    core dependency alone brings."""
    listing = dump(venv)
    dists = dist_sizes(listing)
    total_blocks, total_apparent = disk_usage(Path(listing["prefix"]))
    root = canonical("aigw-lab")
    roots = requirement_names(dists[root]["requires"]) if root in dists else []
    requires = {key: row["requires"] for key, row in dists.items()}
    chains = closure(requires, [root] if root in dists else [])
    print(f"\n{venv}: {mb(total_blocks)} MB on disk ({total_blocks / 2**20:,.1f} MiB), "
          f"{mb(total_apparent)} MB apparent")  # fmt: skip
    print(f"{'distribution':<26} {'version':<18} {'disk MB':>8} {'apparent':>9} {'.pyc MB':>8} "
          f"{'files':>6}  brought by")  # fmt: skip
    owned = 0
    for key, row in sorted(dists.items(), key=lambda kv: -kv[1]["blocks"]):
        owned += row["blocks"]
        chain = chains.get(key)
        why = (
            " > ".join(chain[:-1])
            if chain and len(chain) > 1
            else ("(root)" if chain else "(venv)")
        )
        print(f"{row['name'][:26]:<26} {row['version'][:18]:<18} {mb(row['blocks']):>8} "
              f"{mb(row['apparent']):>9} {mb(row['pyc']):>8} {row['files']:>6}  {why}")  # fmt: skip
    pyc = sum(r["pyc"] for r in dists.values())
    print(f"{'files of no distribution, and folders':<45} {mb(total_blocks - owned):>8}")
    print(f"{'of all: bytecode (.pyc) pip compiled':<45} {mb(pyc):>8}")
    if base_blocks is not None:
        print(f"{'of all: the empty venv (pip, setuptools, ...)':<45} {mb(base_blocks):>8}")
    print("\nWhat each direct core dependency alone brings (left out, the rest stay):")
    everything = set(closure(requires, roots))
    for name in roots:
        rest = set(closure(requires, [r for r in roots if r != name]))
        alone = sorted(everything - rest, key=lambda k: -dists[k]["blocks"])
        size = sum(dists[k]["blocks"] for k in alone)
        shown = ", ".join(f"{dists[k]['name']} {mb(dists[k]['blocks'])}" for k in alone[:8])
        more = f", +{len(alone) - 8} more" if len(alone) > 8 else ""
        print(f"  {name:<14} {mb(size):>7} MB  {shown}{more}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure the core install's size on disk in fresh venvs (issue 10 §1)."
    )
    parser.add_argument("--quick", action="store_true", help="the empty venv and the core only")
    parser.add_argument("--venv", type=Path, help="measure this existing venv; build none")
    parser.add_argument("--keep", type=Path, help="build the venvs here and keep them")
    parser.add_argument(
        "--versions",
        nargs="*",
        metavar="SPEC",
        help="also measure these releases alone (pip specs; none given: a built-in list)",
    )
    args = parser.parse_args(argv)
    one, five, fifteen = os.getloadavg()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, load {one:.1f} {five:.1f} "
          f"{fifteen:.1f}; target: the core at most {TARGET_MB:.0f} MB on disk")  # fmt: skip
    if args.venv is not None:
        print_breakdown(args.venv, None)
        return 0
    scratch = Path(args.keep or tempfile.mkdtemp(prefix="install-size-"))
    scratch.mkdir(parents=True, exist_ok=True)
    results = []
    core_venv = None
    for index, (label, install) in enumerate(scenarios(args.quick)):
        venv = make_venv(scratch / f"venv{index}")
        if install is not None:
            install(venv, scratch)
            installed = {canonical(d["name"]) for d in dump(venv)["dists"]}
            if "aigw-lab" not in installed:
                sys.exit(f"{label}: aigw-lab is not installed in {venv}")
        blocks, apparent = disk_usage(venv)
        results.append((label, blocks, apparent))
        if label == "core: pip install .":
            core_venv = venv
        print(f"  built {label}: {mb(blocks)} MB", flush=True)
    base = results[0][1]
    print(f"\n{'install':<50} {'disk MB':>8} {'MiB':>7} {'apparent':>9} {'over empty':>10}  "
          f"<= {TARGET_MB:.0f} MB")  # fmt: skip
    for label, blocks, apparent in results:
        verdict = "met" if blocks <= TARGET_MB * MB else "not met"
        print(f"{label:<50} {mb(blocks):>8} {blocks / 2**20:>7,.1f} {mb(apparent):>9} "
              f"{mb(blocks - base):>10}  {verdict if label != 'empty venv' else ''}")  # fmt: skip
    if core_venv is not None:
        print_breakdown(core_venv, base)
    if args.versions is not None:
        print_versions(args.versions or VERSIONS, scratch / "versions")
    one, five, fifteen = os.getloadavg()
    print(f"\nend {datetime.now(UTC):%H:%M} UTC, load {one:.1f} {five:.1f} {fifteen:.1f}")
    if args.keep is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
