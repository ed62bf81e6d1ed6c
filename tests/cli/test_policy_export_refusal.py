"""`aigw-lab policy export` refuses a learned policy whose file does not show a significant
gain over random routing (or shows no comparison at all) unless --force, before any other
work; a non-learned policy needs no comparison. Synthetic data, HashingEmbedder: offline."""

from __future__ import annotations

import pytest

from aigw_lab.cli.main import main
from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.policy.evaluate.comparison_table import BaselineComparison, BaselineRow
from aigw_lab.policy.learned import train_router
from aigw_lab.policy.policyfile import save_policy
from aigw_lab.policy.split import WeightedSplit
from tests.policy._learned_data import STRONG, WEAK, synthetic


def comparison(significant: bool) -> dict:
    gain, low, high = (0.21, 0.12, 0.30) if significant else (0.012, -0.020, 0.044)
    rows = (
        BaselineRow("knn", "router", 0.5 + gain, 0.4, 0.8, 0.45, 0.75, gain, low, high),
        BaselineRow("random", "random", 0.5, 0.45, 0.55, 0.48, 0.52),
    )
    return BaselineComparison(
        metric="apgr",
        router="knn",
        rows=rows,
        seeds=5,
        folds=5,
        items=42,
        significant=significant,
        verdict="test verdict",
    ).to_dict()


@pytest.fixture
def policy_file(tmp_path):
    """Save the synthetic kNN policy with the given evaluation; returns its path."""
    train, _ = synthetic(20).split(0.3, seed=0)
    router = train_router(
        train,
        "knn",
        embedder=HashingEmbedder(64),
        params={"k": 3},
        targets={STRONG: "openai/gpt-4o", WEAK: "openai/gpt-4o-mini"},
    )

    def save(evaluation):
        return str(save_policy(router, tmp_path / "p.json", evaluation=evaluation))

    return save


def export(path: str, tmp_path, *extra: str) -> list[str]:
    out = str(tmp_path / "litellm.yaml")
    return ["policy", "export", path, "--to", "litellm", "--out", out, *extra]


def error_lines(capsys, argv: list[str]) -> list[str]:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return err.strip().splitlines()


def test_a_router_no_better_than_random_is_refused_with_its_gain_and_the_override(
    policy_file, tmp_path, capsys
):
    path = policy_file({"baselines": comparison(significant=False)})
    lines = error_lines(capsys, export(path, tmp_path, "--no-evaluation", "--strong-share", "0.5"))
    assert "not significant" in lines[0]
    assert "APGR gain +0.012 [-0.020, +0.044] over random" in lines[0]
    assert "--force" in lines[1]
    assert not (tmp_path / "litellm.yaml").exists()


def test_a_file_without_a_comparison_is_refused_naming_retrain_or_force(
    policy_file, tmp_path, capsys
):
    path = policy_file({"apgr": {"value": 0.6}})  # trained before baselines were stored
    lines = error_lines(capsys, export(path, tmp_path, "--no-evaluation", "--strong-share", "0.5"))
    assert "no comparison with baselines" in lines[0]
    assert lines[1].endswith("retrain with aigw-lab policy train, or pass --force")
    path = policy_file(None)  # no evaluation at all
    assert "no comparison" in error_lines(capsys, export(path, tmp_path, "--no-evaluation"))[0]


def test_the_refusal_comes_before_other_checks(policy_file, tmp_path, capsys):
    # A bad --map would be reported too, but the cheaper, more basic refusal comes first.
    path = policy_file({"baselines": comparison(significant=False)})
    lines = error_lines(capsys, export(path, tmp_path, "--map", "nope"))
    assert "not significant" in lines[0]


def test_force_exports_with_a_warning_and_a_random_split_warning(policy_file, tmp_path, capsys):
    path = policy_file({"baselines": comparison(significant=False)})
    argv = export(path, tmp_path, "--no-evaluation", "--strong-share", "0.5", "--force")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "WARNING (--force)" in out and "not significant" in out
    assert "WARNING: exported as a weighted random split" in out
    assert (tmp_path / "litellm.yaml").is_file()


def test_a_significant_router_exports_without_force(policy_file, tmp_path, capsys):
    path = policy_file({"baselines": comparison(significant=True)})
    argv = export(path, tmp_path, "--no-evaluation", "--strong-share", "0.5")
    assert main(argv) == 0, capsys.readouterr().err
    assert "WARNING (--force)" not in capsys.readouterr().out


def test_a_rules_policy_needs_no_comparison(tmp_path, capsys):
    split = WeightedSplit("ab", {"openai/gpt-4o": 1.0, "openai/gpt-4o-mini": 1.0})
    path = str(save_policy(split, tmp_path / "ab.json"))
    assert main(export(path, tmp_path)) == 0, capsys.readouterr().err
