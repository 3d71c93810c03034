"""The substructure BDT with fewer observables, on a built `top` dataset.

The BDT of `colliderlab evaluate tagging` (the same xgboost settings, early stopping on the
validation split, seeds 1-3) trained on subsets of its 13 jet observables: which of them make
it hard to beat. Prints a Markdown table (mean ± standard deviation over the three seeds; the
rejections are the means).

    python benchmarks/tagging_top_32k/bdt_observables.py data32k/top/top-32000-seed1.h5
"""

from __future__ import annotations

import sys

import numpy as np


def main(path: str) -> None:
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score, roc_curve

    from colliderlab.tagging.datasets import load_dataset
    from colliderlab.tagging.train import _substructure, fit_bdt

    d = load_dataset(path)
    train, val, test = d["train"], d["val"], d["test"]
    every, _ = _substructure(train)
    unsafe = ("n_constituents", "ptd")  # not infrared and collinear safe
    tau = ["tau_1", "tau_2", "tau_3", "tau_21", "tau_32"]
    subsets = [
        ("all (the BDT of the table)", every),
        ("IRC-safe: without n_constituents, ptd", [k for k in every if k not in unsafe]),
        ("pt, mass, msoftdrop, tau_1-3, tau_21, tau_32", ["pt", "mass", "msoftdrop", *tau]),
        ("msoftdrop, tau_32", ["msoftdrop", "tau_32"]),
    ]

    def rejection(y, s, eff):
        fpr, tpr, _ = roc_curve(y, s)
        return 1.0 / max(float(np.interp(eff, tpr, fpr)), 1e-9)

    out = sys.stdout.write
    out("| observables | n | AUC | 1/eps_B at eps_S = 0.3 | 1/eps_B at eps_S = 0.5 |\n")
    out("|---|---:|---:|---:|---:|\n")
    for name, keys in subsets:

        def x(jets, keys=keys):
            return np.stack([jets.jet[k] for k in keys], axis=1).astype(np.float32)

        aucs, r3, r5 = [], [], []
        for seed in (1, 2, 3):
            booster = fit_bdt(
                xgb.DMatrix(x(train), label=train.label),
                xgb.DMatrix(x(val), label=val.label),
                seed,
                nthread=1,
            )
            s = booster.predict(
                xgb.DMatrix(x(test)), iteration_range=(0, booster.best_iteration + 1)
            )
            aucs.append(roc_auc_score(test.label, s))
            r3.append(rejection(test.label, s, 0.3))
            r5.append(rejection(test.label, s, 0.5))
        out(
            f"| {name} | {len(keys)} | {np.mean(aucs):.4f} ± {np.std(aucs):.4f} | "
            f"{np.mean(r3):.0f} | {np.mean(r5):.0f} |\n"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
