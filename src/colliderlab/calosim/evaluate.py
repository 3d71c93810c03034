"""Evaluation of shower generators with the CaloChallenge protocol (arXiv:2410.21611).

* :func:`classifier_auc`: a neural network is trained to tell reference from generated
  showers; the area under its ROC curve on held-out showers is the metric (0.5: the
  classifier cannot tell them apart; 1: it always can). ``level="high"`` uses the high-level
  features of :mod:`colliderlab.calosim.features`, ``level="low"`` the voxels.
* :func:`time_per_shower`: generation time per shower on the CPU, after a warm-up.
* :func:`evaluate_models`: both AUCs, the separation power of every high-level feature (the
  worst one is reported), timing, training time and size of several models; a Markdown and a
  JSON table and a plot of the feature histograms.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab.calosim.features import (
    Geometry,
    check_showers,
    feature_table,
    high_level_features,
    plot_features,
    worst_feature,
)
from colliderlab.core.errors import ConfigError
from colliderlab.core.files import write_atomic, write_json

LEVELS = ("high", "low")


def roc_auc(y_true: Any, y_score: Any, *, sample_weight: Any = None) -> float:
    """Area under the ROC curve: the probability that a random positive (``y_true`` = 1)
    scores above a random negative, ties counting one half (weighted by ``sample_weight``)."""
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    w = np.ones_like(s) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if y.shape != s.shape or w.shape != s.shape:
        raise ConfigError(
            f"roc_auc: y_true {y.shape}, y_score {s.shape} and sample_weight {w.shape} must "
            "have the same length."
        )
    _, group = np.unique(s, return_inverse=True)
    pos = np.bincount(group, weights=w * y)
    neg = np.bincount(group, weights=w * ~y)
    if pos.sum() <= 0 or neg.sum() <= 0:
        raise ConfigError("roc_auc needs both positive and negative examples.")
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum()))


def classifier_inputs(
    showers: Any, energies: Any, level: str = "high", geometry: Geometry | None = None
) -> np.ndarray:
    """Inputs of the classifier, (n, k) float32, not yet standardised.

    ``"high"``: the high-level features (layer energies as log(1 + E/MeV)) and log(E_inc/MeV);
    ``"low"``: voxel energies divided by the incident energy and log(E_inc/MeV).
    """
    x, e = check_showers(showers, energies)
    if level == "high":
        if geometry is None:
            raise ConfigError("level='high' needs the geometry (for the high-level features).")
        feats = high_level_features(x, e, geometry)
        cols = [np.log1p(v) if k.startswith("E_layer") else v for k, v in feats.items()]
        cols.append(np.log(e))
        return np.stack(cols, axis=1).astype(np.float32)
    if level == "low":
        return np.concatenate([x / e[:, None], np.log(e)[:, None]], axis=1).astype(np.float32)
    raise ConfigError(f"level must be one of {LEVELS}; got {level!r}.")


def _torch_seed(seed: int | np.random.Generator) -> tuple[np.random.Generator, int]:
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng, int(rng.integers(2**31 - 1))


def classifier_auc(
    ref_showers: Any,
    ref_E: Any,
    gen_showers: Any,
    gen_E: Any,
    *,
    level: str = "high",
    geometry: Geometry | None = None,
    seed: int | np.random.Generator = 0,
    hidden: Sequence[int] = (256, 256, 256),
    dropout: float = 0.2,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> float:
    """AUC of a DNN trained to separate reference from generated showers (CaloChallenge).

    Both samples are cut to the size of the smaller (random subsets), labelled 0 (reference)
    and 1 (generated), shuffled and split into train / validation / test (``fractions``).
    Inputs (:func:`classifier_inputs`) are standardised with the training mean and std. An
    MLP (``hidden``, ReLU, dropout) is trained with Adam on binary cross-entropy; the epoch
    with the lowest validation loss is kept and its AUC on the test part returned.

    Args:
        ref_showers, gen_showers: (n, n_voxels) deposited energies, MeV.
        ref_E, gen_E: (n,) incident energies, MeV.
        level: ``"high"`` (features, needs ``geometry``) or ``"low"`` (voxels).
        seed: subsets, split, initial weights and batch order.

    Returns:
        AUC in [0, 1]; 0.5 when the generated showers cannot be told from the reference.
    """
    import torch

    if level not in LEVELS:
        raise ConfigError(f"level must be one of {LEVELS}; got {level!r}.")
    if len(fractions) != 3 or min(fractions) <= 0:
        raise ConfigError(f"fractions must be three positive numbers; got {fractions}.")
    ref, _ = check_showers(ref_showers, ref_E, what="reference showers")
    gen, _ = check_showers(gen_showers, gen_E, ref.shape[1], what="generated showers")
    rng, torch_seed = _torch_seed(seed)
    a = classifier_inputs(ref, ref_E, level, geometry)
    b = classifier_inputs(gen, gen_E, level, geometry)
    n = min(len(a), len(b))
    if n < 10:
        raise ConfigError(f"need at least 10 showers in each sample; got {n}.")
    a, b = a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(n, np.float32), np.ones(n, np.float32)])
    perm = rng.permutation(2 * n)
    x, y = x[perm], y[perm]
    f = np.asarray(fractions, dtype=np.float64) / sum(fractions)
    n_train, n_val = int(f[0] * 2 * n), int(f[1] * 2 * n)
    tr, va, te = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
    mean, std = x[tr].mean(0), x[tr].std(0)
    std = np.where(std > 1e-12, std, 1.0)
    x = ((x - mean) / std).astype(np.float32)
    if len(y[te]) == 0 or len(np.unique(y[te])) < 2:
        raise ConfigError("the test part is too small for an AUC; give more showers.")

    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(torch_seed)
        layers: list[torch.nn.Module] = []
        width = x.shape[1]
        for h in hidden:
            layers += [torch.nn.Linear(width, int(h)), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
            width = int(h)
        net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        order = torch.Generator().manual_seed(torch_seed)
        best, best_loss = copy.deepcopy(net.state_dict()), math.inf
        for _ in range(int(epochs)):
            net.train()
            p = torch.randperm(n_train, generator=order)
            for i in range(0, n_train, batch_size):
                idx = p[i : i + batch_size]
                opt.zero_grad()
                loss = loss_fn(net(xt[tr][idx]).squeeze(1), yt[tr][idx])
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(net(xt[va]).squeeze(1), yt[va])) if n_val else 0.0
            if val_loss < best_loss:
                best_loss, best = val_loss, copy.deepcopy(net.state_dict())
        net.load_state_dict(best)
        net.eval()
        with torch.no_grad():
            score = net(xt[te]).squeeze(1).numpy()
    return roc_auc(y[te], score)


def time_per_shower(
    model, energies: Any, batch_size: int = 1, *, warmup: int = 1, repeats: int = 1
) -> float:
    """Seconds per generated shower: ``model.sample`` on ``energies`` (MeV) in batches.

    Runs on the CPU threads torch is configured for, under ``torch.no_grad`` and in eval mode,
    after ``warmup`` untimed batches; the best of ``repeats`` passes over ``energies`` (on a
    shared machine the fastest pass is the least disturbed one)."""
    import torch

    e = torch.as_tensor(np.asarray(energies), dtype=torch.float32).reshape(-1)
    if len(e) == 0 or int(batch_size) < 1 or int(repeats) < 1:
        raise ConfigError("time_per_shower needs energies, batch_size >= 1 and repeats >= 1.")
    bs = int(batch_size)
    was_training = model.training
    model.eval()
    best = math.inf
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model.sample(e[:bs], seed=0)
            for _ in range(int(repeats)):
                start = time.perf_counter()
                for i in range(0, len(e), bs):
                    model.sample(e[i : i + bs])
                best = min(best, time.perf_counter() - start)
    finally:
        model.train(was_training)
    return best / len(e)


def generate(model, energies: Any, *, batch_size: int = 1000, seed: int = 0) -> np.ndarray:
    """Showers (n, n_voxels) float32 in MeV of ``model`` at ``energies`` (n,) MeV."""
    import torch

    e = torch.as_tensor(np.asarray(energies), dtype=torch.float32).reshape(-1)
    model.eval()
    with torch.no_grad():
        parts = [
            model.sample(e[i : i + batch_size], seed=seed + k).numpy()
            for k, i in enumerate(range(0, len(e), batch_size))
        ]
    return np.concatenate(parts).astype(np.float32)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as a Markdown table with the given columns."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _precision_spec(spec: str | os.PathLike[str]) -> tuple[str | os.PathLike[str], str | None]:
    """A training directory, or ``DIR@PRECISION`` -> (directory, ``fused_precision`` or None).
    A path that exists as it is is a directory even with an ``@``."""
    from colliderlab.calosim.models import FUSED_PRECISIONS

    text = os.fspath(spec)
    if "@" not in text or Path(text).exists():
        return spec, None
    path, precision = text.rsplit("@", 1)
    if precision not in FUSED_PRECISIONS:
        raise ConfigError(
            f"model {text!r}: after '@' give a sampling precision, one of {FUSED_PRECISIONS}; "
            f"got {precision!r}."
        )
    return path, precision


def load_model_spec(spec: str | os.PathLike[str]) -> tuple[Any, str | os.PathLike[str]]:
    """The model of a training directory or of ``DIR@PRECISION`` (its ``fused_precision``
    set), and the directory."""
    from colliderlab.calosim.train import load_model

    path, precision = _precision_spec(spec)
    model = load_model(path)
    if precision is not None:
        model.fused_precision = precision
    return model, path


def evaluate_models(
    ref_showers: Any,
    ref_E: Any,
    models: Mapping[str, Any],
    geometry: Geometry,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    large_batch: int = 1000,
    extra_batches: Sequence[int] = (),
    n_timing: int = 20,
    timing_repeats: int = 3,
    classifier: Mapping[str, Any] | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Compare generators against reference showers with the CaloChallenge metrics.

    Each model generates one shower per reference incident energy. Per model: classifier AUC
    on high- and low-level inputs, separation power of every high-level feature (worst and
    mean), seconds per shower at batch size 1 (``n_timing`` showers), at ``large_batch`` and at
    each of ``extra_batches`` (``s_per_shower_batchN``; over min(n, 2 x batch) showers, the
    best of ``timing_repeats`` passes),
    training time and parameter count (from ``result.json`` when the model is given as a
    training directory).

    Args:
        ref_showers: (n, n_voxels) MeV; ref_E: (n,) MeV.
        models: ``{name: training directory or model}``; ``DIR@bfloat16`` (a directory and a
            value of ``CaloModel.fused_precision``) samples that model at that precision.
        geometry: of the showers (features).
        out_dir: if given, ``evaluation.json``, ``evaluation.md`` and (``plot``)
            ``features.png`` are written there.
        classifier: keyword arguments of :func:`classifier_auc` (epochs, hidden...).

    Returns:
        ``{"rows": [...], "features": {name: feature table}, "markdown": str}``.
    """
    from colliderlab.calosim.models import count_parameters
    from colliderlab.calosim.train import RESULT

    ref, e = check_showers(ref_showers, ref_E, int(geometry.n_voxels), what="reference showers")
    if not models:
        raise ConfigError("models is empty; give {name: training directory or model}.")
    ref_feats = high_level_features(ref, e, geometry)
    rows, tables, gen_feats = [], {}, {}
    for name, spec in models.items():
        train_s = None
        if isinstance(spec, str | os.PathLike):
            model, spec = load_model_spec(spec)
            result_path = Path(spec) / RESULT
            if result_path.is_file():
                train_s = json.loads(result_path.read_text()).get("train_s")
        else:
            model = spec
        gen = generate(model, e, batch_size=large_batch, seed=seed)
        gen_feats[name] = high_level_features(gen, e, geometry)
        table = feature_table(ref_feats, gen_feats[name])
        worst, worst_sep = worst_feature(table)
        kwargs = dict(classifier or {})
        aucs = {
            level: classifier_auc(
                ref, e, gen, e, level=level, geometry=geometry, seed=seed, **kwargs
            )
            for level in LEVELS
        }
        tables[name] = table
        rows.append(
            {
                "model": name,
                "auc_high": aucs["high"],
                "auc_low": aucs["low"],
                "worst_feature": worst,
                "worst_separation": worst_sep,
                "mean_separation": float(np.mean([r["separation_power"] for r in table])),
                "s_per_shower_batch1": time_per_shower(
                    model, e[:n_timing], 1, repeats=timing_repeats
                ),
                "s_per_shower_large_batch": time_per_shower(
                    model, e[: 2 * max(large_batch, 1)], large_batch, repeats=timing_repeats
                ),
                "large_batch": int(min(large_batch, len(e))),
                **{
                    f"s_per_shower_batch{int(b)}": time_per_shower(
                        model, e[: 2 * int(b)], int(b), repeats=timing_repeats
                    )
                    for b in extra_batches
                },
                "train_s": train_s,
                "n_params": count_parameters(model),
            }
        )
    columns = [
        "model",
        "auc_high",
        "auc_low",
        "worst_feature",
        "worst_separation",
        "mean_separation",
        "s_per_shower_batch1",
        "s_per_shower_large_batch",
        *(f"s_per_shower_batch{int(b)}" for b in extra_batches),
        "train_s",
        "n_params",
    ]
    md = markdown_table(rows, columns)
    report = {"rows": rows, "features": tables, "markdown": md}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(
            out / "evaluation.json",
            {"rows": rows, "features": tables, "n_reference": len(e), "seed": seed},
        )
        write_atomic(out / "evaluation.md", lambda p: p.write_text(md))
        if plot:
            plot_features(ref_feats, gen_feats, out / "features.png")
    return report
