"""The fused CPU sampling path against the PyTorch path of the same trained models: the
CaloChallenge classifier AUCs and feature separations of both, with several classifier
seeds (the scatter of one AUC), against the same independent reference showers.

    python benchmarks/calosim/fused/fused_vs_pytorch.py REFERENCE_H5 OUT_DIR RUN_DIR... \
        [--seeds 0 1 2] [--paths fused pytorch fused-bfloat16]

Paths: ``fused`` (the compiled kernels, float32), ``pytorch`` (``fused_sampling = False``),
``fused-bfloat16`` (the fused path with ``fused_precision = "bfloat16"``).

Writes OUT_DIR/fused_vs_pytorch.{md,json}. One thread; timing is left to
``colliderlab evaluate calosim``."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from colliderlab.calosim.evaluate import evaluate_models
from colliderlab.calosim.geometry import get_geometry
from colliderlab.calosim.io import read_calochallenge_h5
from colliderlab.calosim.train import load_model

#: path -> (fused_sampling, fused_precision)
PATHS = {
    "fused": (True, "float32"),
    "pytorch": (False, "float32"),
    "fused-bfloat16": (True, "bfloat16"),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("reference")
    p.add_argument("out")
    p.add_argument("runs", nargs="+")
    p.add_argument("--geometry", default="atlas5")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--paths", nargs="+", default=["fused", "pytorch"], choices=list(PATHS))
    args = p.parse_args()
    torch.set_num_threads(1)
    geometry = get_geometry(args.geometry)
    energies, showers = read_calochallenge_h5(args.reference, geometry=geometry)
    rows = []
    for run in args.runs:
        for path in args.paths:
            model = load_model(run)
            model.fused_sampling, model.fused_precision = PATHS[path]
            for seed in args.seeds:
                report = evaluate_models(
                    showers, energies, {Path(run).name: model}, geometry, seed=seed, plot=False
                )
                row = report["rows"][0]
                rows.append(
                    {
                        "model": Path(run).name,
                        "path": path,
                        "seed": seed,
                        **{k: row[k] for k in ("auc_high", "auc_low", "worst_feature")},
                        "worst_separation": row["worst_separation"],
                        "mean_separation": row["mean_separation"],
                    }
                )
                sys.stderr.write(f"{rows[-1]}\n")
    lines = [
        "| model | path | AUC high (seeds) | mean | AUC low (seeds) | mean | mean separation |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in args.runs:
        name = Path(run).name
        for path in args.paths:
            sel = [r for r in rows if r["model"] == name and r["path"] == path]
            hi = [r["auc_high"] for r in sel]
            lo = [r["auc_low"] for r in sel]
            sep = np.mean([r["mean_separation"] for r in sel])
            lines.append(
                f"| {name} | {path} | {' / '.join(f'{a:.3f}' for a in hi)} | {np.mean(hi):.3f} | "
                f"{' / '.join(f'{a:.3f}' for a in lo)} | {np.mean(lo):.3f} | {sep:.4f} |"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fused_vs_pytorch.md").write_text("\n".join(lines) + "\n")
    (out / "fused_vs_pytorch.json").write_text(json.dumps(rows, indent=1))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
