"""The module-level geometry of the TrackML detector, built from its ``detectors.csv``.

The TrackML detector (Amrouche et al., arXiv:1904.06778) is an all-silicon tracker of
18,728 flat modules in a 2 T solenoid, |eta| < 4:

============  ==========  ======================  ================================
technology    volumes     barrel layers (r, mm)   endcap disks (|z|, mm)
============  ==========  ======================  ================================
pixel         7 / 8 / 9   32, 72, 116, 172        600, 700, 820, 960, 1100, 1300, 1500
short strips  12 / 13/14  260, 360, 500, 660      1220, 1500, 1800, 2150, 2550, 2950
long strips   16 / 17/18  820, 1020               1220, 1500, 1800, 2150, 2550, 2950
============  ==========  ======================  ================================

(volume ids: -z endcap / barrel / +z endcap; layer ids 2, 4, 6, ...; module ids from 1).

Each module is a plane with centre ``(cx, cy, cz)`` and local axes u, v, w whose global
components are the *columns* of the ``rot_*`` matrix: ``rot_xu, rot_yu, rot_zu`` is the u
axis, and so on (global = centre + R @ local). w is the module normal. A module is the box
``|w| <= module_t / 2`` around a trapezoid in (u, v): ``|v| <= module_hv`` and
``|u| <= minhu + (maxhu - minhu) (v + hv) / (2 hv)``, wide at ``v = +hv`` (the outer radius of
an endcap module; barrel modules are rectangles, minhu = maxhu). This convention is checked on
the real TrackML event in the tests: every real hit lies on its module's mid-plane (|w| within
2.5% of the thickness) and inside these bounds. ``pitch_u``, ``pitch_v`` are the cell sizes.

Units: mm.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from colliderlab.core.errors import DatasetError, UnknownNameError
from colliderlab.tracking.event import DETECTOR_COLUMNS

#: (volume ids) -> technology of the TrackML volumes.
TECHNOLOGY = {
    7: "pixel",
    8: "pixel",
    9: "pixel",
    12: "short_strip",
    13: "short_strip",
    14: "short_strip",
    16: "long_strip",
    17: "long_strip",
    18: "long_strip",
}
TECHNOLOGIES = ("pixel", "short_strip", "long_strip")
#: Barrel volumes; the others are endcaps (the lower id at -z, the higher at +z).
BARREL_VOLUMES = (8, 13, 17)

#: Margin (mm) added to the layer envelopes (covers the sampling of the module outlines).
_MARGIN = 0.05

#: Tolerance (mm) of :meth:`TrackerGeometry.locate` on the module bounds and plane.
LOCATE_TOLERANCE = 0.01


class GeometryError(DatasetError):
    """A point or an id does not belong to the detector."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """One barrel layer or endcap disk (mm).

    ``position`` is the mean radius of the module centres (barrel) or their mean z (disk);
    ``r_min, r_max, z_min, z_max`` bound every point of every module of the layer.
    """

    volume_id: int
    layer_id: int
    barrel: bool
    technology: str
    position: float
    r_min: float
    r_max: float
    z_min: float
    z_max: float
    n_modules: int

    @property
    def kind(self) -> str:
        return "barrel" if self.barrel else "endcap"


@dataclasses.dataclass(frozen=True)
class LayerLookup:
    """Candidate search in one layer: k-d tree of the centres of its modules ``rows``.

    ``reach`` (mm) is the largest distance from a centre to a point of its module; ``k`` bounds
    the number of centres within ``reach`` of any point.
    """

    tree: Any
    rows: np.ndarray
    reach: float
    k: int


def _max_neighbours(tree, reach: float) -> int:
    """Upper bound on the centres within ``reach`` of any point (those within 2 reach of one)."""
    counts = tree.query_ball_point(tree.data, 2 * reach + 1e-6, return_length=True)
    return int(min(np.max(counts), tree.n))


class TrackerGeometry:
    """Modules and layers of a TrackML-like detector.

    Arrays over modules (row ``i`` of ``modules``): ``centre`` (n, 3), ``rotation`` (n, 3, 3)
    with the local axes u, v, w as columns, ``thickness``, ``minhu``, ``maxhu``, ``hv``,
    ``pitch_u``, ``pitch_v`` (n,), and ``layer_index`` (n,) into :attr:`layers`.
    """

    def __init__(self, modules: pd.DataFrame, source: str = "<table>") -> None:
        missing = [c for c in DETECTOR_COLUMNS if c not in modules.columns]
        if missing:
            raise DatasetError(
                f"{source} is not a TrackML detector description: missing columns "
                f"{', '.join(missing)}. Expected the columns of detectors.csv: "
                f"{', '.join(DETECTOR_COLUMNS)}."
            )
        m = modules.loc[:, list(DETECTOR_COLUMNS)].reset_index(drop=True)
        m = m.astype({"volume_id": np.int64, "layer_id": np.int64, "module_id": np.int64})
        unknown = sorted(set(m["volume_id"]) - set(TECHNOLOGY))
        if unknown:
            raise DatasetError(
                f"{source}: unknown volume ids {unknown}; a TrackML detector has volumes "
                f"{sorted(TECHNOLOGY)}."
            )
        self.modules = m
        self.source = source
        self.centre = m[["cx", "cy", "cz"]].to_numpy(np.float64)
        rot = m[[f"rot_{a}{b}" for a in "xyz" for b in "uvw"]].to_numpy(np.float64)
        self.rotation = rot.reshape(-1, 3, 3)  # [module, global axis, local axis]
        self.thickness = m["module_t"].to_numpy(np.float64)
        self.minhu = m["module_minhu"].to_numpy(np.float64)
        self.maxhu = m["module_maxhu"].to_numpy(np.float64)
        self.hv = m["module_hv"].to_numpy(np.float64)
        self.pitch_u = m["pitch_u"].to_numpy(np.float64)
        self.pitch_v = m["pitch_v"].to_numpy(np.float64)
        self._build_layers()
        self._build_index()

    # ------------------------------------------------------------------ construction
    def _build_layers(self) -> None:
        m = self.modules
        outline = self.outline()  # (n, 64, 3): points along the edges and the centre
        r_c = np.hypot(outline[..., 0], outline[..., 1])
        z_c = outline[..., 2]
        half_t = self.thickness / 2
        keys = m[["volume_id", "layer_id"]].to_numpy()
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        self.layer_index = inverse.ravel().astype(np.int64)
        layers = []
        r_centre = np.hypot(self.centre[:, 0], self.centre[:, 1])
        for k, (vol, lay) in enumerate(uniq):
            sel = self.layer_index == k
            barrel = int(vol) in BARREL_VOLUMES
            r_in = r_c[sel].min()
            layers.append(
                Layer(
                    volume_id=int(vol),
                    layer_id=int(lay),
                    barrel=barrel,
                    technology=TECHNOLOGY[int(vol)],
                    position=float(r_centre[sel].mean() if barrel else self.centre[sel, 2].mean()),
                    r_min=float(max(r_in - half_t[sel].max() - _MARGIN, 0.0)),
                    r_max=float(r_c[sel].max() + half_t[sel].max() + _MARGIN),
                    z_min=float(z_c[sel].min() - half_t[sel].max() - _MARGIN),
                    z_max=float(z_c[sel].max() + half_t[sel].max() + _MARGIN),
                    n_modules=int(sel.sum()),
                )
            )
        self.layers: tuple[Layer, ...] = tuple(layers)
        self._layer_of = {(ly.volume_id, ly.layer_id): k for k, ly in enumerate(layers)}
        #: Envelope of the instrumented volume (mm): r <= r_max, |z| <= z_max.
        self.r_max = float(max(ly.r_max for ly in layers))
        self.z_max = float(max(max(abs(ly.z_min), abs(ly.z_max)) for ly in layers))

    def _build_index(self) -> None:
        m = self.modules
        key = self._key(m["volume_id"].to_numpy(), m["layer_id"].to_numpy(), m["module_id"])
        order = np.argsort(key, kind="stable")
        self._sorted_keys = key[order]
        self._sorted_rows = order
        if np.any(np.diff(self._sorted_keys) == 0):
            raise DatasetError(f"{self.source}: duplicate (volume, layer, module) ids.")

    @staticmethod
    def _key(volume, layer, module) -> np.ndarray:
        return (
            np.asarray(volume, np.int64) * 1_000_000_000
            + np.asarray(layer, np.int64) * 100_000
            + np.asarray(module, np.int64)
        )

    # ------------------------------------------------------------------ basic queries
    @property
    def n_modules(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        n_b = sum(ly.barrel for ly in self.layers)
        return (
            f"TrackerGeometry({self.n_modules} modules, {n_b} barrel layers, "
            f"{len(self.layers) - n_b} endcap disks, r <= {self.r_max:.0f} mm, "
            f"|z| <= {self.z_max:.0f} mm)"
        )

    def layer(self, volume_id: int, layer_id: int) -> Layer:
        """The layer ``(volume_id, layer_id)``; an unknown pair lists the valid ones."""
        k = self._layer_of.get((int(volume_id), int(layer_id)))
        if k is None:
            raise UnknownNameError(self._unknown_layer_message(volume_id, layer_id))
        return self.layers[k]

    def layer_indices(self, volume_id, layer_id) -> np.ndarray:
        """Index into :attr:`layers` of each (volume_id, layer_id) pair (vectorised)."""
        vol = np.asarray(volume_id, np.int64)
        lay = np.asarray(layer_id, np.int64)
        table = {k: i for k, i in self._layer_of.items()}
        pairs, inv = np.unique(np.stack([vol.ravel(), lay.ravel()], 1), axis=0, return_inverse=True)
        out = np.empty(len(pairs), np.int64)
        for j, (v, la) in enumerate(pairs):
            k = table.get((int(v), int(la)))
            if k is None:
                raise UnknownNameError(self._unknown_layer_message(v, la))
            out[j] = k
        return out[inv.ravel()].reshape(vol.shape)

    def _unknown_layer_message(self, volume_id, layer_id) -> str:
        vols = sorted({v for v, _ in self._layer_of})
        layers_here = sorted(la for v, la in self._layer_of if v == int(volume_id))
        hint = (
            f"volume {int(volume_id)} has layers {layers_here}"
            if layers_here
            else f"valid volumes are {vols}"
        )
        return (
            f"unknown layer (volume_id={int(volume_id)}, layer_id={int(layer_id)}) in the "
            f"detector {self.source}: {hint}."
        )

    def module_rows(self, volume_id, layer_id, module_id) -> np.ndarray:
        """Row in :attr:`modules` of each (volume, layer, module) id triple (vectorised)."""
        vol, lay, mod = (
            np.atleast_1d(np.asarray(a, np.int64)) for a in (volume_id, layer_id, module_id)
        )
        vol, lay, mod = np.broadcast_arrays(vol, lay, mod)
        key = self._key(vol, lay, mod).ravel()
        pos = np.minimum(np.searchsorted(self._sorted_keys, key), len(self._sorted_keys) - 1)
        bad = self._sorted_keys[pos] != key
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            v, la, mo = int(vol.ravel()[i]), int(lay.ravel()[i]), int(mod.ravel()[i])
            n = self.layer(v, la).n_modules  # an unknown layer raises its own message
            raise UnknownNameError(
                f"unknown module id {mo} in layer (volume_id={v}, layer_id={la}) of the "
                f"detector {self.source}: module ids run from 1 to {n}."
            )
        rows = self._sorted_rows[pos]
        return rows.reshape(vol.shape) if np.ndim(volume_id) else rows[0]

    # ------------------------------------------------------------------ coordinates
    def to_local(self, points, rows) -> np.ndarray:
        """Local (u, v, w) of global ``points`` (n, 3) on modules ``rows`` (n,), mm."""
        d = np.asarray(points, np.float64) - self.centre[rows]
        return np.einsum("nij,ni->nj", self.rotation[rows], d)

    def to_global(self, local, rows) -> np.ndarray:
        """Global (x, y, z) of local ``(u, v, w)`` (n, 3) on modules ``rows`` (n,), mm."""
        return self.centre[rows] + np.einsum(
            "nij,nj->ni", self.rotation[rows], np.asarray(local, np.float64)
        )

    def half_width(self, v, rows) -> np.ndarray:
        """Half-width in u of modules ``rows`` at local ``v`` (trapezoids widen towards +hv)."""
        hv = self.hv[rows]
        t = np.clip((np.asarray(v) + hv) / (2 * hv), 0.0, 1.0)
        return self.minhu[rows] + (self.maxhu[rows] - self.minhu[rows]) * t

    def inside(self, local, rows, tolerance: float = 0.0) -> np.ndarray:
        """Whether local points (n, 3) lie inside modules ``rows`` (within ``tolerance`` mm)."""
        local = np.asarray(local, np.float64)
        u, v, w = local[:, 0], local[:, 1], local[:, 2]
        return (
            (np.abs(v) <= self.hv[rows] + tolerance)
            & (np.abs(u) <= self.half_width(v, rows) + tolerance)
            & (np.abs(w) <= self.thickness[rows] / 2 + tolerance)
        )

    def corners(self) -> np.ndarray:
        """The four corners (n, 4, 3) of every module's mid-plane, global mm."""
        u = np.stack([-self.minhu, self.minhu, self.maxhu, -self.maxhu], 1)
        v = np.stack([-self.hv, -self.hv, self.hv, self.hv], 1)
        local = np.stack([u, v, np.zeros_like(u)], -1)  # (n, 4, 3)
        return self.centre[:, None, :] + np.einsum("nij,nkj->nki", self.rotation, local)

    def outline(self, n_edge: int = 16) -> np.ndarray:
        """Points along the four edges of every module's mid-plane (n, 4 n_edge, 3), global mm.

        The extremes in r of a flat module are on its edges, not only at its corners.
        """
        t = np.linspace(0.0, 1.0, n_edge, endpoint=False)
        c = self.corners()  # (n, 4, 3)
        nxt = np.roll(c, -1, axis=1)
        pts = c[:, :, None, :] + (nxt - c)[:, :, None, :] * t[None, None, :, None]
        return pts.reshape(len(c), -1, 3)

    # ------------------------------------------------------------------ lookup
    @functools.cached_property
    def layer_lookup(self) -> tuple[LayerLookup, ...]:
        """Per layer: a k-d tree of its module centres for candidate searches."""
        from scipy.spatial import cKDTree

        out = []
        for k in range(len(self.layers)):
            rows = np.flatnonzero(self.layer_index == k)
            tree = cKDTree(self.centre[rows])
            reach = float(
                np.sqrt(
                    self.maxhu[rows] ** 2 + self.hv[rows] ** 2 + self.thickness[rows] ** 2 / 4
                ).max()
            )
            out.append(
                LayerLookup(tree=tree, rows=rows, reach=reach, k=_max_neighbours(tree, reach))
            )
        return tuple(out)

    @functools.lru_cache(maxsize=512)  # noqa: B019 - one geometry per process, few margins
    def _k_with_margin(self, layer: int, margin: float) -> int:
        look = self.layer_lookup[layer]
        return _max_neighbours(look.tree, look.reach + margin)

    def candidates(self, layer: int, points, margin: float = 0.0):
        """Modules of layer index ``layer`` that may contain ``points`` (n, 3) within ``margin``.

        Returns ``(point_index, module_row)`` pairs: every module whose box comes within
        ``margin`` mm of a point is among them (the test is on centre distances).
        """
        look = self.layer_lookup[layer]
        pts = np.asarray(points, np.float64).reshape(-1, 3)
        reach = look.reach + margin
        k = look.k if margin == 0 else self._k_with_margin(layer, float(margin))
        if len(pts) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        _, idx = look.tree.query(pts, k=k, distance_upper_bound=reach)
        idx = idx.reshape(len(pts), k)
        p_i, c_i = np.nonzero(idx < len(look.rows))
        return p_i, look.rows[idx[p_i, c_i]]

    def check_inside_volume(self, x, y, z, what: str = "point") -> None:
        """Raise :class:`GeometryError` if a point lies outside the instrumented envelope."""
        r = np.hypot(x, y)
        bad = ~((r <= self.r_max) & (np.abs(z) <= self.z_max) & np.isfinite(r) & np.isfinite(z))
        if np.any(bad):
            i = int(np.flatnonzero(np.atleast_1d(bad))[0])
            xi, yi, zi = (float(np.atleast_1d(a)[i]) for a in (x, y, z))
            raise GeometryError(
                f"{int(np.sum(bad))} {what}(s) lie outside the detector volume (r <= "
                f"{self.r_max:.1f} mm, |z| <= {self.z_max:.1f} mm); the first is #{i} at "
                f"(x, y, z) = ({xi:.2f}, {yi:.2f}, {zi:.2f}) mm. Positions are in mm: check the "
                "units and that the points belong to this detector."
            )

    def locate(self, x, y, z, tolerance: float = LOCATE_TOLERANCE) -> np.ndarray:
        """Row of the module containing each point (-1 where none does); mm.

        A point must lie within ``tolerance`` of a module's box (its bounds and thickness).
        Where modules overlap, the one whose mid-plane is closest wins. Points outside the
        detector envelope raise :class:`GeometryError`.
        """
        x, y, z = (np.atleast_1d(np.asarray(a, np.float64)) for a in (x, y, z))
        self.check_inside_volume(x, y, z)
        pts = np.stack([x, y, z], 1)
        r = np.hypot(x, y)
        out = np.full(len(pts), -1, np.int64)
        best = np.full(len(pts), np.inf)
        for k, ly in enumerate(self.layers):
            near = np.flatnonzero(
                (r >= ly.r_min - tolerance)
                & (r <= ly.r_max + tolerance)
                & (z >= ly.z_min - tolerance)
                & (z <= ly.z_max + tolerance)
            )
            if len(near) == 0:
                continue
            p_i, rows = self.candidates(k, pts[near], tolerance)
            p_i = near[p_i]
            local = self.to_local(pts[p_i], rows)
            ok = self.inside(local, rows, tolerance)
            p_i, rows, w = p_i[ok], rows[ok], np.abs(local[ok, 2])
            order = np.argsort(-w, kind="stable")  # the smallest |w| is written last
            p_i, rows, w = p_i[order], rows[order], w[order]
            better = w < best[p_i]
            best[p_i[better]] = w[better]
            out[p_i[better]] = rows[better]
        return out

    def module_of(self, x, y, z, tolerance: float = LOCATE_TOLERANCE) -> pd.DataFrame:
        """``volume_id, layer_id, module_id`` of the module containing each point (mm).

        Points inside the detector envelope but on no module raise :class:`GeometryError`
        (use :meth:`locate` to get -1 instead).
        """
        rows = self.locate(x, y, z, tolerance)
        if np.any(rows < 0):
            i = int(np.flatnonzero(rows < 0)[0])
            raise GeometryError(
                f"{int(np.sum(rows < 0))} point(s) lie on no module (within {tolerance} mm); "
                f"the first is #{i} at (x, y, z) = ({float(np.atleast_1d(x)[i]):.3f}, "
                f"{float(np.atleast_1d(y)[i]):.3f}, {float(np.atleast_1d(z)[i]):.3f}) mm."
            )
        return self.modules.loc[rows, ["volume_id", "layer_id", "module_id"]].reset_index(drop=True)

    def check_hits(self, hits: pd.DataFrame, tolerance: float = 0.05) -> None:
        """Validate a hits table: known ids, points inside the volume and on their module."""
        for c in ("x", "y", "z", "volume_id", "layer_id", "module_id"):
            if c not in hits.columns:
                raise DatasetError(f"the hits table has no column {c!r}.")
        self.check_inside_volume(
            hits["x"].to_numpy(), hits["y"].to_numpy(), hits["z"].to_numpy(), "hit"
        )
        rows = self.module_rows(hits["volume_id"], hits["layer_id"], hits["module_id"])
        local = self.to_local(hits[["x", "y", "z"]].to_numpy(np.float64), rows)
        ok = self.inside(local, rows, tolerance)
        if not np.all(ok):
            i = int(np.flatnonzero(~ok)[0])
            hit = hits["hit_id"].iloc[i] if "hit_id" in hits else i
            raise GeometryError(
                f"{int(np.sum(~ok))} hit(s) lie outside their module (tolerance {tolerance} mm); "
                f"the first is row {i} (hit_id {hit}) "
                f"with local (u, v, w) = {np.round(local[i], 3).tolist()} mm."
            )


# ----------------------------------------------------------------------------- loading
def _read_detectors(path: str | Path) -> pd.DataFrame:
    """detectors.csv(.gz) as a table, through the I/O module when it provides a reader."""
    try:
        from colliderlab.tracking.io import read_detectors
    except ImportError:
        read_detectors = None
    if read_detectors is not None:
        return read_detectors(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError as err:
        raise DatasetError(f"detector description {path} not found.") from err
    unnamed = [c for c in table.columns if str(c).startswith("Unnamed")]
    return table.drop(columns=unnamed)


def detectors_path() -> Path:
    """The shipped TrackML detector description (``tracking/data/detectors.csv.gz``)."""
    return Path(str(resources.files("colliderlab.tracking").joinpath("data/detectors.csv.gz")))


def load_geometry(path: str | Path | None = None) -> TrackerGeometry:
    """The geometry in a TrackML ``detectors.csv(.gz)``; the shipped one when ``path`` is None."""
    path = detectors_path() if path is None else Path(path)
    return TrackerGeometry(_read_detectors(path), source=str(path))


@functools.lru_cache(maxsize=1)
def default_geometry() -> TrackerGeometry:
    """The public TrackML detector (18,728 modules), loaded once per process."""
    return load_geometry()


__all__ = [
    "BARREL_VOLUMES",
    "TECHNOLOGIES",
    "TECHNOLOGY",
    "GeometryError",
    "Layer",
    "TrackerGeometry",
    "default_geometry",
    "detectors_path",
    "load_geometry",
]
