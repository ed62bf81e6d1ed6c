"""`aigw-lab loadtest`: open-loop arrivals, a bounded run, a report read back from the log."""

import re

import pytest

from aigw_lab.cli.main import main


def field(out, label):
    match = re.search(rf"{label}\s+([\d,.]+)", out)
    assert match, f"{label!r} missing from:\n{out}"
    return float(match.group(1).replace(",", ""))


def test_loadtest_over_the_simulated_fleet(capsys):
    code = main(["loadtest", "--rps", "200", "--duration", "0.5", "--time-scale", "0"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert field(out, "calls in the log") == 100
    assert field(out, "succeeded") == 100
    # Open loop on a schedule: never faster than asked (how much slower depends on the machine).
    assert 0 < field(out, "achieved send rate") <= 205
    assert "latency ms p50/p95/p99" in out and "n/a (no cache)" in out
    assert "simulated fleet" in out


def test_loadtest_reports_errors_and_cache_hits_from_the_log(tmp_path, capsys):
    config = tmp_path / "gw.toml"
    config.write_text(
        "[cache]\nstore = 'memory'\n"
        "[providers.flaky]\nkind = 'simulated'\ntime_scale = 0\nfaults = { server_error = 0.5 }\n"
    )
    code = main(
        [
            "loadtest",
            "--config",
            str(config),
            "--rps",
            "400",
            "--duration",
            "0.25",
            "--targets",
            "flaky/sim-nano",
            "--repeat-prompts",
            "2",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert field(out, "calls in the log") == 100
    assert "error server_error" in out
    hit_rate = re.search(r"cache hit rate\s+([\d.]+)%", out)
    assert hit_rate and float(hit_rate.group(1)) > 50  # two prompts, one upstream answer each


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--rps", "0", "--duration", "1"], "must be positive"),
        (["--rps", "100000", "--duration", "100"], "bounded at"),
    ],
)
def test_loadtest_bad_arguments(capsys, argv, fragment):
    code = main(["loadtest", *argv])
    _, err = capsys.readouterr()
    assert code == 2 and fragment in err and "Traceback" not in err
