"""Would onnxruntime embed a served prompt cheaper than torch? A probe, not a feature:
onnxruntime and onnx are not dependencies of aigw_lab (run this in a throwaway venv made
with ``--system-site-packages`` and ``pip install onnxruntime onnx``).

Exports the bundled all-MiniLM-L6-v2 (transformer + mean pooling + L2 normalisation) to ONNX
in a temporary folder, quantizes a copy with onnxruntime's dynamic int8 quantization
(per-channel weights), and times one-text embeddings of a seeded sample of GSM8K prompts on
one thread, interleaved, against torch float32 (sentence-transformers) and torch int8
(all-MiniLM-L6-v2-int8): CPU and wall per prompt, and each one's cosine to torch float32.
Shared machine: compare the rows of one run, not runs.

    python bench/bench_onnxruntime_embedder.py [--n 100] [--seed 0] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="shared data folder")
    args = parser.parse_args()
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise SystemExit("needs onnxruntime and onnx (pip install them into a /tmp venv)") from exc
    import torch

    from aigw_lab.cli.policy import load_data
    from aigw_lab.embeddings import INT8_MODEL
    from aigw_lab.policy.learned.features import make_embedder

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    prompts = sorted({i.prompt for i in load_data("routellm/gsm8k", args.data_dir).items})
    prompts = random.Random(args.seed).sample(prompts, min(args.n, len(prompts)))
    fp32, int8 = make_embedder(None), make_embedder(INT8_MODEL)
    st = fp32._load()  # the sentence-transformers model behind the embedder
    tokenizer, names = st.tokenizer, ("input_ids", "attention_mask", "token_type_ids")

    class Pooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids, mask, types):  # noqa: ANN001, ANN201
            out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            weights = mask.unsqueeze(-1).float()
            mean = (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=1)

    with tempfile.TemporaryDirectory() as tmp:
        plain, quantized = Path(tmp) / "minilm.onnx", Path(tmp) / "minilm-int8.onnx"
        sample = tokenizer(["an example"], return_tensors="pt")
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
        torch.onnx.export(
            Pooled(st[0].auto_model.eval()),
            tuple(sample[n] for n in names),
            str(plain),
            input_names=list(names),
            output_names=["vector"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        quantize_dynamic(str(plain), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        sessions = {
            label: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for label, path in (("ort fp32", plain), ("ort int8", quantized))
        }

        def run_ort(session):  # noqa: ANN001, ANN202
            def embed(text: str) -> np.ndarray:
                enc = tokenizer([text], return_tensors="np", truncation=True, max_length=256)
                return session.run(None, {n: enc[n].astype(np.int64) for n in names})[0][0]

            return embed

        runs = {
            "torch fp32": lambda text: fp32.embed([text])[0],
            "torch int8": lambda text: int8.embed([text])[0],
            **{label: run_ort(session) for label, session in sessions.items()},
        }
        for run in runs.values():
            run("warm-up")
        order = list(runs)
        wall = {k: [] for k in order}
        cpu = {k: [] for k in order}
        vectors = {k: [] for k in order}
        for n, prompt in enumerate(prompts):
            for label in order if n % 2 == 0 else order[::-1]:
                w, c = time.perf_counter(), time.process_time()
                vectors[label].append(runs[label](prompt))
                cpu[label].append(time.process_time() - c)
                wall[label].append(time.perf_counter() - w)

    base = np.stack(vectors["torch fp32"])
    print(f"{len(prompts)} GSM8K prompts, one text per call, one thread, interleaved; shared box")
    print(
        f"  {'':11} {'CPU p50':>8} {'CPU mean':>9} {'wall p50':>9} {'CPU/fp32':>9} {'cos min':>8}"
    )
    for label in order:
        cos = (np.stack(vectors[label]) * base).sum(axis=1)
        ratio = statistics.median(cpu[label]) / statistics.median(cpu["torch fp32"])
        print(
            f"  {label:11} {1000 * statistics.median(cpu[label]):9.2f} "
            f"{1000 * statistics.fmean(cpu[label]):9.2f} "
            f"{1000 * statistics.median(wall[label]):9.2f} {ratio:8.2f}x {cos.min():9.4f}"
        )


if __name__ == "__main__":
    main()
