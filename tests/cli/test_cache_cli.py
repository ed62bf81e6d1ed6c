"""`aigw-lab cache tune`: the setting for a false-hit budget on the user's labelled pairs.
A mistake in the command is one error line and a fix line, exit 2; no setting meeting the
budget is exit 1; a setting is printed as [semantic_cache] lines to paste."""

from __future__ import annotations

import json

import pytest

from aigw_lab.cli import cache as cache_cli
from aigw_lab.cli.main import main
from tests.evaluation._doubles import ChosenSimilarity


def write_pairs(path, embedder, *, different=100, same=60, near=0):
    """Pairs whose similarities are set: ``different`` far apart, ``near`` that differ at
    0.93, ``same`` at 0.95."""
    lines = []
    for similarity, is_same, count in ((0.3, False, different), (0.93, False, near)):
        for _ in range(count):
            a, b = embedder.pair(similarity)
            lines.append({"a": a, "b": b, "same": is_same})
    for _ in range(same):
        a, b = embedder.pair(0.95)
        lines.append({"a": a, "b": b, "same": True})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def embedder(monkeypatch):
    """The embedding model replaced by the chosen-similarity double (the real model is
    measured by tests/evaluation and the report)."""
    double = ChosenSimilarity()
    monkeypatch.setattr(cache_cli, "build_embedder", lambda model, folder: double)
    return double


def test_tune_prints_the_table_and_the_lines_to_paste(tmp_path, embedder, capsys):
    path = write_pairs(tmp_path / "pairs.jsonl", embedder)
    code = main(["cache", "tune", "--pairs", str(path), "--thresholds", "0.9", "0.96"])
    out = capsys.readouterr().out
    assert code == 0
    assert "160 labelled pairs" in out and "100 that differ, 60 the same" in out
    assert "0.000 [0.000, 0.037] (0/100)" in out  # the false hits at 0.9, with the interval
    assert "1.000 [0.940, 1.000] (60/60)" in out  # the recall at 0.9
    pasted = out[out.index("[semantic_cache]") :].splitlines()
    assert pasted[:4] == [
        "[semantic_cache]",
        "threshold = 0.9",
        "guard_numbers = true",
        "guard_negation = true",
    ]


def test_tune_exits_1_when_no_setting_meets_the_budget(tmp_path, embedder, capsys):
    path = write_pairs(tmp_path / "pairs.jsonl", embedder, different=80, near=20)
    code = main(
        ["cache", "tune", "--pairs", str(path), "--false-hit-budget", "0.05", "--thresholds", "0.9"]
    )
    out = capsys.readouterr().out
    assert code == cache_cli.EXIT_NO_SETTING == 1
    assert "No setting meets a false-hit budget of 0.05" in out
    assert "[semantic_cache]" not in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--false-hit-budget", "1.5"], "--false-hit-budget 1.5 is outside (0, 1)"),
        (["--false-hit-budget", "0"], "--false-hit-budget 0 is outside (0, 1)"),
        (["--thresholds", "0.9", "1.5"], "--thresholds 1.5 is not a cosine similarity"),
    ],
)
def test_a_bad_budget_or_threshold_is_one_line_and_exit_2(tmp_path, embedder, capsys, args, needle):
    path = write_pairs(tmp_path / "pairs.jsonl", embedder)
    code = main(["cache", "tune", "--pairs", str(path), *args])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[0].startswith("aigw-lab: error: ") and needle in err[0]
    assert err[1].startswith("  fix: ") and len(err) == 2


@pytest.mark.parametrize("budget", ["abc", "nan", "inf"])
def test_a_budget_that_is_not_a_number_is_a_usage_error(tmp_path, capsys, budget):
    with pytest.raises(SystemExit) as raised:
        main(["cache", "tune", "--pairs", str(tmp_path / "x"), "--false-hit-budget", budget])
    assert raised.value.code == 2
    assert "--false-hit-budget" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        (b"", "holds no pairs"),
        (b'{"a": "x", "b": "y", "same": true}\n{oops\n', "pairs.jsonl:2 is not valid JSON"),
        (b'{"a": "x", "b": "y", "same": "yes"}\n', "pairs.jsonl:1: field 'same' is 'yes'"),
        (b"\xff\xfe not text\n", "not UTF-8"),
        (b'{"a": "x", "b": "y", "same": true}\n', "none with same=false"),
    ],
)
def test_a_bad_pairs_file_is_one_line_naming_the_fix_and_exit_2(
    tmp_path, embedder, capsys, content, needle
):
    path = tmp_path / "pairs.jsonl"
    if content is not None:
        path.write_bytes(content)
    code = main(["cache", "tune", "--pairs", str(path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert needle in err[0] and err[0].startswith("aigw-lab: error: ")
    assert err[1].startswith("  fix: ")
    assert "Traceback" not in "\n".join(err)


def test_cache_without_a_subcommand_prints_its_help(capsys):
    assert main(["cache"]) == 2
    assert "tune" in capsys.readouterr().out


def test_tune_help_names_the_file_format_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["cache", "tune", "--help"])
    assert raised.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert '{"a": PROMPT, "b": PROMPT, "same": true}' in out
    assert "1 when no setting meets the budget" in out
