"""One document's Python session, run as ``python _python_session.py RESULT_FD``.

Reads blocks as JSON lines (``{"code": ..., "doc": ..., "line": ...}``) on stdin and runs each in one
shared namespace, as a reader pasting the document's blocks into one session would: top-level
``await`` works (one event loop for the whole session, as in Jupyter), every top-level
expression statement is shown with ``repr`` (as the REPL does), and ``>>>`` blocks run their
``>>>``/``...`` lines. After each block one JSON line goes to RESULT_FD: ``{"ok": true}`` or
``{"ok": false, "error": ...}``. The block's own output (stdout and stderr, of Python and of
anything it starts) goes to this process's stdout, which the test reads from a file.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import sys
import traceback


def _doctest_source(code: str) -> str:
    """The statements of a ``>>>`` block, or ``code`` unchanged when it is plain Python."""
    lines = code.splitlines()
    if not any(line.startswith(">>> ") for line in lines):
        return code
    kept = [line[4:] for line in lines if line.startswith((">>> ", "... "))]
    kept += [""]
    return "\n".join(line if line != "..." else "" for line in kept)


def _display(value: object) -> None:
    if value is not None:
        print(repr(value))


def _compile(code: str, name: str, first_line: int) -> object:
    """``code`` compiled so that its line numbers are the document's (``first_line`` is the
    line of its fence), every top-level expression statement shown."""
    tree = compile(code, name, "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    body = []
    for node in tree.body:
        if isinstance(node, ast.Expr):
            call = ast.Call(
                func=ast.Name(id="__doc_display__", ctx=ast.Load()), args=[node.value], keywords=[]
            )
            node = ast.copy_location(ast.Expr(value=call), node)
        body.append(node)
    tree.body = body
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, first_line)
    return compile(tree, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _tripwire_violations() -> list[str]:
    """What the tripwire (installed by the doc test's sitecustomize) blocked since the last
    call: a block that swallowed the error must still fail."""
    tripwire = sys.modules.get("aigw_lab.testing.tripwire")
    if tripwire is None:
        return []
    found = tripwire.violations()
    tripwire.reset()
    return found


def main() -> int:
    results = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    namespace: dict[str, object] = {"__name__": "__main__", "__doc_display__": _display}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for message in sys.stdin:
        block = json.loads(message)
        try:
            code = _compile(_doctest_source(block["code"]), block["doc"], block["line"])
            outcome = eval(code, namespace)  # noqa: S307 - the block is the test's input
            if inspect.iscoroutine(outcome):
                loop.run_until_complete(outcome)
            answer = {"ok": True}
            blocked = _tripwire_violations()
            if blocked:
                answer = {"ok": False, "error": "network tripwire: " + "; ".join(blocked)}
        except BaseException as exc:  # noqa: BLE001 - every failure is the block's result
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(json.dumps(answer) + "\n")
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
