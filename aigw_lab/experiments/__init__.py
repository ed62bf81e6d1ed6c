"""Experiments: send a dataset to several targets through the gateway, score the answers,
and compare cost, latency and quality - resumably, with every call in the DuckDB log.

    from aigw_lab import Gateway
    from aigw_lab.datasets import bundled_dataset
    from aigw_lab.experiments import Experiment, Target, run_experiment

    gateway = Gateway.simulated_fleet(log="experiments.duckdb")
    experiment = Experiment(
        "small vs large",
        bundled_dataset().sample(20, seed=0),
        [Target(model="sim-openai/sim-small"), Target(model="sim-openai/sim-large")],
        scorers=[...],
    )
    result = run_experiment(gateway, experiment)
    result.summary()

Names are imported lazily, so ``import aigw_lab.experiments`` stays cheap. See
``docs/experiments.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigw_lab._lazy import lazy_exports

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Experiment": "aigw_lab.experiments.experiment",
    "Unit": "aigw_lab.experiments.experiment",
    "default_experiment_id": "aigw_lab.experiments.experiment",
    "Target": "aigw_lab.experiments.targets",
    "TARGET_PARAMS": "aigw_lab.experiments.targets",
    "run_experiment": "aigw_lab.experiments.runner",
    "arun_experiment": "aigw_lab.experiments.runner",
    "CostEstimate": "aigw_lab.experiments.estimate",
    "DEFAULT_OUTPUT_TOKENS": "aigw_lab.experiments.estimate",
    "estimate_cost": "aigw_lab.experiments.estimate",
    "ExperimentResult": "aigw_lab.experiments.results",
    "FRAME_COLUMNS": "aigw_lab.experiments.results",
    "experiment_frame": "aigw_lab.experiments.results",
    "ProgressSnapshot": "aigw_lab.experiments.progress",
    "TargetProgress": "aigw_lab.experiments.progress",
    "DatasetChangedWarning": "aigw_lab.experiments.records",
    "ExperimentSpec": "aigw_lab.experiments.spec",
    "load_spec": "aigw_lab.experiments.spec",
    "parse_spec": "aigw_lab.experiments.spec",
    "ReplayMatrix": "aigw_lab.experiments.replay_matrix",
    "FillPlan": "aigw_lab.experiments.replay_fill",
    "FillResult": "aigw_lab.experiments.replay_fill",
    "TargetFill": "aigw_lab.experiments.replay_fill",
    "plan_fill": "aigw_lab.experiments.replay_fill",
    "fill": "aigw_lab.experiments.replay_fill",
    "WarmingEntry": "aigw_lab.experiments.warming",
    "WarmingPlan": "aigw_lab.experiments.warming",
    "WarmingReport": "aigw_lab.experiments.warming",
    "plan_warming": "aigw_lab.experiments.warming",
    "warm": "aigw_lab.experiments.warming",
    "ShadowReport": "aigw_lab.experiments.shadow_report",
    "shadow_pairs": "aigw_lab.experiments.shadow_report",
    "score_shadow_pairs": "aigw_lab.experiments.shadow_report",
    "RayExecutor": "aigw_lab.experiments.ray_executor",
    "WorkerGateway": "aigw_lab.experiments.ray_worker",
}

__all__ = [
    "Experiment",
    "Unit",
    "default_experiment_id",
    "Target",
    "TARGET_PARAMS",
    "run_experiment",
    "arun_experiment",
    "CostEstimate",
    "DEFAULT_OUTPUT_TOKENS",
    "estimate_cost",
    "ExperimentResult",
    "FRAME_COLUMNS",
    "experiment_frame",
    "ProgressSnapshot",
    "TargetProgress",
    "DatasetChangedWarning",
    "ExperimentSpec",
    "load_spec",
    "parse_spec",
    "ReplayMatrix",
    "FillPlan",
    "FillResult",
    "TargetFill",
    "plan_fill",
    "fill",
    "WarmingEntry",
    "WarmingPlan",
    "WarmingReport",
    "plan_warming",
    "warm",
    "ShadowReport",
    "shadow_pairs",
    "score_shadow_pairs",
    "RayExecutor",
    "WorkerGateway",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from aigw_lab.experiments.estimate import DEFAULT_OUTPUT_TOKENS, CostEstimate, estimate_cost
    from aigw_lab.experiments.experiment import Experiment, Unit, default_experiment_id
    from aigw_lab.experiments.progress import ProgressSnapshot, TargetProgress
    from aigw_lab.experiments.ray_executor import RayExecutor
    from aigw_lab.experiments.ray_worker import WorkerGateway
    from aigw_lab.experiments.records import DatasetChangedWarning
    from aigw_lab.experiments.replay_fill import FillPlan, FillResult, TargetFill, fill, plan_fill
    from aigw_lab.experiments.replay_matrix import ReplayMatrix
    from aigw_lab.experiments.results import FRAME_COLUMNS, ExperimentResult, experiment_frame
    from aigw_lab.experiments.runner import arun_experiment, run_experiment
    from aigw_lab.experiments.shadow_report import (
        ShadowReport,
        score_shadow_pairs,
        shadow_pairs,
    )
    from aigw_lab.experiments.spec import ExperimentSpec, load_spec, parse_spec
    from aigw_lab.experiments.targets import TARGET_PARAMS, Target
    from aigw_lab.experiments.warming import (
        WarmingEntry,
        WarmingPlan,
        WarmingReport,
        plan_warming,
        warm,
    )
