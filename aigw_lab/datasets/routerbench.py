"""RouterBench's recorded outcomes (Hu et al. 2024, withmartian/routerbench): a pickled
pandas DataFrame with, per prompt, every model's score, response and cost."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.datasets.recorded import RecordedDataset
from aigw_lab.errors import ConfigError

__all__ = ["load_routerbench"]


def load_routerbench(path: str | Path, *, name: str | None = None) -> RecordedDataset:
    """RouterBench's pickled DataFrame (``routerbench_0shot.pkl`` / ``_5shot.pkl``), in its
    documented format: ``sample_id``, ``prompt``, ``eval_name``, one score column per model
    (named by the model), ``<model>|model_response``, ``<model>|total_cost`` and
    ``oracle_model_to_route_to``.

    Models are the columns that have a ``|model_response`` column. Scores keep RouterBench's
    scale (0-1); costs are RouterBench's own recorded ``total_cost`` (not estimates); token
    counts are estimates. ``eval_name`` is the category; the oracle's choice is in metadata.
    Only unpickle files you trust. (No RouterBench file is in the shared data: this loader is
    tested on a small pickle built to this format.)
    """
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"RouterBench file {path} does not exist", hint="check the path")
    try:
        table = pd.read_pickle(path)
    except Exception as exc:  # unpickling raises whatever the pickled objects raise
        raise ConfigError(
            f"{path} could not be unpickled: {type(exc).__name__}: {exc}",
            hint="pass RouterBench's routerbench_0shot.pkl or routerbench_5shot.pkl",
        ) from exc
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(
            f"{path} holds a {type(table).__name__}, not a DataFrame",
            hint="RouterBench's files are pickled pandas DataFrames",
        )
    _require_columns(table, ["sample_id", "prompt", "eval_name"], path)
    models = [
        c[: -len("|model_response")] for c in table.columns if str(c).endswith("|model_response")
    ]
    if not models:
        raise ConfigError(
            f"{path} has no '<model>|model_response' columns",
            hint="RouterBench's DataFrame has a score, a response and a cost column per model",
        )
    _require_columns(table, [c for m in models for c in (m, f"{m}|total_cost")], path)
    ids = table["sample_id"].astype(str).tolist()
    oracle = (
        table["oracle_model_to_route_to"].tolist()
        if "oracle_model_to_route_to" in table.columns
        else [None] * len(table)
    )
    items = tuple(
        DatasetItem(
            id=i,
            prompt=_prompt_text(p),
            category=str(e),
            metadata=MappingProxyType({"oracle_model_to_route_to": o}),
        )
        for i, p, e, o in zip(ids, table["prompt"], table["eval_name"], oracle, strict=True)
    )
    parts = [
        pd.DataFrame(
            {
                "item_id": ids,
                "model": model,
                "output": table[f"{model}|model_response"].map(_prompt_text_or_none).tolist(),
                "score": pd.to_numeric(table[model], errors="coerce").to_numpy(),
                "cost_usd": pd.to_numeric(table[f"{model}|total_cost"], errors="coerce").to_numpy(),
            }
        )
        for model in models
    ]
    return RecordedDataset.from_outputs(
        Dataset(name or path.stem, items, str(path)),
        pd.concat(parts, ignore_index=True),
        score_name="performance",
        score_scale=(0.0, 1.0),
        source=f"routerbench:{path}",
        prices={},
        models=models,
        notes="Costs are RouterBench's recorded total_cost; token counts are estimates "
        "(ceil(characters / 4)).",
    )


def _prompt_text(value: Any) -> str:
    # RouterBench stores some prompts (multi-turn ones) as lists of strings.
    if isinstance(value, (list, tuple)):
        return "\n\n".join(map(str, value))
    return str(value)


def _prompt_text_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return _prompt_text(value)


def _require_columns(frame: Any, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{path} lacks column(s) {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, map(str, frame.columns)))})",
            hint="RouterBench's DataFrame has sample_id, prompt, eval_name and, per model, "
            "<model>, <model>|model_response and <model>|total_cost columns",
        )
