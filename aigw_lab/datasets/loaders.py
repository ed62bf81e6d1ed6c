"""Loaders for the evaluation formats users bring: GSM8K, MMLU, MT-Bench and arena-bench
questions, AlpacaEval instructions, any pandas DataFrame, and Hugging Face datasets.

Each returns a `Dataset` with stable item ids (experiments key their resumable work on them).
A malformed file is a `ConfigError` naming the file, the line or row, the field, and the fix.

    ds = load_gsm8k("gsm8k/test.jsonl")           # reference "42", worked solution in metadata
    ds = load_mmlu("mmlu/data/test/")             # every *_test.csv, subject as category
    ds = from_dataframe(df, prompt="question", reference="answer", category="topic")
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aigw_lab.datasets.files import existing_file, iter_jsonl, parse_json, read_text
from aigw_lab.datasets.items import Dataset, DatasetItem
from aigw_lab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MMLU_INSTRUCTION",
    "format_mmlu_prompt",
    "load_gsm8k",
    "load_mmlu",
    "load_mt_bench_questions",
    "load_arena_bench_questions",
    "load_alpaca_eval_instructions",
    "from_dataframe",
    "load_huggingface",
]

#: The instruction closing every MMLU prompt built by `load_mmlu`.
MMLU_INSTRUCTION = "Answer with the letter of the correct choice (A, B, C or D) only."
_LETTERS = ("A", "B", "C", "D")


# --- shared helpers -------------------------------------------------------------------------


def _existing_file(path: str | Path, what: str) -> Path:
    return existing_file(path, what)


def _read_jsonl(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file; a `ConfigError` naming
    the line when one is not a JSON object, and the byte when the file is not UTF-8."""
    return iter_jsonl(path, what)


def _require(record: Mapping[str, Any], keys: Sequence[str], where: str, what: str) -> None:
    missing = [key for key in keys if key not in record]
    if missing:
        raise ConfigError(
            f"{where} lacks {', '.join(repr(k) for k in missing)} "
            f"(it has {', '.join(repr(k) for k in record) or 'no keys'})",
            hint=f"each {what} record needs {', '.join(repr(k) for k in keys)}",
        )


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{where}: {field!r} is {value!r}, not a non-empty string",
            hint=f"give every record a text {field!r}",
        )
    return value


# --- GSM8K ----------------------------------------------------------------------------------


def load_gsm8k(path: str | Path, *, name: str | None = None) -> Dataset:
    """GSM8K in its published JSONL form: ``{"question", "answer"}`` per line, the answer a
    worked solution ending in ``#### <final answer>``.

    The reference is the final answer as text with thousands separators removed
    (``"#### 1,200"`` gives ``"1200"``); the worked solution is kept in
    ``metadata["solution"]``. Ids are ``gsm8k/<n>``, n counting records from 0 (an ``id``
    field wins when present).
    """
    path = _existing_file(path, "GSM8K")
    items = []
    for index, (line, record) in enumerate(_read_jsonl(path, "GSM8K")):
        where = f"{path}:{line}"
        _require(record, ("question", "answer"), where, "GSM8K")
        question = _text(record["question"], where, "question")
        solution, sep, final = _text(record["answer"], where, "answer").rpartition("####")
        if not sep or not final.strip():
            raise ConfigError(
                f"{where}: the answer has no final '#### <answer>' line",
                hint="GSM8K answers end with a line like '#### 42'",
            )
        items.append(
            DatasetItem(
                id=str(record.get("id") or f"gsm8k/{index}"),
                prompt=question,
                reference=final.strip().replace(",", ""),
                category="gsm8k",
                metadata=MappingProxyType(
                    {"solution": solution.strip(), "answer_type": "number", "line": line}
                ),
            )
        )
    return Dataset(name or path.stem, tuple(items), str(path))


# --- MMLU -----------------------------------------------------------------------------------


def format_mmlu_prompt(
    question: str, choices: Sequence[str], instruction: str = MMLU_INSTRUCTION
) -> str:
    """An MMLU question with its lettered choices and the answer instruction."""
    pairs = zip(_LETTERS, choices, strict=True)
    lettered = "\n".join(f"{letter}. {text}" for letter, text in pairs)
    return f"{question.strip()}\n\n{lettered}\n\n{instruction}"


def load_mmlu(
    path: str | Path, *, name: str | None = None, instruction: str = MMLU_INSTRUCTION
) -> Dataset:
    """MMLU in the hendrycks CSV format: no header, six columns (question, choices A to D,
    answer letter). ``path`` is one CSV file or a folder of ``*_test.csv`` files (one per
    subject, as in the published ``data/test/`` folder).

    Each prompt is the question, the lettered choices and ``instruction``; the reference is
    the letter; the subject (the file name without ``_test``) is the category; the choices
    are in ``metadata["choices"]``. Ids are ``mmlu/<subject>/<row>``, row counting from 0.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*_test.csv"))
        if not files:
            raise ConfigError(
                f"the MMLU folder {path} has no *_test.csv files",
                hint="point at MMLU's data/test/ folder or at one subject's CSV file",
            )
    else:
        files = [_existing_file(path, "MMLU")]
    items = []
    for file in files:
        subject = file.stem.removesuffix("_test")
        for row_index, row in enumerate(_csv_rows(file, "MMLU")):
            where = f"{file}, row {row_index + 1}"
            if len(row) != 6:
                raise ConfigError(
                    f"{where} has {len(row)} columns, not 6",
                    hint="MMLU CSVs have no header and six columns: question, A, B, C, D, "
                    "answer letter",
                )
            question, *choices, answer = row
            answer = answer.strip().upper()
            if answer not in _LETTERS:
                raise ConfigError(
                    f"{where}: the answer column holds {row[5]!r:.40}, not a letter A-D",
                    hint="the sixth column of an MMLU row is the answer letter",
                )
            items.append(
                DatasetItem(
                    id=f"mmlu/{subject}/{row_index}",
                    prompt=format_mmlu_prompt(
                        _text(question, where, "question"), choices, instruction
                    ),
                    reference=answer,
                    category=subject,
                    metadata=MappingProxyType(
                        {
                            "subject": subject,
                            "choices": dict(zip(_LETTERS, choices, strict=True)),
                            "answer_type": "choice",
                        }
                    ),
                )
            )
    source = str(path)
    return Dataset(name or ("mmlu" if path.is_dir() else path.stem), tuple(items), source)


def _csv_rows(file: Path, what: str) -> list[list[str]]:
    """The rows of a CSV file, read as UTF-8; a `ConfigError` naming the row when the csv
    module rejects it (a NUL byte, a field over its size limit, a stray quote)."""
    reader = csv.reader(io.StringIO(read_text(existing_file(file, what), what), newline=""))
    rows: list[list[str]] = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as exc:
        raise ConfigError(
            f"{file}, row {len(rows) + 1} cannot be read as CSV ({exc})",
            hint=f"save the {what} file as plain comma-separated UTF-8 text",
        ) from exc
    return rows


# --- FastChat question files (MT-Bench, arena-bench) ----------------------------------------


def load_mt_bench_questions(path: str | Path, *, name: str = "mt_bench") -> Dataset:
    """MT-Bench's ``question.jsonl``: ``question_id``, ``category``, ``turns`` (and, for math
    and coding questions, ``reference``: one reference answer per turn).

    Turn 1 is the prompt; later turns are in ``metadata["later_turns"]`` (send them yourself,
    after the model's first answer, for a multi-turn run). The reference is turn 1's
    reference answer, when there is one; all of them are in ``metadata["turn_references"]``.
    Ids are ``mt_bench/<question_id>``.
    """
    return _load_fastchat_questions(path, name, "mt_bench", "MT-Bench question")


def load_arena_bench_questions(path: str | Path, *, name: str = "arena_bench") -> Dataset:
    """arena-bench's (and arena-hard-auto's) ``question.jsonl``, the FastChat question format:
    ``question_id``, ``category``, ``turns``. Turn 1 is the prompt. Ids are
    ``arena/<question_id>``; other fields (``required_temperature``, ...) go to metadata."""
    return _load_fastchat_questions(path, name, "arena", "arena-bench question")


def _load_fastchat_questions(path: str | Path, name: str, prefix: str, what: str) -> Dataset:
    path = _existing_file(path, what)
    items = []
    for line, record in _read_jsonl(path, what):
        where = f"{path}:{line}"
        _require(record, ("question_id", "turns"), where, what)
        turns = record["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise ConfigError(
                f"{where}: 'turns' is {turns!r:.80}, not a non-empty list of strings",
                hint="'turns' lists the user turns of the conversation, first one first",
            )
        metadata = {k: v for k, v in record.items() if k not in ("turns", "category", "reference")}
        metadata["later_turns"] = turns[1:]
        references = record.get("reference")
        if references:
            metadata["turn_references"] = references
        items.append(
            DatasetItem(
                id=f"{prefix}/{record['question_id']}",
                prompt=_text(turns[0], where, "turns[0]"),
                reference=references[0] if isinstance(references, list) and references else None,
                category=record.get("category"),
                metadata=MappingProxyType(metadata),
            )
        )
    return Dataset(name, tuple(items), str(path))


# --- AlpacaEval -----------------------------------------------------------------------------


def load_alpaca_eval_instructions(path: str | Path, *, name: str = "alpaca_eval") -> Dataset:
    """AlpacaEval's instructions with their reference outputs: a JSONL file
    (``instructions_and_reference.jsonl``: ``idx, dataset, instruction, generator, output``)
    or the published JSON array (``alpaca_eval.json``, without ``idx``: the position is used).

    The instruction is the prompt, ``output`` (the reference model's answer, AlpacaEval 2's
    GPT-4-turbo) the reference, ``dataset`` the category. Ids are ``alpaca_eval/<idx>``.
    """
    path = _existing_file(path, "AlpacaEval")
    if path.suffix == ".json":
        records = parse_json(
            read_text(path, "AlpacaEval"),
            str(path),
            hint="pass AlpacaEval's alpaca_eval.json (a JSON array) or a JSONL file",
        )
        if not isinstance(records, list):
            raise ConfigError(
                f"{path} holds a JSON {type(records).__name__}, not an array",
                hint="alpaca_eval.json is an array of records",
            )
        numbered = [(f"{path}, record {i}", i, r) for i, r in enumerate(records)]
    else:
        numbered = [
            (f"{path}:{line}", i, r) for i, (line, r) in enumerate(_read_jsonl(path, "AlpacaEval"))
        ]
    items = []
    for where, position, record in numbered:
        if not isinstance(record, dict):
            raise ConfigError(f"{where} is not an object", hint="each record is a JSON object")
        _require(record, ("instruction", "output"), where, "AlpacaEval")
        idx = record.get("idx", position)
        metadata = {"idx": idx}
        if "generator" in record:
            metadata["reference_generator"] = record["generator"]
        items.append(
            DatasetItem(
                id=f"alpaca_eval/{idx}",
                prompt=_text(record["instruction"], where, "instruction"),
                reference=record["output"],
                category=record.get("dataset"),
                metadata=MappingProxyType(metadata),
            )
        )
    return Dataset(name, tuple(items), str(path))


# --- DataFrames and Hugging Face ------------------------------------------------------------


def from_dataframe(
    df: pd.DataFrame,
    *,
    id: str | None = None,
    prompt: str = "prompt",
    reference: str | None = None,
    category: str | None = None,
    difficulty: str | None = None,
    system: str | None = None,
    metadata: Sequence[str] = (),
    name: str = "dataframe",
    source: str | None = None,
) -> Dataset:
    """A dataset from any pandas DataFrame, one item per row. Arguments name columns:
    ``prompt`` (required), ``id`` (default: the row's index label), ``reference``,
    ``category``, ``difficulty``, ``system``, and ``metadata`` (columns copied into each item's
    metadata). Missing values (NaN, None) become None; a missing prompt is an error naming
    the row."""
    wanted = {
        "id": id,
        "prompt": prompt,
        "reference": reference,
        "category": category,
        "difficulty": difficulty,
        "system": system,
    }
    named = [c for c in wanted.values() if c is not None] + list(metadata)
    missing = [c for c in named if c not in df.columns]
    if missing:
        available = ", ".join(map(repr, map(str, df.columns))) or "none"
        raise ConfigError(
            f"the DataFrame has no column(s) {', '.join(map(repr, missing))} "
            f"(available: {available})",
            hint="pass the names of existing columns, e.g. prompt='question'",
        )

    def column(arg: str | None) -> list[Any]:
        if arg is None:
            return [None] * len(df)
        return [_plain(v) for v in df[arg].tolist()]

    ids = column(id) if id is not None else [str(label) for label in df.index]
    prompts = column(prompt)
    references, categories = column(reference), column(category)
    difficulties, systems = column(difficulty), column(system)
    extra = {c: column(c) for c in metadata}
    items = []
    for row, item_id in enumerate(ids):
        text = prompts[row]
        if not isinstance(text, str) or not text:
            raise ConfigError(
                f"row {row} (id {item_id!r}) of column {prompt!r} holds {text!r}, not text",
                hint="drop rows without a prompt first, e.g. df.dropna(subset=[...])",
            )
        if item_id is None:
            raise ConfigError(
                f"row {row} of id column {id!r} is empty", hint="every item needs an id"
            )
        items.append(
            DatasetItem(
                id=str(item_id),
                prompt=text,
                reference=references[row],
                category=None if categories[row] is None else str(categories[row]),
                difficulty=None if difficulties[row] is None else str(difficulties[row]),
                system=systems[row],
                metadata=MappingProxyType({c: values[row] for c, values in extra.items()}),
            )
        )
    return Dataset(name, tuple(items), source)


def _plain(value: Any) -> Any:
    """A DataFrame cell as a plain Python value: NaN/NA to None, numpy scalars unwrapped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", None) == 0:
        return item()
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def load_huggingface(
    path: str,
    split: str = "test",
    *,
    prompt: str,
    reference: str | None = None,
    id: str | None = None,
    category: str | None = None,
    difficulty: str | None = None,
    system: str | None = None,
    metadata: Sequence[str] = (),
    config: str | None = None,
    name: str | None = None,
    **load_kwargs: Any,
) -> Dataset:
    """A Hugging Face dataset (``datasets.load_dataset(path, config, split=split)``) as a
    `Dataset`, columns picked as in `from_dataframe`.

    Needs the optional ``datasets`` package (``pip install datasets``) and, for Hub datasets,
    network access. ``load_kwargs`` go to ``load_dataset`` (``revision``, ``data_files``, ...).
    """
    hf_datasets = _hf_datasets()
    try:
        loaded = hf_datasets.load_dataset(path, config, split=split, **load_kwargs)
    except Exception as exc:  # `datasets` raises many unrelated types (network, hub, files)
        raise ConfigError(
            f"the Hugging Face dataset {path!r} (config {config!r}, split {split!r}) could not "
            f"be loaded: {type(exc).__name__}: {exc}",
            hint="check the dataset name, config and split on huggingface.co/datasets, and "
            "that the network is reachable",
        ) from exc
    return from_dataframe(
        loaded.to_pandas(),
        id=id,
        prompt=prompt,
        reference=reference,
        category=category,
        difficulty=difficulty,
        system=system,
        metadata=metadata,
        name=name or f"{path}:{split}",
        source=f"huggingface:{path}" + (f"/{config}" if config else "") + f":{split}",
    )


def _hf_datasets() -> Any:
    """The Hugging Face ``datasets`` module, or a `ConfigError` saying how to get it."""
    hint = (
        "pip install datasets (Hub datasets also need network access); or download the data "
        "yourself and use from_dataframe"
    )
    try:
        # lazy: optional: Hugging Face `datasets`, only to download a dataset
        import datasets as hf_datasets
    except ImportError as exc:
        raise ConfigError(
            "load_huggingface needs the optional `datasets` package, which is not installed",
            hint=hint,
        ) from exc
    if not hasattr(hf_datasets, "load_dataset"):
        # Run from a folder holding a `datasets/` directory (aigw_lab's own checkout has
        # one), `import datasets` finds that folder as a namespace package instead.
        where = ", ".join(getattr(hf_datasets, "__path__", [])) or "?"
        raise ConfigError(
            "load_huggingface needs the optional `datasets` package, but `import datasets` "
            f"found a folder instead ({where})",
            hint=f"{hint}; if it is installed, run from another working directory",
        )
    return hf_datasets
