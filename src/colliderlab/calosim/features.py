"""High-level shower observables and the separation power of the CaloChallenge evaluation.

The observables are those of the Fast Calorimeter Simulation Challenge 2022 (Krause et al.,
arXiv:2410.21611, section 4), computed per shower:

=============================  =============================================================
name                           definition
=============================  =============================================================
``E_total_over_incident``      sum of all voxel energies / incident energy (dimensionless)
``E_layer_{l}``                energy deposited in layer ``l`` (MeV)
``centre_x_layer_{l}``         energy-weighted mean of the voxel centres' x in layer ``l``
``centre_y_layer_{l}``         the same for y
``width_x_layer_{l}``          energy-weighted standard deviation of x in layer ``l``
``width_y_layer_{l}``          the same for y
``sparsity_layer_{l}``         fraction of the voxels of layer ``l`` with non-zero energy
=============================  =============================================================

Centres and widths are in the unit of the geometry's voxel centres (mm for the CaloChallenge
geometries); in a layer without energy they are 0. Layers are numbered by their position in
``geometry.layer_slices`` (0, 1, ...), not by the calorimeter layer id.

The separation power of two histograms ``h1``, ``h2`` normalised to unit sum is
``0.5 * sum((h1 - h2)**2 / (h1 + h2))``: 0 for identical, 1 for disjoint distributions (the
triangular discriminator used by CaloChallenge). The binning comes from quantiles of the
reference sample, with an underflow and an overflow bin, so that generated values outside the
reference range count as a difference instead of being dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from colliderlab.core.errors import ConfigError
from colliderlab.core.files import atomic_path

#: Kinds of per-layer features, in the order they appear in :func:`high_level_features`.
LAYER_FEATURES = ("E", "centre_x", "centre_y", "width_x", "width_y", "sparsity")


class Geometry(Protocol):
    """What the features need of a calorimeter geometry (``calosim.geometry.CaloGeometry``)."""

    n_voxels: int
    layer_slices: Sequence[slice]

    def voxel_centres(self) -> Any:
        """Centres of every voxel: an object with arrays ``x`` and ``y`` (n_voxels,), or (x, y)
        or (r, alpha) as two arrays (n_voxels,) or one (n_voxels, 2)."""


def layer_sizes(geometry: Geometry) -> tuple[int, ...]:
    """Number of voxels of each layer: the ``layer_sizes`` hyperparameter of the models.

    The layers must tile the flat voxel axis in order (layer 0 first, no gaps).
    """
    sizes, start = [], 0
    for i, sl in enumerate(geometry.layer_slices):
        lo, hi, step = sl.indices(int(geometry.n_voxels))
        if lo != start or step != 1 or hi <= lo:
            raise ConfigError(
                f"geometry.layer_slices[{i}] is {sl}; expected consecutive slices that tile the "
                f"{geometry.n_voxels} voxels in order (this one should start at {start})."
            )
        sizes.append(hi - lo)
        start = hi
    if start != geometry.n_voxels:
        raise ConfigError(
            f"geometry.layer_slices cover {start} voxels, but geometry.n_voxels is "
            f"{geometry.n_voxels}."
        )
    return tuple(sizes)


def voxel_xy(geometry: Geometry, coordinates: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Cartesian centres (x, y) of the voxels, arrays (n_voxels,), from ``voxel_centres()``.

    A result with fields ``x`` and ``y`` (:class:`colliderlab.calosim.geometry.VoxelCentres`)
    is used as it is. Otherwise ``coordinates`` says what ``geometry.voxel_centres()`` returns
    (two arrays or one (n_voxels, 2) array): ``"xy"`` (x, y), ``"polar"``
    (r, alpha) with alpha in rad, converted with x = r cos(alpha), y = r sin(alpha), or
    ``"auto"``: the geometry's attribute ``centre_coordinates`` if it has one, otherwise polar
    when the first coordinate is never negative and the second lies in [-pi, 2 pi] (a
    cylindrical geometry), else cartesian. Pass it explicitly if a geometry is ambiguous.
    """
    raw = geometry.voxel_centres()
    if hasattr(raw, "x") and hasattr(raw, "y"):  # calosim.geometry.VoxelCentres
        a, b = raw.x, raw.y
        coordinates = "xy" if coordinates == "auto" else coordinates
    elif isinstance(raw, np.ndarray) and raw.ndim == 2 and raw.shape[1] == 2:
        a, b = raw[:, 0], raw[:, 1]
    else:
        try:
            a, b = raw
        except (TypeError, ValueError):
            raise ConfigError(
                "geometry.voxel_centres() must return (x, y) or (r, alpha): two arrays of "
                "length n_voxels or an array (n_voxels, 2)."
            ) from None
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    n = int(geometry.n_voxels)
    if a.shape != (n,) or b.shape != (n,):
        raise ConfigError(
            f"geometry.voxel_centres() returned arrays of shapes {a.shape} and {b.shape}; "
            f"expected ({n},) each (one centre per voxel)."
        )
    if coordinates == "auto":
        coordinates = getattr(geometry, "centre_coordinates", None) or (
            "polar" if a.min() >= 0 and b.min() >= -np.pi and b.max() <= 2 * np.pi else "xy"
        )
    if coordinates == "polar":
        return a * np.cos(b), a * np.sin(b)
    if coordinates == "xy":
        return a, b
    raise ConfigError(f"coordinates must be 'auto', 'xy' or 'polar'; got {coordinates!r}.")


def check_showers(
    showers: Any, incident: Any, n_voxels: int | None = None, what: str = "showers"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate (showers (n, n_voxels) MeV, incident (n,) MeV); return them as float arrays."""
    x = np.asarray(showers)
    e = np.asarray(incident).reshape(-1) if np.ndim(incident) == 2 else np.asarray(incident)
    if x.ndim != 2:
        raise ConfigError(f"{what} must be a 2-D array (n, n_voxels); got shape {x.shape}.")
    if n_voxels is not None and x.shape[1] != n_voxels:
        raise ConfigError(
            f"{what} have {x.shape[1]} voxels, expected {n_voxels} (the geometry / model); "
            "use showers of the same geometry."
        )
    if e.shape != (x.shape[0],):
        raise ConfigError(
            f"the incident energies of the {what} must have shape ({x.shape[0]},) (one per "
            f"shower); got {e.shape}."
        )
    if not np.isfinite(x).all() or (x < 0).any():
        raise ConfigError(f"{what} must hold finite, non-negative energies (MeV).")
    if not np.isfinite(e).all() or (e <= 0).any():
        raise ConfigError(f"the incident energies of the {what} must be finite and > 0 (MeV).")
    return x, e


def high_level_features(
    showers: Any, incident: Any, geometry: Geometry, *, coordinates: str = "auto"
) -> dict[str, np.ndarray]:
    """The CaloChallenge high-level features of each shower (table in the module docstring).

    Args:
        showers: (n, n_voxels) deposited energies in MeV.
        incident: (n,) incident energies in MeV.
        geometry: ``n_voxels``, ``layer_slices`` and ``voxel_centres()`` (see :func:`voxel_xy`).
        coordinates: what ``voxel_centres()`` returns (:func:`voxel_xy`).

    Returns:
        ``{name: array (n,) float64}``, ``E_total_over_incident`` first, then for each kind of
        :data:`LAYER_FEATURES` the layers in order.
    """
    x, e = check_showers(showers, incident, int(geometry.n_voxels))
    x = x.astype(np.float64)
    vx, vy = voxel_xy(geometry, coordinates)
    layer_sizes(geometry)  # checks the slices
    out: dict[str, np.ndarray] = {"E_total_over_incident": x.sum(1) / e}
    per_layer: dict[str, list[np.ndarray]] = {k: [] for k in LAYER_FEATURES}
    for sl in geometry.layer_slices:
        d = x[:, sl]
        energy = d.sum(1)
        safe = np.where(energy > 0, energy, 1.0)
        for kind, pos in (("x", vx[sl]), ("y", vy[sl])):
            mean = d @ pos / safe
            var = d @ (pos * pos) / safe - mean**2
            per_layer[f"centre_{kind}"].append(np.where(energy > 0, mean, 0.0))
            per_layer[f"width_{kind}"].append(
                np.where(energy > 0, np.sqrt(np.clip(var, 0.0, None)), 0.0)
            )
        per_layer["E"].append(energy)
        per_layer["sparsity"].append((d > 0).mean(1))
    for kind in LAYER_FEATURES:
        for layer, values in enumerate(per_layer[kind]):
            out[f"{kind}_layer_{layer}"] = values
    return out


# --------------------------------------------------------------------------------------------
# Separation power
# --------------------------------------------------------------------------------------------


def quantile_edges(ref: Any, bins: int = 30) -> np.ndarray:
    """Distinct bin edges at ``bins + 1`` equally spaced quantiles of ``ref``."""
    ref = np.asarray(ref, dtype=np.float64).ravel()
    if ref.size == 0:
        raise ConfigError("the reference sample is empty; separation power needs values.")
    if int(bins) < 1:
        raise ConfigError(f"bins must be >= 1; got {bins}.")
    return np.unique(np.quantile(ref, np.linspace(0.0, 1.0, int(bins) + 1)))


def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Unit-sum histogram with bins: underflow, [e0, e1), ..., [e_{m-1}, e_m), {e_m}, overflow.

    The bin of exactly the last edge keeps point masses at the reference maximum (a feature that
    is often exactly 1 or 0) apart from the overflow."""
    m = len(edges) - 1
    idx = np.searchsorted(edges, values, side="right")  # 0 .. m+1
    idx = np.where(values > edges[-1], m + 2, idx)
    counts = np.bincount(idx, minlength=m + 3).astype(np.float64)
    return counts / counts.sum()


def separation_power(ref: Any, gen: Any, bins: int | Sequence[float] = 30) -> float:
    """CaloChallenge separation power ``0.5 * sum((h1 - h2)^2 / (h1 + h2))`` in [0, 1].

    Args:
        ref: reference values (any shape, flattened).
        gen: generated values.
        bins: number of quantile bins of ``ref`` (:func:`quantile_edges`) or explicit edges;
            an underflow and an overflow bin are added either way.

    Returns:
        0 for identical histograms, 1 for disjoint ones.
    """
    ref = np.asarray(ref, dtype=np.float64).ravel()
    gen = np.asarray(gen, dtype=np.float64).ravel()
    if gen.size == 0:
        raise ConfigError("the generated sample is empty; separation power needs values.")
    if not (np.isfinite(ref).all() and np.isfinite(gen).all()):
        raise ConfigError("separation_power: the samples hold NaN or inf values.")
    if np.ndim(bins) == 0:
        edges = quantile_edges(ref, int(bins))  # type: ignore[arg-type]
    else:
        edges = np.unique(np.asarray(bins, dtype=np.float64))
        if edges.size < 1:
            raise ConfigError("bins: give at least one bin edge.")
    h1, h2 = _histogram(ref, edges), _histogram(gen, edges)
    total = h1 + h2
    nonzero = total > 0
    return float(0.5 * np.sum((h1[nonzero] - h2[nonzero]) ** 2 / total[nonzero]))


def feature_table(
    ref_feats: Mapping[str, Any], gen_feats: Mapping[str, Any], bins: int = 30
) -> list[dict[str, Any]]:
    """One row per feature of ``ref_feats``: separation power and the two means.

    Returns ``[{"feature", "separation_power", "ref_mean", "gen_mean"}, ...]`` in the order of
    ``ref_feats``; :func:`worst_feature` picks the largest separation.
    """
    missing = [k for k in ref_feats if k not in gen_feats]
    if missing:
        raise ConfigError(
            f"the generated features lack {missing[:5]}; compute both with "
            "high_level_features and the same geometry."
        )
    return [
        {
            "feature": name,
            "separation_power": separation_power(ref, gen_feats[name], bins),
            "ref_mean": float(np.mean(ref)),
            "gen_mean": float(np.mean(gen_feats[name])),
        }
        for name, ref in ref_feats.items()
    ]


def worst_feature(table: Sequence[Mapping[str, Any]]) -> tuple[str, float]:
    """(feature, separation power) of the row of :func:`feature_table` with the largest one."""
    if not table:
        raise ConfigError("the feature table is empty.")
    row = max(table, key=lambda r: r["separation_power"])
    return str(row["feature"]), float(row["separation_power"])


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


def _plot_edges(ref: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = np.quantile(ref, [0.005, 0.995])
    if not hi > lo:
        lo, hi = float(ref.min()) - 0.5, float(ref.max()) + 0.5
    return np.linspace(lo, hi, bins + 1)


def plot_features(
    ref: Mapping[str, Any],
    gens: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    bins: int = 40,
    ncols: int = 6,
) -> Path:
    """Grid of histograms of high-level features: the reference (filled) and each model.

    Args:
        ref: reference features (:func:`high_level_features`).
        gens: ``{model name: features}``.
        path: output image; the format follows the suffix (png, pdf, svg). Written atomically.
        names: features to draw (default: all of ``ref``).
        bins: histogram bins, equally spaced over the reference's 0.5-99.5 % quantile range.
        ncols: panels per row.

    The legend of each panel gives each model's separation power on that feature. Returns
    ``path``.
    """
    names = list(ref) if names is None else list(names)
    unknown = [n for n in names if n not in ref]
    if unknown or not names:
        raise ConfigError(
            f"plot_features: unknown features {unknown[:5]}; valid: {', '.join(list(ref)[:8])}..."
            if unknown
            else "plot_features: nothing to draw (no features)."
        )
    import matplotlib.style
    import mplhep
    from matplotlib.figure import Figure

    ncols = max(1, min(int(ncols), len(names)))
    nrows = -(-len(names) // ncols)
    with matplotlib.style.context(mplhep.style.CMS):
        fig = Figure(figsize=(4.2 * ncols, 3.6 * nrows))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, name in zip(axes, names, strict=False):
            r = np.asarray(ref[name], dtype=np.float64)
            edges = _plot_edges(r, bins)
            h, _ = np.histogram(np.clip(r, edges[0], edges[-1]), edges, density=True)
            ax.stairs(h, edges, fill=True, color="0.8", label="reference")
            for model, feats in gens.items():
                g = np.asarray(feats[name], dtype=np.float64)
                hg, _ = np.histogram(np.clip(g, edges[0], edges[-1]), edges, density=True)
                sep = separation_power(r, g)
                ax.stairs(hg, edges, lw=1.5, label=f"{model} ({sep:.3f})")
            ax.set_xlabel(name, fontsize=11)
            ax.tick_params(labelsize=9)
            ax.legend(fontsize=8, title="separation power", title_fontsize=8)
        for ax in axes[len(names) :]:
            ax.set_axis_off()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=60)
    return path
