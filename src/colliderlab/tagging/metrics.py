"""Evaluation metrics of the jet-tagging task: ROC, AUC, background rejection, mass sculpting.

Conventions (those of the top-tagging comparison, Kasieczka et al., arXiv:1902.09914):

* ``labels`` are 1 for signal and 0 for background; ``scores`` grow with signal-likeness and a
  jet is *tagged* when ``score >= threshold``;
* the signal efficiency eps_S and the background (mistag) efficiency eps_B are the (weighted)
  fractions of signal and background jets that are tagged; the background rejection is 1/eps_B
  (``inf`` where no background jet is tagged);
* ``rej_30`` / ``rej_50`` are 1/eps_B at eps_S = 0.3 / 0.5, with eps_B interpolated linearly
  in eps_S along the ROC curve.

Only numpy is needed for the numbers; the plot helpers import matplotlib and mplhep lazily and
apply the CMS style inside a style context (never globally). Every plot is written atomically.

Functions: :func:`roc_curve`, :func:`auc`, :func:`accuracy`, :func:`rejection_at`,
:func:`threshold_at`, :func:`summarize`, :func:`aggregate`, :func:`results_table`,
:func:`js_divergence`, :func:`mass_sculpting`, :func:`plot_roc`, :func:`plot_scores`,
:func:`plot_mass_sculpting`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from colliderlab.core.errors import ConfigError
from colliderlab.core.files import atomic_path

#: Keys of :func:`summarize`'s result, in table order.
SUMMARY_KEYS = ("auc", "accuracy", "rej_30", "rej_50")
#: Optional per-model entries that :func:`results_table` shows as extra columns.
EXTRA_COLUMNS = {"n_params": "parameters", "train_s_per_epoch": "train s / epoch"}

# Efficiencies computed as cumulative float sums can miss a round target (0.3) by a few ulp.
_EFF_TOL = 1e-12


# --------------------------------------------------------------------------- validation


def _as_1d_float(values: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{name} must be numbers, got {type(values).__name__} that numpy cannot convert to "
            f"float ({err}); pass a 1-D array of floats"
        ) from err
    if arr.ndim != 1:
        hint = (
            f"; for a (n_jets, 2) softmax output pass the signal column, {name}[:, 1]"
            if arr.ndim == 2 and arr.shape[1] == 2
            else ""
        )
        raise ConfigError(f"{name} must be 1-D (one value per jet), got shape {arr.shape}{hint}")
    return arr


def _check_labels(labels: ArrayLike) -> np.ndarray:
    """``labels`` as a bool array (True = signal); both classes must be present."""
    raw = np.asarray(labels)
    if raw.dtype.kind not in "biuf":
        raise ConfigError(
            f"labels must be 0/1 numbers (1 = signal), got dtype {raw.dtype}; "
            "encode the classes as integers 0 and 1"
        )
    if raw.ndim != 1:
        raise ConfigError(f"labels must be 1-D (one label per jet), got shape {raw.shape}")
    if raw.size == 0:
        raise ConfigError("labels is empty; pass at least one signal and one background jet")
    bad = ~((raw == 0) | (raw == 1))
    if bad.any():
        found = np.unique(raw[bad])[:5].tolist()
        raise ConfigError(
            f"labels must be 0 (background) or 1 (signal), found {found} at "
            f"{int(bad.sum())} position(s); map the classes onto 0/1 first"
        )
    lab = raw.astype(bool)
    n_s = int(lab.sum())
    if n_s == 0 or n_s == lab.size:
        missing = "signal (label 1)" if n_s == 0 else "background (label 0)"
        raise ConfigError(
            f"labels contain no {missing} jet ({lab.size} jets in all); efficiencies need both "
            "classes, so evaluate on a sample that has signal and background"
        )
    return lab


def _check_inputs(
    labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated (labels as bool, scores as float64, weights as float64 or None)."""
    lab = _check_labels(labels)
    sc = _as_1d_float(scores, "scores")
    if sc.size != lab.size:
        raise ConfigError(
            f"scores has {sc.size} entries but labels has {lab.size}; pass one score per jet"
        )
    finite = np.isfinite(sc)
    if not finite.all():
        raise ConfigError(
            f"scores must be finite, found {int((~finite).sum())} NaN/inf value(s) (first at "
            f"index {int(np.argmin(finite))}); fix the model output or drop those jets"
        )
    if weights is None:
        return lab, sc, None
    w = _as_1d_float(weights, "weights")
    if w.size != lab.size:
        raise ConfigError(
            f"weights has {w.size} entries but labels has {lab.size}; pass one weight per jet "
            "(or weights=None)"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError(
            "weights must be finite and non-negative; drop or fix the jets with negative or "
            "NaN/inf weights"
        )
    for cls, name in ((True, "signal"), (False, "background")):
        if not w[lab == cls].sum() > 0:
            raise ConfigError(
                f"the {name} weights sum to zero; give at least one {name} jet a positive weight"
            )
    return lab, sc, w


def _check_efficiency(eps_s: float) -> float:
    eps = float(eps_s)
    if not 0.0 < eps <= 1.0:
        raise ConfigError(
            f"eps_s must be a signal efficiency in (0, 1], got {eps_s!r}; e.g. 0.3 or 0.5"
        )
    return eps


# --------------------------------------------------------------------------- core numbers


def _roc(
    lab: np.ndarray, sc: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores (descending) with per-score signal and background weight, eps_b, eps_s.

    The returned eps_b/eps_s/thresholds start with the point (0, 0) at threshold +inf.
    """
    uniq, inverse = np.unique(sc, return_inverse=True)
    weight = np.ones(sc.size) if w is None else w
    ws = np.bincount(inverse, weights=np.where(lab, weight, 0.0), minlength=uniq.size)[::-1]
    wb = np.bincount(inverse, weights=np.where(lab, 0.0, weight), minlength=uniq.size)[::-1]
    cum_s = np.concatenate(([0.0], np.cumsum(ws)))
    cum_b = np.concatenate(([0.0], np.cumsum(wb)))
    eps_s = cum_s / cum_s[-1]
    eps_b = cum_b / cum_b[-1]
    eps_s[-1] = eps_b[-1] = 1.0
    thresholds = np.concatenate(([np.inf], uniq[::-1]))
    return eps_b, eps_s, thresholds, ws, wb


def _auc_ranks(lab: np.ndarray, sc: np.ndarray) -> float:
    """Mann-Whitney U / (n_s n_b) from mid-ranks, in exact integer arithmetic."""
    order = np.argsort(sc, kind="stable")
    s = sc[order]
    n = s.size
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    ends = np.append(starts[1:], n)
    # A tie group at sorted positions starts..ends-1 has mid-rank (starts + 1 + ends) / 2.
    twice_rank = np.empty(n, dtype=np.int64)
    twice_rank[order] = np.repeat(starts + 1 + ends, ends - starts)
    n_s = int(lab.sum())
    n_b = n - n_s
    twice_u = int(twice_rank[lab].sum()) - n_s * (n_s + 1)
    return twice_u / (2 * n_s * n_b)


def _eps_b_at(eps_b: np.ndarray, eps_s: np.ndarray, target: float) -> float:
    """eps_B at eps_S = ``target`` on the ROC polyline (lowest eps_B where eps_S is reached)."""
    k = int(np.searchsorted(eps_s, target - _EFF_TOL, side="left"))
    if k == 0 or eps_s[k] <= target + _EFF_TOL:
        return float(eps_b[k])
    x0, x1, y0, y1 = eps_s[k - 1], eps_s[k], eps_b[k - 1], eps_b[k]
    return float(y0 + (y1 - y0) * (target - x0) / (x1 - x0))


def _rejection(eps_b: float) -> float:
    return math.inf if eps_b <= 0.0 else 1.0 / eps_b


def roc_curve(
    labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background and signal efficiency for every distinct score threshold.

    A jet counts as tagged when ``score >= threshold``. The thresholds are the distinct scores
    in decreasing order, preceded by ``+inf`` (nothing tagged), so the curve runs from (0, 0)
    to (1, 1) with non-decreasing efficiencies. Jets with equal scores enter together, so a tie
    between signal and background gives one diagonal step.

    Parameters
    ----------
    labels:
        1 for signal, 0 for background; both must occur.
    scores:
        One finite score per jet, larger = more signal-like.
    weights:
        Optional non-negative per-jet weights (e.g. pT reweighting); an integer weight k is
        equivalent to repeating the jet k times.

    Returns
    -------
    (eps_b, eps_s, thresholds), three arrays of equal length (distinct scores + 1).
    """
    lab, sc, w = _check_inputs(labels, scores, weights)
    eps_b, eps_s, thresholds, _, _ = _roc(lab, sc, w)
    return eps_b, eps_s, thresholds


def auc(labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Area under the ROC curve: P(signal score > background score), ties counting 1/2.

    Unweighted, this is the Mann-Whitney U statistic of the signal scores divided by
    n_s * n_b, computed from mid-ranks in integer arithmetic (so it equals
    ``scipy.stats.mannwhitneyu(sig, bkg).statistic / (n_s * n_b)`` exactly). With ``weights``
    each (signal, background) pair counts with the product of their weights.
    """
    return _auc(*_check_inputs(labels, scores, weights))


def _auc(lab: np.ndarray, sc: np.ndarray, w: np.ndarray | None) -> float:
    if w is None:
        return _auc_ranks(lab, sc)
    _, _, _, ws, wb = _roc(lab, sc, w)
    above = np.cumsum(ws) - ws  # signal weight strictly above each distinct score
    return float(np.sum(wb * (above + 0.5 * ws)) / (ws.sum() * wb.sum()))


def accuracy(
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float = 0.5,
    weights: ArrayLike | None = None,
) -> float:
    """(Weighted) fraction of jets classified correctly by the cut ``score >= threshold``.

    The default 0.5 suits probabilities (sigmoid or softmax outputs); for raw logits pass
    ``threshold=0.0``.
    """
    return _accuracy(*_check_inputs(labels, scores, weights), threshold)


def _accuracy(lab: np.ndarray, sc: np.ndarray, w: np.ndarray | None, threshold: float) -> float:
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    correct = (sc >= threshold) == lab
    if w is None:
        return float(correct.mean())
    return float(np.sum(w * correct) / np.sum(w))


def rejection_at(
    labels: ArrayLike,
    scores: ArrayLike,
    eps_s: float,
    weights: ArrayLike | None = None,
) -> float:
    """Background rejection 1/eps_B at signal efficiency ``eps_s`` (in (0, 1]).

    eps_B is interpolated linearly in eps_S between the ROC points that bracket ``eps_s``
    (as in arXiv:1902.09914); where ``eps_s`` is reached exactly, the lowest eps_B with that
    efficiency is used. Returns ``inf`` when eps_B = 0 there.
    """
    lab, sc, w = _check_inputs(labels, scores, weights)
    target = _check_efficiency(eps_s)
    eps_b, eps_sig, _, _, _ = _roc(lab, sc, w)
    return _rejection(_eps_b_at(eps_b, eps_sig, target))


def threshold_at(
    labels: ArrayLike,
    scores: ArrayLike,
    eps_s: float,
    weights: ArrayLike | None = None,
) -> float:
    """Score cut whose signal efficiency is ``eps_s`` (in (0, 1]).

    Returns the tightest (largest) threshold t with eps_S(score >= t) >= ``eps_s``, i.e. an
    actual cut; with n_s distinct signal scores its efficiency exceeds ``eps_s`` by less than
    1/n_s. For continuous scores this is the (1 - eps_s) quantile of the signal scores.
    """
    lab, sc, w = _check_inputs(labels, scores, weights)
    target = _check_efficiency(eps_s)
    _, eps_sig, thresholds, _, _ = _roc(lab, sc, w)
    k = int(np.searchsorted(eps_sig, target - _EFF_TOL, side="left"))
    return float(thresholds[k])


def summarize(
    labels: ArrayLike,
    scores: ArrayLike,
    weights: ArrayLike | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """The standard tagging numbers of one trained model on one test set.

    Returns ``{"auc", "accuracy", "rej_30", "rej_50"}``: AUC, accuracy at ``score >=
    threshold``, and background rejection 1/eps_B at eps_S = 0.3 and 0.5.
    """
    lab, sc, w = _check_inputs(labels, scores, weights)
    eps_b, eps_s, _, _, _ = _roc(lab, sc, w)
    return {
        "auc": _auc(lab, sc, w),
        "accuracy": _accuracy(lab, sc, w, threshold),
        "rej_30": _rejection(_eps_b_at(eps_b, eps_s, 0.3)),
        "rej_50": _rejection(_eps_b_at(eps_b, eps_s, 0.5)),
    }


# --------------------------------------------------------------------------- several runs


def aggregate(runs: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Mean and standard deviation of each metric over trainings with different seeds.

    ``runs`` are dicts with the same numeric keys (e.g. from :func:`summarize`, plus optional
    ``n_params`` or ``train_s_per_epoch``). Returns ``{key: (mean, std), ..., "n_runs": n}``;
    the standard deviation uses ddof=1 for two runs or more and is 0 for a single run. A key
    whose values are all equal (including all ``inf``) has std 0; mixing ``inf`` with finite
    values gives mean ``inf`` and std ``nan``.
    """
    if isinstance(runs, Mapping) or len(runs) == 0:
        raise ConfigError(
            "runs must be a non-empty list of metric dicts (one per training seed), got "
            f"{type(runs).__name__} of length {len(runs)}; e.g. [summarize(y, s1), "
            "summarize(y, s2)]"
        )
    keys = [k for k in runs[0] if k != "n_runs"]
    for i, run in enumerate(runs):
        if set(run) - {"n_runs"} != set(keys):
            raise ConfigError(
                f"run {i} has keys {sorted(run)} but run 0 has {sorted(keys)}; every run must "
                "report the same metrics"
            )
    out: dict[str, Any] = {}
    for key in keys:
        try:
            values = np.array([float(run[key]) for run in runs])
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"metric {key!r} must be a number in every run ({err}); remove non-numeric "
                "entries before aggregating"
            ) from err
        if np.isnan(values).any():
            bad = np.flatnonzero(np.isnan(values)).tolist()
            raise ConfigError(f"metric {key!r} is NaN in run(s) {bad}; drop or rerun those runs")
        mean = float(values.mean()) if np.isfinite(values).all() else _mean_with_inf(values)
        if len(values) < 2 or (values == values[0]).all():
            std = 0.0
        elif not np.isfinite(values).all():
            std = math.nan
        else:
            std = float(values.std(ddof=1))
        out[key] = (mean, std)
    out["n_runs"] = len(runs)
    return out


def _mean_with_inf(values: np.ndarray) -> float:
    if (values == np.inf).any() and (values == -np.inf).any():
        return math.nan
    return math.inf if (values == np.inf).any() else -math.inf


def _split(value: Any) -> tuple[float, float | None]:
    if isinstance(value, tuple | list) and len(value) == 2:
        return float(value[0]), float(value[1])
    return float(value), None


def _fmt(mean: float, std: float | None, decimals: int) -> str:
    if math.isinf(mean):
        return "inf" if mean > 0 else "-inf"
    text = f"{mean:.{decimals}f}"
    if std is None:
        return text
    return f"{text} ± {'n/a' if math.isnan(std) else f'{std:.{decimals}f}'}"


def _rej_decimals(mean: float) -> int:
    return 0 if not math.isfinite(mean) or abs(mean) >= 10 else 1


def _cell(row: Mapping[str, Any], key: str, decimals: int | None = None) -> str:
    """``row[key]`` as ``mean ± std`` (``mean`` alone for a single run or a plain value)."""
    mean, std = _split(row[key])
    if int(row.get("n_runs", 2)) < 2:
        std = None
    return _fmt(mean, std, _rej_decimals(mean) if decimals is None else decimals)


def results_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of tagger performance, one row per model.

    ``results`` maps a model name to either the dict of :func:`aggregate` (values shown as
    ``0.934 ± 0.002``, rejections as ``245 ± 12``) or a plain :func:`summarize` dict (values
    only). Columns: model, AUC, accuracy, 1/eps_B at eps_S = 0.3 and 0.5, then ``n_params``
    and ``train_s_per_epoch`` where any model has them, and the number of runs where any model
    was aggregated over more than one. A single aggregated run is shown without ``±``.
    """
    if not results:
        raise ConfigError("results is empty; pass {model name: summarize(...) or aggregate(...)}")
    for name, row in results.items():
        missing = [k for k in SUMMARY_KEYS if k not in row]
        if missing:
            raise ConfigError(
                f"results[{name!r}] lacks {missing}; each model needs the keys of summarize() "
                f"({', '.join(SUMMARY_KEYS)}), e.g. from summarize() or aggregate()"
            )
    extras = [k for k in EXTRA_COLUMNS if any(k in row for row in results.values())]
    show_runs = any(int(row.get("n_runs", 1)) > 1 for row in results.values())
    header = ["model", "AUC", "accuracy", "1/ε_B at ε_S = 0.3", "1/ε_B at ε_S = 0.5"]
    header += [EXTRA_COLUMNS[k] for k in extras] + (["runs"] if show_runs else [])
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|",
    ]
    for name, row in results.items():
        cells = [str(name).replace("|", "\\|"), _cell(row, "auc", 3), _cell(row, "accuracy", 3)]
        cells += [_cell(row, "rej_30"), _cell(row, "rej_50")]
        for key in extras:
            if key not in row:
                cells.append("-")
            elif key == "n_params":
                cells.append(f"{round(_split(row[key])[0]):,}")
            else:
                cells.append(_cell(row, key, 1))
        if show_runs:
            cells.append(str(int(row.get("n_runs", 1))))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- mass sculpting


def js_divergence(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two histograms.

    ``p`` and ``q`` are non-negative bin contents of the same binning; each is normalised to
    unit sum first. 0 means identical shapes, 1 disjoint support.
    """
    pa = _as_1d_float(p, "p")
    qa = _as_1d_float(q, "q")
    if pa.shape != qa.shape:
        raise ConfigError(
            f"p and q must have the same number of bins, got {pa.size} and {qa.size}; "
            "histogram both with the same bins"
        )
    for name, arr in (("p", pa), ("q", qa)):
        if not np.isfinite(arr).all() or (arr < 0).any() or not arr.sum() > 0:
            raise ConfigError(
                f"{name} must be finite, non-negative bin contents with a positive sum; "
                "an empty histogram has no shape to compare"
            )
    pa = pa / pa.sum()
    qa = qa / qa.sum()
    m = 0.5 * (pa + qa)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(min(1.0, max(0.0, 0.5 * kl(pa) + 0.5 * kl(qa))))


def mass_sculpting(
    mass_bkg: ArrayLike,
    scores_bkg: ArrayLike,
    threshold: float,
    bins: int | ArrayLike,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Background jet-mass shape before and after the cut ``score >= threshold``.

    A tagger that learned the jet mass sculpts the QCD mass distribution towards the signal
    mass; this measures by how much. ``bins`` is a bin count (over the range of ``mass_bkg``)
    or the bin edges; jets outside the edges are ignored.

    Returns
    -------
    (hist_all, hist_pass, jsd): the two histograms normalised to unit sum (fractions of the
    jets in range per bin) and the Jensen-Shannon divergence between them (base 2, 0 = no
    sculpting). If no jet in range passes the cut, ``hist_pass`` is all zero and ``jsd`` NaN.
    With few passing jets the divergence is biased upwards by their statistical fluctuations
    (about (bins - 1) / (8 ln 2 n_pass) on average), so compare taggers on equal samples.
    """
    mass = _as_1d_float(mass_bkg, "mass_bkg")
    sc = _as_1d_float(scores_bkg, "scores_bkg")
    if mass.size == 0 or mass.size != sc.size:
        raise ConfigError(
            f"mass_bkg ({mass.size}) and scores_bkg ({sc.size}) must have the same, non-zero "
            "length: one mass and one score per background jet"
        )
    if not np.isfinite(mass).all() or not np.isfinite(sc).all():
        raise ConfigError(
            "mass_bkg and scores_bkg must be finite; drop jets with NaN/inf mass or score first"
        )
    if not np.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    edges = np.histogram_bin_edges(mass, bins=bins)
    h_all = np.histogram(mass, bins=edges)[0].astype(np.float64)
    h_pass = np.histogram(mass[sc >= threshold], bins=edges)[0].astype(np.float64)
    if not h_all.sum() > 0:
        raise ConfigError(
            f"no background jet has its mass inside the bins [{edges[0]}, {edges[-1]}]; "
            "choose bins that cover the mass range"
        )
    h_all /= h_all.sum()
    if not h_pass.sum() > 0:
        return h_all, h_pass, math.nan
    h_pass /= h_pass.sum()
    return h_all, h_pass, js_divergence(h_all, h_pass)


# --------------------------------------------------------------------------- plots


def _cms_style():
    """A style context with mplhep's CMS style (imported lazily)."""
    import matplotlib.style
    import mplhep

    return matplotlib.style.context(mplhep.style.CMS)


def _new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (10, 8)):
    # Figure without pyplot: no global figure registry, no backend switch.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file in the same directory + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=80)
    return path


def _check_named(mapping: Mapping[str, Any], what: str) -> None:
    if not isinstance(mapping, Mapping) or not mapping:
        raise ConfigError(f"{what} must be a non-empty dict {{model name: ...}}")


def plot_roc(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: str | os.PathLike[str]
) -> Path:
    """Background rejection 1/eps_B (log scale) versus signal efficiency eps_S, per model.

    ``curves`` maps a model name to ``(eps_b, eps_s)`` (the first two outputs of
    :func:`roc_curve`; its full 3-tuple is accepted too). Points with eps_B = 0 (infinite
    rejection) cannot be drawn on a log axis and are left out. The dashed line is a random
    classifier (1/eps_B = 1/eps_S). Returns ``path``.
    """
    import matplotlib

    _check_named(curves, "curves")
    with _cms_style():
        fig, axes = _new_figure()
        ax = axes[0, 0]
        grid = np.linspace(0.01, 1.0, 200)
        ax.plot(grid, 1.0 / grid, ls="--", color="grey", label="random")
        # the style's colour cycle is shorter than the model zoo: once it repeats, the line
        # style changes, so that no two models look alike
        colors = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]] or ["k"]
        for i, (name, curve) in enumerate(curves.items()):
            if len(curve) not in (2, 3):
                raise ConfigError(
                    f"curves[{name!r}] must be (eps_b, eps_s), got a sequence of {len(curve)}"
                )
            eps_b = _as_1d_float(curve[0], f"curves[{name!r}] eps_b")
            eps_s = _as_1d_float(curve[1], f"curves[{name!r}] eps_s")
            if eps_b.size != eps_s.size:
                raise ConfigError(
                    f"curves[{name!r}]: eps_b ({eps_b.size}) and eps_s ({eps_s.size}) must "
                    "have the same length"
                )
            keep = (eps_b > 0) & (eps_s > 0)
            ax.plot(
                eps_s[keep],
                1.0 / eps_b[keep],
                lw=2,
                color=colors[i % len(colors)],
                ls=("-", "-.", ":")[(i // len(colors)) % 3],
                label=str(name),
            )
        ax.set_yscale("log")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(r"signal efficiency $\varepsilon_S$")
        ax.set_ylabel(r"background rejection $1/\varepsilon_B$")
        ax.legend(fontsize=16)
        return _save(fig, path)


def plot_scores(
    scores_by_model: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | os.PathLike[str],
    bins: int = 50,
) -> Path:
    """Normalised score distributions of signal and background, one panel per model.

    ``scores_by_model`` maps a model name to ``(labels, scores)``. Returns ``path``.
    """
    _check_named(scores_by_model, "scores_by_model")
    checked = {}
    for name, pair in scores_by_model.items():
        if len(pair) != 2:
            raise ConfigError(
                f"scores_by_model[{name!r}] must be (labels, scores), got a sequence of {len(pair)}"
            )
        checked[name] = _check_inputs(pair[0], pair[1])
    n = len(checked)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    with _cms_style():
        fig, axes = _new_figure(nrows, ncols, size=(9, 7.5))
        for ax, (name, (lab, sc, _)) in zip(axes.flat, checked.items(), strict=False):
            edges = np.histogram_bin_edges(sc, bins=bins)
            ax.hist(sc[~lab], bins=edges, density=True, histtype="step", lw=2, label="background")
            ax.hist(sc[lab], bins=edges, density=True, histtype="step", lw=2, label="signal")
            ax.set_title(str(name), fontsize=18, loc="right")
            ax.set_xlabel("tagger score")
            ax.set_ylabel("a.u.")
            ax.legend(fontsize=14)
        for ax in axes.flat[n:]:
            ax.set_visible(False)
        return _save(fig, path)


def plot_mass_sculpting(
    mass_bkg: ArrayLike,
    curves: Mapping[str, tuple[ArrayLike, float]],
    bins: int | ArrayLike,
    path: str | os.PathLike[str],
    working_point: str = r"$\varepsilon_S = 0.5$",
) -> Path:
    """Background (QCD) jet mass before and after each tagger's cut, normalised to unit area.

    ``curves`` maps a tagger name to ``(scores_bkg, threshold)``, the background jets' scores
    and the cut, typically ``threshold_at(labels, scores, 0.5)``. The legend quotes the
    Jensen-Shannon divergence of :func:`mass_sculpting`. Returns ``path``.
    """
    _check_named(curves, "curves")
    mass = _as_1d_float(mass_bkg, "mass_bkg")
    results = {}
    for name, pair in curves.items():
        if len(pair) != 2:
            raise ConfigError(
                f"curves[{name!r}] must be (scores_bkg, threshold), got a sequence of {len(pair)}"
            )
        results[name] = mass_sculpting(mass, pair[0], float(pair[1]), bins)
    edges = np.histogram_bin_edges(mass, bins=bins)
    widths = np.diff(edges)
    with _cms_style():
        fig, axes = _new_figure()
        ax = axes[0, 0]
        h_all = next(iter(results.values()))[0]
        ax.stairs(h_all / widths, edges, fill=True, color="lightgrey", label="all QCD jets")
        for name, (_, h_pass, jsd) in results.items():
            if math.isnan(jsd):
                ax.plot([], [], label=f"{name}: no jet passes")
                continue
            ax.stairs(h_pass / widths, edges, lw=2, label=f"{name} (JSD = {jsd:.3f})")
        ax.set_xlabel("jet mass $m_J$ [GeV]")
        ax.set_ylabel("fraction of jets / GeV")
        ax.set_title(f"QCD jets after the {working_point} cut", fontsize=18, loc="right")
        ax.legend(fontsize=14)
        return _save(fig, path)
