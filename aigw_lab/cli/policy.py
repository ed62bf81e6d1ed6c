"""`aigw-lab policy`: train, evaluate and export learned routing policies.

    aigw-lab policy train --data routellm/gsm8k --router knn --out policy.json --strong-share 0.5
    aigw-lab policy evaluate policy.json            # APGR / CPT / AIQ on the held-out split
    aigw-lab policy export policy.json --to litellm --out litellm.yaml

``train`` splits the recorded dataset three ways by item (deterministic, ``--seed``): the
router is fitted on the training items, its threshold or lambda calibrated on the
calibration items, and it is scored on the test items, which neither step saw. The policy
file records the split, so ``evaluate`` scores the same held-out items. ``train`` also
cross-fits the router on the training and calibration items over ``--seeds`` fold seeds
beside random routing, the zero router, the oracle and the trivial baselines (APGR for two
models, `aigw_lab.policy.evaluate.crossfit`; AIQ for more, `crossfit_many`), prints that
table and its verdict, and stores it under the evaluation's ``"baselines"`` (what ``export``
reads); ``evaluate`` prints it again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw_lab.cli._args import finite_float, help_without_subcommand, int_at_least
from aigw_lab.cli._verbs import VERBS
from aigw_lab.cli.policy_data import (
    DATASETS,
    held_out_split,
    load_data,
    split_three,
    use_cached_embedder,
)
from aigw_lab.cli.policy_export import register_export
from aigw_lab.errors import ConfigError

if TYPE_CHECKING:
    from aigw_lab.datasets.recorded import RecordedDataset
    from aigw_lab.policy.evaluate.comparison_table import BaselineComparison
    from aigw_lab.policy.learned import LearnedRouter

#: ``--data`` names and what they load.
ROUTERS = ("knn", "knn_tuned", "stacked", "sw_ranking", "classifier", "regressor")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "policy",
        help=VERBS["policy"],
        description="Learned routing policies on recorded outcomes: train a router on a "
        "recorded dataset, evaluate it on held-out items, export it to a production gateway's "
        "config. See docs/routing.md.",
    )
    commands = parser.add_subparsers(dest="policy_command", metavar="ACTION")

    train = commands.add_parser(
        "train",
        help="train and calibrate a learned router",
        description="Split a recorded dataset by item into training, calibration and test "
        "items (the same split for the same --seed), fit a router on the training items, "
        "calibrate its threshold or lambda on the calibration items (to --strong-share, "
        "--budget or --quality-floor; or fix --threshold / --lambda), and write the policy "
        "file with its evaluation on the test items. It also prints the router cross-fitted "
        "on the training and calibration items beside random routing, the zero router, the "
        "oracle and trivial baselines (prompt length; category lookup), with a verdict, and "
        "stores that table in the policy file.",
    )
    train.add_argument("--data", required=True, help=f"recorded dataset: {', '.join(DATASETS)}")
    train.add_argument(
        "--router",
        default="knn",
        help=f"the router: {', '.join(ROUTERS)} (default: %(default)s; stacked scores highest in "
        "bench/router_study.py but takes about 20x knn's CPU, so its cross-fitted table takes "
        "minutes)",
    )
    train.add_argument("--out", required=True, type=Path, help="policy file (.json) to write")
    train.add_argument("--name", help="policy name (the model name clients use)")
    target = train.add_mutually_exclusive_group()
    target.add_argument(
        "--strong-share",
        type=finite_float(),
        help="calibrate to this share of calls to the strong model, 0 to 1 (two models)",
    )
    target.add_argument(
        "--budget", type=finite_float(), help="calibrate to this cost per query, in USD"
    )
    target.add_argument(
        "--quality-floor",
        type=finite_float(),
        help="calibrate to this mean quality, on the dataset's score scale",
    )
    target.add_argument(
        "--threshold",
        type=finite_float(),
        help="no calibration: send a prompt to the strong model when its strong-win score is at "
        "least this (two models)",
    )
    target.add_argument(
        "--lambda",
        dest="lam",
        type=finite_float(),
        help="no calibration: pick the target maximising predicted quality minus this times its "
        "expected cost (any number of models)",
    )
    train.add_argument(
        "--targets",
        help="the gateway addresses to route to: strong=ADDR,weak=ADDR or MODEL=ADDR,... "
        "(default: rec/MODEL for each recorded model)",
    )
    train.add_argument(
        "--test-fraction",
        type=finite_float(),
        default=0.2,
        help="share of the items held out for the evaluation (default: %(default)s)",
    )
    train.add_argument(
        "--calibration-fraction",
        type=finite_float(),
        default=0.2,
        help="share of the items used to calibrate the threshold or lambda (default: %(default)s)",
    )
    train.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        help="seed of the split into training, calibration and test items (default: %(default)s)",
    )
    train.add_argument(
        "--seeds",
        type=int_at_least(1),
        default=5,
        help="fold seeds of the cross-fitted comparison with the baselines (default: %(default)s)",
    )
    train.add_argument(
        "--folds",
        type=int_at_least(2),
        default=5,
        help="folds per seed of that comparison (default: %(default)s)",
    )
    _common(train)
    train.set_defaults(func=run_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a policy on its held-out split",
        description="Score a policy file on the test items it was not trained or "
        "calibrated on: APGR and CPT (two models) or AIQ beside the zero router's (many "
        "models), with bootstrap intervals.",
    )
    evaluate.add_argument(
        "policy", type=Path, help="the policy file written by aigw-lab policy train"
    )
    evaluate.add_argument("--data", help="recorded dataset (default: the one it was trained on)")
    _common(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    register_export(commands)
    parser.set_defaults(func=help_without_subcommand(parser))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embedder",
        help="embedding model: all-MiniLM-L6-v2 (default), all-MiniLM-L6-v2-int8 (the same "
        "weights quantized: less CPU per served request; see docs/routing.md), "
        "all-MiniLM-L6-v2-static256 (a static model distilled from it on first use, needs "
        "aigw-lab[fast-embed]: 1-2 ms of CPU per served request) or the folder "
        "of a local sentence-transformers model; a policy is served with the one it was "
        "trained with",
    )
    parser.add_argument(
        "--cache-dir",
        help="embedding cache folder (default $AIGW_LAB_CACHE/embeddings, else "
        "$XDG_CACHE_HOME/aigw_lab/embeddings or ~/.cache/aigw_lab/embeddings)",
    )
    parser.add_argument("--data-dir", help="shared data folder (default $AIGW_LAB_SHARED_DATA)")
    parser.add_argument(
        "--n-boot",
        type=int_at_least(1),
        default=1000,
        help="bootstrap resamples for the confidence intervals (default: %(default)s; the "
        "baseline table uses at most 500)",
    )


def _parse_targets(text: str | None, models: list[str], roles: dict[str, str]) -> dict[str, str]:
    if not text:
        return {}
    mapping = {}
    for part in text.split(","):
        key, sep, address = part.partition("=")
        key, address = key.strip(), address.strip()
        model = roles.get(key, key)
        if not sep or not address or model not in models:
            raise ConfigError(
                f"--targets entry {part!r} is invalid",
                hint=f"write ROLE=ADDRESS or MODEL=ADDRESS, ROLE in strong/weak, MODEL in "
                f"{', '.join(models)}",
            )
        mapping[model] = address
    return mapping


def _candidates(data: RecordedDataset) -> list[str]:
    wide = data.wide_scores()
    return [m for m in data.models if wide[m].notna().any() and m in data.prices]


def run_train(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.policy.calibrate import calibrate
    from aigw_lab.policy.learned import Decision, train_router
    from aigw_lab.policy.learned.features import cached_embedder, make_embedder
    from aigw_lab.policy.policyfile import save_policy

    if args.router not in ROUTERS:
        raise ConfigError(
            f"unknown router {args.router!r}", hint=f"use one of {', '.join(ROUTERS)}"
        )
    if args.out.is_dir():  # found now, not after the embedding work
        raise ConfigError(f"--out {args.out} is a folder", hint="pass a file name, e.g. p.json")
    # One embedder for the command, behind the on-disk cache: a rerun embeds nothing and
    # never loads the model. Built now, so an unknown --embedder fails before any data loads.
    embedder = cached_embedder(make_embedder(args.embedder), args.cache_dir)
    data = load_data(args.data, args.data_dir)
    models = _candidates(data)
    if len(models) == 2:
        means = data.wide_scores()[models].mean()
        strong, weak = str(means.idxmax()), str(means.idxmin())
        roles = {"strong": strong, "weak": weak}
    else:
        strong = weak = None
        roles = {}
    targets = _parse_targets(args.targets, models, roles)
    two_model = strong is not None
    if not two_model and (args.strong_share is not None or args.threshold is not None):
        raise ConfigError(
            f"{args.data} has {len(models)} models: --strong-share/--threshold need two",
            hint="use --lambda, --budget or --quality-floor",
        )
    if two_model and args.lam is not None:
        raise ConfigError("--lambda is for many-model routing", hint="use --threshold")
    train, cal, test = split_three(data, args.test_fraction, args.calibration_fraction, args.seed)
    router = train_router(
        train,
        args.router,
        name=args.name or f"{args.data.replace('/', '-')}-{args.router}",
        targets=targets,
        models=models,
        strong=strong,
        weak=weak,
        embedder=embedder,
        cache_dir=args.cache_dir,
    )
    router.train_info.update(
        data=args.data,
        seed=args.seed,
        test_fraction=args.test_fraction,
        calibration_fraction=args.calibration_fraction,
    )
    # Categories reach a side-feature router (stacked) as a served request's tag would.
    X_cal, X_test = (
        router.embed([i.prompt for i in d.items], categories=[i.category for i in d.items])
        for d in (cal, test)
    )
    calibration = None
    if args.threshold is not None or args.lam is not None:
        mode = "threshold" if args.threshold is not None else "lambda"
        router = router.with_decision(
            Decision(mode, args.threshold if mode == "threshold" else args.lam)
        )
    else:
        if two_model and args.budget is None and args.quality_floor is None:
            share = 0.5 if args.strong_share is None else args.strong_share
            goal: dict[str, float] = {"strong_share": share}
        elif args.budget is not None:
            goal = {"budget": args.budget}
        elif args.quality_floor is not None:
            goal = {"quality_floor": args.quality_floor}
        else:
            raise ConfigError(
                f"{args.data} has {len(models)} models: say how to trade cost for quality",
                hint="pass --lambda L, --budget USD_PER_QUERY or --quality-floor Q",
            )
        calibration = calibrate(
            router,
            cal,
            held_out=test,
            calibration_embeddings=X_cal,
            held_out_embeddings=X_test,
            n_boot=min(args.n_boot, 500),
            seed=args.seed,
            **goal,
        )
        router = router.with_decision(calibration.decision)
    report = _evaluate(router, test, X_test, args.n_boot)
    evaluation = {"split": "test", "items": len(test), **report}
    if calibration is not None:
        evaluation["calibration"] = {
            "target": calibration.target,
            "value_interval": list(calibration.value_interval),
            "achieved_on_test": {k: _ci_dict(v) for k, v in calibration.achieved.items()},
        }
    comparison = _baselines(router, data, train, cal, test, models, strong, weak, args)
    evaluation["baselines"] = comparison.to_dict()
    path = save_policy(router, args.out, evaluation=evaluation)
    print(
        f"wrote {path} ({router.model.router} on {len(train)} training items, decision "
        f"{router.decision.to_spec()})"
    )
    _print_report(report, calibration)
    _print_baselines(comparison)
    return 0


def _baselines(
    router: LearnedRouter,
    data: RecordedDataset,
    train: RecordedDataset,
    cal: RecordedDataset,
    test: RecordedDataset,
    models: list[str],
    strong: str | None,
    weak: str | None,
    args: argparse.Namespace,
) -> BaselineComparison:
    """The router's recipe cross-fitted on the training and calibration items (never the
    test items) beside its baselines: by APGR for two models, by AIQ for more."""
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.policy.evaluate.crossfit import compare_with_baselines
    from aigw_lab.policy.evaluate.crossfit_many import compare_many_models

    dev = data.subset([*train.ids, *cal.ids])
    # Every resample recomputes each row's metric for every seed: at most 500 of them, as for
    # calibration, keeps a warm MMLU train within seconds.
    n_boot = min(args.n_boot, 500)
    common: dict[str, Any] = {
        "embeddings": router.embed(
            [item.prompt for item in dev.items], categories=[item.category for item in dev.items]
        ),
        "seeds": args.seeds,
        "folds": args.folds,
        "n_boot": n_boot,
        "boot_seed": args.seed,
        "notes": [
            f"Cross-fitted on the {len(dev)} training and calibration items (the {len(test)} "
            f"test items above stay held out); {n_boot} item resamples."
        ],
    }
    if strong is not None and weak is not None:
        return compare_with_baselines(dev, args.router, strong=strong, weak=weak, **common)
    return compare_many_models(dev, args.router, models=models, **common)


def _print_baselines(comparison: BaselineComparison) -> None:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.policy.evaluate.comparison_table import format_baseline_table

    print()
    print("Beside its baselines (the same router recipe, cross-fitted):")
    digits = 3 if comparison.metric == "apgr" else 4
    print(format_baseline_table(comparison, digits=digits))


def _ci_dict(ci: Any) -> dict[str, float]:
    return {"value": ci.value, "low": ci.low, "high": ci.high}


def _evaluate(router: LearnedRouter, test: RecordedDataset, X: Any, n_boot: int) -> dict[str, Any]:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.policy.evaluate.crossfit import held_out_gain
    from aigw_lab.policy.evaluate.offline import TwoModelResult, evaluate_router, recorded_arrays

    result = evaluate_router(router, test, embeddings=X, n_boot=n_boot)
    if isinstance(result, TwoModelResult):
        models = list(router.train_info["models"])
        pair = [models[router.targets().index(str(t))] for t in (router.strong, router.weak)]
        quality, _ = recorded_arrays(test, pair)
        randomly, gain = held_out_gain(
            router.strong_scores_from(X), quality[:, 0], quality[:, 1], n_boot=n_boot
        )
        return {
            "apgr": _ci_dict(result.apgr),
            "random_apgr": _ci_dict(randomly),
            "apgr_gain_over_random": _ci_dict(gain),
            "cpt50": _ci_dict(result.cpt50),
            "cpt80": _ci_dict(result.cpt80),
            "aiq": result.aiq,
            "strong_quality": result.strong_quality,
            "weak_quality": result.weak_quality,
        }
    best = max(result.singles, key=lambda p: p.quality)
    return {
        "aiq": _ci_dict(result.aiq),
        "zero_router_aiq": _ci_dict(result.zero_router_aiq),
        "best_single": {"model": best.label, "quality": best.quality, "cost": best.cost},
        "oracle": {"quality": result.oracle.quality, "cost": result.oracle.cost}
        if result.oracle
        else None,
    }


def _fmt(ci: dict[str, float], percent: bool = False) -> str:
    scale, unit = (100.0, "%") if percent else (1.0, "")
    return (
        f"{ci['value'] * scale:.3f}{unit} [{ci['low'] * scale:.3f}{unit}, "
        f"{ci['high'] * scale:.3f}{unit}]"
    )


def _print_report(report: dict[str, Any], calibration: Any = None) -> None:
    if "apgr" in report:
        print(f"APGR      {_fmt(report['apgr'])}")
        if "apgr_gain_over_random" in report:
            gain = report["apgr_gain_over_random"]
            verdict = "significant" if gain["low"] > 0 else "not significant"
            print(
                f"          random routing on the same items {_fmt(report['random_apgr'])}; "
                f"gain {gain['value']:+.3f} [{gain['low']:+.3f}, {gain['high']:+.3f}] "
                f"({verdict})"
            )
        print(f"CPT(50%)  {_fmt(report['cpt50'], percent=True)} strong calls")
        print(f"CPT(80%)  {_fmt(report['cpt80'], percent=True)} strong calls")
        if report.get("aiq") is not None:
            print(f"AIQ       {report['aiq']:.4f}")
    else:
        print(f"AIQ              {_fmt(report['aiq'])}")
        print(f"zero router AIQ  {_fmt(report['zero_router_aiq'])}")
    if calibration is not None:
        for key, ci in calibration.achieved.items():
            print(f"{key:<13} {ci} on held-out ({calibration.target})")


def run_evaluate(args: argparse.Namespace) -> int:
    # lazy: keeps the CLI's start-up to its own verb (`--help` and other verbs skip this)
    from aigw_lab.policy.evaluate.comparison_table import BaselineComparison
    from aigw_lab.policy.learned import LearnedRouter
    from aigw_lab.policy.learned.features import make_embedder
    from aigw_lab.policy.policyfile import load_policy, read_policy_document

    router = load_policy(args.policy)
    stored = (read_policy_document(args.policy).get("evaluation") or {}).get("baselines")
    if not isinstance(router, LearnedRouter):
        raise ConfigError(
            f"{args.policy} holds a {router.kind!r} policy; only learned policies are scored "
            "offline here",
            hint="pass a policy file written by `aigw-lab policy train`",
        )
    if args.embedder:
        router.embedder = make_embedder(args.embedder)
    test = held_out_split(router, args.data, args.data_dir)
    use_cached_embedder(router, args.cache_dir)
    X = router.embed([i.prompt for i in test.items], categories=[i.category for i in test.items])
    print(
        f"{router.name}: {router.model.router}, decision {router.decision.to_spec()}, "
        f"{len(test)} held-out items of {args.data or router.train_info.get('data')}"
    )
    _print_report(_evaluate(router, test, X, args.n_boot))
    if isinstance(stored, dict):
        try:
            comparison = BaselineComparison.from_dict(stored)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f'{args.policy}: its "baselines" entry is malformed ({type(exc).__name__})',
                hint="retrain the policy with `aigw-lab policy train`",
            ) from exc
        _print_baselines(comparison)
    else:
        print(
            "No baseline table in this policy file (trained before aigw-lab stored one): "
            "retrain it with `aigw-lab policy train` to see it beside random routing and the "
            "trivial baselines."
        )
    return 0
