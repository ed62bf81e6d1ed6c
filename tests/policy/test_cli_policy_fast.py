"""`aigw-lab policy` at interactive speed: reruns read embeddings from the default cache
instead of embedding again, and `export` checks every flag before any embedding work (the
GSM8K recordings, with the HashingEmbedder counted to see what reaches the model)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from aigw_lab.cli.main import build_parser, main
from aigw_lab.datasets.shared import shared_data_dir_or_none
from aigw_lab.embeddings import HashingEmbedder

pytestmark = pytest.mark.skipif(
    shared_data_dir_or_none() is None, reason="the shared data folder is absent"
)
FAST = ["--embedder", "hashing-256-3", "--n-boot", "50"]


@pytest.fixture
def embedded(monkeypatch):
    """The texts every HashingEmbedder embeds from now on (whatever object embeds them)."""
    texts: list[str] = []
    original = HashingEmbedder.embed

    def counting(self, batch):
        texts.extend(batch)
        return original(self, batch)

    monkeypatch.setattr(HashingEmbedder, "embed", counting)
    return texts


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch folder as cwd, with the default embedding cache inside it (no --cache-dir)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def train(*extra: str) -> int:
    return main(
        [
            "policy", "train", "--data", "routellm/gsm8k", "--router", "knn",
            "--strong-share", "0.4", "--out", "policies/p.json", *FAST, *extra,
        ]
    )  # fmt: skip


def test_a_rerun_of_train_and_evaluate_embeds_nothing(workdir, embedded, capsys):
    assert train() == 0
    first = len(embedded)
    assert first > 1000  # every GSM8K prompt, once
    assert len(set(embedded)) == first
    assert train() == 0
    assert len(embedded) == first  # the second run read every vector from the cache
    assert main(["policy", "evaluate", "policies/p.json", "--n-boot", "50"]) == 0
    assert len(embedded) == first  # evaluate too: no held-out prompt embedded again
    assert "261 held-out items" in capsys.readouterr().out
    assert list((workdir / "cache" / "embeddings").rglob("*.emb"))


def test_export_reuses_the_cache_and_maps_recorded_models_by_default(trained, embedded, capsys):
    # `trained`: a policy trained with the default cache in the scratch folder (once per
    # module, copied here), so the cache is warm as after a user's `policy train`.
    code = main(
        ["policy", "export", "policies/p.json", "--to", "litellm", "--out", "l.yaml", "--force"]
    )
    assert code == 0, capsys.readouterr().err
    assert embedded == []
    out = capsys.readouterr().out
    assert "rec/gpt-4-1106-preview -> openai/gpt-4-1106-preview" in out
    text = (trained / "l.yaml").read_text()
    assert "openai/gpt-4-1106-preview" in text
    assert "mistralai/Mixtral-8x7B-Instruct-v0.1" in text
    assert "https://api.together.xyz/v1" in text and "TOGETHER_API_KEY" in text
    report = json.loads((trained / "l.yaml.approximation.json").read_text())
    assert report["loss"]["items"] == 261


def expect_error(capsys, argv: list[str], message: str) -> tuple[str, str]:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line, fix = err.strip().splitlines()[-2:]
    assert message in line, err
    return line, fix


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """One trained policy and its warm cache, copied by `trained` for each test."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("AIGW_LAB_CACHE", str(folder / "cache"))
        assert train() == 0
    return folder


@pytest.fixture
def trained(trained_once, workdir, embedded, capsys):
    shutil.copytree(trained_once, workdir, dirs_exist_ok=True)
    capsys.readouterr()
    return workdir


# --force: these flows are about the flags, not the policy file's baseline comparison.
EXPORT = ["policy", "export", "policies/p.json", "--force"]


@pytest.mark.parametrize(
    ("extra", "message", "fix"),
    [
        (["--map", "rec/nope=openai/gpt-4o"], "which the policy does not call", "rec/gpt-4"),
        (["--map", "rec/gpt-4-1106-preview=gpt4"], "--map entry", "--map"),
        (["--map", "rec/gpt-4-1106-preview=bad name/x"], "--map entry", "--map"),
        (
            ["--map", "rec/gpt-4-1106-preview=acme/gpt-4"],
            "provider 'acme' is unknown",
            "--config",
        ),
        (["--config", "missing.toml"], "missing.toml", ""),
        (["--cloudflare-provider", "groq"], "--cloudflare-provider entry", ""),
        (["--cloudflare-provider", "groq=groq"], "is for --to cloudflare", ""),
        (["--out", "no/such/folder/x.yaml"], "does not exist", "mkdir"),
        (["--data", "routellm/nope"], "unknown dataset", ""),
    ],
)
def test_export_mistakes_are_reported_before_any_embedding(
    trained, embedded, capsys, extra, message, fix
):
    argv = [*EXPORT, "--to", "litellm", "--out", "x.yaml", *extra]
    if "--out" in extra:
        argv = [*EXPORT, "--to", "litellm", *extra]
    _, hint = expect_error(capsys, argv, message)
    assert fix in hint
    assert embedded == []  # the mistake cost no embedding work


def flags_of(*path: str) -> set[str]:
    parser = build_parser()
    for name in path:
        parser = next(
            a for a in parser._actions if a.dest in ("command", "policy_command") and a.choices
        ).choices[name]
    return {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "cloudflare", "--map", "rec/gpt-4-1106-preview=groq/llama"], "no AI Gateway"),
        (["--to", "cloudflare"], "no AI Gateway provider slug"),  # together has none
        (["--to", "litellm", "--map", "rec/gpt-4-1106-preview=acme/x"], "is unknown"),
        (["--to", "portkey", "--no-evaluation", "--method", "category"], "evaluation set"),
    ],
)
def test_every_fix_an_export_error_suggests_is_a_flag(trained, capsys, tmp_path, extra, message):
    if "groq/" in " ".join(extra):
        (tmp_path / "prod.toml").write_text(
            '[providers.groq]\nkind = "openai-compatible"\n'
            'base_url = "https://api.groq.com/openai/v1"\napi_key_env = "GROQ_API_KEY"\n'
        )
        extra = [*extra, "--config", "prod.toml"]
    _, fix = expect_error(capsys, [*EXPORT, "--out", "x.json", *extra], message)
    suggested = set(re.findall(r"--[a-z][a-z-]+", fix))
    assert suggested, fix  # the fix names a flag, not a Python argument
    assert "=" not in fix.split("--")[0] or "providers=" not in fix
    assert suggested <= flags_of("policy", "export"), suggested


def test_cloudflare_slug_flag_makes_the_export_work(trained, capsys):
    argv = [*EXPORT, "--to", "cloudflare", "--out", "route.json"]
    argv += ["--cloudflare-provider", "together=openrouter"]
    assert main(argv) == 0, capsys.readouterr().err
    route = json.loads((trained / "route.json").read_text())
    providers = {e["properties"]["provider"] for e in route["elements"] if e["type"] == "model"}
    assert providers == {"openai", "openrouter"}


def test_no_evaluation_sizes_the_split_from_the_policy_file(trained, embedded, capsys):
    argv = [*EXPORT, "--to", "portkey", "--out", "pk.json", "--no-evaluation"]
    assert main(argv) == 0, capsys.readouterr().err
    assert embedded == []
    share = json.loads((trained / "policies/p.json").read_text())["evaluation"]["calibration"]
    share = share["achieved_on_test"]["strong_share"]["value"]
    config = json.loads((trained / "pk.json").read_text())
    weights = {t["override_params"]["model"]: t["weight"] for t in config["targets"]}
    assert weights["gpt-4-1106-preview"] == pytest.approx(share, abs=1e-3)
    assert main([*argv, "--strong-share", "0.25"]) == 0
    config = json.loads((trained / "pk.json").read_text())
    weights = {t["override_params"]["model"]: t["weight"] for t in config["targets"]}
    assert weights["gpt-4-1106-preview"] == pytest.approx(0.25)


def test_train_refuses_a_folder_as_out_before_embedding(workdir, embedded, capsys):
    (workdir / "policies").mkdir()
    argv = ["policy", "train", "--data", "routellm/gsm8k", "--out", "policies", *FAST]
    expect_error(capsys, argv, "is a folder")
    assert embedded == []


def test_portkey_provider_flag_names_the_portkey_provider(trained, capsys):
    argv = [*EXPORT, "--to", "portkey", "--out", "pk.json", "--no-evaluation"]
    argv += ["--portkey-provider", "openai=@openai-prod", "--portkey-provider", "together=vk-123"]
    assert main(argv) == 0, capsys.readouterr().err
    text = (trained / "pk.json").read_text()
    assert "@openai-prod" in text and "vk-123" in text
    assert '@openai"' not in text  # the default @NAME was replaced
