"""`aigw-lab matrix`: the summary, empty cells and batch-price estimate of a real call log;
a dry run sends nothing; --fill --yes fills through the simulated fleet's batches; a user's
mistake is one line and exit 2."""

from __future__ import annotations

import duckdb
import pytest

from aigw_lab import Gateway
from aigw_lab.cli.main import main

NANO, LARGE = "sim-openai/sim-nano", "sim-openai/sim-large"
PROMPTS = [f"What is {i} + {i}?" for i in range(6)]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "calls.duckdb"
    with Gateway.simulated_fleet(seed=0, time_scale=0.0, log=path) as gw:
        for i, prompt in enumerate(PROMPTS):
            gw.chat(NANO, prompt)
            if i < 2:
                gw.chat(LARGE, prompt)
    return path


def rows(path):
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]


def user_error(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("aigw-lab: error: ") and len(lines) <= 2, err
    return lines[0]


def test_summary_empty_cells_and_estimate_send_nothing(db, capsys):
    before = rows(db)
    assert main(["matrix", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "6 prompts x 2 targets: 8 cells filled, 4 empty" in out
    assert "empty cells (4; first 4):" in out
    assert "4 cells to fill: estimated $" in out and "nothing has been sent" in out
    assert f"{LARGE}: 4 cells via batch" in out
    assert rows(db) == before


def test_fill_dry_run_then_fill(db, capsys):
    before = rows(db)
    assert main(["matrix", "--db", str(db), "--fill"]) == 0
    assert "dry run: nothing sent" in capsys.readouterr().out
    assert rows(db) == before
    argv = ["matrix", "--db", str(db), "--fill", "--yes", "--max-cost", "1", "--poll-interval", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "filled 4 cells (0 failed)" in out and "1 batch job(s)" in out
    assert "8 cells filled, 4 empty" in out  # before
    assert "12 cells filled, 0 empty" in out  # after
    assert rows(db) == before + 4
    assert main(["matrix", "--db", str(db)]) == 0
    assert "no empty cells: nothing to fill" in capsys.readouterr().out


def test_fill_over_budget_is_refused(db, capsys):
    before = rows(db)
    argv = ["matrix", "--db", str(db), "--fill", "--yes", "--max-cost", "0.0000001"]
    line = user_error(capsys, argv)
    assert "over max_cost_usd" in line and "nothing was sent" in line
    assert rows(db) == before


def test_targets_the_gateway_lacks(db, capsys):
    assert main(["matrix", "--db", str(db), "--targets", f"{NANO},openai/gpt-x"]) == 0
    assert "no estimate: providers openai are not in the simulated fleet" in (
        capsys.readouterr().out
    )
    line = user_error(
        capsys,
        ["matrix", "--db", str(db), "--targets", "openai/gpt-x", "--fill", "--yes",
         "--max-cost", "1"],
    )  # fmt: skip
    assert "cannot fill" in line


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--targets", "no-slash"], "not provider/model"),
        (["--targets", ","], "not provider/model"),
        (["--scorer", "nope"], "no score by 'nope'"),
        (["--fill", "--yes"], "needs --max-cost"),
    ],
)
def test_bad_options_are_one_line(db, capsys, extra, needle):
    assert needle in user_error(capsys, ["matrix", "--db", str(db), *extra])


@pytest.mark.parametrize("case", ["missing", "empty", "text", "not a call log"])
def test_hostile_db_files(tmp_path, capsys, case):
    path = tmp_path / "log.duckdb"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a database\n")
    elif case == "not a call log":
        with duckdb.connect(str(path)) as conn:
            conn.execute("CREATE TABLE t (x INTEGER)")
    user_error(capsys, ["matrix", "--db", str(path)])


def test_hostile_numbers_are_argparse_errors(db, capsys):
    for argv in (["--max-cost", "nan"], ["--max-cost", "-1"], ["--empty", "-3"]):
        with pytest.raises(SystemExit) as caught:
            main(["matrix", "--db", str(db), *argv])
        assert caught.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_config_gateway_prices_and_fills(db, tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[providers.sim-openai]\nkind = "simulated"\nformat = "openai"\ntime_scale = 0\n'
    )
    before = rows(db)
    assert main(["matrix", "--db", str(db), "--config", str(config)]) == 0
    assert f"{LARGE}: 4 cells via batch" in capsys.readouterr().out
    assert rows(db) == before
    argv = ["matrix", "--db", str(db), "--config", str(config), "--fill", "--yes",
            "--max-cost", "1", "--poll-interval", "0"]  # fmt: skip
    assert main(argv) == 0
    assert "filled 4 cells (0 failed)" in capsys.readouterr().out
    assert rows(db) == before + 4
