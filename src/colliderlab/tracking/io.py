"""Reading and writing tracking events and detector descriptions in the TrackML file layout.

The TrackML challenge (Amrouche et al., arXiv:1904.06778; file layout documented in the
``trackml-library`` README) stores one event as four comma-separated files that share a
prefix ``event`` + the event id zero-padded to 9 digits::

    event000000001-hits.csv[.gz]       hit_id, x, y, z, volume_id, layer_id, module_id
    event000000001-cells.csv[.gz]      hit_id, ch0, ch1, value
    event000000001-particles.csv[.gz]  particle_id, vx, vy, vz, px, py, pz, q, nhits
    event000000001-truth.csv[.gz]      hit_id, particle_id, tx, ty, tz, tpx, tpy, tpz, weight

and the detector as one file ``detectors.csv[.gz]`` (one row per module, see
:data:`~colliderlab.tracking.event.DETECTOR_COLUMNS`). Columns are found by name; columns
beyond the documented ones (the public particles files add ``particle_type``) are kept as
they are. Units: mm for positions, GeV for momenta, elementary charge for ``q``.

dtypes after reading (the same for the public files and colliderlab's own):

* ids and counts (``hit_id``, ``particle_id``, ``volume_id``, ``layer_id``, ``module_id``,
  ``ch0``, ``ch1``, ``q``, ``nhits``): int64. A value that is not an integer is an error
  (particle ids exceed 2**53 and would be corrupted by a float);
* positions and momenta of events, and cell values: float32 (7 significant digits: 0.1 um at
  1 m, well below the 10 um resolution of the detectors). float32 values written by
  :func:`write_event` read back bit for bit;
* ``weight``: float64 (per-hit weights are ~1e-5 and are summed over 1e5 hits);
* every float column of ``detectors.csv``: float64 (module placement is geometry).

An event with no hits is a valid event: its four tables have the columns above and no rows
(the cells file is still written, with its header only).

Functions: :func:`read_event`, :func:`write_event`, :func:`list_events`, :func:`iter_events`,
:func:`read_detectors`, :func:`write_detectors`, :func:`event_prefix`, :func:`validate_event`.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from colliderlab.core.errors import DatasetError
from colliderlab.core.files import atomic_path
from colliderlab.tracking.event import (
    CELL_COLUMNS,
    DETECTOR_COLUMNS,
    HIT_COLUMNS,
    PARTICLE_COLUMNS,
    TRUTH_COLUMNS,
    TrackingEvent,
)

__all__ = [
    "event_prefix",
    "iter_events",
    "list_events",
    "read_detectors",
    "read_event",
    "validate_event",
    "write_detectors",
    "write_event",
]

PARTS = ("hits", "cells", "particles", "truth")
_COLUMNS = {
    "hits": HIT_COLUMNS,
    "cells": CELL_COLUMNS,
    "particles": PARTICLE_COLUMNS,
    "truth": TRUTH_COLUMNS,
}
_INT_COLUMNS = frozenset(
    {"hit_id", "particle_id", "volume_id", "layer_id", "module_id", "ch0", "ch1", "q", "nhits"}
)
# Extra columns with a known meaning, converted (int64) when present: the PDG id of the public
# files and colliderlab's pile-up interaction index.
_OPTIONAL_INT_COLUMNS = ("particle_type", "pileup")
_FLOAT64_COLUMNS = frozenset({"weight"})
_EVENT_RE = re.compile(r"^event(\d+)$")
_HITS_FILE_RE = re.compile(r"^event(\d+)-hits\.csv(?:\.gz)?$")
_PART_FILE_RE = re.compile(r"^(.*event\d+)-(?:hits|cells|particles|truth)\.csv(?:\.gz)?$")
_FIRST = 5  # ids quoted in an error message


# --------------------------------------------------------------------------- helpers


def _first(values: np.ndarray | pd.Index, n: int = _FIRST) -> str:
    vals = [int(v) if isinstance(v, (int, np.integer)) else v for v in list(values[:n])]
    more = ", ..." if len(values) > n else ""
    return ", ".join(map(str, vals)) + more


def event_prefix(directory: str | os.PathLike[str], event_id: int) -> Path:
    """The TrackML prefix of event ``event_id`` in ``directory``: ``directory/event%09d``."""
    if int(event_id) < 0:
        raise DatasetError(f"event ids are >= 0 in the TrackML layout, got {event_id}")
    return Path(directory) / f"event{int(event_id):09d}"


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    """``pd.read_csv`` whose failures name the file and say what is wrong with it."""
    try:
        return pd.read_csv(path, compression="gzip" if path.suffix == ".gz" else None)
    except pd.errors.EmptyDataError:
        raise DatasetError(
            f"{path} is empty (no header line); a TrackML {what} file starts with a header. "
            "Rewrite it (colliderlab.tracking.io.write_event) or fetch it again."
        ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(
            f"{path} is not a complete gzip file ({exc}); it was probably truncated while "
            "copying or downloading. Fetch or write it again."
        ) from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        kind = "compressed" if path.suffix == ".gz" else "plain-text"
        raise DatasetError(
            f"{path} is not a {kind} CSV {what} file ({type(exc).__name__}: {exc}). Check that "
            "the file is the one you meant; a .csv.gz must be gzip-compressed CSV."
        ) from None


def _convert(df: pd.DataFrame, path: Path, required: Sequence[str], float_dtype: type) -> None:
    """Check the required columns of ``df`` and convert them in place to their dtypes."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{path} lacks the column(s) {', '.join(map(repr, missing))}; expected at least "
            f"{', '.join(required)} (found {', '.join(map(str, df.columns))}). Is it the "
            "right kind of file?"
        )
    optional = [c for c in _OPTIONAL_INT_COLUMNS if c in df.columns and c not in required]
    for col in (*required, *optional):
        s = df[col]
        if col in _INT_COLUMNS or col in optional:
            if pd.api.types.is_integer_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
                if s.dtype != np.int64:
                    if s.dtype == np.uint64 and len(s) and int(s.max()) > np.iinfo(np.int64).max:
                        raise DatasetError(
                            f"{path}: column {col!r} has ids above 2**63-1 (e.g. {s.max()}); "
                            "colliderlab stores ids as int64."
                        )
                    df[col] = s.astype(np.int64)
                continue
            if len(s) == 0:
                df[col] = s.astype(np.int64)
                continue
            as_num = pd.to_numeric(s, errors="coerce")
            bad = as_num.isna().to_numpy() | (np.asarray(as_num, dtype=np.float64) % 1 != 0)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                found = f"row {row} (line {row + 2} of the file) holds {s.iloc[row]!r}"
            else:
                found = f"its values are written as decimals (row 0: {s.iloc[0]!r})"
            raise DatasetError(
                f"{path}: column {col!r} must hold integers (it is an id or a count), but "
                f"{found}. Fix or regenerate the file (ids must be written without a decimal "
                "point: particle ids above 2**53 would be corrupted by a float)."
            )
        else:
            if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
                as_num = pd.to_numeric(s, errors="coerce")
                bad = np.flatnonzero(as_num.isna().to_numpy() & s.notna().to_numpy())
                if len(bad):
                    row = int(bad[0])
                    raise DatasetError(
                        f"{path}: column {col!r} must hold numbers, but row {row} (line "
                        f"{row + 2}) holds {s.iloc[row]!r}."
                    )
                s = as_num
            values = np.asarray(s, dtype=float_dtype if col not in _FLOAT64_COLUMNS else np.float64)
            finite = np.isfinite(values)
            if not finite.all():
                rows = np.flatnonzero(~finite)
                ident = ""
                for key in ("hit_id", "particle_id", "module_id"):
                    if key in df.columns:
                        ident = f" ({key} {_first(df[key].to_numpy()[rows])})"
                        break
                raise DatasetError(
                    f"{path}: column {col!r} has {len(rows)} NaN or infinite value(s), first in "
                    f"row(s) {_first(rows)}{ident}. Every value must be a finite number; fix or "
                    "regenerate the file."
                )
            df[col] = values


def _duplicates(values: pd.Series) -> np.ndarray:
    return np.unique(values.to_numpy()[values.duplicated(keep=False).to_numpy()])


def _check_unique(df: pd.DataFrame, col: str, path: Path | str) -> None:
    dup = _duplicates(df[col])
    if len(dup):
        raise DatasetError(
            f"{path}: {len(dup)} {col}(s) appear more than once ({_first(dup)}); each {col} "
            "must be unique in this file."
        )


def _find_part(prefix: Path, part: str, required: bool) -> Path | None:
    plain = prefix.parent / f"{prefix.name}-{part}.csv"
    packed = prefix.parent / f"{prefix.name}-{part}.csv.gz"
    found = [p for p in (plain, packed) if p.is_file()]
    if len(found) == 2:
        raise DatasetError(
            f"both {plain} and {packed} exist; keep one of them (they may differ) and read again."
        )
    if found:
        return found[0]
    if not required:
        return None
    hint = ""
    if prefix.parent.is_dir():
        others = list_events(prefix.parent)
        if others:
            hint = f" The events in {prefix.parent} are: {_first([p.name for p in others])}."
        else:
            hint = f" {prefix.parent} holds no TrackML event (no event<id>-hits.csv[.gz])."
    else:
        hint = f" The directory {prefix.parent} does not exist."
    raise DatasetError(f"missing file {plain.name}[.gz] of event {prefix}.{hint}")


def _normalise_prefix(path_or_prefix: str | os.PathLike[str]) -> tuple[Path, int]:
    path = Path(path_or_prefix)
    if path.is_dir():
        events = list_events(path)
        listing = f": {_first([p.name for p in events])}" if events else " (none found)"
        raise DatasetError(
            f"{path} is a directory; read_event wants one event's prefix such as "
            f"{path / 'event000000001'}. Events there{listing}. Use iter_events(directory) "
            "to read them all."
        )
    match = _PART_FILE_RE.match(str(path))
    if match:  # one of the event's files was given
        path = Path(match.group(1))
    m = _EVENT_RE.match(path.name)
    if not m:
        raise DatasetError(
            f"{path_or_prefix!s} is not a TrackML event prefix: the file names of an event "
            "start with 'event' and its id (e.g. 'data/event000000001' for "
            "'data/event000000001-hits.csv.gz')."
        )
    return path, int(m.group(1))


# --------------------------------------------------------------------------- events


def read_event(
    path_or_prefix: str | os.PathLike[str], *, cells: bool = True, validate: bool = True
) -> TrackingEvent:
    """Read one event from its TrackML files.

    Parameters
    ----------
    path_or_prefix:
        The common prefix of the event's files (``dir/event000000001``), or the path of one
        of them (``dir/event000000001-hits.csv.gz``). Each file may be plain (``.csv``) or
        gzip-compressed (``.csv.gz``).
    cells:
        Read the cells file when the event has one (``event.cells`` is None when it has
        none); False skips it (it is the largest file).
    validate:
        Check the consistency of the tables (below). Column names and value types are
        always checked.

    Returns
    -------
    TrackingEvent
        With the dtypes documented in this module; extra columns are kept.

    Raises
    ------
    DatasetError
        A file is missing, is not a (complete) CSV file, lacks a column, holds a non-integer
        id, a NaN or infinite number; or, with ``validate``: a hit, particle or truth row is
        duplicated, the truth hit ids differ from the hit ids, a truth particle id is not in
        the particles table, or a cell refers to an unknown hit.
    """
    prefix, event_id = _normalise_prefix(path_or_prefix)
    tables: dict[str, pd.DataFrame | None] = {}
    for part in PARTS:
        if part == "cells" and not cells:
            tables[part] = None
            continue
        path = _find_part(prefix, part, required=part != "cells")
        if path is None:
            tables[part] = None
            continue
        df = _read_csv(path, part)
        _convert(df, path, _COLUMNS[part], np.float32)
        tables[part] = df
    event = TrackingEvent(
        event_id=event_id,
        hits=tables["hits"],  # type: ignore[arg-type]
        particles=tables["particles"],  # type: ignore[arg-type]
        truth=tables["truth"],  # type: ignore[arg-type]
        cells=tables["cells"],
    )
    if validate:
        validate_event(event, where=str(prefix))
    return event


def validate_event(event: TrackingEvent, *, where: str | None = None) -> None:
    """Check that the four tables of ``event`` agree with each other (DatasetError if not).

    Checked: hit ids unique in ``hits`` and in ``truth``; the same hit ids in both; particle
    ids unique and > 0 in ``particles``; every non-zero truth ``particle_id`` in
    ``particles``; every cell's ``hit_id`` in ``hits``. ``where`` names the event in messages.
    """
    where = where or f"event {event.event_id}"
    for name, cols in (
        ("hits", HIT_COLUMNS),
        ("particles", PARTICLE_COLUMNS),
        ("truth", TRUTH_COLUMNS),
    ):
        df = getattr(event, name)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DatasetError(
                f"{where}: the {name} table lacks the column(s) {', '.join(map(repr, missing))}"
            )
    _check_unique(event.hits, "hit_id", f"{where} (hits)")
    _check_unique(event.truth, "hit_id", f"{where} (truth)")
    _check_unique(event.particles, "particle_id", f"{where} (particles)")
    hit_ids = pd.Index(event.hits["hit_id"].to_numpy())
    truth_ids = pd.Index(event.truth["hit_id"].to_numpy())
    if len(hit_ids) != len(truth_ids) or not hit_ids.isin(truth_ids).all():
        no_truth = hit_ids.difference(truth_ids)
        no_hit = truth_ids.difference(hit_ids)
        raise DatasetError(
            f"{where}: the truth does not describe the same hits as the hits table: "
            f"{len(no_truth)} hit id(s) have no truth row ({_first(no_truth)}) and "
            f"{len(no_hit)} truth row(s) name no hit ({_first(no_hit)}). The files must "
            "come from the same event."
        )
    pids = event.particles["particle_id"].to_numpy()
    if (pids <= 0).any():
        bad = pids[pids <= 0]
        raise DatasetError(
            f"{where}: particle ids must be > 0 (0 marks noise hits in the truth), found "
            f"{_first(bad)} in the particles table."
        )
    tp = event.truth["particle_id"].to_numpy()
    tp = np.unique(tp[tp != 0])
    unknown = tp[~np.isin(tp, pids)]
    if len(unknown):
        raise DatasetError(
            f"{where}: {len(unknown)} particle id(s) of the truth are not in the particles "
            f"table ({_first(unknown)}). The files must come from the same event."
        )
    if event.cells is not None:
        missing_cols = [c for c in CELL_COLUMNS if c not in event.cells.columns]
        if missing_cols:
            raise DatasetError(
                f"{where}: the cells table lacks the column(s) {', '.join(map(repr, missing_cols))}"
            )
        cell_hits = np.unique(event.cells["hit_id"].to_numpy())
        orphan = cell_hits[~np.isin(cell_hits, hit_ids.to_numpy())]
        if len(orphan):
            raise DatasetError(
                f"{where}: cells refer to {len(orphan)} hit id(s) that are not in the hits "
                f"table ({_first(orphan)})."
            )


def _write_table(df: pd.DataFrame, path: Path, compress: bool) -> None:
    compression = {"method": "gzip", "mtime": 0} if compress else None
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, compression=compression, lineterminator="\n")
    other = (
        path.with_name(path.name.removesuffix(".gz"))
        if compress
        else path.with_name(path.name + ".gz")
    )
    other.unlink(missing_ok=True)  # a stale copy in the other format would be ambiguous


def write_event(
    event: TrackingEvent, directory: str | os.PathLike[str], *, compress: bool = True
) -> Path:
    """Write ``event`` as TrackML files in ``directory`` (created if needed); return the prefix.

    Files are ``event<id, 9 digits>-{hits,cells,particles,truth}.csv[.gz]``, each written
    atomically (a crash leaves no half-written file). The cells file is written only when
    ``event.cells`` is not None. The truth file is written last, so an event whose truth
    file exists is complete. A file of the same part in the other format (``.csv`` when
    writing ``.csv.gz``) is removed. :func:`read_event` returns an equal event. Raises
    DatasetError when the tables disagree (see :func:`validate_event`).
    """
    validate_event(event)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = event_prefix(directory, event.event_id)
    suffix = ".csv.gz" if compress else ".csv"
    for part in PARTS:
        df = getattr(event, part)
        if df is None:
            continue
        _write_table(df, prefix.parent / f"{prefix.name}-{part}{suffix}", compress)
    return prefix


def list_events(directory: str | os.PathLike[str]) -> list[Path]:
    """The prefixes of the events in ``directory`` (those with a hits file), by event id."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory} is not a directory (no TrackML events can be listed)")
    ids = set()
    for entry in directory.iterdir():
        m = _HITS_FILE_RE.match(entry.name)
        if m:
            ids.add((int(m.group(1)), f"event{m.group(1)}"))
    return [directory / name for _, name in sorted(ids)]


def iter_events(
    directory: str | os.PathLike[str],
    *,
    cells: bool = True,
    validate: bool = True,
    limit: int | None = None,
) -> Iterator[TrackingEvent]:
    """Read the events of ``directory`` one at a time, in event-id order (at most ``limit``)."""
    prefixes = list_events(directory)
    if limit is not None:
        prefixes = prefixes[: max(int(limit), 0)]
    for prefix in prefixes:
        yield read_event(prefix, cells=cells, validate=validate)


# --------------------------------------------------------------------------- detectors


def _default_detectors() -> Path:
    return Path(str(resources.files("colliderlab.tracking") / "data" / "detectors.csv.gz"))


def read_detectors(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Read a TrackML detector description (one row per module).

    ``path`` defaults to the TrackML detector shipped with colliderlab (18,728 modules, see
    ``colliderlab/tracking/data/README.md``). An unnamed first column (the pandas index that
    the public file carries) is dropped; other extra columns are kept. ``volume_id``,
    ``layer_id``, ``module_id`` are int64, the other columns of
    :data:`~colliderlab.tracking.event.DETECTOR_COLUMNS` float64 (mm; rotations are
    dimensionless). Raises DatasetError for a missing or unreadable file, a missing column,
    a non-finite number or a module listed twice.
    """
    path = _default_detectors() if path is None else Path(path)
    if not path.is_file():
        raise DatasetError(
            f"detector file {path} does not exist; give the path of a TrackML detectors.csv "
            "or .csv.gz (or no path, for the TrackML detector shipped with colliderlab)."
        )
    df = _read_csv(path, "detectors")
    if len(df.columns) and (str(df.columns[0]) == "" or str(df.columns[0]).startswith("Unnamed:")):
        df = df.drop(columns=df.columns[0])
    _convert(df, path, DETECTOR_COLUMNS, np.float64)
    key = (
        df["volume_id"].astype(str)
        + "/"
        + df["layer_id"].astype(str)
        + "/"
        + df["module_id"].astype(str)
    )
    dup = _duplicates(key)
    if len(dup):
        raise DatasetError(
            f"{path}: {len(dup)} module(s) (volume/layer/module) are listed more than once "
            f"({_first(dup)}); each module must appear once."
        )
    return df


def write_detectors(detectors: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a detector table atomically (gzip when ``path`` ends with ``.gz``); no index column."""
    path = Path(path)
    missing = [c for c in DETECTOR_COLUMNS if c not in detectors.columns]
    if missing:
        raise DatasetError(
            f"cannot write {path}: the detector table lacks the column(s) "
            f"{', '.join(map(repr, missing))}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    compression = {"method": "gzip", "mtime": 0} if path.suffix == ".gz" else None
    with atomic_path(path) as tmp:
        detectors.to_csv(tmp, index=False, compression=compression, lineterminator="\n")
    return path
