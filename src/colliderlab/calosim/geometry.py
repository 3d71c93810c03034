"""Voxel geometries of the reference calorimeter, in the CaloChallenge 2022 layout.

A geometry is a stack of layers along the detector axis ``z`` (depth from the front face,
mm); each layer is read out in polar bins: ``n_radial`` bins between the layer's radial edges
(mm) times ``n_alpha`` equal bins of the angle alpha in [-pi, pi).

Voxel ordering (CaloChallenge, arXiv:2410.21611; ``code/XMLHandler.py`` and the
``binning_dataset_*.xml`` files of github.com/CaloChallenge/homepage): layers are
consecutive; within a layer the index is ``alpha_bin * n_radial + r_bin``, i.e. the radial
bins of the first angular slice come first, then those of the next slice. Alpha bin ``k``
covers ``[-pi + 2 pi k / n_alpha, -pi + 2 pi (k + 1) / n_alpha)``; a layer with one angular
bin has its centre at alpha = 0. ``voxel_centres`` returns the bin centres, and
``x = r cos(alpha)``, ``y = r sin(alpha)`` (the CaloChallenge helper calls them eta and phi).

Coordinates (see :mod:`colliderlab.calosim.shower`): the particle enters at the origin of the
front face with direction ``(sin theta, 0, cos theta)``; ``r`` and ``alpha`` are polar
coordinates in the plane transverse to the particle direction, measured from the shower
axis, with alpha = 0 along ``(cos theta, 0, -sin theta)`` (in the plane of incidence); the
layer of a deposit is given by its depth ``z`` along the detector axis. At normal incidence
(theta = 0) this is the CaloChallenge cylinder around the z axis.

Registered geometries (registry kind ``"calo geometry"``):

``challenge``
    CaloChallenge dataset 2: 45 layers x 9 radial x 16 angular bins = 6480 voxels; radial
    edges 0, 4.65, ..., 41.85 mm in every layer (``binning_dataset_2.xml``); each layer is
    3.4 mm deep, two periods of 1.4 mm W + 0.3 mm Si (Geant4 example Par04 readout mesh,
    ``examples/extended/parameterisations/Par04/README``): 153 mm = 36.3 X0 in all.
``atlas5``
    A coarse ATLAS-barrel-like geometry with the radial and angular binning of CaloChallenge
    dataset 1 (photons, ``binning_dataset_1_photons.xml`` layers 0, 1, 2, 3 and 12):
    (8, 1), (16, 10), (19, 10), (5, 1), (5, 1) (radial, angular) bins = 368 voxels, in
    lead / liquid argon. Depths: presampler-like 0-2 X0 (ATLAS' presampler sees the shower
    behind ~2 X0 of upstream material; here that material is part of the stack), EM1 (strips)
    2-6.5 X0, EM2 6.5-22.5 X0, EM3 22.5-25 X0, and a hadronic section ("HCal") lumped into one
    6 lambda_I layer of the same medium, so that pion showers are mostly contained and the raw
    visible sum needs no per-layer weights (ATLAS has iron / scintillator there).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from colliderlab.calosim.material import SamplingCalorimeter, get_material
from colliderlab.core.errors import ConfigError
from colliderlab.core.registry import lookup, names, register

REGISTRY_KIND = "calo geometry"


class VoxelCentres(NamedTuple):
    """Centres of the voxels, each an array of shape (n_voxels,).

    ``layer`` (index), ``r`` (mm), ``alpha`` (rad), ``x = r cos(alpha)``, ``y = r sin(alpha)``
    (mm, transverse plane) and ``z`` (mm, depth of the layer centre).
    """

    layer: np.ndarray
    r: np.ndarray
    alpha: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray


@dataclasses.dataclass(frozen=True)
class CaloGeometry:
    """A voxelised calorimeter: layers along z, polar (r, alpha) bins in each layer.

    Parameters
    ----------
    name:
        Name (stored in the HDF5 files).
    material:
        Registered sampling calorimeter (:func:`~colliderlab.calosim.material.get_material`)
        that fills every layer.
    layer_edges:
        ``n_layers + 1`` increasing depths along the detector axis, mm, the first one 0 (the
        front face).
    r_edges:
        For each layer, increasing radial bin edges in mm starting at 0.
    n_alpha:
        For each layer, the number of equal angular bins in [-pi, pi).
    layer_names:
        Optional labels of the layers.
    """

    name: str
    material: str
    layer_edges: tuple[float, ...]
    r_edges: tuple[tuple[float, ...], ...]
    n_alpha: tuple[int, ...]
    layer_names: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        get_material(self.material)  # unknown material: UnknownNameError with the valid ones
        edges = np.asarray(self.layer_edges, dtype=float)
        n = len(edges) - 1
        if n < 1 or edges[0] != 0.0 or not np.all(np.diff(edges) > 0):
            raise ConfigError(
                f"geometry {self.name!r}: layer_edges must be at least two increasing depths "
                f"in mm starting at 0 (the front face); got {list(self.layer_edges)}"
            )
        if len(self.r_edges) != n or len(self.n_alpha) != n:
            raise ConfigError(
                f"geometry {self.name!r}: {n} layers (from layer_edges) but "
                f"{len(self.r_edges)} r_edges lists and {len(self.n_alpha)} n_alpha values; "
                "give one of each per layer"
            )
        for i, (r, a) in enumerate(zip(self.r_edges, self.n_alpha, strict=True)):
            r = np.asarray(r, dtype=float)
            if len(r) < 2 or r[0] != 0.0 or not np.all(np.diff(r) > 0):
                raise ConfigError(
                    f"geometry {self.name!r}, layer {i}: r_edges must be at least two "
                    f"increasing radii in mm starting at 0; got {list(r)}"
                )
            if int(a) != a or a < 1:
                raise ConfigError(
                    f"geometry {self.name!r}, layer {i}: n_alpha must be a positive integer; "
                    f"got {a!r}"
                )
        if self.layer_names and len(self.layer_names) != n:
            raise ConfigError(
                f"geometry {self.name!r}: {len(self.layer_names)} layer_names for {n} layers"
            )

    # ------------------------------------------------------------------ sizes
    @property
    def calorimeter(self) -> SamplingCalorimeter:
        """The sampling calorimeter filling the layers."""
        return get_material(self.material)

    @property
    def n_layers(self) -> int:
        return len(self.layer_edges) - 1

    @property
    def n_radial(self) -> tuple[int, ...]:
        """Number of radial bins per layer."""
        return tuple(len(r) - 1 for r in self.r_edges)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Number of voxels per layer (n_radial * n_alpha)."""
        return tuple(nr * na for nr, na in zip(self.n_radial, self.n_alpha, strict=True))

    @property
    def n_voxels(self) -> int:
        return sum(self.layer_sizes)

    @property
    def layer_offsets(self) -> tuple[int, ...]:
        """Index of the first voxel of each layer, plus the total at the end."""
        return (0, *np.cumsum(self.layer_sizes).tolist())

    @property
    def layer_slices(self) -> tuple[slice, ...]:
        """``showers[:, geometry.layer_slices[k]]`` are the voxels of layer k."""
        off = self.layer_offsets
        return tuple(slice(off[k], off[k + 1]) for k in range(self.n_layers))

    # ------------------------------------------------------------------ depths
    @property
    def layer_thickness(self) -> np.ndarray:
        """Thickness of each layer along the detector axis, mm."""
        return np.diff(np.asarray(self.layer_edges, dtype=float))

    @property
    def layer_edges_x0(self) -> np.ndarray:
        """Layer edges in radiation lengths X0 of the calorimeter's effective medium."""
        return np.asarray(self.layer_edges, dtype=float) / self.calorimeter.radiation_length

    @property
    def layer_edges_lambda(self) -> np.ndarray:
        """Layer edges in nuclear interaction lengths of the effective medium."""
        return np.asarray(self.layer_edges, dtype=float) / self.calorimeter.interaction_length

    @property
    def depth(self) -> float:
        """Total depth, mm."""
        return float(self.layer_edges[-1])

    # ------------------------------------------------------------------ voxels
    def voxel_index(self, layer, alpha_bin, r_bin):
        """Flat voxel index of (layer, alpha bin, radial bin): offset + alpha * n_r + r."""
        layer = np.asarray(layer)
        off = np.asarray(self.layer_offsets[:-1])[layer]
        n_r = np.asarray(self.n_radial)[layer]
        return off + np.asarray(alpha_bin) * n_r + np.asarray(r_bin)

    def voxel_centres(self) -> VoxelCentres:
        """Bin centres of every voxel, in the voxel order (see the module docstring)."""
        layer, r, alpha, z = [], [], [], []
        zc = 0.5 * (np.asarray(self.layer_edges[:-1]) + np.asarray(self.layer_edges[1:]))
        for k in range(self.n_layers):
            edges = np.asarray(self.r_edges[k], dtype=float)
            rc = 0.5 * (edges[:-1] + edges[1:])
            na = self.n_alpha[k]
            ac = -math.pi + (np.arange(na) + 0.5) * 2 * math.pi / na if na > 1 else np.zeros(1)
            a_grid, r_grid = np.meshgrid(ac, rc, indexing="ij")  # alpha slow, r fast
            r.append(r_grid.ravel())
            alpha.append(a_grid.ravel())
            layer.append(np.full(r_grid.size, k))
            z.append(np.full(r_grid.size, zc[k]))
        r_all, a_all = np.concatenate(r), np.concatenate(alpha)
        return VoxelCentres(
            layer=np.concatenate(layer),
            r=r_all,
            alpha=a_all,
            x=r_all * np.cos(a_all),
            y=r_all * np.sin(a_all),
            z=np.concatenate(z),
        )

    def layer_energies(self, showers: np.ndarray) -> np.ndarray:
        """Energy per layer, (n, n_layers), from showers of shape (n, n_voxels)."""
        showers = np.asarray(showers)
        return np.stack([showers[:, s].sum(axis=1) for s in self.layer_slices], axis=1)


def get_geometry(name: str | CaloGeometry) -> CaloGeometry:
    """The registered geometry ``name`` (``challenge``, ``atlas5``); a geometry passes through."""
    if isinstance(name, CaloGeometry):
        return name
    return lookup(REGISTRY_KIND, name)


def geometry_names() -> list[str]:
    """Names of the registered geometries."""
    return names(REGISTRY_KIND)


# ---------------------------------------------------------------------- registered geometries
_DS2_R = tuple(round(4.65 * i, 2) for i in range(10))

CHALLENGE = register(REGISTRY_KIND, "challenge")(
    CaloGeometry(
        name="challenge",
        material="w_si",
        layer_edges=tuple(round(3.4 * i, 1) for i in range(46)),
        r_edges=(_DS2_R,) * 45,
        n_alpha=(16,) * 45,
        description="CaloChallenge dataset 2 layout: 45 x 9 x 16 voxels, W/Si",
    )
)


def _atlas5() -> CaloGeometry:
    cal = get_material("pb_lar")
    x0, lam = cal.radiation_length, cal.interaction_length
    edges = [0.0, 2.0 * x0, 6.5 * x0, 22.5 * x0, 25.0 * x0, 25.0 * x0 + 6.0 * lam]
    return CaloGeometry(
        name="atlas5",
        material="pb_lar",
        layer_edges=tuple(round(e, 3) for e in edges),
        r_edges=(
            (0, 5, 10, 30, 50, 100, 200, 400, 600),
            (0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200),
            (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300, 350, 400),
            (0, 50, 100, 200, 400, 600),
            (0, 100, 200, 400, 1000, 2000),
        ),
        n_alpha=(1, 10, 10, 1, 1),
        layer_names=("presampler", "em1", "em2", "em3", "hcal"),
        description="coarse ATLAS-barrel-like layout (CaloChallenge ds1 photons binning), Pb/LAr",
    )


ATLAS5 = register(REGISTRY_KIND, "atlas5")(_atlas5())
