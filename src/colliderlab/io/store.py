"""The dataset store: a directory with ``manifest.json`` and chunk files.

Layout::

    DIR/manifest.json              what the dataset is: config, seed, cross section, chunks
    DIR/chunks/chunk-000000.parquet   events (Parquet via awkward, or ROOT TTree "events")
    DIR/chunks/chunk-000000.json      the chunk's sidecar: sha256, events, cross section

A chunk counts as done when its sidecar exists and the file's sha256 matches it. Both files
are written atomically (temp + rename), the data file first, so a killed run leaves either a
complete chunk or nothing. The manifest is rewritten from the sidecars when a run completes.

Reading gives awkward arrays; momentum collections have ``vector`` behaviour.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from colliderlab.core.errors import ChecksumError, DatasetError
from colliderlab.core.files import sha256_file, write_atomic
from colliderlab.io.events import with_vector

MANIFEST = "manifest.json"
CHUNK_DIR = "chunks"
EXTENSIONS = {"parquet": ".parquet", "root": ".root"}
TREE_NAME = "events"
#: Major version of the store layout this code reads and writes.
STORE_VERSION = 1


def chunk_stem(index: int) -> str:
    return f"chunk-{index:06d}"


def chunk_path(directory: str | os.PathLike[str], index: int, fmt: str) -> Path:
    return Path(directory) / CHUNK_DIR / (chunk_stem(index) + EXTENSIONS[fmt])


def sidecar_path(directory: str | os.PathLike[str], index: int) -> Path:
    return Path(directory) / CHUNK_DIR / (chunk_stem(index) + ".json")


# ----------------------------------------------------------------------------- chunk files
def _write_parquet(events: ak.Array, path: Path) -> None:
    ak.to_parquet(events, path, compression="zstd", row_group_size=None)


RECORDS_KEY = "colliderlab_records"


def _write_root(events: ak.Array, path: Path) -> None:
    import uproot

    branches = {f: events[f] for f in events.fields}
    # one-per-event records (MET, PV, ...) become branches MET_pt, ...: note their names so
    # that the reader rebuilds them (jagged collections are found by their counter branch)
    records = [k for k, v in branches.items() if v.ndim == 1 and v.fields]
    with uproot.recreate(path) as f:
        tree = f.mktree(TREE_NAME, {k: ak.type(v) for k, v in branches.items()})
        tree.extend(branches)
        f[RECORDS_KEY] = json.dumps(records)


def write_chunk(events: ak.Array, path: str | os.PathLike[str], fmt: str) -> str:
    """Write ``events`` to ``path`` atomically in format ``fmt``; return the file's sha256."""
    writer = {"parquet": _write_parquet, "root": _write_root}[fmt]
    write_atomic(path, lambda tmp: writer(events, tmp))
    return sha256_file(path)


def _read_root(path: Path, columns: Sequence[str] | None) -> ak.Array:
    import uproot

    with uproot.open(path) as f:
        if TREE_NAME not in f:
            raise DatasetError(f"{path} has no TTree {TREE_NAME!r}; it is not a colliderlab chunk.")
        records = set(json.loads(str(f[RECORDS_KEY]))) if RECORDS_KEY in f else set()
        wanted = None if columns is None else set(columns)
        flat = f[TREE_NAME].arrays(
            filter_name=None
            if wanted is None
            else lambda name: (
                name in wanted or name.partition("_")[0] in wanted or name[1:] in wanted
            )
        )
    out: dict[str, Any] = {}
    for key in flat.fields:
        if key.startswith("n") and any(k.startswith(key[1:] + "_") for k in flat.fields):
            continue  # counter branch of a jagged collection
        coll, sep, field = key.partition("_")
        if sep and (("n" + coll) in flat.fields or coll in records):
            out.setdefault(coll, {})[field] = flat[key]
        else:
            out[key] = flat[key]
    fields = {k: (ak.zip(v, depth_limit=2) if isinstance(v, dict) else v) for k, v in out.items()}
    return ak.zip(fields, depth_limit=1)


def read_chunk(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> ak.Array:
    """Read one chunk file (Parquet or ROOT, by extension) into an awkward array."""
    path = Path(path)
    try:
        if path.suffix == ".root":
            return _read_root(path, columns)
        return ak.from_parquet(path, columns=list(columns) if columns else None)
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(
            f"cannot read chunk {path}: {type(err).__name__}: {err}. The file is corrupted or "
            "not a colliderlab chunk; `colliderlab generate ... --repair` regenerates it."
        ) from err


# ----------------------------------------------------------------------------- datasets
class Dataset:
    """A dataset directory: its manifest, verified chunk access and reading.

    >>> ds = Dataset("zmumu")             # doctest: +SKIP
    >>> events = ds.read()                # all chunks, vector behaviour attached
    >>> ds.cross_section                  # (sigma, error) in pb
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        manifest = self.directory / MANIFEST
        if not self.directory.is_dir():
            raise DatasetError(
                f"{self.directory} is not a directory; expected a colliderlab dataset."
            )
        if not manifest.is_file():
            raise DatasetError(
                f"{self.directory} has no {MANIFEST}: it is not a colliderlab dataset (make one "
                "with `colliderlab generate PROCESS -n N -o DIR`)."
            )
        try:
            self.manifest: dict[str, Any] = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(
                f"{manifest} is not valid JSON ({err}); the dataset is damaged."
            ) from err
        version = self.manifest.get("store_version")
        if version != STORE_VERSION:
            writer = self.manifest.get("versions", {}).get("colliderlab", "?")
            raise DatasetError(
                f"{manifest} has store_version {version!r}, this colliderlab reads version "
                f"{STORE_VERSION}. Regenerate the dataset with this version, or use the "
                f"colliderlab version that wrote it ({writer})."
            )
        if not self.manifest.get("complete", False):
            raise DatasetError(
                f"{self.directory} is an incomplete dataset (its run was interrupted). Rerun the "
                "same `colliderlab generate` command to finish it."
            )

    # -- metadata
    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def n_events(self) -> int:
        return int(self.manifest["n_events"])

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return self.manifest["chunks"]

    @property
    def cross_section(self) -> tuple[float, float]:
        """Generator cross section and its statistical error, in pb."""
        xs = self.manifest["cross_section"]
        return float(xs["sigma_pb"]), float(xs["sigma_err_pb"])

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.directory)!r}, kind={self.kind!r}, "
            f"process={self.config.get('process')!r}, n_events={self.n_events})"
        )

    # -- integrity
    def verify(self) -> list[Path]:
        """Check every chunk against its recorded sha256; return the list of bad files."""
        bad = []
        for c in self.chunks:
            path = self.directory / c["file"]
            if not path.is_file() or sha256_file(path) != c["sha256"]:
                bad.append(path)
        return bad

    def check(self) -> None:
        """Raise :class:`ChecksumError` naming the first missing or corrupted chunk."""
        bad = self.verify()
        if bad:
            raise ChecksumError(
                f"{len(bad)} chunk(s) of {self.directory} are missing or do not match their "
                f"recorded sha256, first: {bad[0]}. Regenerate them with the original command "
                "plus `--repair`."
            )

    # -- reading
    def iter_chunks(
        self, columns: Sequence[str] | None = None, vector: bool = True, verify: bool = True
    ) -> Iterator[ak.Array]:
        """Yield the chunks in order (memory bounded by one chunk)."""
        for c in self.chunks:
            path = self.directory / c["file"]
            if verify and (not path.is_file() or sha256_file(path) != c["sha256"]):
                raise ChecksumError(
                    f"chunk {path} is missing or does not match its recorded sha256 "
                    f"{c['sha256'][:12]}...: it was modified or truncated. Regenerate it with "
                    "the original command plus `--repair`."
                )
            events = read_chunk(path, columns)
            yield with_vector(events) if vector else events

    def read(
        self, columns: Sequence[str] | None = None, vector: bool = True, verify: bool = True
    ) -> ak.Array:
        """All events as one awkward array."""
        parts = list(self.iter_chunks(columns, vector=False, verify=verify))
        events = ak.concatenate(parts) if len(parts) > 1 else parts[0]
        return with_vector(events) if vector else events


def load(
    directory: str | os.PathLike[str], columns: Sequence[str] | None = None, vector: bool = True
) -> ak.Array:
    """Read a whole dataset: ``colliderlab.io.load("zmumu").particles.pt``."""
    return Dataset(directory).read(columns, vector=vector)


def combine_cross_sections(chunks: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Combine per-chunk Pythia estimates (independent samples) into one, in pb.

    Each chunk's estimate is weighted by its number of accepted events; the errors add in
    quadrature with the same weights.
    """
    n = np.array([c["n_accepted"] for c in chunks], dtype=float)
    s = np.array([c["sigma_pb"] for c in chunks], dtype=float)
    e = np.array([c["sigma_err_pb"] for c in chunks], dtype=float)
    if n.sum() == 0 or s.sum() == 0:
        return {"sigma_pb": 0.0, "sigma_err_pb": 0.0}
    w = n / n.sum()
    return {"sigma_pb": float(np.sum(w * s)), "sigma_err_pb": float(np.sqrt(np.sum((w * e) ** 2)))}
