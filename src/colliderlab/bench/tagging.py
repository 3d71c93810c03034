"""``colliderlab bench tagging``: inference throughput of every deep tagger on the CPU,
PyTorch eager vs ONNX Runtime, at batch 1 and a large batch, and the parameter count.

Both runtimes get the same inputs and the same number of threads (torch's), in the same
process, alternating, so the ratio is measured side by side. The ONNX output is checked
against PyTorch (largest absolute difference of the logits).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rate(fn, n_jets: int, min_time: float) -> float:
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and calls >= 3:
            return calls * n_jets / elapsed


def bench_tagging(
    models: list[str] | None = None,
    n_particles: int = 64,
    batches: tuple[int, ...] = (1, 1024),
    min_time: float = 1.0,
) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from colliderlab.core.env import versions
    from colliderlab.core.registry import lookup, names
    from colliderlab.tagging.models import count_parameters, example_inputs, export_onnx

    models = models or names("tagger")
    threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            model = lookup("tagger", name)().eval()
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, path, n_particles)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            row: dict[str, Any] = {"model": name, "n_params": count_parameters(model)}
            for batch in batches:
                inputs = example_inputs(model, batch=batch, n=n_particles)
                feed = {k: v.numpy() for k, v in zip(model.inputs, inputs, strict=True)}
                with torch.inference_mode():
                    ref = model(*inputs).numpy()
                    eager = _rate(lambda m=model, x=inputs: m(*x), batch, min_time)
                onnx_out = session.run(["logit"], feed)[0]
                rate = _rate(lambda s=session, f=feed: s.run(["logit"], f), batch, min_time)
                row[f"batch_{batch}"] = {
                    "torch_jets_per_s": eager,
                    "onnx_jets_per_s": rate,
                    "onnx_over_torch": rate / eager,
                    "max_abs_diff": float(np.max(np.abs(onnx_out - ref))),
                }
            rows.append(row)
    return {
        "n_particles": n_particles,
        "threads": threads,
        "results": rows,
        "versions": {**versions(), "onnxruntime": ort.__version__, "torch": torch.__version__},
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| model | parameters | batch | PyTorch eager jets/s | ONNX Runtime jets/s "
        "| ONNX / eager | max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        for key, v in r.items():
            if key.startswith("batch_"):
                lines.append(
                    f"| {r['model']} | {r['n_params']:,} | {key[6:]} "
                    f"| {v['torch_jets_per_s']:,.0f} "
                    f"| {v['onnx_jets_per_s']:,.0f} | **{v['onnx_over_torch']:.1f}** "
                    f"| {v['max_abs_diff']:.1e} |"
                )
    return "\n".join(lines) + "\n"
