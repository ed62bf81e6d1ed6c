"""`aigw-lab policy train` and `evaluate` print the router beside its baselines (cross-fitted
over fold seeds) with a verdict, and the policy file keeps that table under "baselines"
(the shared GSM8K and MT-Bench recordings, with the fast HashingEmbedder)."""

from __future__ import annotations

import json

import pytest

from aigw_lab.cli.main import main
from aigw_lab.datasets.shared import shared_data_dir_or_none
from aigw_lab.policy.evaluate.comparison_table import BaselineComparison, format_baseline_table

pytestmark = pytest.mark.slow  # trains policies on the shared recordings (seconds)
needs_data = pytest.mark.skipif(
    shared_data_dir_or_none() is None, reason="the shared data folder is absent"
)
FAST = ["--embedder", "hashing-256-3", "--n-boot", "100"]
ROWS = ("knn (router)", "random (random)", "zero router (zero)", "oracle (oracle)")


def train(folder, data: str, *extra: str) -> int:
    return main(
        [
            "policy", "train", "--data", data, "--router", "knn", "--strong-share", "0.5",
            "--out", str(folder / "p.json"), "--cache-dir", str(folder / "cache"), *FAST, *extra,
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def gsm8k(tmp_path_factory):
    if shared_data_dir_or_none() is None:
        pytest.skip("the shared data folder is absent")
    folder = tmp_path_factory.mktemp("baselines")
    with pytest.MonkeyPatch.context() as patch:
        out: list[str] = []
        patch.setattr("builtins.print", lambda *a, **k: out.append(" ".join(map(str, a))))
        assert train(folder, "routellm/gsm8k", "--seeds", "3") == 0
    return folder, "\n".join(out)


@needs_data
def test_train_prints_the_baseline_table_and_verdict_and_stores_it(gsm8k):
    folder, out = gsm8k
    for row in (*ROWS, "prompt length (trivial)"):
        assert row in out
    assert "1046 items, 5-fold cross-fitting over 3 fold seeds." in out
    assert "knn beats random routing" in out or "knn does not beat random routing" in out
    assert "best trivial baseline, prompt length" in out
    assert "No category baseline" in out  # GSM8K has none
    evaluation = json.loads((folder / "p.json").read_text())["evaluation"]
    stored = BaselineComparison.from_dict(evaluation["baselines"])
    assert stored.router == "knn" and stored.seeds == 3 and stored.items == 1046
    assert stored.row("knn").seed_min <= stored.row("knn").value <= stored.row("knn").seed_max
    assert format_baseline_table(stored) in out  # what was printed is what was stored
    # The held-out APGR is printed beside random routing on the same test items.
    assert evaluation["random_apgr"]["low"] <= evaluation["random_apgr"]["high"]
    assert "random routing on the same items" in out


@needs_data
def test_evaluate_prints_the_stored_table(gsm8k, capsys):
    folder, _ = gsm8k
    argv = ["policy", "evaluate", str(folder / "p.json"), "--cache-dir", str(folder / "cache")]
    assert main([*argv, "--n-boot", "100"]) == 0
    out = capsys.readouterr().out
    stored = json.loads((folder / "p.json").read_text())["evaluation"]["baselines"]
    assert format_baseline_table(BaselineComparison.from_dict(stored)) in out
    assert "random routing on the same items" in out


@needs_data
def test_evaluate_on_a_file_without_baselines_says_how_to_get_them(gsm8k, tmp_path, capsys):
    folder, _ = gsm8k
    document = json.loads((folder / "p.json").read_text())
    del document["evaluation"]["baselines"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document))
    for artifact in folder.glob("*.npz"):
        (tmp_path / artifact.name).write_bytes(artifact.read_bytes())
    argv = ["policy", "evaluate", str(old), "--cache-dir", str(folder / "cache"), *FAST[2:]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "No baseline table in this policy file" in out and "knn (router)" not in out
    document["evaluation"]["baselines"] = {"rows": "nonsense"}
    old.write_text(json.dumps(document))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert '"baselines" entry is malformed' in err and "Traceback" not in err


@needs_data
def test_mt_bench_has_a_category_lookup_baseline(tmp_path, capsys):
    assert train(tmp_path, "routellm/mt_bench", "--seeds", "2", "--folds", "3") == 0
    out = capsys.readouterr().out
    assert "category lookup (trivial)" in out and "over 2 fold seeds" in out
    stored = json.loads((tmp_path / "p.json").read_text())["evaluation"]["baselines"]
    assert {row["name"] for row in stored["rows"]} >= {"knn", "category lookup", "oracle"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--seeds", "0"], "--seeds"), (["--folds", "1"], "--folds")],
)
def test_bad_seeds_or_folds_fail_before_any_work(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        train(tmp_path, "routellm/gsm8k", *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists()


@needs_data
def test_many_model_data_get_an_aiq_table_beside_the_zero_router(tmp_path, capsys):
    argv = [
        "policy", "train", "--data", "alpaca_eval", "--router", "knn", "--lambda", "0",
        "--out", str(tmp_path / "p.json"), "--cache-dir", str(tmp_path / "cache"),
        "--seeds", "2", "--folds", "3", *FAST,
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "AIQ" in out and "random (random)" in out and "oracle (oracle)" in out
    assert "category lookup (trivial)" in out  # AlpacaEval's source datasets
    assert "the zero router" in out and "over 2 fold seeds" in out
    stored = json.loads((tmp_path / "p.json").read_text())["evaluation"]["baselines"]
    assert stored["metric"] == "aiq" and isinstance(stored["significant"], bool)
