"""Unsupervised clustering baseline: DBSCAN on helix-unrolled hit coordinates ("dbscan").

A charged particle from the beamline at (0, 0, z0) with signed curvature kappa (1/mm) in the
axial field moves on a helix whose azimuth at radius r and height z are

    phi(r) = phi0 - asin(kappa r / 2),        z = z0 + cot(theta) s(r),
    s(r) = (2 / kappa) asin(kappa r / 2)      (the transverse arc length; s = r for kappa = 0).

For the right hypothesis (kappa, z0) every hit of the track is mapped to the same point
``(cos phi0, sin phi0, (z - z0) / s)``: the helix is *unrolled* into a point, and tracks
become dense clusters that DBSCAN (Ester et al., KDD 1996; scikit-learn's implementation)
finds with a fixed ``eps``. This transform and the scan over curvature hypotheses were used
by several entries of the TrackML challenge (Amrouche et al., arXiv:1904.06778; results
in arXiv:2105.01160), where such clustering scored ~0.2 (a single hypothesis) to ~0.5-0.8
(with many hypotheses and careful merging).

Algorithm: for each hypothesis of a grid of ``n_curvatures`` curvatures, |kappa| <=
0.0006 / ``min_pt``, times the beam-spot positions ``z0_values``, DBSCAN clusters the
transformed hits. A cluster is kept when it has ``min_hits`` to ``max_hits`` hits and at
least ``min_layer_fraction`` of them on distinct layers (a track crosses each layer once,
up to overlaps). The clusterings are merged by letting a hit move to a new cluster when
the new cluster is longer than the one it belongs to: longer clusters with one hit per
layer win. Tracks left with fewer than ``min_hits`` hits are dropped.

Cost: one DBSCAN per hypothesis, O(N log N) each; units mm, GeV, rad.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from colliderlab.core.errors import ConfigError
from colliderlab.core.registry import register
from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.finders import KIND, TrackFinder

#: pT (GeV) per mm of radius of curvature in the 2 T field.
PT_PER_MM = 0.3 * 2.0 * 1e-3


def unrolled_features(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, kappa: float, z0: float = 0.0, z_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The helix-unrolled coordinates of hits for the hypothesis (``kappa`` 1/mm, ``z0`` mm).

    Returns ``(features (n, 3), ok (n,))``: ``cos phi0, sin phi0, z_scale (z - z0) / s`` and
    whether the hypothesis reaches the hit at all (|kappa| r / 2 <= 1).
    """
    r = np.hypot(x, y)
    arg = 0.5 * kappa * r
    ok = np.abs(arg) <= 1.0
    a = np.arcsin(np.clip(arg, -1.0, 1.0))
    phi0 = np.arctan2(y, x) + a
    s = 2.0 * a / kappa if abs(kappa) > 1e-12 else r
    s = np.maximum(s, 1e-6)
    feats = np.column_stack([np.cos(phi0), np.sin(phi0), z_scale * (z - z0) / s])
    return feats, ok


@register(KIND, "dbscan")
class DBSCANFinder(TrackFinder):
    """DBSCAN on helix-unrolled coordinates, scanned over curvature and z0 hypotheses.

    Parameters
    ----------
    eps:
        DBSCAN neighbourhood radius in the unrolled space (dimensionless); default 0.012.
    min_samples:
        DBSCAN core-point size; default 2.
    min_pt:
        Smallest pT of the curvature scan (GeV); default 0.4.
    n_curvatures:
        Number of curvature hypotheses in [-0.0006/min_pt, +0.0006/min_pt] (odd numbers
        include kappa = 0); default 15.
    z0_values:
        Beam-spot positions of the scan (mm); default (-60, 0, 60).
    z_scale:
        Weight of the (z - z0)/s coordinate relative to the angle; default 0.1.
    min_hits, max_hits:
        Size range of a kept cluster (hits); defaults 4 and 20.
    min_layer_fraction:
        Smallest fraction of a kept cluster's hits on distinct layers; default 0.6.
    """

    name = "dbscan"

    def __init__(
        self,
        *,
        eps: float = 0.012,
        min_samples: int = 2,
        min_pt: float = 0.4,
        n_curvatures: int = 15,
        z0_values: tuple[float, ...] = (-60.0, 0.0, 60.0),
        z_scale: float = 0.1,
        min_hits: int = 4,
        max_hits: int = 20,
        min_layer_fraction: float = 0.6,
    ) -> None:
        for name, value in (("eps", eps), ("min_pt", min_pt), ("z_scale", z_scale)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise ConfigError(
                    f"dbscan option {name!r} must be a finite number > 0, got {value!r}."
                )
        for name, value in (
            ("min_samples", min_samples),
            ("n_curvatures", n_curvatures),
            ("min_hits", min_hits),
            ("max_hits", max_hits),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dbscan option {name!r} must be an integer >= 1, got {value!r}.")
        if max_hits < min_hits:
            raise ConfigError(
                f"dbscan option 'max_hits' ({max_hits}) must be >= 'min_hits' ({min_hits})."
            )
        if (
            isinstance(min_layer_fraction, bool)
            or not isinstance(min_layer_fraction, int | float)
            or not (0.0 <= min_layer_fraction <= 1.0)
        ):
            raise ConfigError(
                f"dbscan option 'min_layer_fraction' must be in [0, 1], got {min_layer_fraction!r}."
            )
        try:
            z0s = tuple(float(v) for v in z0_values)
        except (TypeError, ValueError):
            raise ConfigError(
                f"dbscan option 'z0_values' must be a sequence of numbers (mm), got {z0_values!r}."
            ) from None
        if not z0s or not all(math.isfinite(v) for v in z0s):
            raise ConfigError(
                "dbscan option 'z0_values' must be a non-empty sequence of finite numbers, "
                f"got {z0_values!r}."
            )
        self.eps = float(eps)
        self.min_samples = int(min_samples)
        self.min_pt = float(min_pt)
        self.n_curvatures = int(n_curvatures)
        self.z0_values = z0s
        self.z_scale = float(z_scale)
        self.min_hits = int(min_hits)
        self.max_hits = int(max_hits)
        self.min_layer_fraction = float(min_layer_fraction)

    def __repr__(self) -> str:
        return (
            f"DBSCANFinder(eps={self.eps}, min_pt={self.min_pt}, n_curvatures={self.n_curvatures}, "
            f"z0_values={self.z0_values}, z_scale={self.z_scale}, min_hits={self.min_hits})"
        )

    def hypotheses(self) -> list[tuple[float, float]]:
        """The (kappa 1/mm, z0 mm) grid, straight tracks first."""
        kmax = PT_PER_MM / self.min_pt
        kappas = (
            np.linspace(-kmax, kmax, self.n_curvatures) if self.n_curvatures > 1 else np.zeros(1)
        )
        kappas = kappas[np.argsort(np.abs(kappas), kind="stable")]
        return [(float(k), z0) for k in kappas for z0 in self.z0_values]

    def find(self, event: TrackingEvent) -> pd.DataFrame:
        from sklearn.cluster import DBSCAN

        hits = event.hits
        hit_id = hits["hit_id"].to_numpy(np.int64)
        n = len(hits)
        label = np.zeros(n, np.int64)
        if n == 0:
            return self.submission(hit_id, label)
        x = hits["x"].to_numpy(np.float64)
        y = hits["y"].to_numpy(np.float64)
        z = hits["z"].to_numpy(np.float64)
        layer_code = hits["volume_id"].to_numpy(np.int64) * 1000 + hits["layer_id"].to_numpy(
            np.int64
        )
        size = np.zeros(n, np.int64)  # length of the cluster each hit belongs to
        next_id = 1
        for kappa, z0 in self.hypotheses():
            feats, ok = unrolled_features(x, y, z, kappa, z0, self.z_scale)
            idx = np.flatnonzero(ok)
            if len(idx) < self.min_hits:
                continue
            lab = DBSCAN(
                eps=self.eps, min_samples=self.min_samples, algorithm="kd_tree"
            ).fit_predict(feats[idx])
            good = lab >= 0
            if not good.any():
                continue
            idx, lab = idx[good], lab[good]
            counts = np.bincount(lab)
            # distinct layers per cluster
            pairs = np.unique(np.stack([lab, layer_code[idx]], 1), axis=0)
            n_layers = np.bincount(pairs[:, 0], minlength=len(counts))
            keep = (
                (counts >= self.min_hits)
                & (counts <= self.max_hits)
                & (n_layers >= self.min_layer_fraction * counts)
            )
            sel = keep[lab]
            idx, lab = idx[sel], lab[sel]
            better = counts[lab] > size[idx]
            label[idx[better]] = next_id + lab[better]
            size[idx[better]] = counts[lab[better]]
            next_id += len(counts)
        # drop what merging has shrunk below min_hits, renumber 1..K
        if label.any():
            uniq, inv, cnt = np.unique(label, return_inverse=True, return_counts=True)
            small = (cnt < self.min_hits) | (uniq == 0)
            new = np.cumsum(~small) * ~small
            label = new[inv].astype(np.int64)
        return self.submission(hit_id, label)


__all__ = ["DBSCANFinder", "unrolled_features"]
