"""``colliderlab bench higgsml``: the HiggsML pipeline at the challenge's size.

A file in the challenge format with ``n_events`` rows (250,000, the size of the Kaggle
training file) is made by resampling the rows of a source file (colliderlab's generated
dataset or a real challenge file) with replacement, each resampled row a new event
(``EventId``) with the class totals of the weights kept. On it, in one process:

* the reading time of :func:`~colliderlab.higgsml.csvio.read_higgsml_csv`;
* the training time of the BDT (xgboost, 2 threads, its default 200 rounds of depth 6,
  no early stopping) on all ``n_events`` rows, as on the Kaggle training file;
* the whole pipeline (read, split, train the BDT, choose the threshold on the validation
  part, AMS on the test part): the wall time of :func:`~colliderlab.higgsml.analysis.
  run_analysis` with ``methods=["bdt"]`` (training on half the rows, early stopping).

Resampled rows repeat, so the scores of this file are no physics result: only times are
reported.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def resample(data, n_events: int, seed: int = 1):
    """``n_events`` rows drawn with replacement; weights rescaled per class to the source's
    totals. KaggleSet is dropped (the analysis then splits at random)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), n_events)
    out = data.subset(idx)
    w = out.weight.copy()
    for cls in (0, 1):
        m = out.label == cls
        if m.any():
            w[m] *= data.weight[data.label == cls].sum() / w[m].sum()
    return dataclasses.replace(
        out,
        event_id=np.arange(n_events, dtype=np.int64) + 100000,
        weight=w,
        kaggle_set=None,
        kaggle_weight=None,
    )


def bench_higgsml(source: str | Path, n_events: int = 250_000, seed: int = 1) -> dict[str, Any]:
    from colliderlab.core.env import versions
    from colliderlab.higgsml.analysis import run_analysis
    from colliderlab.higgsml.csvio import read_higgsml_csv, write_higgsml_csv
    from colliderlab.higgsml.methods import BDT

    src = read_higgsml_csv(source)
    big = resample(src, n_events, seed)
    with tempfile.TemporaryDirectory(prefix="colliderlab-bench-higgsml-") as tmp:
        path = Path(tmp) / "higgsml.csv"
        write_higgsml_csv(path, big, variant="kaggle")
        t0 = time.perf_counter()
        data = read_higgsml_csv(path)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        bdt = BDT(seed=seed).fit(data.features, data.label, data.weight)
        bdt_s = time.perf_counter() - t0
        rounds = int(bdt.booster_.num_boosted_rounds())
        t0 = time.perf_counter()
        run_analysis(
            read_higgsml_csv(path), Path(tmp) / "run", methods=["bdt"], seed=seed, plots=False
        )
        pipeline_s = time.perf_counter() - t0
    return {
        "source": str(source),
        "n_events": n_events,
        "read_s": read_s,
        "bdt_train_s": bdt_s,
        "bdt_rounds": rounds,
        "pipeline_s": pipeline_s,
        "threads": 2,
        "versions": versions(),
    }
