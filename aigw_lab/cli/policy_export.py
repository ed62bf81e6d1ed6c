"""`aigw-lab policy export`: a routing policy as a LiteLLM, Portkey or Cloudflare config.

    aigw-lab policy export policy.json --to litellm --out litellm.yaml

Everything a user can get wrong (the policy file, ``--map``, ``--config``, provider slugs,
the output folder, the dataset name) is checked before the one slow step, embedding the
held-out prompts to measure what the approximation of a learned router loses, so a typo is
reported in about a second, not after a minute of embedding.

A learned policy is exported only when its file shows it beats random routing: the
baseline comparison `aigw-lab policy train` stores (``evaluation["baselines"]``, a
`BaselineComparison`) must say its gain over random is significant. A router no better than
chance, or a file trained before the comparison existed, is refused unless ``--force``.
Every export prints how often the exported approximation agrees with the policy on the
held-out items, its quality and cost difference with 95% intervals, and a loud warning when
the approximation routes no better than a weighted coin.

``--map`` is optional: a policy trained on a recording names its targets ``rec/<model>``,
and each recorded model has a production home by default (`default_homes`): OpenAI models
on ``openai``, Anthropic models on ``anthropic``, open models on Together's
OpenAI-compatible API (``together``, ``TOGETHER_API_KEY``), where the recordings' list
prices come from. ``--map`` and ``--config`` override any of it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aigw_lab.cli._args import finite_float
from aigw_lab.cli.policy_data import held_out_split, use_cached_embedder
from aigw_lab.errors import ConfigError

__all__ = ["register_export", "run_export", "default_homes", "DEFAULT_PROVIDERS"]

#: Providers the default homes use that are not API kinds by name (see `default_homes`).
DEFAULT_PROVIDERS: Mapping[str, Mapping[str, str]] = {
    "together": {
        "kind": "openai-compatible",
        "base_url": "https://api.together.xyz/v1",
        "api_key_env": "TOGETHER_API_KEY",
    },
}
# Recorded open models -> their id on Together (the basis of the recordings' list prices).
_TOGETHER_IDS = {
    "Mixtral-8x7B-Instruct-v0.1": "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "Mistral-7B-Instruct-v0.2": "mistralai/Mistral-7B-Instruct-v0.2",
    "Llama-2-70b-chat": "meta-llama/Llama-2-70b-chat-hf",
}
_RECORDED_PREFIX = "rec/"
# Provider names and slugs: what a gateway config allows as a provider name.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REF = re.compile(r"^@?[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_METHODS = ("auto", "category", "best-category", "split")


def register_export(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export a policy to a production gateway",
        description="Write a policy as a LiteLLM proxy config, a Portkey config or a Cloudflare "
        "AI Gateway dynamic route. A learned router becomes the closest policy the target can "
        "express, and the loss is measured on the policy's held-out items.",
    )
    export.add_argument(
        "policy", type=Path, help="the policy file written by aigw-lab policy train"
    )
    export.add_argument(
        "--to",
        required=True,
        choices=("litellm", "portkey", "cloudflare"),
        help="the gateway whose config to write: litellm, portkey or cloudflare",
    )
    export.add_argument("--out", required=True, type=Path, help="config file to write")
    export.add_argument(
        "--no-evaluation",
        action="store_true",
        help="do not measure the approximation on the held-out items (no embedding work)",
    )
    export.add_argument(
        "--map",
        help="production addresses: ADDR=PROVIDER/MODEL,... (default: each rec/MODEL to its "
        "production home, e.g. rec/gpt-4-1106-preview=openai/gpt-4-1106-preview, "
        "rec/Mixtral-8x7B-Instruct-v0.1=together/mistralai/Mixtral-8x7B-Instruct-v0.1)",
    )
    export.add_argument(
        "--config", type=Path, help="gateway config (TOML) whose [providers] to export to"
    )
    export.add_argument(
        "--cloudflare-provider",
        action="append",
        metavar="NAME=SLUG",
        help="AI Gateway provider slug of a provider (repeatable), e.g. groq=groq",
    )
    export.add_argument(
        "--portkey-provider",
        action="append",
        metavar="NAME=REF",
        help="Portkey provider of a provider (repeatable), e.g. openai=@openai-prod "
        "(default @NAME)",
    )
    export.add_argument(
        "--strong-share",
        type=finite_float(),
        help="with --no-evaluation: the strong model's share of the exported split (default: "
        "the share the policy file reports on its held-out items)",
    )
    export.add_argument(
        "--method",
        choices=_METHODS,
        default="auto",
        help="how a learned router is approximated (default auto: per category if the data "
        "has categories, else a split)",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="export a learned policy even when its file does not show a significant gain "
        "over random routing (or was trained before aigw-lab stored that comparison)",
    )
    export.add_argument("--data", help="recorded dataset (default: the one it was trained on)")
    export.add_argument(
        "--cache-dir",
        help="embedding cache folder (default $AIGW_LAB_CACHE/embeddings, else "
        "$XDG_CACHE_HOME/aigw_lab/embeddings or ~/.cache/aigw_lab/embeddings)",
    )
    export.add_argument("--data-dir", help="shared data folder (default $AIGW_LAB_SHARED_DATA)")
    export.set_defaults(func=run_export)


def default_homes(addresses: list[str]) -> dict[str, str]:
    """The production address of each ``rec/<model>`` address whose model has a known home:
    ``gpt-*`` and ``o1*`` on ``openai``, ``claude-*`` on ``anthropic``, the recorded open
    models on ``together``. Other addresses are left to ``--map``."""
    homes = {}
    for address in addresses:
        if not address.startswith(_RECORDED_PREFIX):
            continue
        model = address.removeprefix(_RECORDED_PREFIX)
        if model.startswith(("gpt-", "o1")):
            homes[address] = f"openai/{model}"
        elif model.startswith("claude-"):
            homes[address] = f"anthropic/{model}"
        elif model in _TOGETHER_IDS:
            homes[address] = f"together/{_TOGETHER_IDS[model]}"
    return homes


def run_export(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.policy.export import export
    from aigw_lab.policy.export._deployments import policy_addresses
    from aigw_lab.policy.policyfile import load_policy, read_policy_document

    document = read_policy_document(args.policy)
    spec = document["policy"]
    learned = spec.get("kind") == "learned"
    if learned:
        forced = _check_baselines(args, document)
        if forced:
            print(f"WARNING (--force): {forced}")
    # Build it once: a document of the wrong shape is a ConfigError naming the file here, not
    # a TypeError deep in an exporter (and a learned one's artifact must be there).
    policy = load_policy(args.policy)
    targets = list(policy_addresses(spec))
    options = _target_options(args, targets)
    approximation: dict[str, Any] = {"method": args.method}
    if learned and args.no_evaluation:
        approximation["strong_share"] = _strong_share(args, document)
    # A dry run on the policy's targets catches every unknown provider, missing base_url or
    # slug now (a fallback chain names all targets and needs no evaluation).
    dry = spec if not learned else {"kind": "fallback", "name": spec["name"], "targets": targets}
    _cli_errors(lambda: export(dry, args.to, **options))
    _check_out(args.out)
    if learned and not args.no_evaluation:
        # A gateway config cannot run a learned router: the exporter approximates it, and
        # measures what the approximation loses on the held-out items.
        approximation["evaluation"] = _held_out_evaluation(args, policy)
    result = _cli_errors(lambda: export(spec, args.to, **options, **approximation))
    path = result.write(args.out)
    print(f"wrote {path} ({args.to})")
    for source, production in options["address_map"].items():
        if source != production:
            print(f"  {source} -> {production}")
    for line in result.report.summary_lines():
        print(f"  {line}")
    return 0


def _check_baselines(args: argparse.Namespace, document: Mapping[str, Any]) -> str | None:
    """Refuse (a `ConfigError`) a learned policy whose file does not show a significant gain
    over random routing, unless ``--force``; with ``--force``, the reason it would have been
    refused (None when it would not)."""
    evaluation = document.get("evaluation")
    baselines = evaluation.get("baselines") if isinstance(evaluation, Mapping) else None
    if not isinstance(baselines, Mapping):
        problem = (
            f"{args.policy} records no comparison with baselines (it was trained before "
            "aigw-lab stored one), so nothing shows that it beats random routing"
        )
        if args.force:
            return problem
        raise ConfigError(problem, hint="retrain with aigw-lab policy train, or pass --force")
    if baselines.get("significant") is True:
        return None
    gain = _random_gain(baselines)
    problem = (
        f"{args.policy}: the router's gain over random routing is not significant"
        f"{gain}, so its export would route no better than chance"
    )
    if args.force:
        return problem
    raise ConfigError(
        problem,
        hint="pass --force to export it anyway, or retrain it (more data, another --router)",
    )


def _random_gain(baselines: Mapping[str, Any]) -> str:
    """' (APGR gain +0.012 [-0.020, +0.044] over random)' from a stored comparison, or ''."""
    router, metric = baselines.get("router"), str(baselines.get("metric", "metric")).upper()
    rows = baselines.get("rows")
    for row in rows if isinstance(rows, list) else ():
        if not isinstance(row, Mapping) or row.get("name") != router:
            continue
        values = [row.get(k) for k in ("gain_vs_random", "gain_ci_low", "gain_ci_high")]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            gain, low, high = (float(v) for v in values)
            return f" ({metric} gain {gain:+.3f} [{low:+.3f}, {high:+.3f}] over random)"
    return ""


def _target_options(args: argparse.Namespace, targets: list[str]) -> dict[str, Any]:
    """The exporter's options from the flags, each checked (no embedding work yet)."""
    mapping = _parse_pairs(args.map, "--map", "ADDR=PROVIDER/MODEL", production=True)
    unknown = [source for source in mapping if source not in targets]
    if unknown:
        raise ConfigError(
            f"--map names {', '.join(map(repr, unknown))}, which the policy does not call",
            hint=f"map the policy's targets: {', '.join(targets)}",
        )
    address_map = {**default_homes(targets), **mapping}
    providers: dict[str, Any] = {
        name: dict(info)
        for name, info in DEFAULT_PROVIDERS.items()
        if any(a.startswith(f"{name}/") for a in address_map.values())
    }
    if args.config is not None:
        # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
        from aigw_lab.config import load_config

        providers.update({spec.name: spec for spec in load_config(args.config).providers})
    options: dict[str, Any] = {"address_map": address_map, "providers": providers}
    slugs = _parse_pairs(args.cloudflare_provider, "--cloudflare-provider", "NAME=SLUG")
    refs = _parse_pairs(args.portkey_provider, "--portkey-provider", "NAME=REF")
    for flag, given, target in (
        ("--cloudflare-provider", slugs, "cloudflare"),
        ("--portkey-provider", refs, "portkey"),
    ):
        if given and args.to != target:
            raise ConfigError(f"{flag} is for --to {target}", hint=f"drop {flag}")
    if slugs:
        options["cloudflare_providers"] = slugs
    if refs:
        options["portkey_providers"] = refs
    return options


def _parse_pairs(
    values: str | list[str] | None, flag: str, form: str, *, production: bool = False
) -> dict[str, str]:
    if not values:
        return {}
    parts = [p for v in ([values] if isinstance(values, str) else values) for p in v.split(",")]
    pairs = {}
    for part in parts:
        key, sep, value = (s.strip() for s in part.partition("="))
        if production:
            valid = bool(sep and key and "/" in value and value.split("/", 1)[0])
            valid = valid and bool(_NAME.match(value.split("/", 1)[0]))
        else:
            valid = bool(sep and _NAME.match(key) and _REF.match(value))
        if not valid or not value.split("/", 1)[-1]:
            example = (
                "rec/gpt-4-1106-preview=openai/gpt-4-1106-preview" if production else "groq=groq"
            )
            raise ConfigError(
                f"{flag} entry {part.strip()!r} is invalid",
                hint=f"write {form}, for example {flag} {example}",
            )
        pairs[key] = value
    return pairs


def _strong_share(args: argparse.Namespace, document: Mapping[str, Any]) -> float:
    if args.strong_share is not None:
        if not 0.0 <= args.strong_share <= 1.0:
            raise ConfigError(
                f"--strong-share {args.strong_share} is not in [0, 1]", hint="use e.g. 0.4"
            )
        return float(args.strong_share)
    try:
        calibration = document["evaluation"]["calibration"]["achieved_on_test"]
        return float(calibration["strong_share"]["value"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            f"{args.policy} records no strong-call share to size the exported split",
            hint="pass --strong-share S (0 to 1), or drop --no-evaluation",
        ) from None


def _check_out(out: Path) -> None:
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(
            f"cannot write {out}: the folder {folder} does not exist",
            hint=f"create it first (mkdir -p {folder}) or pass another --out",
        )
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder", hint="pass a file name, e.g. litellm.yaml")


# Library hints name Python arguments; a CLI user needs the flag that does the same.
_FLAG_HINTS = (
    (
        re.compile(
            r"pass providers=\{[^}]*\}[^,]*, or address_map=\{\.\.\.\} to a production "
            r"address"
        ),
        "pass --config prod.toml declaring that provider, or --map ADDR=PROVIDER/MODEL",
    ),
    (
        re.compile(r"pass cloudflare_providers=\{'([^']+)': 'groq'\} \(its slug\)"),
        r"pass --cloudflare-provider \1=SLUG (its AI Gateway provider slug, e.g. groq), or "
        r"--map it to a provider AI Gateway knows",
    ),
    (
        re.compile(r"map it to a production model, e\.g\. address_map=\{'([^']+)': '([^']+)'\}"),
        r"map it to a production model, e.g. --map \1=\2",
    ),
    (
        re.compile(r"name targets as 'provider/model', or map them with address_map=\{\.\.\.\}"),
        "map them with --map ADDR=PROVIDER/MODEL",
    ),
    (
        re.compile(
            r"pass evaluation=Evaluation\(outcomes, decisions\), or strong_share=\.\.\. for a "
            r"two-model router"
        ),
        "drop --no-evaluation, or pass --strong-share S",
    ),
    (
        re.compile(r"pass evaluation=Evaluation\(outcomes, decisions\)"),
        "drop --no-evaluation, or pass --method split",
    ),
    (
        re.compile(r"set base_url on provider '([^']+)'"),
        r"set base_url on [providers.\1] in the --config file",
    ),
)


def _cli_errors(action: Any) -> Any:
    """Run ``action``, rewording the fix of its `ConfigError` in terms of this command's
    flags."""
    try:
        return action()
    except ConfigError as exc:
        hint = exc.hint
        for pattern, replacement in _FLAG_HINTS:
            if hint:
                hint = pattern.sub(replacement, hint)
        if hint == exc.hint:
            raise
        raise ConfigError(exc.message, hint=hint) from exc


def _held_out_evaluation(args: argparse.Namespace, router: Any) -> Any:
    """The exporters' `Evaluation` of a learned policy: its decisions and the recorded
    outcomes of every target on the policy's held-out items."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.policy.evaluate.offline import recorded_arrays
    from aigw_lab.policy.export import Evaluation

    test = held_out_split(router, args.data, args.data_dir)
    use_cached_embedder(router, args.cache_dir)
    info = router.train_info
    models = list(info["models"])
    quality, cost = recorded_arrays(test, models)
    prompts = [i.prompt for i in test.items]
    # A stacked router reads each item's category, as clients of the export send it.
    categories = [i.category for i in test.items]
    choice = router.choose_from(router.embed(prompts, categories=categories), prompts)
    targets = router.targets()
    category = [i.category or "" for i in test.items]
    rows = [
        {
            "item_id": item_id,
            "category": category[n],
            "model": targets[j],
            "score": quality[n, j],
            "cost_usd": cost[n, j],
        }
        for n, item_id in enumerate(test.ids)
        for j in range(len(targets))
    ]
    decisions = {item_id: targets[int(choice[n])] for n, item_id in enumerate(test.ids)}
    return Evaluation(pd.DataFrame(rows), decisions)
