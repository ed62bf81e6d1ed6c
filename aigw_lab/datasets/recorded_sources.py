"""Loaders of real recorded outcomes as `RecordedDataset` objects: the shared data folder's
recordings (RouteLLM GPT-4 vs Mixtral, arena-bench v1, AlpacaEval 2, the GSM8K paper's GPT-3
solutions). RouterBench's pickled DataFrame has its own loader, in
`aigw_lab.datasets.routerbench`.

Model names are the sources' own, except that the ``mistralai/`` prefix is dropped, so one
model has one name across recordings (``Mixtral-8x7B-Instruct-v0.1``). Token counts are
estimates (`estimate_tokens`) and costs are estimated tokens times `LIST_PRICES`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.datasets.loaders import (
    load_alpaca_eval_instructions,
    load_arena_bench_questions,
    load_mt_bench_questions,
)
from aigw_lab.datasets.recorded import LIST_PRICES, RecordedDataset
from aigw_lab.datasets.shared import shared_data_dir
from aigw_lab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ROUTELLM_BENCHMARKS",
    "GSM8K_GPT3_VARIANTS",
    "load_routellm",
    "load_arena_bench",
    "load_alpaca_eval",
    "load_gsm8k_gpt3",
]

ROUTELLM_BENCHMARKS = ("mmlu", "gsm8k", "mt_bench")
#: The GSM8K paper's GPT-3 variants: size, then one fine-tuned sample or 100 samples
#: reranked by a trained verifier.
GSM8K_GPT3_VARIANTS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")

_STRONG, _WEAK = "gpt-4-1106-preview", "Mixtral-8x7B-Instruct-v0.1"
_ESTIMATE_NOTE = (
    "Token counts are estimates (ceil(characters / 4)); costs are those estimates times list "
    "prices (LIST_PRICES), not billed amounts."
)
# The model's answer inside a FastChat single-answer judge prompt (turn-1 templates).
_JUDGED_ANSWER = re.compile(
    r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S
)


def _model_name(name: str) -> str:
    return name.removeprefix("mistralai/")


def _folder(name: str, data_dir: str | Path | None) -> Path:
    root = Path(data_dir).expanduser() if data_dir is not None else shared_data_dir()
    folder = root / name
    if not folder.is_dir():
        raise ConfigError(
            f"the shared data folder {root} has no {name}/",
            hint="point AIGW_LAB_SHARED_DATA (or data_dir=) at the complete shared data folder",
        )
    return folder


def _read_json_lines(path: Path) -> pd.DataFrame:
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"{path} does not exist", hint="the shared data folder is incomplete")
    try:
        # Values as the JSON has them: no guessing of dates or numbers inside strings.
        return pd.read_json(path, lines=True, dtype=False)
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid JSON lines ({exc})",
            hint="restore the file from the shared data folder's source (see MANIFEST.json)",
        ) from exc


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file with every cell as text, exactly as written: a response such as ``9`` or
    ``None`` stays that text (pandas would otherwise turn it into a number or a NaN)."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"{path} does not exist", hint="the shared data folder is incomplete")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise ConfigError(
            f"{path} is not a readable CSV file ({exc})",
            hint="restore the file from the shared data folder's source (see MANIFEST.json)",
        ) from exc


def _correct(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A True/False text column as 1.0/0.0."""
    values = frame[column]
    bad = values[~values.isin(("True", "False"))]
    if len(bad):
        raise ConfigError(
            f"{path}, column {column!r}, row {bad.index[0] + 1}: {bad.iloc[0]!r} is not "
            "True or False",
            hint="RouteLLM's correctness columns hold True/False",
        )
    return (values == "True").astype(float)


def _require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{path} lacks column(s) {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, map(str, frame.columns)))})",
            hint="the file does not follow the format in the shared data README.md",
        )


def _contaminated(folder: Path) -> set[str]:
    path = folder / "contaminated_prompts.jsonl"
    table = _read_json_lines(path)
    if table.empty:
        return set()
    _require_columns(table, ["eval_prompt"], path)
    return set(table["eval_prompt"])


# --- RouteLLM: GPT-4 vs Mixtral -------------------------------------------------------------


def load_routellm(
    benchmark: Literal["mmlu", "gsm8k", "mt_bench"],
    *,
    decontaminate: bool = True,
    mt_bench_score: Literal["mean", "turn1", "turn2"] = "mean",
    data_dir: str | Path | None = None,
) -> RecordedDataset:
    """RouteLLM's recorded GPT-4 (``gpt-4-1106-preview``) and Mixtral
    (``Mixtral-8x7B-Instruct-v0.1``) outcomes on MMLU, GSM8K or MT-Bench: the data behind
    RouteLLM's published router curves.

    ``decontaminate`` drops the prompts RouteLLM drops (they overlap its router training
    data), leaving 14,037 MMLU, 1,307 GSM8K and 72 MT-Bench questions.

    - ``mmlu``: score ``correct`` (0/1). No output text was recorded (``output`` is None, no
      output tokens, cost counts the prompt only). Ids ``mmlu/<subject>/<row>``.
    - ``gsm8k``: score ``correct``, the recorded responses as outputs; the reference answer
      comes from the GSM8K test set copy in ``gsm8k_gpt3_6b_175b/`` when present. Ids
      ``gsm8k/<row>`` (the same questions in the same order as `load_gsm8k_gpt3`).
    - ``mt_bench``: score ``judge_grade`` (1-10, GPT-4 single-answer grading). The prompt is
      turn 1 (later turns in metadata); the score is the mean of the two turns' grades
      (``mt_bench_score="mean"``, as MT-Bench reports it) or one turn's; the output is the
      turn-1 answer, taken from the judge's prompt. Ids ``mt_bench/<question_id>``.

    ``data_dir`` overrides the shared data folder (default `shared_data_dir`).
    """
    if benchmark not in ROUTELLM_BENCHMARKS:
        raise ConfigError(
            f"RouteLLM has no benchmark {benchmark!r}",
            hint=f"use one of {', '.join(ROUTELLM_BENCHMARKS)}",
        )
    root = _folder("routellm_gpt4_vs_mixtral", data_dir)
    folder = root / benchmark
    contaminated = _contaminated(folder) if decontaminate else set()
    if benchmark == "mmlu":
        dataset, frame = _routellm_mmlu(folder, contaminated)
        score, scale = "correct", (0.0, 1.0)
        detail = "MMLU: no output text was recorded, so costs count the prompt tokens only."
    elif benchmark == "gsm8k":
        dataset, frame = _routellm_gsm8k(folder, contaminated, root.parent)
        score, scale = "correct", (0.0, 1.0)
        detail = "GSM8K: outputs are the recorded responses."
    else:
        if mt_bench_score not in ("mean", "turn1", "turn2"):
            raise ConfigError(
                f"mt_bench_score={mt_bench_score!r}", hint="use 'mean', 'turn1' or 'turn2'"
            )
        dataset, frame = _routellm_mt_bench(folder, contaminated, mt_bench_score)
        score, scale = "judge_grade", (1.0, 10.0)
        detail = (
            f"MT-Bench: score = {mt_bench_score} of the GPT-4 judge's per-turn grades; the "
            "output (and its estimated tokens and cost) is the turn-1 answer only."
        )
    return RecordedDataset.from_outputs(
        dataset,
        frame,
        score_name=score,
        score_scale=scale,
        source=f"routellm:{benchmark} (lm-sys/RouteLLM @0b64fda, routellm/evals/{benchmark})",
        prices=LIST_PRICES,
        models=(_STRONG, _WEAK),
        notes=f"{detail} {_ESTIMATE_NOTE}",
    )


def _long(frame: pd.DataFrame, columns: dict[str, tuple[str, str | None]]) -> Any:
    """Tidy outcome rows of a RouteLLM table: per model, its score column and its response
    column (if any) as the output."""
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    parts = []
    for model, (score_column, output_column) in columns.items():
        parts.append(
            pd.DataFrame(
                {
                    "item_id": frame["item_id"].tolist(),
                    "model": model,
                    "output": frame[output_column].tolist() if output_column else None,
                    "score": frame[score_column].to_numpy(dtype=float),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _routellm_mmlu(folder: Path, contaminated: set[str]) -> tuple[Dataset, pd.DataFrame]:
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    frames = []
    for path in sorted(folder.glob("mmlu_*.csv")):
        frame = _read_csv(path)
        _require_columns(frame, ["prompt", _STRONG, f"mistralai/{_WEAK}"], path)
        for column in (_STRONG, f"mistralai/{_WEAK}"):
            frame[column] = _correct(frame, column, path)
        subject = path.stem.removeprefix("mmlu_")
        frame["item_id"] = [f"mmlu/{subject}/{row}" for row in range(len(frame))]
        frame["subject"] = subject
        frames.append(frame)
    if not frames:
        raise ConfigError(f"{folder} has no mmlu_*.csv files", hint="the folder is incomplete")
    table = pd.concat(frames, ignore_index=True)
    table = table[~table["prompt"].isin(contaminated)]
    items = tuple(
        DatasetItem(id=i, prompt=p, category=s, metadata=MappingProxyType({"subject": s}))
        for i, p, s in zip(table["item_id"], table["prompt"], table["subject"], strict=True)
    )
    dataset = Dataset("routellm_mmlu", items, str(folder))
    outcomes = _long(table, {_STRONG: (_STRONG, None), _WEAK: (f"mistralai/{_WEAK}", None)})
    return dataset, outcomes


def _routellm_gsm8k(
    folder: Path, contaminated: set[str], data_root: Path
) -> tuple[Dataset, pd.DataFrame]:

    path = folder / "gsm8k_responses.csv"
    weak = f"mistralai/{_WEAK}"
    table = _read_csv(path)
    _require_columns(
        table, ["prompt", _STRONG, weak, f"{_STRONG}_response", f"{weak}_response"], path
    )
    for column in (_STRONG, weak):
        table[column] = _correct(table, column, path)
    table["item_id"] = [f"gsm8k/{row}" for row in range(len(table))]
    table = table[~table["prompt"].isin(contaminated)]
    references = _gsm8k_references(data_root / "gsm8k_gpt3_6b_175b")
    items = tuple(
        DatasetItem(
            id=i,
            prompt=p,
            reference=references.get(p),
            category="gsm8k",
            metadata=MappingProxyType({"answer_type": "number"}),
        )
        for i, p in zip(table["item_id"], table["prompt"], strict=True)
    )
    dataset = Dataset("routellm_gsm8k", items, str(path))
    outcomes = _long(
        table,
        {_STRONG: (_STRONG, f"{_STRONG}_response"), _WEAK: (weak, f"{weak}_response")},
    )
    return dataset, outcomes


def _gsm8k_references(folder: Path) -> dict[str, str]:
    """Question -> final answer from the GSM8K test set copy, if the folder is there."""
    path = folder / "example_model_solutions.jsonl"
    if not path.is_file():
        return {}
    table = _read_json_lines(path)
    return dict(zip(table["question"], table["ground_truth"].map(_final_answer), strict=True))


def _final_answer(solution: str) -> str:
    # The paper's solutions end with "A: <answer>" (the public test set uses "#### <answer>").
    for marker in ("####", "\nA:"):
        head, sep, tail = solution.rpartition(marker)
        if sep:
            return tail.strip().replace(",", "")
    return solution.strip()


def _routellm_mt_bench(
    folder: Path, contaminated: set[str], which: str
) -> tuple[Dataset, pd.DataFrame]:
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    questions = load_mt_bench_questions(folder / "question.jsonl", name="routellm_mt_bench")
    dataset = replace(
        questions, items=tuple(i for i in questions.items if i.prompt not in contaminated)
    )
    path = folder / "judgements.jsonl"
    judged = _read_json_lines(path)
    _require_columns(judged, ["question_id", "model", "score", "turn", "user_prompt"], path)
    judged["item_id"] = "mt_bench/" + judged["question_id"].astype(str)
    judged["model"] = judged["model"].map(_model_name)
    judged = judged[judged["item_id"].isin(set(dataset.ids))]
    grades = judged.pivot_table(
        index=["item_id", "model"], columns="turn", values="score", aggfunc="mean"
    )
    score = {"mean": grades.mean(axis=1), "turn1": grades[1], "turn2": grades[2]}[which]
    first = judged[judged["turn"] == 1].set_index(["item_id", "model"])["user_prompt"]
    answers = first.str.extract(_JUDGED_ANSWER, expand=False)
    frame = pd.DataFrame({"score": score, "output": answers.reindex(score.index)})
    return dataset, frame.reset_index()


# --- arena-bench v1 -------------------------------------------------------------------------


def load_arena_bench(*, data_dir: str | Path | None = None) -> RecordedDataset:
    """arena-bench v1: 300 hard Chatbot-Arena prompts answered by 15 models, each answer
    graded 1-10 by GPT-4 against a GPT-4 reference answer (score ``judge_grade``; a grade
    the judge's output could not be parsed into stays None). The reference answer is each
    item's ``reference``. Ids ``arena/<question_id>``.

    Caveat: the judge and the reference are both GPT-4, so expect self-preference bias.
    """
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    folder = _folder("arena_bench_v1", data_dir)
    questions = load_arena_bench_questions(folder / "question.jsonl", name="arena_bench_v1")
    reference = _first_turns(_read_json_lines(folder / "reference_answer_gpt-4.jsonl"))
    dataset = replace(
        questions,
        items=tuple(
            replace(item, reference=reference.get(item.metadata["question_id"]))
            for item in questions.items
        ),
    )
    path = folder / "judgments_gpt-4_single_score.jsonl.gz"
    judged = _read_json_lines(path)
    _require_columns(judged, ["question_id", "model", "score"], path)
    judged["model"] = judged["model"].map(_model_name)
    models = tuple(dict.fromkeys(judged["model"]))
    outputs = []
    for model in models:
        answers = folder / "model_answer" / f"{model}.jsonl"
        texts = _first_turns(_read_json_lines(answers)) if answers.is_file() else {}
        outputs.append(
            pd.DataFrame(
                {"model": model, "question_id": list(texts), "output": list(texts.values())}
            )
        )
    frame = judged[["question_id", "model", "score"]].merge(
        pd.concat(outputs, ignore_index=True), on=["question_id", "model"], how="left"
    )
    frame["item_id"] = "arena/" + frame["question_id"].astype(str)
    return RecordedDataset.from_outputs(
        dataset,
        frame,
        score_name="judge_grade",
        score_scale=(1.0, 10.0),
        source="arena_bench_v1 (lmarena/arena-hard-auto @4a705dd, data/arena-bench-v1)",
        prices=LIST_PRICES,
        # Best model first, as the README lists them.
        models=tuple(
            judged.groupby("model", sort=False)["score"].mean().sort_values(ascending=False).index
        ),
        notes="Judge and reference are both GPT-4 (self-preference bias). palm-2-chat-bison-001 "
        f"has no list price here, so its costs are unknown. {_ESTIMATE_NOTE}",
    )


def _first_turns(answers: pd.DataFrame) -> dict[str, str]:
    """question_id -> the first turn of the first choice, from FastChat answer records."""
    return {
        str(qid): choices[0]["turns"][0]
        for qid, choices in zip(answers["question_id"], answers["choices"], strict=True)
    }


# --- AlpacaEval 2 ---------------------------------------------------------------------------

_ALPACA_REFERENCE = "gpt4_1106_preview"


def load_alpaca_eval(
    *, include_reference: bool = True, data_dir: str | Path | None = None
) -> RecordedDataset:
    """AlpacaEval 2: 805 instructions answered by 8 judged models plus the reference model
    ``gpt4_1106_preview`` (GPT-4-turbo), whose answer is also each item's ``reference``.

    The score ``preference`` is in [0, 1]: the judge's (``weighted_alpaca_eval_gpt4_turbo``)
    preference p in [1, 2] minus 1, i.e. the probability that the model's answer beats the
    reference; a model's mean is its AlpacaEval 2 win rate. The reference model's outputs
    are kept (``include_reference``) with score None: its recorded constant 1.5 compares
    it with itself and is not a judgement. Ids ``alpaca_eval/<idx>``.

    Caveat: the judge favours long answers (see the leaderboard's length-controlled column).
    """
    folder = _folder("alpaca_eval2_subset", data_dir)
    dataset = load_alpaca_eval_instructions(
        folder / "instructions_and_reference.jsonl", name="alpaca_eval2"
    )
    path = folder / "outputs_and_labels.jsonl.gz"
    labelled = _read_json_lines(path)
    _require_columns(labelled, ["idx", "generator", "output", "preference"], path)
    labelled["item_id"] = "alpaca_eval/" + labelled["idx"].astype(str)
    labelled["model"] = labelled["generator"]
    labelled["score"] = labelled["preference"].astype(float) - 1.0
    is_reference = labelled["model"] == _ALPACA_REFERENCE
    labelled.loc[is_reference, "score"] = float("nan")
    if not include_reference:
        labelled = labelled[~is_reference]
    models = tuple(dict.fromkeys(labelled["model"]))
    return RecordedDataset.from_outputs(
        dataset,
        labelled[["item_id", "model", "output", "score"]],
        score_name="preference",
        score_scale=(0.0, 1.0),
        source="alpaca_eval2 (tatsu-lab/alpaca_eval @cd543a1, weighted_alpaca_eval_gpt4_turbo)",
        prices=LIST_PRICES,
        models=models,
        notes=f"Scores are win probabilities against {_ALPACA_REFERENCE}; its own rows have "
        f"score None (the constant 1.5 is not a judgement). The judge favours long answers. "
        f"{_ESTIMATE_NOTE}",
    )


# --- GSM8K paper: GPT-3 6B and 175B ---------------------------------------------------------


def load_gsm8k_gpt3(*, data_dir: str | Path | None = None) -> RecordedDataset:
    """The GSM8K paper's (Cobbe et al. 2021) GPT-3 solutions to the 1,319 GSM8K test
    questions: four variants (`GSM8K_GPT3_VARIANTS`, 6B or 175B, fine-tuned with one sample
    or verifier-reranked from 100), score ``correct`` (0/1). The reference is the final
    answer, the worked solution is in ``metadata["solution"]``. Ids ``gsm8k/<row>``.

    These models were never sold, so they have no price: costs are unknown (None); the
    verification variants also sampled 100 solutions per question, which one output hides.
    """
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    folder = _folder("gsm8k_gpt3_6b_175b", data_dir)
    path = folder / "example_model_solutions.jsonl"
    table = _read_json_lines(path)
    _require_columns(table, ["question", "ground_truth", *GSM8K_GPT3_VARIANTS], path)
    ids = [f"gsm8k/{row}" for row in range(len(table))]
    items = tuple(
        DatasetItem(
            id=i,
            prompt=q,
            reference=_final_answer(truth),
            category="gsm8k",
            metadata=MappingProxyType({"solution": truth, "answer_type": "number"}),
        )
        for i, q, truth in zip(ids, table["question"], table["ground_truth"], strict=True)
    )
    parts = [
        pd.DataFrame(
            {
                "item_id": ids,
                "model": variant,
                "output": table[variant].str["solution"].tolist(),
                "score": table[variant].str["is_correct"].astype(float).to_numpy(),
            }
        )
        for variant in GSM8K_GPT3_VARIANTS
    ]
    return RecordedDataset.from_outputs(
        Dataset("gsm8k_gpt3", items, str(path)),
        pd.concat(parts, ignore_index=True),
        score_name="correct",
        score_scale=(0.0, 1.0),
        source="gsm8k_gpt3 (openai/grade-school-math, example_model_solutions.jsonl)",
        prices={},
        models=GSM8K_GPT3_VARIANTS,
        notes="No prices (research models): costs are unknown. Token counts are estimates "
        "(ceil(characters / 4)).",
    )
