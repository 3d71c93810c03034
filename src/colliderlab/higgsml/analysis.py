"""The HiggsML analysis end to end: train, choose the threshold, AMS, AUC, significance.

:func:`run_analysis` takes a :class:`~colliderlab.higgsml.csvio.HiggsMLData` (colliderlab's
generated dataset or the real challenge file), splits it (:func:`~colliderlab.higgsml.csvio.
split`: the challenge's own sets for the Open Data file), and for each method

1. trains on the training part (validation part for early stopping);
2. chooses the selection threshold that maximises the AMS of the *validation* part among
   those keeping at least :data:`MIN_BACKGROUND` background events;
3. reports on the held-out *test* part: the AMS at that threshold (the challenge's private
   leaderboard score), the weighted AUC, and the expected discovery significance Z0 of a
   binned likelihood of the score (:mod:`colliderlab.higgsml.significance`: signal,
   score bins holding equal numbers (>= 20) of simulated background events, one sample per
   background process with a normalisation uncertainty; the simulation's
   statistical uncertainty is left out: it shrinks with more simulation, not more data);
   the cut-based analysis has two bins, its selected and its rejected events (a control
   region, as the low-score bins are for the classifiers);
4. compares every method with the cut-based one: the luminosity factor the cut-based
   analysis would need to reach the same Z0 without systematics, (Z0 / Z0_cut)^2, and the
   cut-based Z0 with systematics at 1, 10 and 100 times the luminosity (whether more data
   can make up for it at all).

Each method's result (``runs/METHOD/result.json``, test scores in ``scores.npz``) is kept: a
rerun reuses finished methods, so a killed evaluation resumes. Outputs: ``results.md``,
``results.json``, ``ams.png`` (AMS vs selected signal fraction on the test part) and
``scores.png``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab.core.errors import ConfigError
from colliderlab.core.files import write_json
from colliderlab.higgsml.ams import ams_at, ams_curve, best_threshold
from colliderlab.higgsml.csvio import HiggsMLData, split
from colliderlab.higgsml.methods import METHOD_FEATURES, make_method

logger = logging.getLogger(__name__)

DEFAULT_METHODS = ("cuts", "bdt", "dnn", "dnn_low", "ensemble")
LABELS = {
    "cuts": "cut-based",
    "bdt": "BDT",
    "bdt_low": "BDT (low-level)",
    "dnn": "DNN",
    "dnn_low": "DNN (low-level)",
    "dnn_high": "DNN (high-level)",
    "ensemble": "BDT + 3 DNN ensemble",
}
RESULT_VERSION = 4  # 4: BDT and DNN in the canonical frame, new DNN defaults
#: The threshold (and the cut-based selection) must keep at least this many simulated
#: background events: the AMS of a selection with none or one is a statistical accident.
MIN_BACKGROUND = 20


def _digest(data: HiggsMLData, method: str, seed: int, options: dict) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(data.features).tobytes())
    if data.weight is not None:
        h.update(np.ascontiguousarray(data.weight).tobytes())
    h.update(json.dumps([method, seed, options, RESULT_VERSION], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _weights(part: HiggsMLData) -> np.ndarray:
    if part.weight is None:
        raise ConfigError(
            "the data have no Weight column (a Kaggle test.csv?); the analysis needs "
            "labelled, weighted events (training.csv or the Open Data file)."
        )
    return part.weight


def _selection(
    method: str,
    s_val: np.ndarray,
    s_test: np.ndarray,
    val: HiggsMLData,
    test: HiggsMLData,
    b_reg: float,
    smooth: int,
) -> dict[str, Any]:
    """Threshold (on the validation part), AMS and AUC of one method's scores."""
    from colliderlab.tagging.metrics import auc

    if method == "cuts":
        threshold = 0.5
    else:
        threshold = float(
            best_threshold(
                val.label,
                s_val,
                sample_weight=val.weight,
                b_reg=b_reg,
                smooth=smooth,
                min_background=MIN_BACKGROUND,
            )
        )
    return {
        "threshold": threshold,
        "smooth": smooth,
        "ams_val": float(ams_at(val.label, s_val, threshold, sample_weight=val.weight)),
        "ams_test": float(ams_at(test.label, s_test, threshold, sample_weight=test.weight)),
        "auc_test": float(auc(test.label, s_test, test.weight)),
    }


def run_method(
    method: str,
    parts: tuple[HiggsMLData, HiggsMLData, HiggsMLData],
    out: Path,
    *,
    seed: int = 1,
    b_reg: float = 10.0,
    smooth: int = 0,
    digest: str = "",
) -> dict[str, Any]:
    """Train and score one method (reusing a finished run in ``out``).

    ``smooth``: see :func:`~colliderlab.higgsml.ams.best_threshold`; a finished training is
    re-thresholded from its stored scores when only ``smooth`` changed."""
    from colliderlab.core.files import atomic_path

    train, val, test = parts
    result_path = out / "result.json"
    if result_path.is_file():
        try:
            old = json.loads(result_path.read_text())
            if old.get("digest") == digest and (out / "scores.npz").is_file():
                if old.get("smooth", 0) == smooth:
                    return old
                scores = np.load(out / "scores.npz")
                old.update(
                    _selection(method, scores["val"], scores["test"], val, test, b_reg, smooth)
                )
                write_json(result_path, old)
                return old
        except (OSError, ValueError, KeyError):
            pass
    out.mkdir(parents=True, exist_ok=True)
    model = make_method(method, seed=seed)
    t0 = time.perf_counter()
    kwargs = {}
    if method.startswith("dnn"):
        # the checkpoint is named by the digest of data + configuration: a checkpoint of
        # another dataset or version is never resumed
        kwargs["checkpoint"] = out / f"checkpoint-{digest or 'nodigest'}.pt"
    model.fit(
        train.features,
        train.label,
        _weights(train),
        val.features,
        val.label,
        _weights(val),
        **kwargs,
    )
    train_s = time.perf_counter() - t0
    s_val = model.predict_score(val.features)
    s_test = model.predict_score(test.features)
    result = {
        "method": method,
        "digest": digest,
        "features": METHOD_FEATURES.get(method, ""),
        **_selection(method, s_val, s_test, val, test, b_reg, smooth),
        "train_s": train_s,
        "n_train": len(train),
    }
    if method == "cuts":
        result["selection"] = model.describe()
        result["ams_train"] = float(model.train_ams_)
    with atomic_path(out / "scores.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, test=s_test, val=s_val)
    write_json(result_path, result)
    return result


def train_method(
    data: HiggsMLData,
    method: str,
    output: str | os.PathLike[str],
    *,
    seed: int = 1,
    b_reg: float = 10.0,
    smooth: int = 0,
) -> dict[str, Any]:
    """Train, threshold and score one method on ``data`` (as :func:`run_analysis` does for
    each of its methods), reusing a finished run in ``output``."""
    make_method(method)
    data = prepare(data)
    digest = _digest(data, method, seed, {"b_reg": b_reg})
    return run_method(
        method,
        split(data, seed=seed),
        Path(output),
        seed=seed,
        b_reg=b_reg,
        smooth=smooth,
        digest=digest,
    )


def _hists(method: str, scores: np.ndarray, test: HiggsMLData, threshold: float, n_bins: int):
    from colliderlab.higgsml.significance import histograms

    procs = test.process if test.process is not None else None
    if method == "cuts":
        # two bins: the selected events and the rejected ones (a control region that, like
        # the low-score bins of the classifiers, constrains the background normalisations)
        return histograms(scores, test.label, test.weight, procs, bins=[-0.5, 0.5, 1.5])
    # the whole score distribution, in bins of equal numbers of simulated background events
    # (at least MIN_BACKGROUND each, at most n_bins bins): no bin's background estimate
    # rests on one or two heavily weighted simulated events
    bkg = np.sort(scores[test.label == 0])
    k = int(min(n_bins, max(1, len(bkg) // MIN_BACKGROUND)))
    inner = bkg[(np.arange(1, k) * len(bkg)) // k] if k > 1 else np.array([])
    edges = np.unique(np.r_[scores.min(), inner, np.nextafter(scores.max(), np.inf)])
    return histograms(scores, test.label, test.weight, procs, bins=edges)


def prepare(data: HiggsMLData, *, weight_scale: float = 1.0) -> HiggsMLData:
    """The data as the analysis splits them: a slice of the Open Data file that lacks one of
    the KaggleSets t, b, v is split at random instead, and the weights are multiplied by
    ``weight_scale``."""
    if data.kaggle_set is not None and not {"t", "b", "v"} <= set(np.unique(data.kaggle_set)):
        # a slice of the Open Data file (e.g. only KaggleSet t): split it at random instead
        logger.warning("the data do not hold all of KaggleSet t, b, v: using a random split")
        data = dataclasses.replace(data, kaggle_set=None, kaggle_weight=None)
    if weight_scale != 1.0:
        if not weight_scale > 0:
            raise ConfigError(f"weight_scale must be positive; got {weight_scale}.")
        data = dataclasses.replace(
            data,
            weight=None if data.weight is None else data.weight * weight_scale,
            kaggle_weight=None if data.kaggle_weight is None else data.kaggle_weight * weight_scale,
        )
    return data


def run_analysis(
    data: HiggsMLData,
    output: str | os.PathLike[str],
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    seed: int = 1,
    b_reg: float = 10.0,
    smooth: int = 0,
    train_fraction: float = 1.0,
    n_bins: int = 10,
    bkg_norm_unc: float = 0.1,
    weight_scale: float = 1.0,
    progress: bool | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Run every method; write and return the results (see the module docstring).

    ``weight_scale`` multiplies every weight: a slice of the challenge file (whose weights
    are normalised to the whole file) needs (rows of the file) / (rows of the slice).
    ``smooth = k`` chooses each threshold on the running mean of the validation AMS curve
    over k neighbouring thresholds (:func:`~colliderlab.higgsml.ams.best_threshold`; 0: its
    highest point); finished trainings are re-thresholded from their stored scores.
    ``train_fraction`` < 1 trains on a random subset of the training part (the same subset
    for every method; validation and test parts unchanged): the learning curve of a method.
    """
    from pyhf.exceptions import FailedMinimization
    from tqdm.auto import tqdm

    for m in methods:
        make_method(m)  # an unknown name fails before any training
    out = Path(output)
    data = prepare(data, weight_scale=weight_scale)
    parts = split(data, seed=seed)
    if not 0.0 < train_fraction <= 1.0:
        raise ConfigError(f"train_fraction must be in (0, 1]; got {train_fraction}.")
    if train_fraction < 1.0:
        n_train = len(parts[0])
        keep = np.random.default_rng(seed).permutation(n_train)[: round(train_fraction * n_train)]
        parts = (parts[0].subset(np.sort(keep)), parts[1], parts[2])
    for name, part in zip(("training", "validation", "test"), parts, strict=True):
        if len(part) == 0 or part.label is None or not (part.label == 1).any():
            raise ConfigError(
                f"the {name} part has no signal events; use a larger dataset "
                "(colliderlab dataset higgsml --events N)."
            )
    test = parts[2]
    results: dict[str, Any] = {}
    scores: dict[str, np.ndarray] = {}
    options: dict[str, Any] = {"b_reg": b_reg}
    if train_fraction < 1.0:  # (absent otherwise: finished evaluations keep their digest)
        options["train_fraction"] = train_fraction
    bar = tqdm(methods, desc="higgsml", unit="method", disable=progress is False)
    for m in bar:
        bar.set_postfix_str(m)
        digest = _digest(data, m, seed, options)
        results[m] = run_method(
            m, parts, out / "runs" / m, seed=seed, b_reg=b_reg, smooth=smooth, digest=digest
        )
        scores[m] = np.load(out / "runs" / m / "scores.npz")["test"]
    analyses = {
        LABELS.get(m, m): _hists(m, scores[m], test, results[m]["threshold"], n_bins)
        for m in methods
    }
    reference = LABELS["cuts"] if "cuts" in methods else LABELS.get(methods[0], methods[0])
    z_syst = _significances(analyses, bkg_norm_unc)
    z_stat = _significances(analyses, 0.0)
    ref_stat = z_stat[reference]
    for m in methods:
        name = LABELS.get(m, m)
        results[m]["z0_stat"] = z_stat[name]
        results[m]["z0"] = z_syst[name]
        # Asimov significance without systematics grows as sqrt(L): the cut-based analysis
        # needs (Z / Z_ref)^2 times the data to match
        results[m]["lumi_factor"] = (z_stat[name] / ref_stat) ** 2 if ref_stat > 0 else None
    # with the normalisation uncertainties: does more data help the reference at all?
    saturation = {}
    try:
        from colliderlab.higgsml.significance import discovery_significance

        for k in (1.0, 10.0, 100.0):
            saturation[k] = discovery_significance(
                analyses[reference], bkg_norm_unc=bkg_norm_unc, mc_stat=False, lumi_scale=k
            )
    except (ConfigError, FailedMinimization) as err:
        logger.warning("reference significance vs luminosity: %s", err)
    summary = _summary(results, test)
    report = {
        "n_events": {
            "train": len(parts[0]),
            "val": len(parts[1]),
            "test": len(parts[2]),
        },
        "expected_test": summary,
        "b_reg": b_reg,
        "bkg_norm_unc": bkg_norm_unc,
        "reference_z0_vs_lumi": {str(k): v for k, v in saturation.items()},
        "results": results,
    }
    write_json(out / "results.json", report)
    (out / "results.md").write_text(results_table(results, summary, saturation))
    if plots:
        _plots(out, methods, scores, test, b_reg)
        plot_score_stacks(
            {LABELS.get(m, m): analyses[LABELS.get(m, m)] for m in methods if m != "cuts"},
            out / "scores.png",
        )
    return report


def _significances(analyses: dict[str, dict], bkg_norm_unc: float) -> dict[str, float]:
    """Expected Z0 of each analysis (NaN where the fit cannot be made)."""
    from pyhf.exceptions import FailedMinimization

    from colliderlab.higgsml.significance import discovery_significance

    out = {}
    for name, h in analyses.items():
        try:
            out[name] = discovery_significance(h, bkg_norm_unc=bkg_norm_unc, mc_stat=False)
        except (ConfigError, FailedMinimization) as err:
            logger.warning("%s: no discovery significance: %s", name, err)
            out[name] = float("nan")
    return out


def _summary(results, test: HiggsMLData) -> dict[str, float]:
    w = test.weight
    return {
        "signal": float(w[test.label == 1].sum()),
        "background": float(w[test.label == 0].sum()),
    }


def results_table(
    results: dict[str, dict[str, Any]],
    summary: dict[str, float],
    saturation: dict[float, float] | None = None,
) -> str:
    """The Markdown table of an analysis."""
    lines = [
        f"Expected events before selection: signal {summary['signal']:.1f}, "
        f"background {summary['background']:.1f}.",
        "",
        "| method | features | AUC (test) | AMS (val) | AMS (test) | AMS / cut-based | "
        "Z0 stat. only | Z0 (pyhf) | data cut-based needs | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = results.get("cuts", {}).get("ams_test")
    for m, r in results.items():
        ratio = f"{r['ams_test'] / ref:.2f}" if ref else "-"
        lumi = r.get("lumi_factor")
        lumi_s = "-" if lumi is None else ("inf" if not np.isfinite(lumi) else f"x{lumi:.2f}")
        lines.append(
            f"| {LABELS.get(m, m)} | {r['features']} | {r['auc_test']:.4f} | {r['ams_val']:.3f} "
            f"| {r['ams_test']:.3f} | {ratio} | {r.get('z0_stat', float('nan')):.2f} "
            f"| {r.get('z0', float('nan')):.2f} | {lumi_s} "
            f"| {r['train_s']:.1f} |"
        )
    lines += [
        "",
        "AMS: threshold chosen on the validation part (>= 20 simulated background events "
        "kept), reported on the test part. Z0: expected discovery significance of a binned "
        "likelihood of the test scores (pyhf; the cut-based analysis: its selected and "
        "rejected events), with a normalisation uncertainty per background (Z0 (pyhf)) or without "
        "(stat. only); the simulation's own statistics are left out (they shrink with more "
        "simulation, not with more data). Data cut-based needs: the factor by which the "
        "cut-based analysis' luminosity must grow to match the method's Z0 without "
        "systematics, (Z0 / Z0_cut)^2.",
    ]
    if saturation:
        lines += [
            "",
            "Cut-based Z0 (pyhf, with the normalisation uncertainties) at "
            + ", ".join(f"{k:g}x: {v:.2f}" for k, v in saturation.items())
            + " the luminosity.",
        ]
    if "cuts" in results and "selection" in results["cuts"]:
        lines += ["", f"Cut-based selection: {results['cuts']['selection']}."]
    return "\n".join(lines) + "\n"


def _plots(out: Path, methods, scores, test: HiggsMLData, b_reg: float) -> None:
    from colliderlab.higgsml.ams import plot_ams_curve

    curves = {}
    ws = test.weight[test.label == 1].sum()
    for m in methods:
        if m == "cuts":
            continue
        _thr, a, s, _ = ams_curve(test.label, scores[m], sample_weight=test.weight, b_reg=b_reg)
        # only selections with >= MIN_BACKGROUND simulated background events (as for the
        # threshold): where fewer are left, the AMS measures the simulation's statistics
        _, _, _, n_b = ams_curve(test.label, scores[m], sample_weight=np.ones(len(test)))
        a = np.where(n_b >= MIN_BACKGROUND, a, np.nan)
        curves[LABELS.get(m, m)] = (s / ws, a)
    if curves:
        plot_ams_curve(curves, out / "ams.png", xlabel="signal efficiency")


def plot_score_stacks(analyses: dict[str, dict], path: Path) -> Path | None:
    """For each method, the expected events per score bin (the likelihood's input, in bins of
    equal numbers of simulated background events): backgrounds stacked by process, the
    signal as a line x10."""
    if not analyses:
        return None
    import matplotlib.style
    import mplhep
    from matplotlib.figure import Figure

    from colliderlab.core.files import atomic_path

    n = len(analyses)
    ncol = min(n, 3)
    nrow = (n + ncol - 1) // ncol
    with matplotlib.style.context(mplhep.style.CMS):
        fig = Figure(figsize=(8 * ncol, 7 * nrow))
        axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
        for ax, (name, h) in zip(axes, analyses.items(), strict=False):
            nb = len(h["signal"])
            x = np.arange(nb + 1)
            base = np.zeros(nb)
            # stacked by hand: each process keeps its colour and legend entry in every panel
            for i, (proc, v) in enumerate(h["backgrounds"].items()):
                top = base + np.asarray(v, dtype=np.float64)
                ax.stairs(top, x, baseline=base, fill=True, color=f"C{i}", label=proc)
                base = top
            ax.stairs(10 * np.asarray(h["signal"]), x, color="k", lw=2, label="H -> tau tau x10")
            ax.set_yscale("log")
            ax.set_title(name, fontsize=20)
            ax.set_xlabel("score bin (equal simulated background)")
            ax.set_ylabel("expected events")
            ax.legend(
                fontsize=14, loc="lower left", frameon=True, facecolor="white", framealpha=0.9
            )
        for ax in axes[n:]:
            ax.set_visible(False)
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    return path
