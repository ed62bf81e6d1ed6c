"""What tests/analysis/test_rollups.py's property tests catch: seven mutants of the rollup
refresh script, each run against the explicit `EDGE_CASES` example alone and against random
examples alone (docs/performance.md, "The heaviest tests' CPU, session 12").

    python bench/rollups_mutants.py [--runs 10] [--examples 80]      # about 5 minutes
    python bench/rollups_mutants.py --quick                            # 3 runs, about 2

Each mutant is a copy of this checkout's ``aigw_lab`` and ``tests`` in a temporary folder with
one edit of ``aigw_lab/analysis/rollups.py``. For each it prints which of the three property
tests fail with only the explicit examples (Hypothesis's explicit phase), then, for the
chunked-refresh and analyses tests without the explicit examples, in how many of ``--runs``
runs of up to ``--examples`` random examples the mutant was caught and after how many
examples (the failing one counted; a run that never fails is left out of that list). The
unmutated tree must pass both (it is run first).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (text in rollups.py, its replacement): each a bug the property tests must catch.
MUTANTS = {
    "old result calls left out of the re-merged scores": (
        'affected = " UNION ".join(q for q in (old, recomputed, rescored) if q)',
        'affected = " UNION ".join(q for q in (recomputed, rescored) if q)',
    ),
    "NULL targets compared with = in the DELETE": (
        "        DELETE FROM {s}.rollup_units u USING _rollup_keys k\n"
        "            WHERE u.experiment_id IS NOT DISTINCT FROM k.experiment_id\n"
        "                AND u.key_target IS NOT DISTINCT FROM k.target",
        "        DELETE FROM {s}.rollup_units u USING _rollup_keys k\n"
        "            WHERE u.experiment_id IS NOT DISTINCT FROM k.experiment_id\n"
        "                AND u.key_target = k.target",
    ),
    "costs counting distinct call ids": (
        "               count(*) AS calls",
        "               count(DISTINCT call_id) AS calls",
    ),
    "old rows matched on the raw item id": (
        "            SEMI JOIN _rollup_old o ON c.experiment_id IS NOT DISTINCT FROM "
        "o.experiment_id\n"
        "                AND c.target IS NOT DISTINCT FROM o.key_target\n"
        "                AND coalesce(c.item_id, c.trace_id) = o.item_id",
        "            SEMI JOIN _rollup_old o ON c.experiment_id IS NOT DISTINCT FROM "
        "o.experiment_id\n"
        "                AND c.target IS NOT DISTINCT FROM o.key_target\n"
        "                AND c.item_id = o.item_id",
    ),
    "rescored calls left out": (
        'affected = " UNION ".join(q for q in (old, recomputed, rescored) if q)',
        'affected = " UNION ".join(q for q in (old, recomputed) if q)',
    ),
    "old units matched without their repetition": (
        "                AND u.item_id = k.item_id AND u.repetition = k.repetition;\n"
        "        -- A unit",
        "                AND u.item_id = k.item_id;\n        -- A unit",
    ),
    "new rows matched on the raw repetition": (
        "                AND coalesce(c.repetition, 0) = o.repetition\n            UNION ALL",
        "                AND c.repetition = o.repetition\n            UNION ALL",
    ),
}

#: Runs one property test in the tree on sys.path: random examples only, ``runs`` times.
_RANDOM_RUNS = """
import sys
from hypothesis import given, settings, strategies as st
import tests.analysis.test_rollups as m

which, examples, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
test = getattr(m, which)
inner = test.hypothesis.inner_test
count = [0]

def counted(*args, **kwargs):
    count[0] += 1
    return inner(*args, **kwargs)

if "analyses" in which:
    strategies = {"log": m.random_logs(), "experiment": st.sampled_from(["exp", None]),
                  "scorer": st.sampled_from(["s1", "s2", None])}
    counted.__signature__ = __import__("inspect").signature(inner)
else:
    strategies = {"log": m.random_logs()}
    counted.__signature__ = __import__("inspect").signature(inner)
caught = []
for _ in range(runs):
    count[0] = 0
    run = settings(max_examples=examples, **m._SETTINGS)(given(**strategies)(counted))
    copies = m._Copies()
    try:
        run(copies=copies)
    except Exception:
        caught.append(count[0])
    finally:
        copies.close()
print(len(caught), sorted(caught))
"""

_TESTS = (
    "test_refreshes_in_chunks_build_the_rollups_one_refresh_builds",
    "test_rolled_up_analyses_equal_the_reference",
    "test_histogram_percentiles_are_within_the_stated_relative_error",
)


def _tree(folder: Path, edit: tuple[str, str] | None) -> Path:
    """A copy of aigw_lab and tests with ``edit`` applied to the refresh script, and a copy of
    test_rollups.py that runs only the explicit examples."""
    for sub in ("aigw_lab", "tests"):
        shutil.copytree(ROOT / sub, folder / sub, ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        script = folder / "aigw_lab/analysis/rollups.py"
        text = script.read_text()
        if text.count(edit[0]) != 1:
            raise SystemExit(f"the refresh script changed: update the mutant {edit[0]!r}")
        script.write_text(text.replace(edit[0], edit[1]))
    tests = folder / "tests/analysis"
    explicit = (tests / "test_rollups.py").read_text()
    phases = '"phases": [Phase.explicit, Phase.reuse, Phase.generate]'
    if explicit.count(phases) != 1:
        raise SystemExit("test_rollups.py's _SETTINGS changed: update this script")
    (tests / "test_rollups_explicit_only.py").write_text(
        explicit.replace(phases, '"phases": [Phase.explicit]')
    )
    return folder


def _explicit_failures(tree: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
         "-rf", "tests/analysis/test_rollups_explicit_only.py", "-k", " or ".join(_TESTS)],
        cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True,
    )  # fmt: skip
    return sorted(
        name.split("::")[-1].split(" ")[0]
        for name in out.stdout.splitlines()
        if name.startswith("FAILED")
    )


def _random(tree: Path, test: str, examples: int, runs: int) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _RANDOM_RUNS, test, str(examples), str(runs)],
        cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        return f"error: {out.stderr.strip().splitlines()[-1:]}"
    caught, after = out.stdout.split(" ", 1)
    return f"caught in {caught} of {runs} runs, after {after.strip()} examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="random runs per test and mutant")
    parser.add_argument("--examples", type=int, default=80, help="random examples per run")
    parser.add_argument("--quick", action="store_true", help="3 runs")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="rollups-mutants-") as scratch:
        base = _tree(Path(scratch) / "unmutated", None)
        failed = _explicit_failures(base)
        print(f"unmutated: explicit examples fail {failed or 'nothing'}")
        print(f"unmutated, chunked: {_random(base, _TESTS[0], args.examples, 1)}")
        for number, (name, edit) in enumerate(MUTANTS.items(), 1):
            tree = _tree(Path(scratch) / f"m{number}", edit)
            print(f"\nmutant {number}: {name}")
            print(f"  explicit examples alone fail: {_explicit_failures(tree) or 'nothing'}")
            for test in _TESTS[:2]:
                print(f"  {test}, random only: {_random(tree, test, args.examples, runs)}")


if __name__ == "__main__":
    main()
