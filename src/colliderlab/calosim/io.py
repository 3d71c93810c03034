"""CaloChallenge 2022 HDF5 files: ``incident_energies`` (n, 1) and ``showers`` (n, n_voxels).

The layout of the challenge's datasets (arXiv:2410.21611; github.com/CaloChallenge/homepage):
two float32 datasets, ``incident_energies`` of shape (n, 1) with the energy of the incoming
particle in MeV, and ``showers`` of shape (n, n_voxels) with the voxel energies in MeV in the
order of the geometry (:mod:`colliderlab.calosim.geometry`). Files written here also carry
the attributes ``geometry``, ``particle``, ``units`` ("MeV") and the colliderlab version;
files from elsewhere need not have them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab._version import __version__
from colliderlab.calosim.geometry import CaloGeometry, get_geometry
from colliderlab.core.errors import DatasetError
from colliderlab.core.files import atomic_path

ENERGIES = "incident_energies"
SHOWERS = "showers"
_ROWS_PER_CHECK = 1 << 14


def write_calochallenge_h5(
    path: str | os.PathLike[str],
    incident_energies,
    showers: np.ndarray | Iterable[np.ndarray],
    *,
    geometry_name: str | None = None,
    particle: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a CaloChallenge HDF5 file atomically (temporary file + rename).

    ``incident_energies`` (n,) or (n, 1), MeV, finite and > 0; ``showers`` (n, n_voxels), MeV,
    finite and >= 0 - or an iterable of row blocks of it (written as they come, so a large
    file need not fit in memory). ``geometry_name``, ``particle`` and ``attrs`` are stored as
    attributes. Both datasets are float32, gzip-compressed. Bad input raises
    :class:`DatasetError` before anything is written under ``path``.
    """
    import h5py

    path = Path(path)
    e = _energies_1d(np.asarray(incident_energies), path, writing=True)
    n = len(e)
    blocks = iter([showers]) if isinstance(showers, np.ndarray) else iter(showers)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["units"] = "MeV"
            f.attrs["colliderlab_version"] = __version__
            if geometry_name is not None:
                f.attrs["geometry"] = geometry_name
            if particle is not None:
                f.attrs["particle"] = particle
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            f.create_dataset(ENERGIES, data=e.astype(np.float32)[:, None])
            dset = None
            row = 0
            for block in blocks:
                block = np.asarray(block)
                if block.ndim != 2:
                    raise DatasetError(
                        f"showers for {path} must be 2-d (n, n_voxels); got shape {block.shape}"
                    )
                if dset is None:
                    n_vox = block.shape[1]
                    dset = f.create_dataset(
                        SHOWERS,
                        shape=(n, n_vox),
                        dtype=np.float32,
                        chunks=(max(1, min(n, (1 << 20) // max(n_vox, 1))), n_vox) if n else None,
                        compression="gzip",
                        compression_opts=4,
                        shuffle=True,
                    )
                elif block.shape[1] != dset.shape[1]:
                    raise DatasetError(
                        f"showers blocks for {path} have {block.shape[1]} voxels after "
                        f"{dset.shape[1]}; every block needs the same number of columns"
                    )
                if row + len(block) > n:
                    raise DatasetError(
                        f"{path}: more shower rows than incident energies ({n}); both must "
                        "have one row per shower"
                    )
                _check_voxels(block.astype(np.float32, copy=False), path, row)
                dset[row : row + len(block)] = block
                row += len(block)
            if dset is None:
                raise DatasetError(f"no showers given for {path}")
            if row != n:
                raise DatasetError(
                    f"{path}: {n} incident energies but {row} showers; both must have one row "
                    "per shower"
                )
    return path


def read_calochallenge_h5(
    path: str | os.PathLike[str], *, geometry: str | CaloGeometry | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read a CaloChallenge HDF5 file: ``(incident_energies (n,), showers (n, n_voxels))``.

    Both float32, MeV. With ``geometry`` (a name or a geometry), the number of voxels must
    match it. Raises :class:`DatasetError`, naming the file and what is wrong, for a missing
    file, a file that is not HDF5, missing datasets (listing those present), bad shapes,
    different numbers of energies and showers, energies that are not finite and positive,
    voxel energies that are negative or not finite, and a voxel count that does not match
    the geometry.
    """
    import h5py

    path = Path(path)
    geom = get_geometry(geometry) if geometry is not None else None
    if not path.is_file():
        raise DatasetError(
            f"no such file: {path}; give the path of a CaloChallenge HDF5 file (make one with "
            "colliderlab.calosim.make_dataset)"
        )
    if not h5py.is_hdf5(path):
        raise DatasetError(
            f"{path} is not an HDF5 file; a CaloChallenge file is HDF5 with the datasets "
            f"{ENERGIES!r} (n, 1) and {SHOWERS!r} (n, n_voxels)"
        )
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path} is not a readable HDF5 file ({err})") from err
    with f:
        found = sorted(f.keys())
        missing = [k for k in (ENERGIES, SHOWERS) if k not in f]
        if missing:
            raise DatasetError(
                f"{path} has no dataset {' or '.join(map(repr, missing))}; it holds "
                f"{found or 'nothing'}. A CaloChallenge file has {ENERGIES!r} (n, 1) and "
                f"{SHOWERS!r} (n, n_voxels)"
            )
        e_raw = f[ENERGIES][()]
        s_dset = f[SHOWERS]
        if s_dset.ndim != 2:
            raise DatasetError(
                f"{path}: dataset {SHOWERS!r} must be 2-d (n, n_voxels); it has shape "
                f"{s_dset.shape}"
            )
        e = _energies_1d(np.asarray(e_raw), path, writing=False)
        if len(e) != s_dset.shape[0]:
            raise DatasetError(
                f"{path}: {len(e)} incident energies but {s_dset.shape[0]} showers; the two "
                "datasets must have one row per shower"
            )
        if geom is not None and s_dset.shape[1] != geom.n_voxels:
            raise DatasetError(
                f"{path}: showers have {s_dset.shape[1]} voxels but geometry {geom.name!r} "
                f"has {geom.n_voxels}; read it with the geometry it was made for"
                + (f" ({f.attrs['geometry']!r})" if "geometry" in f.attrs else "")
            )
        showers = s_dset[()].astype(np.float32, copy=False)
    _check_voxels(showers, path, 0)
    return e.astype(np.float32), showers


def _energies_1d(e: np.ndarray, path: Path, *, writing: bool) -> np.ndarray:
    where = f"incident energies for {path}" if writing else f"{path}: {ENERGIES!r}"
    if e.ndim == 2 and e.shape[1] == 1:
        e = e[:, 0]
    if e.ndim != 1:
        raise DatasetError(f"{where} must have shape (n, 1) or (n,); got {e.shape}")
    if not np.issubdtype(e.dtype, np.number):
        raise DatasetError(f"{where} must be numbers (MeV); got dtype {e.dtype}")
    e = e.astype(float)
    bad = ~(np.isfinite(e) & (e > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"{where} must be finite and > 0 (MeV); row {i} is {e[i]!r} "
            f"({int(bad.sum())} bad rows in all)"
        )
    return e


def _check_voxels(showers: np.ndarray, path: Path, first_row: int) -> None:
    """Raise if any voxel energy is negative, NaN or infinite (checked in row chunks)."""
    if not np.issubdtype(showers.dtype, np.number):
        raise DatasetError(f"{path}: showers must be numbers (MeV); got dtype {showers.dtype}")
    for lo in range(0, len(showers), _ROWS_PER_CHECK):
        chunk = showers[lo : lo + _ROWS_PER_CHECK]
        ok = np.isfinite(chunk) & (chunk >= 0)
        if not ok.all():
            r, c = (int(x[0]) for x in np.nonzero(~ok))
            value = chunk[r, c]
            what = "NaN" if np.isnan(value) else ("infinite" if np.isinf(value) else "negative")
            raise DatasetError(
                f"{path}: voxel energies must be finite and >= 0 (MeV); shower "
                f"{first_row + lo + r}, voxel {c} is {what} ({value!r}), "
                f"{int((~ok).sum())} bad values in rows {first_row + lo}-"
                f"{first_row + lo + len(chunk) - 1}"
            )
