"""Compare taggers on one dataset: several trainings per model, a table and the plots.

``evaluate(path, models, seeds, out)`` trains every model ``seeds`` times (different seeds;
finished trainings are reused, interrupted ones resume from their checkpoint), then writes

* ``results.md`` / ``results.json``: AUC, accuracy, 1/eps_B at eps_S = 0.3 and 0.5 as
  mean +- standard deviation over the seeds, parameter count and time per epoch;
* ``roc.png``, ``scores.png`` and ``mass_sculpting.png`` (background jet mass after the cut at
  eps_S = 0.5, per tagger) from the first seed of each model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab.core.files import write_atomic, write_json
from colliderlab.tagging.datasets import load_dataset
from colliderlab.tagging.jets import jets_meta
from colliderlab.tagging.train import TrainConfig, train


def run_dir(out: Path, model: str, seed: int) -> Path:
    return out / "runs" / f"{model}-seed{seed}"


def train_or_reuse(config: TrainConfig, data, out: Path, dataset: str, progress=None) -> dict:
    """The result of ``config`` in ``out``: reused if finished with the same configuration."""
    done = out / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        if result.get("config") == json.loads(json.dumps(dataclasses.asdict(config))):
            return result
    return train(config, data, out, dataset=dataset, progress=progress)


def evaluate(
    path: str | os.PathLike[str],
    models: list[str],
    out: str | os.PathLike[str],
    *,
    seeds: int = 3,
    epochs: int = 40,
    batch_size: int = 128,
    lr: float = 3e-3,
    max_particles: int = 48,
    progress: bool | None = None,
    reuse_only: bool = False,
) -> dict[str, Any]:
    """See the module docstring. ``reuse_only``: train nothing, tabulate the finished runs
    (a model with fewer than ``seeds`` finished trainings gets the statistics of those)."""
    from colliderlab.tagging.metrics import (
        aggregate,
        plot_mass_sculpting,
        plot_roc,
        plot_scores,
        results_table,
        roc_curve,
        threshold_at,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = jets_meta(path)
    dataset = meta.get("dataset", "top")
    data = load_dataset(path)
    table: dict[str, dict] = {}
    first: dict[str, Any] = {}
    for model in models:
        runs = []
        for k in range(seeds):
            config = TrainConfig(
                model=model,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                max_particles=max_particles,
                seed=k + 1,
            ).validate()
            rdir = run_dir(out, model, k + 1)
            if reuse_only and not (rdir / "result.json").is_file():
                continue
            result = train_or_reuse(config, data, rdir, dataset, progress)
            runs.append(result)
        if not runs:
            continue
        agg = aggregate([r["metrics"] for r in runs])
        for key in ("n_params", "train_s_per_epoch"):
            if key in runs[0]:
                agg[key] = runs[0][key]
        table[model] = agg
        s = np.load(run_dir(out, model, 1) / "scores.npz")
        first[model] = (s["label"], s["score"], s["mass"])
    curves = {}
    for m, (label, score, _) in first.items():
        eps_b, eps_s, _ = roc_curve(label, score)
        curves[m] = (eps_b, eps_s)
    plot_roc(curves, out / "roc.png")
    plot_scores({m: (v[0], v[1]) for m, v in first.items()}, out / "scores.png")
    label0, _, mass0 = next(iter(first.values()))
    bkg = label0 == 0
    sculpt = {m: (v[1][bkg], threshold_at(v[0], v[1], 0.5)) for m, v in first.items()}
    plot_mass_sculpting(mass0[bkg], sculpt, np.linspace(0, 300, 31), out / "mass_sculpting.png")
    md = (
        f"Dataset `{dataset}` ({meta.get('description', '')}): {meta.get('n_jets')} jets, "
        f"seed {meta.get('seed')}; {seeds} trainings per model, {epochs} epochs, "
        f"{max_particles} particles.\n\n" + results_table(table)
    )
    write_atomic(out / "results.md", lambda p: p.write_text(md))
    write_json(out / "results.json", {"dataset": meta, "results": _jsonable(table)})
    return table


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj
