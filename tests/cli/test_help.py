"""Every ``aigw-lab`` verb has a one-line help and a description, every flag a help text in
plain words (with its default when it has one), and ``--help`` at every level lists them all.

The checks walk the real parser tree built by `aigw_lab.cli.main.build_parser`, so a flag or
a verb added later without help fails here.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from aigw_lab.cli.main import build_parser, main

#: Actions whose default is how they work, not a value worth stating.
_NO_DEFAULT_TO_SAY = (
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._CountAction,
    argparse._SubParsersAction,
)


def parsers() -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path: (), ("run",), ("keys", "create")..."""
    todo: list[tuple[tuple[str, ...], argparse.ArgumentParser]] = [((), build_parser())]
    while todo:
        path, parser = todo.pop(0)
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(((*path, name), sub) for name, sub in action.choices.items())


def verbs() -> Iterator[tuple[tuple[str, ...], str | None, argparse.ArgumentParser]]:
    """Every subcommand at any depth: its path, the help its parent lists, its parser."""
    for path, parser in parsers():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    yield (*path, name), listed.get(name), sub


def flags() -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    """Every argument of every parser but -h/--help and the subcommand slots."""
    for path, parser in parsers():
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            yield path, action


def name_of(path: tuple[str, ...], action: argparse.Action) -> str:
    flag = "/".join(action.option_strings) or action.dest
    return " ".join(("aigw-lab", *path, flag))


def test_the_tree_is_walked():
    paths = {path for path, _ in parsers()}
    assert {(), ("run",), ("keys", "create"), ("policy", "export")} <= paths
    assert len(list(flags())) > 60


def test_every_flag_has_help():
    missing = [
        name_of(path, action)
        for path, action in flags()
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert not missing, f"flags without help: {missing}"


def test_every_verb_has_help_and_a_description():
    no_help = [" ".join(path) for path, listed, _ in verbs() if not (listed or "").strip()]
    no_description = [
        " ".join(path) for path, _, sub in verbs() if not (sub.description or "").strip()
    ]
    assert not no_help, f"verbs without a one-line help: {no_help}"
    assert not no_description, f"verbs without a description: {no_description}"


def test_help_is_plain_words():
    # Module docstrings used as descriptions showed reStructuredText (``aigw-lab demo``).
    texts = [(" ".join(path) or "aigw-lab", p.description or "") for path, p in parsers()]
    texts += [(name_of(path, action), action.help or "") for path, action in flags()]
    texts += [(" ".join(path), listed or "") for path, listed, _ in verbs()]
    marked = [where for where, text in texts if "``" in text or "`" in text.replace("'", "")]
    assert not marked, f"help with markup: {marked}"


def test_a_flag_with_a_default_says_it():
    silent = []
    for path, action in flags():
        if isinstance(action, _NO_DEFAULT_TO_SAY) or not action.option_strings:
            continue
        if action.default in (None, [], argparse.SUPPRESS) or action.required:
            continue
        if "default" not in (action.help or "").lower():
            silent.append(f"{name_of(path, action)} (default {action.default!r})")
    assert not silent, f"flags that do not say their default: {silent}"


@pytest.mark.parametrize("path", [path for path, _ in parsers()], ids=" ".join)
def test_help_lists_every_verb_and_flag(path, capsys):
    parser = dict(parsers())[path]
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name in action.choices:
                assert f"    {name} " in out, f"{name} missing from {path} --help"
        for flag in action.option_strings:
            assert flag in out, f"{flag} missing from {path} --help"
    if parser.description:
        assert " ".join(parser.description.split()[:4]) in " ".join(out.split())
