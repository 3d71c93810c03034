"""The approximate median significance (AMS), the metric of the HiggsML challenge.

A classifier selects the events with ``score >= threshold``; s and b are the sums of the
weights of the selected signal and background events, i.e. the expected numbers of events at
the luminosity the weights are normalised to. The challenge ranked submissions by

    AMS = sqrt(2 ((s + b + b_reg) ln(1 + s / (b + b_reg)) - s)),   b_reg = 10

(Adam-Bourdarios et al., "Learning to discover: the Higgs boson machine learning challenge",
2014, eq. 7): the median discovery significance of a counting experiment, with a regularising
background b_reg that keeps tiny selections from winning by fluctuation. For s << b + b_reg
it tends to s / sqrt(b + b_reg). The AMS depends on the absolute normalisation of the
weights, which is why ``sample_weight`` is required everywhere here (see
:func:`colliderlab.higgsml.csvio.split` for weights that keep the full-luminosity scale).

Conventions as in :mod:`colliderlab.tagging.metrics`: ``labels`` are 1 for signal and 0 for
background, ``scores`` grow with signal-likeness. Only numpy is needed for the numbers;
:func:`plot_ams_curve` imports matplotlib and mplhep lazily, applies the style inside a style
context (never globally) and writes the plot atomically.

Functions: :func:`ams`, :func:`ams_curve`, :func:`best_threshold`, :func:`ams_at`,
:func:`plot_ams_curve`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from colliderlab.core.errors import ConfigError
from colliderlab.core.files import atomic_path

__all__ = ["ams", "ams_at", "ams_curve", "best_threshold", "plot_ams_curve"]

#: The regularisation term of the challenge (in expected events).
B_REG = 10.0
# Below this s / (b + b_reg) the closed form loses digits to cancellation; a series is used.
_SERIES_BELOW = 1e-3


# --------------------------------------------------------------------------- the formula


def ams(s: ArrayLike, b: ArrayLike, *, b_reg: float = B_REG) -> Any:
    """AMS = sqrt(2 ((s + b + b_reg) ln(1 + s / (b + b_reg)) - s)), element-wise.

    ``s`` and ``b`` are the expected numbers of selected signal and background events (sums
    of weights), non-negative; they broadcast against each other. Returns a float for scalar
    inputs, else an array. For s / (b + b_reg) < 1e-3 the bracket is evaluated by its Taylor
    series, which avoids the cancellation of the closed form (the result is the same number
    to double precision). With ``b + b_reg = 0`` the AMS is ``inf`` for s > 0 and 0 for s = 0.
    """
    s_arr = _non_negative(s, "s")
    b_arr = _non_negative(b, "b")
    reg = _check_b_reg(b_reg)
    s_arr, b_arr = np.broadcast_arrays(s_arr, b_arr)
    big_b = b_arr + reg
    with np.errstate(divide="ignore", invalid="ignore"):
        x = s_arr / big_b
        # (s + B) ln(1 + s/B) - s = B ((1 + x) ln(1 + x) - x) = B sum_k>=2 (-x)^k / (k (k-1))
        closed = (1.0 + x) * np.log1p(x) - x
        series = x * x * (1 / 2 - x * (1 / 6 - x * (1 / 12 - x * (1 / 20 - x / 30))))
        bracket = np.where(x < _SERIES_BELOW, series, closed)
        value = np.sqrt(np.maximum(2.0 * big_b * bracket, 0.0))
    value = np.where(big_b > 0, value, np.where(s_arr > 0, np.inf, 0.0))
    return float(value) if value.ndim == 0 else value


def _non_negative(values: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be numbers (expected events), got {values!r}") from err
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise ConfigError(
            f"{name} must be finite, non-negative expected event counts (sums of weights), "
            f"found {arr[bad].ravel()[:3].tolist()}"
        )
    return arr


def _check_b_reg(b_reg: float) -> float:
    reg = float(b_reg)
    if not (np.isfinite(reg) and reg >= 0):
        raise ConfigError(
            f"b_reg must be a finite number >= 0 (the challenge used 10), got {b_reg!r}"
        )
    return reg


# --------------------------------------------------------------------------- validation


def _check_inputs(
    labels: ArrayLike, scores: ArrayLike, sample_weight: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels as bool, scores as float64, weights as float64), checked."""
    raw = np.asarray(labels)
    if raw.ndim != 1 or raw.size == 0 or raw.dtype.kind not in "biuf":
        raise ConfigError(
            f"labels must be a non-empty 1-D array of 0/1 numbers (1 = signal), got dtype "
            f"{raw.dtype} and shape {raw.shape}"
        )
    bad = ~((raw == 0) | (raw == 1))
    if bad.any():
        raise ConfigError(
            f"labels must be 0 (background) or 1 (signal), found {np.unique(raw[bad])[:5]} at "
            f"{int(bad.sum())} position(s); map the classes onto 0/1 first"
        )
    arrays = []
    for name, values in (("scores", scores), ("sample_weight", sample_weight)):
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{name} must be a 1-D array of numbers ({err})") from err
        if arr.shape != raw.shape:
            raise ConfigError(
                f"{name} has shape {arr.shape} but labels has {raw.shape}; pass one value per event"
            )
        arrays.append(arr)
    sc, w = arrays
    nan = np.isnan(sc)
    if nan.any():
        raise ConfigError(
            f"scores contain {int(nan.sum())} NaN value(s) (first at index {int(np.argmax(nan))});"
            " fix the model output or drop those events"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        i = int(np.argmax(~np.isfinite(w) | (w < 0)))
        raise ConfigError(
            f"sample_weight must be finite and non-negative, found {w[i]!r} at index {i}; the "
            "AMS needs the physical event weights (e.g. HiggsMLData.weight)"
        )
    return raw.astype(bool), sc, w


# --------------------------------------------------------------------------- curves


def _cumulative(
    lab: np.ndarray, sc: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores (descending) and the s, b selected by ``score >= each of them``."""
    uniq, inverse = np.unique(sc, return_inverse=True)
    ws = np.bincount(inverse, weights=np.where(lab, w, 0.0), minlength=uniq.size)[::-1]
    wb = np.bincount(inverse, weights=np.where(lab, 0.0, w), minlength=uniq.size)[::-1]
    return uniq[::-1], np.cumsum(ws), np.cumsum(wb)


def ams_curve(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    sample_weight: ArrayLike,
    b_reg: float = B_REG,
    n_points: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The AMS of the selection ``score >= threshold`` at every distinct score.

    Sorting once and summing cumulatively, this costs O(n log n) for n events. Events with
    equal scores enter together.

    Returns
    -------
    (thresholds, ams, s, b): four arrays of equal length, thresholds in decreasing order (so
    s and b, the selected signal and background weights, grow along the arrays). The
    weighted fraction of events selected is ``(s + b) / (s[-1] + b[-1])``.
    ``n_points``, if given, keeps at most that many points evenly spaced along the arrays
    (always the first and the last), for plotting.
    """
    lab, sc, w = _check_inputs(labels, scores, sample_weight)
    reg = _check_b_reg(b_reg)
    thresholds, s, b = _cumulative(lab, sc, w)
    values = ams(s, b, b_reg=reg)
    if n_points is not None:
        if int(n_points) != n_points or n_points < 2:
            raise ConfigError(f"n_points must be an integer >= 2 or None, got {n_points!r}")
        if thresholds.size > n_points:
            keep = np.unique(np.linspace(0, thresholds.size - 1, int(n_points)).round()).astype(int)
            thresholds, values, s, b = thresholds[keep], values[keep], s[keep], b[keep]
    return thresholds, values, s, b


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over ``window`` neighbouring points centred on each (fewer at the ends)."""
    if window <= 1:
        return values
    before = window // 2
    after = window - 1 - before
    idx = np.arange(values.size)
    lo = np.maximum(idx - before, 0)
    hi = np.minimum(idx + after + 1, values.size)
    total = np.concatenate(([0.0], np.cumsum(values)))
    return (total[hi] - total[lo]) / (hi - lo)


def best_threshold(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    sample_weight: ArrayLike,
    b_reg: float = B_REG,
    smooth: int = 0,
    min_background: int = 0,
) -> float:
    """The score threshold whose selection ``score >= threshold`` maximises the AMS.

    ``min_background = k`` only considers selections that keep at least k (unweighted)
    background events: with simulated backgrounds of large weights, the AMS of a selection
    that keeps none or one of them measures the simulation's statistics, not the analysis.

    With ``smooth = k > 1`` the maximum is taken of the running mean of the AMS curve over k
    neighbouring thresholds (centred; fewer points at the ends of the curve): the AMS of one
    threshold fluctuates with the few signal and background events at the edge of the
    selection, and the challenge's winners chose their cut on such a smoothed curve rather than
    on its highest spike. ``smooth = 0`` or 1 takes the plain maximum. Ties go to the highest
    threshold (the tightest selection).
    """
    if isinstance(smooth, bool) or int(smooth) != smooth or smooth < 0:
        raise ConfigError(
            f"smooth must be an integer >= 0 (the number of neighbouring thresholds averaged), "
            f"got {smooth!r}"
        )
    thresholds, values, _, _ = ams_curve(labels, scores, sample_weight=sample_weight, b_reg=b_reg)
    values = _running_mean(values, int(smooth))
    if min_background > 0:
        ones = np.ones(len(np.asarray(scores)))
        _, _, _, n_b = ams_curve(labels, scores, sample_weight=ones, b_reg=b_reg)
        enough = n_b >= min_background
        if not enough.any():
            raise ConfigError(
                f"no selection keeps {min_background} background events (there are "
                f"{int(n_b[-1])}); lower min_background or use more simulated background"
            )
        values = np.where(enough, values, -np.inf)
    return float(thresholds[int(np.argmax(values))])


def ams_at(
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    *,
    sample_weight: ArrayLike,
    b_reg: float = B_REG,
) -> float:
    """The AMS of the selection ``score >= threshold``."""
    lab, sc, w = _check_inputs(labels, scores, sample_weight)
    if np.isnan(threshold):
        raise ConfigError("threshold is NaN; pass a number, e.g. from best_threshold()")
    selected = sc >= threshold
    s = float(np.sum(w[selected & lab]))
    b = float(np.sum(w[selected & ~lab]))
    return float(ams(s, b, b_reg=b_reg))


# --------------------------------------------------------------------------- plot


def plot_ams_curve(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | os.PathLike[str],
    *,
    xlabel: str = "selected fraction of events",
) -> Path:
    """AMS versus a selection variable, one line per model; the legend quotes each maximum.

    ``curves`` maps a model name to ``(x, ams)``: ``x`` is either the threshold itself (then
    pass ``xlabel="threshold"``) or the selected fraction ``(s + b) / (s[-1] + b[-1])`` from
    :func:`ams_curve`, which puts models with different score scales on one axis. Written
    atomically; returns ``path``.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ConfigError("curves must be a non-empty dict {model name: (x, ams)}")
    checked = {}
    for name, curve in curves.items():
        if len(curve) != 2:
            raise ConfigError(f"curves[{name!r}] must be (x, ams), got a sequence of {len(curve)}")
        x = np.asarray(curve[0], dtype=np.float64)
        y = np.asarray(curve[1], dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ConfigError(
                f"curves[{name!r}]: x {x.shape} and ams {y.shape} must be 1-D, non-empty and of "
                "the same length"
            )
        checked[name] = (x, y)
    import matplotlib.style
    import mplhep
    from matplotlib.figure import Figure

    with matplotlib.style.context(mplhep.style.CMS):
        # A Figure without pyplot: no global figure registry, no backend switch.
        fig = Figure(figsize=(10, 8))
        ax = fig.subplots()
        for name, (x, y) in checked.items():
            ax.plot(x, y, lw=2, label=f"{name} (max {np.nanmax(y):.3f})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("AMS")
        ax.legend(fontsize=16)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=80)
    return path
