"""Every import inside a function says why it is not at the top of its module.

Issue 11 §5: imports sit at the top of a module unless there is a reason to defer them (an
optional or heavy dependency that ``import aigw_lab`` and the CLI's start-up must not pay
for, a CLI verb's own modules, an import cycle). The reason is a comment starting
``# lazy:`` on the import line or just above it; consecutive imports may share one comment
(the comment block right above the first of them). Generated ``_sync/`` modules are left
out: their ``_async`` originals, comments included, are checked.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import aigw_lab

PACKAGE = Path(aigw_lab.__file__).resolve().parent
MARK = "# lazy:"


def _function_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The Import/ImportFrom nodes anywhere inside a function (nested ones included)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    walk(tree, False)
    return found


def _has_reason(lines: list[str], node: ast.Import | ast.ImportFrom, grouped: set[int]) -> bool:
    if MARK in lines[node.lineno - 1]:
        return True
    first = node.lineno
    while first - 1 in grouped:  # the imports just above share its comment
        first -= 1
    above = first - 1
    while above >= 1 and lines[above - 1].strip().startswith("#"):
        if MARK in lines[above - 1]:
            return True
        above -= 1
    return False


def unexplained_imports(package: Path) -> list[str]:
    """``file:line: import`` for each function-level import under ``package`` without a
    ``# lazy:`` reason."""
    missing = []
    for path in sorted(package.rglob("*.py")):
        if "_sync" in path.relative_to(package).parts:
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        nodes = _function_imports(ast.parse(source, filename=str(path)))
        grouped = {line for node in nodes for line in range(node.lineno, node.end_lineno + 1)}
        for node in nodes:
            if not _has_reason(lines, node, grouped):
                where = path.relative_to(package.parent).as_posix()
                missing.append(f"{where}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return missing


def test_every_function_level_import_gives_its_reason():
    missing = unexplained_imports(PACKAGE)
    assert not missing, (
        "imports inside functions without a `# lazy:` reason (move them to the top of the "
        "module, or say why they must wait):\n" + "\n".join(missing)
    )


def test_sync_twins_are_generated_from_checked_originals():
    # The _sync/ modules are skipped only because each is generated from an _async one.
    for twin in PACKAGE.rglob("_sync/*.py"):
        original = twin.parent.parent / "_async" / twin.name
        assert original.is_file(), f"{twin} has no _async original that this test checks"


def test_an_unexplained_import_is_named_with_its_line(tmp_path):
    copy = tmp_path / "aigw_lab"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    budget = copy / "gateway" / "budget.py"
    planted = budget.read_text().splitlines()
    planted += [
        "",
        "",
        "def _planted():",
        "    x = 1",
        "    import json",
        "",
        "    return json.dumps(x)",
        "",
        "",
        "def _explained():",
        "    # lazy: a reason, shared by the two imports below",
        "    import json",
        "    import csv",
        "",
        "    return json, csv",
        "",
        "",
        "def _nested():",
        "    def inner():",
        "        from aigw_lab.errors import ConfigError",
        "",
        "        return ConfigError",
        "",
        "    return inner",
    ]
    budget.write_text("\n".join(planted) + "\n")
    line_of_json = planted.index("    import json") + 1
    line_of_nested = planted.index("        from aigw_lab.errors import ConfigError") + 1
    missing = unexplained_imports(copy)
    assert missing == [
        f"aigw_lab/gateway/budget.py:{line_of_json}: import json",
        f"aigw_lab/gateway/budget.py:{line_of_nested}: from aigw_lab.errors import ConfigError",
    ]
