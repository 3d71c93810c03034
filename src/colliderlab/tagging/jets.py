"""A set of jets with their constituents: the common currency of the tagging task.

:class:`JetSet` holds padded constituent arrays (jets x ``max_particles``, ordered by
decreasing pT), jet-level quantities and labels (1 = signal). It is written to and read from
HDF5 (:meth:`JetSet.save`, :func:`read_jets`), built from colliderlab's simulated events
(:mod:`colliderlab.tagging.datasets`) or from the public top-tagging files
(:func:`read_top_tagging_hdf5`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab.core.errors import DatasetError
from colliderlab.core.files import write_atomic
from colliderlab.tagging.features import particle_inputs

#: Constituent columns stored per particle.
CONSTITUENT_FIELDS = ("pt", "eta", "phi", "energy", "charge", "pid")
#: HDF5 layout version of a jet file.
JETS_FORMAT = 1
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class JetSet:
    """Jets (B of them) with up to N constituents each.

    ``constituents``: ``pt, eta, phi, energy`` (GeV, float32), ``charge`` (int8), ``pid``
    (PF code, int16), each (B, N), zero-padded; ``jet``: named (B,) arrays (``pt, eta, phi,
    mass, energy`` and substructure); ``label``: (B,) int8, 1 = signal.
    """

    constituents: dict[str, np.ndarray]
    jet: dict[str, np.ndarray]
    label: np.ndarray

    def __post_init__(self) -> None:
        missing = [f for f in CONSTITUENT_FIELDS if f not in self.constituents]
        if missing:
            raise DatasetError(f"jet constituents miss the field(s) {missing}.")
        for f in ("pt", "eta", "phi", "energy"):
            if f not in self.jet:
                raise DatasetError(f"jet quantities miss {f!r}.")
        shape = self.constituents["pt"].shape
        if len(shape) != 2:
            raise DatasetError(f"constituent arrays must be (jets, particles); got shape {shape}.")
        for k, v in self.constituents.items():
            if v.shape != shape:
                raise DatasetError(f"constituent field {k!r} has shape {v.shape}, not {shape}.")
        for k, v in {**self.jet, "label": self.label}.items():
            if v.shape != (shape[0],):
                raise DatasetError(f"{k!r} has shape {v.shape}; expected ({shape[0]},).")

    def __len__(self) -> int:
        return len(self.label)

    @property
    def max_particles(self) -> int:
        return self.constituents["pt"].shape[1]

    @property
    def mask(self) -> np.ndarray:
        return self.constituents["energy"] > 0

    @property
    def n_particles(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    def subset(self, index) -> JetSet:
        return JetSet(
            {k: v[index] for k, v in self.constituents.items()},
            {k: v[index] for k, v in self.jet.items()},
            self.label[index],
        )

    @staticmethod
    def concatenate(sets: list[JetSet]) -> JetSet:
        n = max(s.max_particles for s in sets)

        def pad(a):
            return np.pad(a, ((0, 0), (0, n - a.shape[1])))

        return JetSet(
            {k: np.concatenate([pad(s.constituents[k]) for s in sets]) for k in CONSTITUENT_FIELDS},
            {k: np.concatenate([s.jet[k] for s in sets]) for k in sets[0].jet},
            np.concatenate([s.label for s in sets]),
        )

    def check(self, what: str = "jets") -> JetSet:
        """Refuse jets without constituents and non-finite values, naming the first bad one."""
        empty = np.flatnonzero(self.n_particles == 0)
        if len(empty):
            raise DatasetError(
                f"{what}: {len(empty)} jet(s) have no constituents (first: jet {empty[0]}); "
                "drop them first (jets = jets.subset(jets.n_particles > 0))."
            )
        for name, arrays in (("constituent", self.constituents), ("jet", self.jet)):
            for k, v in arrays.items():
                bad = ~np.isfinite(v)
                if bad.any():
                    row = int(np.argwhere(bad)[0][0])
                    raise DatasetError(
                        f"{what}: {name} field {k!r} has {int(bad.sum())} NaN/inf value(s) "
                        f"(first in jet {row}); fix or drop those jets."
                    )
        return self

    def particle_inputs(self, max_particles: int | None = None):
        """``features``, ``vectors``, ``mask`` of the leading ``max_particles`` (see
        :mod:`colliderlab.tagging.features`)."""
        n = max_particles or self.max_particles
        c = {k: v[:, :n] for k, v in self.constituents.items()}
        return particle_inputs(
            c["pt"],
            c["eta"],
            c["phi"],
            c["energy"],
            c["charge"],
            c["pid"],
            c["energy"] > 0,
            self.jet["pt"],
            self.jet["eta"],
            self.jet["phi"],
            self.jet["energy"],
        )

    # ------------------------------------------------------------------ HDF5
    def _write_group(self, group) -> None:
        c = group.create_group("constituents")
        for k, v in self.constituents.items():
            c.create_dataset(k, data=v, compression="gzip", compression_opts=4, shuffle=True)
        j = group.create_group("jet")
        for k, v in self.jet.items():
            j.create_dataset(k, data=v)
        group.create_dataset("label", data=self.label)


def write_jets(path: str | os.PathLike[str], splits: dict[str, JetSet], meta: dict[str, Any]):
    """Write ``splits`` (e.g. train/val/test) to one HDF5 file, atomically."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["colliderlab_jets"] = JETS_FORMAT
            f.attrs["meta"] = json.dumps(meta, sort_keys=True)
            for name, js in splits.items():
                js._write_group(f.create_group(name))

    write_atomic(path, write)
    return Path(path)


def jets_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata stored with a jet file."""
    import h5py

    with _open(path, h5py) as f:
        return json.loads(f.attrs["meta"])


def _open(path, h5py):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"no jet file {path}; build one with `colliderlab dataset tagging NAME -o DIR`."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path} is not a readable HDF5 file ({err}).") from err
    if f.attrs.get("colliderlab_jets") != JETS_FORMAT:
        f.close()
        raise DatasetError(
            f"{path} is not a colliderlab jet file (format {JETS_FORMAT}); for the public "
            "top-tagging files use read_top_tagging_hdf5 / --public."
        )
    return f


def read_jets(path: str | os.PathLike[str], split: str = "train") -> JetSet:
    """Read one split (``train``, ``val``, ``test``) of a jet file."""
    import h5py

    with _open(path, h5py) as f:
        if split not in f:
            raise DatasetError(f"{path} has no split {split!r}; it has {sorted(f.keys())}.")
        g = f[split]
        return JetSet(
            {k: g["constituents"][k][()] for k in CONSTITUENT_FIELDS},
            {k: g["jet"][k][()] for k in g["jet"]},
            g["label"][()],
        )


# ---------------------------------------------------------------------- public top tagging
def read_top_tagging_hdf5(
    path: str | os.PathLike[str],
    max_particles: int = 200,
    key: str = "table",
    stop: int | None = None,
) -> JetSet:
    """Read a file of the public top-tagging reference dataset (arXiv:1902.09914).

    Its layout: a pandas table (key ``table``) with columns ``E_i, PX_i, PY_i, PZ_i`` for
    i = 0..199 (constituents ordered by pT, zero-padded) and ``is_signal_new`` (1 = top).
    The files carry no charge or particle type: those inputs are 0.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no file {path}.")
    try:
        df = pd.read_hdf(path, key=key, stop=stop)
    except Exception as err:  # pandas/PyTables raise many types on foreign files
        raise DatasetError(
            f"cannot read the pandas table {key!r} from {path} ({type(err).__name__}: {err}); "
            "a top-tagging file is written by pandas (DataFrame.to_hdf) with PyTables."
        ) from err
    n_file = 0
    while f"E_{n_file}" in df.columns:
        n_file += 1
    need = [f"{c}_{i}" for i in range(min(n_file, 1)) for c in ("E", "PX", "PY", "PZ")]
    need.append("is_signal_new")
    missing = [c for c in need if c not in df.columns]
    if n_file == 0 or missing:
        raise DatasetError(
            f"{path} does not have the top-tagging columns (E_i, PX_i, PY_i, PZ_i, "
            f"is_signal_new); missing {missing or ['E_0']}; it has {list(df.columns[:8])}..."
        )
    n = min(max_particles, n_file)
    for c in ("PX", "PY", "PZ"):
        absent = [f"{c}_{i}" for i in range(n) if f"{c}_{i}" not in df.columns]
        if absent:
            raise DatasetError(f"{path} misses the column(s) {absent[:3]}...")
    e = df[[f"E_{i}" for i in range(n)]].to_numpy(np.float64)
    px = df[[f"PX_{i}" for i in range(n)]].to_numpy(np.float64)
    py = df[[f"PY_{i}" for i in range(n)]].to_numpy(np.float64)
    pz = df[[f"PZ_{i}" for i in range(n)]].to_numpy(np.float64)
    label = df["is_signal_new"].to_numpy()
    if not np.isin(label, (0, 1)).all():
        raise DatasetError(f"{path}: is_signal_new must be 0 or 1.")
    for name, arr in (("E", e), ("PX", px), ("PY", py), ("PZ", pz)):
        if not np.isfinite(arr).all():
            raise DatasetError(f"{path}: column group {name}_i holds NaN/inf values.")
    mask = e > 0
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(mask, np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0)), 0)
    phi = np.where(mask, np.arctan2(py, px), 0.0)
    jpx, jpy, jpz, je = px.sum(1), py.sum(1), pz.sum(1), e.sum(1)
    jpt = np.hypot(jpx, jpy)
    jet = {
        "pt": jpt.astype(np.float32),
        "eta": np.arcsinh(np.divide(jpz, jpt, out=np.zeros_like(jpz), where=jpt > 0)).astype(
            np.float32
        ),
        "phi": np.arctan2(jpy, jpx).astype(np.float32),
        "mass": np.sqrt(np.maximum(je**2 - jpx**2 - jpy**2 - jpz**2, 0)).astype(np.float32),
        "energy": je.astype(np.float32),
        "n_constituents": mask.sum(1).astype(np.int32),
    }
    cons = {
        "pt": np.where(mask, pt, 0).astype(np.float32),
        "eta": eta.astype(np.float32),
        "phi": phi.astype(np.float32),
        "energy": np.where(mask, e, 0).astype(np.float32),
        "charge": np.zeros(e.shape, np.int8),
        "pid": np.zeros(e.shape, np.int16),
    }
    return JetSet(cons, jet, label.astype(np.int8))
