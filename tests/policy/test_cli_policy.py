"""`aigw-lab policy train|evaluate|export` end to end on the shared GSM8K recordings (with
the fast HashingEmbedder), and its one-line errors for user mistakes."""

from __future__ import annotations

import json

import pytest

from aigw_lab.cli.main import main
from aigw_lab.datasets.shared import shared_data_dir_or_none

needs_data = pytest.mark.skipif(
    shared_data_dir_or_none() is None, reason="the shared data folder is absent"
)
FAST = ["--embedder", "hashing-256-3", "--n-boot", "100"]


@pytest.fixture(scope="module")
def trained_policy(tmp_path_factory):
    if shared_data_dir_or_none() is None:
        pytest.skip("the shared data folder is absent")
    folder = tmp_path_factory.mktemp("policy")
    code = main(
        [
            "policy",
            "train",
            "--data",
            "routellm/gsm8k",
            "--router",
            "knn",
            "--out",
            str(folder / "policy.json"),
            "--strong-share",
            "0.4",
            "--targets",
            "strong=openai/gpt-4-1106-preview,weak=together/mixtral",
            "--cache-dir",
            str(folder / "cache"),
            *FAST,
        ]
    )
    assert code == 0
    return folder


@needs_data
def test_train_writes_a_calibrated_policy_with_its_held_out_evaluation(trained_policy, capsys):
    document = json.loads((trained_policy / "policy.json").read_text())
    policy = document["policy"]
    assert policy["kind"] == "learned" and policy["router"] == "knn"
    assert policy["strong"] == "openai/gpt-4-1106-preview"
    assert policy["weak"] == "together/mixtral"
    assert policy["decision"]["mode"] == "threshold"
    assert (trained_policy / policy["artifact"]).is_file()
    evaluation = document["evaluation"]
    assert evaluation["split"] == "test" and evaluation["items"] == 261
    achieved = evaluation["calibration"]["achieved_on_test"]["strong_share"]
    assert achieved["low"] <= achieved["value"] <= achieved["high"]


@needs_data
def test_evaluate_prints_apgr_and_cpt_on_the_held_out_split(trained_policy, capsys):
    code = main(
        [
            "policy",
            "evaluate",
            str(trained_policy / "policy.json"),
            "--cache-dir",
            str(trained_policy / "cache"),
            "--n-boot",
            "100",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "261 held-out items" in out
    for metric in ("APGR", "CPT(50%)", "CPT(80%)", "AIQ"):
        assert metric in out
    recorded = json.loads((trained_policy / "policy.json").read_text())["evaluation"]
    assert f"{recorded['apgr']['value']:.3f}" in out  # the same items, the same number


@needs_data
@pytest.mark.parametrize("target", ["litellm", "portkey", "cloudflare"])
def test_export_writes_the_target_config_and_the_measured_approximation(
    trained_policy, capsys, target
):
    pytest.importorskip("aigw_lab.policy.export")
    out = trained_policy / f"exported.{target}"
    code = main(
        [
            "policy",
            "export",
            str(trained_policy / "policy.json"),
            "--to",
            target,
            "--out",
            str(out),
            "--cache-dir",
            str(trained_policy / "cache"),
            "--map",
            "together/mixtral=openai/gpt-3.5-turbo",
            "--force",  # trained here without the baseline comparison `policy train` stores
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert out.is_file()
    report = json.loads(out.with_name(out.name + ".approximation.json").read_text())
    assert report["loss"]["items"] == 261


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["policy", "train", "--data", "nope", "--out", "x.json"], "unknown dataset 'nope'"),
        (["policy", "evaluate", "missing.json"], "does not exist"),
        (
            ["policy", "train", "--data", "routellm/gsm8k", "--router", "magic", "--out", "x.json"],
            "unknown router 'magic'",
        ),
    ],
)
def test_user_mistakes_are_one_line_and_a_fix(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "fix:" in err and "Traceback" not in err


@needs_data
def test_many_model_data_refuses_a_strong_share(tmp_path, capsys):
    code = main(
        [
            "policy",
            "train",
            "--data",
            "alpaca_eval",
            "--out",
            str(tmp_path / "p.json"),
            "--strong-share",
            "0.5",
            *FAST,
        ]
    )
    assert code == 2
    assert "--strong-share/--threshold need two" in capsys.readouterr().err
