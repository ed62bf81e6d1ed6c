"""``aigw-lab COMMAND`` builds the parser of COMMAND only (building every verb's parser cost
more than many commands' own work), and what a user reads stays what the whole tree says:
``--help`` at the top and per verb, invalid choices, usage errors."""

from __future__ import annotations

import argparse
import importlib

import pytest

from aigw_lab.cli import main as cli_main
from aigw_lab.cli._verbs import VERBS
from aigw_lab.cli.main import SUBCOMMANDS, build_parser, main, verb_of


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exited:
        code = exited.code
    out, err = capsys.readouterr()
    return code, out, err


def full_tree_output(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """What the whole tree, every verb built, prints for ``argv``."""
    try:
        build_parser().parse_args(argv)
        code = 0
    except SystemExit as exited:
        code = exited.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def other_verbs_refuse_to_build(monkeypatch: pytest.MonkeyPatch):
    """Every verb's ``register`` raises, except the one the test names with the returned
    function: so a command that builds another verb's parser fails."""

    def allow(verb: str) -> None:
        for name in SUBCOMMANDS:
            if name == verb:
                continue
            module = importlib.import_module(f"aigw_lab.cli.{name}")

            def refuse(subparsers, name=name):
                raise AssertionError(f"the {name!r} parser was built")

            monkeypatch.setattr(module, "register", refuse)

    return allow


@pytest.mark.parametrize("verb", SUBCOMMANDS)
def test_a_command_builds_its_own_verb_only(verb, other_verbs_refuse_to_build, capsys):
    other_verbs_refuse_to_build(verb)
    code, out, _ = run([verb, "--help"], capsys)
    assert code == 0
    assert f"usage: aigw-lab {verb}" in out


def test_top_level_help_and_errors_build_no_verb(other_verbs_refuse_to_build, capsys):
    other_verbs_refuse_to_build("")
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for name, summary in VERBS.items():
        assert f"    {name} " in out
        assert " ".join(summary.split()[:3]) in " ".join(out.split())
    assert run(["no-such-verb"], capsys)[0] == 2
    assert run([], capsys)[0] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["no-such-verb"],
        ["-x"],
        ["--", "run"],
        *([verb, "--help"] for verb in VERBS),
        ["run"],
        ["run", "x.toml", "--bogus"],
        ["demo", "--calls", "many"],
        ["policy", "train", "--nope"],
        ["keys", "create", "--help"],
        ["policy", "export", "--help"],
    ],
    ids=" ".join,
)
def test_what_a_user_reads_is_what_the_whole_tree_says(argv, capsys):
    lazy = run(argv, capsys)
    assert lazy == full_tree_output(argv, capsys)
    assert lazy[0] in (0, 2)


def test_the_verb_list_is_each_verbs_own_help():
    listed = {
        choice.dest: choice.help
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
    }
    assert listed == VERBS
    assert cli_main.SUBCOMMANDS == tuple(VERBS)


@pytest.mark.parametrize(
    ("argv", "verb"),
    [
        ([], ""),
        (["--help"], ""),
        (["--version"], ""),
        (["run", "x.toml"], "run"),
        (["-h", "policy", "train"], "policy"),
        (["--", "serve"], "serve"),
        (["nope", "run"], "nope"),
    ],
)
def test_verb_of(argv, verb):
    assert verb_of(argv) == verb
