"""Experiment files: a TOML description of an experiment and the gateway it runs through,
parsed strictly (an unknown key or a wrong type is a `ConfigError` naming it and the fix).

    [experiment]
    name = "sim fleet comparison"
    dataset = "bundled:mixed_v1"     # or a path to a JSONL file, relative to this file
    sample = 24                      # items drawn (seed below); all of them when left out
    seed = 0
    categories = ["arithmetic", "multiple_choice"]
    repetitions = 1
    concurrency = 8
    budget_usd = 0.50
    params = { max_tokens = 256 }    # request fields every target sends
    scorers = ["auto"]               # names, or tables like { type = "regex", pattern = "..." }

    [[targets]]
    model = "sim-openai/sim-small"

    [[targets]]
    model = "sim-openai/sim-small"
    name = "small-hot"
    params = { temperature = 1.0 }

    [gateway]                        # optional: the simulated fleet by default
    db = "experiments.duckdb"        # the call log, relative to this file
    config = "gateway.toml"          # a gateway config file (see docs/config.md), or inline:
    # [gateway.providers.openai] ... [gateway.budgets] ... [gateway.shadow] ... as in a
    # gateway config file (not [server] or [alerts]: they configure other commands)
    # [gateway.simulated] seed = 0, time_scale = 1.0, faults = {...}: the default fleet's knobs

See ``docs/experiments.md`` for every key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aigw_lab._keys import reject_unknown_keys
from aigw_lab.config import load_config, parse_config, read_toml
from aigw_lab.config_gateway import gateway_of
from aigw_lab.datasets import Dataset, bundled_dataset
from aigw_lab.datasets.recordings import load_recording
from aigw_lab.errors import AigwError, ConfigError
from aigw_lab.experiments.executor_spec import executor_options
from aigw_lab.experiments.experiment import Experiment
from aigw_lab.gateway import Gateway
from aigw_lab.scorers import build_scorer

__all__ = ["ExperimentSpec", "load_spec", "parse_spec", "DEFAULT_DB"]

#: The call log the CLI uses when neither --db nor the files name one (in the working dir).
DEFAULT_DB = "experiments.duckdb"
#: Scorer types whose ``model`` is a gateway address (checked before the run starts).
_JUDGE_TYPES = frozenset({"judge", "pairwise_judge"})

_TOP_KEYS = {"experiment", "targets", "scorers", "gateway", "executor"}
_EXPERIMENT_KEYS = {
    "name",
    "id",
    "dataset",
    "sample",
    "seed",
    "categories",
    "repetitions",
    "concurrency",
    "budget_usd",
    "params",
    "scorers",
}
_TARGET_KEYS = {"model", "name", "params"}
# Gateway-config tables that may be written inline under [gateway], and [gateway] keys of a
# gateway config file that may be written directly in it.
_INLINE_TABLES = {
    "providers",
    "prices",
    "fallbacks",
    "health",
    "cache",
    "budgets",
    "rate_limits",
    "semantic_cache",
    "state",
    "log",
    "policies",
    "exploration",
    "shadow",
    "otel",
    "metrics",
}
_INLINE_SECTION_KEYS = {"default_provider", "tags", "retry"}
_GATEWAY_KEYS = {"config", "db", "simulated"} | _INLINE_TABLES | _INLINE_SECTION_KEYS
_SIMULATED_KEYS = {"seed", "time_scale", "faults", "timeout"}


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed experiment file: everything needed to build the `Experiment` and its gateway.

    Scorers are kept as specs and built by `build` (an LLM judge needs the gateway).
    ``gateway_config`` is a gateway config file path, ``gateway_inline`` a gateway config
    mapping written in the file, ``simulated`` the default fleet's options; ``db`` the call
    log path from the file (resolved against it), if any. ``provenance`` is what the file
    chose that the dataset does not keep (see `Experiment`), recorded for reports.
    """

    name: str
    dataset: Dataset
    targets: tuple[Mapping[str, Any], ...]
    scorers: tuple[str | Mapping[str, Any], ...] = ()
    repetitions: int = 1
    concurrency: int = 8
    budget_usd: float | None = None
    experiment_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    db: str | None = None
    gateway_config: str | None = None
    gateway_inline: Mapping[str, Any] | None = None
    simulated: Mapping[str, Any] = field(default_factory=dict)
    source: str = "experiment"
    provenance: Mapping[str, Any] = field(default_factory=dict)
    #: ``[executor]``: `RayExecutor` keywords (`aigw_lab.experiments.executor_spec`), or
    #: None to run in this process.
    executor: Mapping[str, Any] | None = None

    def build(self, gateway: Gateway) -> Experiment:
        """The `Experiment`, with its scorers built for ``gateway``. A target the gateway
        cannot reach (no such provider, or a model its provider does not serve) is a
        `ConfigError` now: otherwise every unit of that target would be sent and fail."""
        self.check_targets(gateway)
        return Experiment(
            self.name,
            self.dataset,
            self.targets,
            scorers=self.build_scorers(gateway),
            repetitions=self.repetitions,
            concurrency=self.concurrency,
            budget_usd=self.budget_usd,
            experiment_id=self.experiment_id,
            params=self.params,
            # The gateway actually used: --config may replace the file's [gateway].
            provenance={**self.provenance, "providers": list(gateway.provider_names)},
        )

    def check_targets(self, gateway: Gateway) -> None:
        """Raise `ConfigError` for a ``[[targets]]`` model that ``gateway`` cannot resolve,
        or whose provider lists its models and has no such model."""
        models = gateway.list_models()
        for index, target in enumerate(self.targets):
            address = target["model"]
            where = f"{self.source}: [[targets]] {index + 1}: model = {address!r}"
            _check_address(gateway, models, address, where)
        # A judge's model too: otherwise every unit is sent, and every judgement fails.
        for index, spec in enumerate(self.scorers):
            judge = isinstance(spec, Mapping) and spec.get("type") in _JUDGE_TYPES
            address = spec.get("model") if judge else None
            if isinstance(address, str):
                where = f"{self.source}: scorers[{index}]: model = {address!r}"
                _check_address(gateway, models, address, where)

    def build_scorers(self, gateway: Gateway) -> list[Any]:
        """The file's scorers built for ``gateway`` (a judge calls its model through it)."""
        if not self.scorers:
            return []
        built = []
        for index, spec in enumerate(self.scorers):
            try:
                built.append(build_scorer(spec, gateway=gateway))
            except ConfigError as exc:
                raise ConfigError(
                    f"{self.source}: scorers[{index}]: {exc.message}", hint=exc.hint
                ) from exc
        return built

    def build_gateway(
        self,
        *,
        db: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = None,
    ) -> Gateway:
        """The gateway this file asks for. ``config`` (a gateway TOML, the CLI's --config)
        replaces the file's own gateway settings; ``db`` (--db) its call log path. The log is
        always a file (`DEFAULT_DB` when nothing names one): results and resuming live there.
        """
        if config is not None or self.gateway_config is not None:
            path = config if config is not None else self.gateway_config
            gateway_config = load_config(path)  # type: ignore[arg-type]
        elif self.gateway_inline is not None:
            gateway_config = parse_config(
                self.gateway_inline,
                base_dir=Path(self.source).parent,
                source=f"{self.source}: [gateway]",
            )
        else:
            gateway_config = None
        log = str(db) if db is not None else self.db
        if gateway_config is None:
            return Gateway.simulated_fleet(log=log or DEFAULT_DB, **dict(self.simulated))
        if log is None and gateway_config.log and gateway_config.db not in (None, ":memory:"):
            log = gateway_config.db
        # As Gateway.from_config builds it (one builder): every section of the config,
        # [log], [policies], [shadow], [otel], [metrics] and the team log, applies to an
        # experiment's gateway too.
        return gateway_of(gateway_config, log=log or DEFAULT_DB)


def _check_address(
    gateway: Gateway, models: Mapping[str, Sequence[str]], address: str, where: str
) -> None:
    """A `ConfigError` (prefixed with ``where``) for a model address ``gateway`` cannot
    resolve, or whose provider lists its models and has no such model."""
    try:
        provider, model = gateway.resolve(address)
    except AigwError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc
    known = models.get(provider) or ()
    if known and model not in known:
        shown = ", ".join(list(known)[:20]) + (", ..." if len(known) > 20 else "")
        raise ConfigError(
            f"{where}: provider {provider!r} has no model {model!r}", hint=f"its models: {shown}"
        )


def load_spec(path: str | os.PathLike[str], *, max_items: int | None = None) -> ExperimentSpec:
    """Read and validate an experiment TOML file. ``max_items`` keeps the first N items
    (after the file's categories and sample), for a quick trial run."""
    p = Path(path)
    data = read_toml(
        p,
        "experiment",
        hint="pass the path of a .toml file; examples/experiment.toml is a starting point",
    )
    return parse_spec(data, base_dir=p.parent, source=str(p), max_items=max_items)


def parse_spec(
    data: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    source: str = "experiment",
    max_items: int | None = None,
) -> ExperimentSpec:
    """Validate an already-parsed experiment mapping (the TOML's tables as dicts)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    reject_unknown_keys(data, _TOP_KEYS, source)
    section = _table(data, "experiment", source, required=True)
    where = f"{source}: [experiment]"
    reject_unknown_keys(section, _EXPERIMENT_KEYS, where)

    name = _string(section, "name", where, required=True)
    dataset = _dataset(section, base, where)
    if max_items is not None:
        if max_items < 1:
            raise ConfigError(f"--max-items {max_items} must be at least 1")
        dataset = dataset.head(max_items)
    if not dataset.items:
        raise ConfigError(
            f"{where}: no dataset items are left after the categories and sample",
            hint="check the category names against the dataset's",
        )

    if "scorers" in data and "scorers" in section:
        raise ConfigError(
            f"{source}: scorers is set twice, at the top and in [experiment]",
            hint="keep one of them",
        )
    scorers = data.get("scorers", section.get("scorers", []))
    if not isinstance(scorers, list) or not all(isinstance(s, (str, Mapping)) for s in scorers):
        raise ConfigError(
            f"{source}: scorers must be a list of names or tables",
            hint='e.g. scorers = ["auto"] or scorers = [{ type = "regex", pattern = "^[A-D]$" }]',
        )
    recording = section.get("dataset", "")
    if isinstance(recording, str) and recording.startswith("recorded:"):
        # A bare "recorded" scorer on a recorded dataset means that recording's own labels.
        labels = {"type": "recorded", "recording": recording.removeprefix("recorded:")}
        scorers = [labels if s == "recorded" else s for s in scorers]

    targets = data.get("targets")
    if not isinstance(targets, list) or not targets:
        raise ConfigError(
            f"{source}: no [[targets]]",
            hint='add at least one [[targets]] table with model = "provider/model"',
        )
    for index, target in enumerate(targets):
        target_where = f"{source}: [[targets]] {index + 1}"
        if not isinstance(target, Mapping):
            raise ConfigError(f"{target_where} must be a table", hint="write it as [[targets]]")
        reject_unknown_keys(target, _TARGET_KEYS, target_where)
        _string(target, "model", target_where, required=True)
        _string(target, "name", target_where)
        if "params" in target and not isinstance(target["params"], Mapping):
            raise ConfigError(
                f"{target_where}: params must be a table", hint="params = { temperature = 0.7 }"
            )

    budget = section.get("budget_usd")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))):
        raise ConfigError(f"{where}: budget_usd = {budget!r} must be a number of dollars")
    params = section.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: params must be a table", hint="params = { max_tokens = 256 }")
    db, config, inline, simulated = _gateway(data, base, source)
    executor = executor_options(
        _table(data, "executor", source), base_dir=base, where=f"{source}: [executor]"
    )
    spec = ExperimentSpec(
        name=name,
        dataset=dataset,
        targets=tuple(dict(t) for t in targets),
        scorers=tuple(scorers),
        repetitions=_integer(section, "repetitions", where, 1),
        concurrency=_integer(section, "concurrency", where, 8),
        budget_usd=None if budget is None else float(budget),
        experiment_id=_string(section, "id", where),
        params=MappingProxyType(dict(params)),
        db=db,
        gateway_config=config,
        gateway_inline=inline,
        simulated=MappingProxyType(simulated),
        source=source,
        executor=executor,
        provenance=MappingProxyType(
            _provenance(section, source, max_items, config=config, inline=inline, sim=simulated)
        ),
    )
    _check_definition(spec)
    return spec


def _provenance(
    section: Mapping[str, Any],
    source: str,
    max_items: int | None,
    *,
    config: str | None,
    inline: Mapping[str, Any] | None,
    sim: Mapping[str, Any],
) -> dict[str, Any]:
    """How the file chose its items and gateway: the dataset reference, categories, sample
    size and seed (the dataset keeps only the items drawn), ``--max-items``, and the
    file's gateway settings. A report shows it; the run does not read it."""
    out: dict[str, Any] = {"spec": source, "dataset": section.get("dataset")}
    for key in ("categories", "sample"):
        if key in section:
            out[key] = section[key]
    if "sample" in section:
        out["seed"] = section.get("seed", 0)  # the default seed draws the sample too
    if max_items is not None:
        out["max_items"] = max_items
    if config is not None:
        out["gateway_in_file"] = {"config": config}
    elif inline is not None:
        out["gateway_in_file"] = {"inline": sorted(inline)}
    else:
        out["gateway_in_file"] = {"simulated": dict(sim)}
    return out


def _check_definition(spec: ExperimentSpec) -> None:
    """Validate targets, params and counts now, so the file's mistakes surface before a
    gateway or log is opened (scorers are checked when built)."""
    try:
        Experiment(
            spec.name,
            spec.dataset,
            spec.targets,
            repetitions=spec.repetitions,
            concurrency=spec.concurrency,
            budget_usd=spec.budget_usd,
            experiment_id=spec.experiment_id,
            params=spec.params,
        )
    except ConfigError as exc:
        raise ConfigError(f"{spec.source}: {exc.message}", hint=exc.hint) from exc


def _dataset(section: Mapping[str, Any], base: Path, where: str) -> Dataset:
    reference = _string(section, "dataset", where, required=True)
    if reference.startswith("bundled:"):
        dataset = bundled_dataset(reference.removeprefix("bundled:") or None)
    elif reference.startswith("recorded:"):
        dataset = load_recording(reference.removeprefix("recorded:")).dataset
    else:
        path = Path(reference).expanduser()
        if not path.is_absolute():
            path = base / path
        if path.suffix != ".jsonl":
            raise ConfigError(
                f"{where}: dataset = {reference!r} is not bundled:NAME, recorded:NAME or a "
                ".jsonl file",
                hint='use "bundled:mixed_v1", "recorded:routellm/gsm8k" (shared data) or the '
                "path of a JSONL file (relative to this file)",
            )
        dataset = Dataset.from_jsonl(path)
        if not dataset.items:
            raise ConfigError(
                f"{where}: dataset file {path} holds no records",
                hint='write one JSON object per line: {"id": "q1", "prompt": "...", '
                '"reference": "..."}',
            )
    categories = section.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise ConfigError(f"{where}: categories must be a list of strings")
        unknown = sorted(set(categories) - set(dataset.categories))
        if unknown:
            raise ConfigError(
                f"{where}: dataset {dataset.name!r} has no category {', '.join(unknown)}",
                hint=f"its categories are: {', '.join(dataset.categories)}",
            )
        dataset = dataset.filter(category=categories)
    seed = _integer(section, "seed", where, 0, minimum=0)
    if "sample" in section:
        dataset = dataset.sample(_integer(section, "sample", where, 1), seed=seed)
    return dataset


def _gateway(
    data: Mapping[str, Any], base: Path, source: str
) -> tuple[str | None, str | None, dict[str, Any] | None, dict[str, Any]]:
    section = _table(data, "gateway", source)
    where = f"{source}: [gateway]"
    reject_unknown_keys(section, _GATEWAY_KEYS, where)
    db = _string(section, "db", where)
    if db is not None and db != ":memory:" and not os.path.isabs(db):
        db = str(base / db)
    config = _string(section, "config", where)
    if config is not None and not os.path.isabs(config):
        config = str(base / config)
    simulated = dict(_table(section, "simulated", where))
    reject_unknown_keys(simulated, _SIMULATED_KEYS, f"{where} simulated")
    for key in ("time_scale", "timeout"):
        value = simulated.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            raise ConfigError(f"{where} simulated: {key} must be a non-negative number")
    inline_keys = (_INLINE_TABLES | _INLINE_SECTION_KEYS) & section.keys()
    inline: dict[str, Any] | None = None
    if inline_keys:
        if config is not None or simulated:
            raise ConfigError(
                f"{where}: {', '.join(sorted(inline_keys))} given together with "
                f"{'config' if config is not None else 'simulated'}",
                hint="configure the gateway one way: a config file, inline tables "
                "([gateway.providers...]), or the simulated fleet",
            )
        if "providers" not in section:
            raise ConfigError(
                f"{where}: {', '.join(sorted(inline_keys))} need [gateway.providers.NAME] tables",
                hint="inline gateway settings describe a whole gateway; or move them into a "
                'gateway config file and set config = "gateway.toml"',
            )
        inline = {key: section[key] for key in inline_keys & _INLINE_TABLES}
        inline["gateway"] = {key: section[key] for key in inline_keys & _INLINE_SECTION_KEYS}
    elif config is not None and simulated:
        raise ConfigError(
            f"{where}: config and simulated are both set",
            hint="simulated configures the default fleet; a config file brings its own providers",
        )
    return db, config, inline, simulated


def _table(
    data: Mapping[str, Any], key: str, where: str, *, required: bool = False
) -> Mapping[str, Any]:
    if key not in data:
        if required:
            raise ConfigError(f"{where}: no [{key}] table", hint=f"add a [{key}] table")
        return {}
    value = data[key]
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {key} must be a table", hint=f"write it as [{key}]")
    return value


def _string(
    table: Mapping[str, Any], key: str, where: str, *, required: bool = False
) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key} is missing", hint=f'add {key} = "..."')
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{where}: {key} = {value!r} must be a non-empty string", hint=f'write {key} = "..."'
        )
    return value


def _integer(
    table: Mapping[str, Any], key: str, where: str, default: int, *, minimum: int = 1
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{where}: {key} = {value!r} must be an integer of at least {minimum}",
            hint=f"e.g. {key} = {max(default, minimum)}",
        )
    return value
