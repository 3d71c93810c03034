"""Reading and writing the CSV files of the HiggsML challenge (Adam-Bourdarios et al., 2014).

Three layouts share one format (comma-separated, one header line, one event per line):

* Kaggle ``training.csv``: ``EventId``, the 30 features of :data:`~.schema.FEATURES`,
  ``Weight``, ``Label`` (``s`` = signal H -> tau tau, ``b`` = background);
* Kaggle ``test.csv``: ``EventId`` and the 30 features only (no weight, no label);
* the CERN Open Data file (doi:10.7483/OPENDATA.ATLAS.ZBP2.M5T8, 818,238 events): the Kaggle
  columns plus ``KaggleSet`` (``t`` training, ``b`` public leaderboard, ``v`` private
  leaderboard, ``u`` unused) and ``KaggleWeight`` (the weight renormalised within its set).

Files written by colliderlab may end with one more column, ``Process`` (the generated physics
process of each event, e.g. ``h_tautau``); any other column is an error. Columns are read by
name, so their order in the file does not matter; gzip-compressed files are recognised by
their content (``.csv.gz``).

Units: energies, momenta and masses in GeV, angles in rad (pseudorapidities have none); an
undefined value is :data:`~.schema.UNDEFINED` = -999.0.

Functions: :func:`read_higgsml_csv`, :func:`write_higgsml_csv`, :func:`split`; the data is a
:class:`HiggsMLData`.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from colliderlab.core.errors import ConfigError, DatasetError, UnknownNameError, did_you_mean
from colliderlab.core.files import atomic_path
from colliderlab.higgsml.schema import (
    FEATURES,
    KAGGLE_SETS,
    MAY_BE_UNDEFINED,
    NEEDS_ONE_JET,
    NEEDS_TWO_JETS,
    PROCESS_COLUMN,
    UNDEFINED,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["HiggsMLData", "read_higgsml_csv", "split", "write_higgsml_csv"]

# Column of the jet multiplicity in :data:`FEATURES` (and in ``HiggsMLData.features``).
_JET_NUM = FEATURES.index("PRI_jet_num")
_TRUTH = ("Weight", "Label")
_OPENDATA = ("KaggleSet", "KaggleWeight")
_OPTIONAL = (*_TRUTH, *_OPENDATA, PROCESS_COLUMN)
_KNOWN = ("EventId", *FEATURES, *_OPTIONAL)
_GZIP_MAGIC = b"\x1f\x8b"
# Longest header accepted: the real one has 541 characters.
_MAX_HEADER = 1 << 16


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True, eq=False)
class HiggsMLData:
    """The events of one HiggsML file, as numpy arrays (one entry per event).

    The dataclass is frozen (fields cannot be re-bound; use :func:`dataclasses.replace`), but
    the arrays themselves are ordinary writable numpy arrays and are not copied.

    Attributes
    ----------
    event_id:
        ``EventId``, int64, shape (n,).
    features:
        float64, shape (n, 30), columns in :data:`~.schema.FEATURES` order; GeV and rad,
        -999.0 where undefined.
    weight:
        ``Weight``, float64 (n,): events per event at the challenge luminosity, or None for
        the Kaggle test file.
    label:
        int8 (n,): 1 = signal (``s``), 0 = background (``b``), or None for the test file.
    kaggle_set, kaggle_weight:
        ``KaggleSet`` (single-character str array) and ``KaggleWeight`` (float64) of the Open
        Data file, or None.
    process:
        ``Process`` (str array) in files written by colliderlab, or None.
    """

    event_id: np.ndarray
    features: np.ndarray
    weight: np.ndarray | None = None
    label: np.ndarray | None = None
    kaggle_set: np.ndarray | None = None
    kaggle_weight: np.ndarray | None = None
    process: np.ndarray | None = None

    def __post_init__(self) -> None:
        event_id = np.asarray(self.event_id, dtype=np.int64)
        features = np.asarray(self.features, dtype=np.float64)
        if event_id.ndim != 1:
            raise ConfigError(
                f"event_id must be 1-D (one id per event), got shape {event_id.shape}"
            )
        n = event_id.size
        if features.shape != (n, len(FEATURES)):
            raise ConfigError(
                f"features must have shape (n_events, {len(FEATURES)}) = ({n}, {len(FEATURES)}) "
                f"with columns in schema.FEATURES order, got {features.shape}"
            )
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "features", features)
        kinds = {
            "weight": np.float64,
            "label": np.int8,
            "kaggle_set": np.str_,
            "kaggle_weight": np.float64,
            "process": np.str_,
        }
        for name, dtype in kinds.items():
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=dtype)
            if arr.shape != (n,):
                raise ConfigError(
                    f"{name} must have one entry per event, shape ({n},), got {arr.shape}"
                )
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.event_id.size)

    def __repr__(self) -> str:
        parts = [f"n={len(self)}"]
        if self.label is not None:
            n_s = int(np.count_nonzero(self.label == 1))
            parts += [f"signal={n_s}", f"background={len(self) - n_s}"]
        optional = [f.name for f in dataclasses.fields(self)[2:]]
        parts.append(f"with={[name for name in optional if getattr(self, name) is not None]}")
        return f"HiggsMLData({', '.join(parts)})"

    def column(self, name: str) -> np.ndarray:
        """The feature column ``name`` (a view into :attr:`features`), e.g. ``"DER_mass_MMC"``."""
        try:
            j = FEATURES.index(name)
        except ValueError:
            raise UnknownNameError(
                f"{name!r} is not a HiggsML feature.{did_you_mean(name, FEATURES)} The 30 "
                f"features are schema.FEATURES: {', '.join(FEATURES)}"
            ) from None
        return self.features[:, j]

    def subset(self, mask_or_index: ArrayLike | slice) -> HiggsMLData:
        """The events selected by a boolean mask (length n), integer indices or a slice.

        Weights are copied as they are (not renormalised; :func:`split` does that).
        """
        sel: Any = mask_or_index
        if not isinstance(sel, slice):
            sel = np.asarray(sel)
            if sel.size == 0:
                sel = sel.astype(np.intp)
            if sel.dtype == bool:
                if sel.shape != (len(self),):
                    raise ConfigError(
                        f"a boolean mask must have one entry per event ({len(self)}), got shape "
                        f"{sel.shape}"
                    )
            elif sel.dtype.kind not in "iu" or sel.ndim != 1:
                raise ConfigError(
                    "subset() takes a boolean mask, a 1-D array of integer indices or a slice, "
                    f"got an array of dtype {sel.dtype} and shape {sel.shape}"
                )
        values = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[sel]
            for f in dataclasses.fields(self)
        }
        return HiggsMLData(**values)

    def to_frame(self) -> pd.DataFrame:
        """A pandas DataFrame with the file's columns, in file order (``Label`` as ``s``/``b``)."""
        import pandas as pd

        return pd.DataFrame(_file_columns(self, with_opendata=self.kaggle_set is not None))


def _file_columns(data: HiggsMLData, *, with_opendata: bool) -> dict[str, np.ndarray]:
    """Column name -> values, in file order; which columns depends on the fields present."""
    cols: dict[str, np.ndarray] = {"EventId": data.event_id}
    cols.update({name: data.features[:, j] for j, name in enumerate(FEATURES)})
    if data.weight is not None and data.label is not None:
        cols["Weight"] = data.weight
        cols["Label"] = np.where(data.label == 1, "s", "b")
    if with_opendata and data.kaggle_set is not None and data.kaggle_weight is not None:
        cols["KaggleSet"] = data.kaggle_set
        cols["KaggleWeight"] = data.kaggle_weight
    if data.process is not None:
        cols[PROCESS_COLUMN] = data.process
    return cols


# --------------------------------------------------------------------------- reading


def read_higgsml_csv(path: str | os.PathLike[str], *, validate: bool = True) -> HiggsMLData:
    """Read a HiggsML challenge CSV file (Kaggle, Kaggle test or CERN Open Data layout).

    The file is parsed by pyarrow's multithreaded CSV reader with explicit column types
    (the 818,238-event Open Data file takes a few seconds); ``.csv.gz`` is decompressed on the
    fly. The columns are always checked: ``EventId`` and the 30 features are required,
    ``Weight`` and ``Label`` come together, ``KaggleSet`` and ``KaggleWeight`` come together
    and need the first two, ``Process`` is optional, anything else is an error. Values that
    cannot be represented at all are errors too (a non-number in a numeric column, an empty
    ``EventId``, a ``Label`` other than ``s``/``b``).

    With ``validate=True`` (the default) every value is checked as well: features are finite,
    ``PRI_jet_num`` is 0, 1, 2 or 3, -999 appears exactly where the jet multiplicity makes a
    feature undefined (:data:`~.schema.NEEDS_ONE_JET`, :data:`~.schema.NEEDS_TWO_JETS`) and
    nowhere else except :data:`~.schema.MAY_BE_UNDEFINED`, weights are finite and
    non-negative with a positive total, ``KaggleSet`` is one of t/b/v/u and event ids are
    unique. ``validate=False`` skips these checks (empty numeric values then read as NaN).

    Raises
    ------
    DatasetError
        naming the file, the column and the first offending event (EventId and data row).
    FileNotFoundError
        if ``path`` does not exist.
    """
    path = Path(path)
    compressed = _is_gzip(path)
    names = _read_header(path, compressed)
    _check_columns(path, names)
    table = _parse(path, compressed, names)
    if table.num_rows == 0:
        raise DatasetError(
            f"{path} has a header line but no events; a HiggsML file needs at least one event"
        )
    data = _to_data(path, table, names)
    if validate:
        _validate(path, data, table)
    return data


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _read_header(path: Path, compressed: bool) -> list[str]:
    """Column names from the first line; errors for empty, binary or non-CSV files."""
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as f:
            first = f.readline(_MAX_HEADER)
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(
            f"{path} starts like a gzip file but cannot be decompressed ({err}); the file is "
            "probably truncated: download or write it again"
        ) from err
    if not first.strip():
        raise DatasetError(
            f"{path} is empty (no header line); a HiggsML CSV file starts with the header "
            "'EventId,DER_mass_MMC,...'. Check the download or the path"
        )
    not_text = b"\x00" in first or (len(first) == _MAX_HEADER and not first.endswith(b"\n"))
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        not_text = True
    if not_text:
        raise DatasetError(
            f"{path} is not a CSV text file (its first line is binary data or longer than "
            f"{_MAX_HEADER} bytes); pass the HiggsML .csv or .csv.gz file, not e.g. a Parquet "
            "or ROOT file"
        )
    names = next(csv.reader([line.rstrip("\r\n")]))
    if not set(names) & set(_KNOWN):
        hint = (
            " The columns must be separated by commas."
            if (";" in line or "\t" in line) and len(names) == 1
            else ""
        )
        raise DatasetError(
            f"{path} does not look like a HiggsML CSV file: its first line "
            f"{line[:80].rstrip()!r} has none of the expected column names (EventId, "
            f"{FEATURES[0]}, ...).{hint} The file needs a header line with the names of "
            "schema.KAGGLE_COLUMNS"
        )
    return names


def _check_columns(path: Path, names: list[str]) -> None:
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DatasetError(f"{path}: column(s) {duplicated} appear more than once in the header")
    unknown = [n for n in names if n not in _KNOWN]
    if unknown:
        hints = "".join(did_you_mean(n, _KNOWN) for n in unknown)
        raise DatasetError(
            f"{path} has unknown column(s) {unknown}.{hints} A HiggsML file has EventId, the 30 "
            "features, optionally Weight and Label, optionally KaggleSet and KaggleWeight and "
            "optionally Process; remove or rename the other columns"
        )
    required = ["EventId", *FEATURES]
    if set(names) & set(_TRUTH + _OPENDATA):
        required += _TRUTH
    if set(names) & set(_OPENDATA):
        required += _OPENDATA
    missing = [n for n in required if n not in names]
    if missing:
        raise DatasetError(
            f"{path} lacks the column(s) {missing}. Expected the columns of the Kaggle file "
            "(schema.KAGGLE_COLUMNS), of the Kaggle test file (EventId and the 30 features) "
            "or of the Open Data file (schema.OPENDATA_COLUMNS); Weight and Label come "
            "together, and so do KaggleSet and KaggleWeight. Check that the header line is "
            "complete and that the file is a HiggsML file"
        )


def _arrow_types(names: list[str]) -> dict[str, pa.DataType]:
    import pyarrow as pa

    types = {"EventId": pa.int64(), "Label": pa.string(), "KaggleSet": pa.string()}
    types[PROCESS_COLUMN] = pa.string()
    return {n: types.get(n, pa.float64()) for n in names}


def _arrow_read(
    path: Path, compressed: bool, types: dict[str, pa.DataType], *, empty_is_null: bool = True
) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pv

    convert = pv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        null_values=[""] if empty_is_null else [],
        strings_can_be_null=False,
    )
    with pa.input_stream(str(path), compression="gzip" if compressed else None) as stream:
        return pv.read_csv(stream, convert_options=convert)


def _parse(path: Path, compressed: bool, names: list[str]) -> pa.Table:
    import pyarrow as pa

    try:
        return _arrow_read(path, compressed, _arrow_types(names))
    except pa.ArrowInvalid as err:
        raise _parse_error(path, compressed, names, str(err)) from err
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(
            f"{path} cannot be read to the end ({err}); the file is probably truncated or "
            "corrupt: download or write it again"
        ) from err


def _parse_error(path: Path, compressed: bool, names: list[str], message: str) -> DatasetError:
    """A DatasetError naming the column and event for pyarrow's ArrowInvalid ``message``."""
    fields = re.search(r"Expected (\d+) columns, got (\d+): (.*)", message, re.S)
    if fields:
        row = fields.group(3).strip().splitlines()[0][:100]
        return DatasetError(
            f"{path}: a line has {fields.group(2)} comma-separated values but the header has "
            f"{fields.group(1)} columns: {row!r}. Every event needs one value per column; "
            "fix or remove that line"
        )
    conversion = re.search(r"CSV column #(\d+): CSV conversion error to (\w+): (.*)", message)
    if not conversion:
        return DatasetError(f"{path} is not a valid CSV file: {message}")
    column = names[int(conversion.group(1))]
    expected = {"int64": "an integer", "double": "a number"}.get(conversion.group(2), "text")
    bad = re.fullmatch(r"invalid value '(.*)'", conversion.group(3), re.S)
    where, found = "", conversion.group(3)
    if bad:
        where = _locate(path, compressed, column, bad.group(1))
        found = repr(bad.group(1))
    return DatasetError(
        f"{path}: column {column!r}{where}: found {found}, expected {expected}; fix or remove "
        "that value"
    )


def _locate(path: Path, compressed: bool, column: str, raw: str) -> str:
    """`` at EventId ... (data row k)`` for the first row whose ``column`` reads ``raw``."""
    import pyarrow as pa

    types = {name: pa.string() for name in dict.fromkeys([column, "EventId"])}
    try:
        table = _arrow_read(path, compressed, types, empty_is_null=False)
    except (pa.ArrowInvalid, OSError):
        return ""
    values = table.column(column).to_pylist()
    if raw not in values:
        return ""
    i = values.index(raw)
    return f" at EventId {table.column('EventId')[i].as_py()} (data row {i + 1})"


def _strings(column: pa.ChunkedArray) -> np.ndarray:
    """A pyarrow string column as a numpy str array (through its dictionary: fast)."""
    encoded = column.combine_chunks().dictionary_encode()
    words = np.array(encoded.dictionary.to_pylist(), dtype=np.str_)
    return words[encoded.indices.to_numpy(zero_copy_only=False)]


def _to_data(path: Path, table: pa.Table, names: list[str]) -> HiggsMLData:
    import pyarrow.compute as pc

    ids = table.column("EventId")
    if ids.null_count:
        i = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
        raise DatasetError(
            f"{path}: column 'EventId' is empty in data row {i + 1}; every event needs an "
            "integer id: fill it in or remove that line"
        )
    n = table.num_rows
    features = np.empty((n, len(FEATURES)), dtype=np.float64)
    for j, name in enumerate(FEATURES):
        features[:, j] = table.column(name).to_numpy()
    event_id = ids.to_numpy()
    fields: dict[str, Any] = {}
    if "Label" in names:
        raw = table.column("Label")
        signal = pc.equal(raw, "s").to_numpy(zero_copy_only=False)
        background = pc.equal(raw, "b").to_numpy(zero_copy_only=False)
        bad = ~(signal | background)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _value_error(
                path, "Label", event_id, i, repr(raw[i].as_py()), "'s' (signal) or 'b' (background)"
            )
        fields["label"] = signal.astype(np.int8)
        fields["weight"] = table.column("Weight").to_numpy()
    if "KaggleSet" in names:
        fields["kaggle_set"] = _strings(table.column("KaggleSet"))
        fields["kaggle_weight"] = table.column("KaggleWeight").to_numpy()
    if PROCESS_COLUMN in names:
        fields["process"] = _strings(table.column(PROCESS_COLUMN))
    return HiggsMLData(event_id=event_id, features=features, **fields)


# --------------------------------------------------------------------------- validation


def _value_error(
    path: Path, column: str, event_id: np.ndarray, i: int, found: str, expected: str
) -> DatasetError:
    return DatasetError(
        f"{path}: column {column!r} at EventId {event_id[i]} (data row {i + 1}): found {found}, "
        f"expected {expected}; fix or remove such events"
    )


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _validate(path: Path, data: HiggsMLData, table: pa.Table) -> None:
    ids = data.event_id
    for name in table.column_names:
        column = table.column(name)
        if column.null_count:
            i = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise _value_error(path, name, ids, i, "an empty value", "a number")
    x = data.features
    for j, name in enumerate(FEATURES):
        i = _first(~np.isfinite(x[:, j]))
        if i is not None:
            raise _value_error(path, name, ids, i, repr(float(x[i, j])), "a finite number")
    jets = x[:, _JET_NUM]
    i = _first(~np.isin(jets, (0.0, 1.0, 2.0, 3.0)))
    if i is not None:
        raise _value_error(
            path, "PRI_jet_num", ids, i, repr(float(jets[i])), "0, 1, 2 or 3 (3 = three or more)"
        )
    _check_undefined(path, data, jets)
    if data.weight is not None:
        _check_weights(path, ids, data.weight, "Weight")
    if data.kaggle_set is not None:
        i = _first(~np.isin(data.kaggle_set, KAGGLE_SETS))
        if i is not None:
            raise _value_error(
                path, "KaggleSet", ids, i, repr(str(data.kaggle_set[i])), "one of t, b, v, u"
            )
    if data.kaggle_weight is not None:
        _check_weights(path, ids, data.kaggle_weight, "KaggleWeight", total=False)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][0]
        rows = np.flatnonzero(ids == dup)[:2] + 1
        raise DatasetError(
            f"{path}: EventId {dup} appears {counts[counts > 1][0]} times (data rows "
            f"{rows[0]} and {rows[1]}); event ids must be unique. Was a file concatenated "
            "with itself? Remove the duplicated events"
        )


def _check_undefined(path: Path, data: HiggsMLData, jets: np.ndarray) -> None:
    """-999 exactly where the jet multiplicity leaves a feature undefined (and nowhere else)."""
    ids = data.event_id
    rules = {name: jets == 0 for name in NEEDS_ONE_JET}
    rules.update({name: jets <= 1 for name in NEEDS_TWO_JETS})
    for j, name in enumerate(FEATURES):
        if name in MAY_BE_UNDEFINED:
            continue
        undefined = data.features[:, j] == UNDEFINED
        should = rules.get(name)
        if should is None:
            i = _first(undefined)
            if i is not None:
                raise _value_error(
                    path,
                    name,
                    ids,
                    i,
                    "-999 (undefined)",
                    "a defined value: only "
                    f"{', '.join(MAY_BE_UNDEFINED)} and the jet features may be -999",
                )
            continue
        needed = "at least one jet" if name in NEEDS_ONE_JET else "at least two jets"
        i = _first(undefined & ~should)
        if i is not None:
            raise _value_error(
                path,
                name,
                ids,
                i,
                f"-999 (undefined) with PRI_jet_num = {int(jets[i])}",
                f"a defined value since the feature needs {needed}",
            )
        i = _first(~undefined & should)
        if i is not None:
            raise _value_error(
                path,
                name,
                ids,
                i,
                f"{float(data.features[i, j])!r} with PRI_jet_num = {int(jets[i])}",
                f"-999 since the feature needs {needed}",
            )


def _check_weights(
    path: Path, ids: np.ndarray, w: np.ndarray, column: str, *, total: bool = True
) -> None:
    i = _first(~np.isfinite(w) | (w < 0))
    if i is not None:
        raise _value_error(path, column, ids, i, repr(float(w[i])), "a finite weight >= 0")
    if total and not w.sum() > 0:
        raise DatasetError(
            f"{path}: the {column} column sums to zero over {w.size} events; the weights "
            "normalise the events to the luminosity, so at least one must be positive"
        )


# --------------------------------------------------------------------------- writing


def write_higgsml_csv(
    path: str | os.PathLike[str],
    data: HiggsMLData,
    *,
    variant: Literal["kaggle", "opendata"] = "kaggle",
) -> Path:
    """Write ``data`` as a HiggsML CSV file, atomically (temporary file + rename).

    ``variant="kaggle"`` writes ``EventId``, the features, ``Weight`` and ``Label`` (or, when
    ``data`` has neither weights nor labels, the test-file layout: ``EventId`` and the features
    only); ``"opendata"`` adds ``KaggleSet`` and ``KaggleWeight``. A ``Process`` column is
    appended when ``data.process`` is set. A path ending in ``.gz`` is gzip-compressed.

    Number format: every float is written in the shortest decimal form that reads back as the
    same float64 (Python's ``repr`` rule, e.g. ``138.47``, ``0.00081448039868``, ``1e-05``),
    with ``.0`` added to integral values (``-999.0``, ``-0.0``), so reading the file back
    gives bit-identical arrays. ``PRI_jet_num`` is written as an integer, labels as ``s``/``b``.

    Returns ``path``.
    """
    import pyarrow as pa
    import pyarrow.csv as pv

    path = Path(path)
    if variant not in ("kaggle", "opendata"):
        raise ConfigError(
            f"variant must be 'kaggle' or 'opendata', got {variant!r}."
            f"{did_you_mean(str(variant), ('kaggle', 'opendata'))}"
        )
    if not isinstance(data, HiggsMLData):
        raise ConfigError(
            f"data must be a HiggsMLData (e.g. from read_higgsml_csv), got {type(data).__name__}"
        )
    needed = ["weight", "label"]
    if variant == "opendata":
        needed += ["kaggle_set", "kaggle_weight"]
    missing = [name for name in needed if getattr(data, name) is None]
    if variant == "kaggle" and len(missing) == 1:
        raise ConfigError(
            f"data has {'label' if missing == ['weight'] else 'weight'} but no {missing[0]}; the "
            "Kaggle layout needs both Weight and Label (or neither, for a test file)"
        )
    if variant == "opendata" and missing:
        raise ConfigError(
            f"variant='opendata' needs data.{', data.'.join(missing)}, which is None; write "
            "variant='kaggle' instead or set the fields with dataclasses.replace"
        )
    if data.label is not None and not np.isin(data.label, (0, 1)).all():
        raise ConfigError("data.label must hold 0 (background) or 1 (signal) only")
    columns = _file_columns(data, with_opendata=variant == "opendata")
    arrays = {}
    for name, values in columns.items():
        if values.dtype.kind == "f":
            arrays[name] = _format_floats(values, as_int=name == "PRI_jet_num")
        elif values.dtype.kind == "U":
            _check_text(name, values)
            arrays[name] = pa.array(values, type=pa.string())
        else:
            arrays[name] = pa.array(values)
    table = pa.table(arrays)
    # pyarrow quotes the header even with quoting_style="none"; the challenge files do not.
    header = (",".join(columns) + "\n").encode()
    options = pv.WriteOptions(include_header=False, quoting_style="none")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        compression = "gzip" if path.suffix == ".gz" else None
        with pa.output_stream(str(tmp), compression=compression) as out:
            out.write(header)
            pv.write_csv(table, out, write_options=options)
    return path


def _format_floats(values: np.ndarray, *, as_int: bool = False) -> pa.Array:
    """float64 -> shortest round-trip strings, with ``.0`` on integral values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if as_int and np.isfinite(values).all() and (values == np.round(values)).all():
        return pa.array(values.astype(np.int64))
    text = pc.cast(pa.array(values, type=pa.float64()), pa.string())
    integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
    return pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)


def _check_text(name: str, values: np.ndarray) -> None:
    bad = np.zeros(values.shape, dtype=bool)
    for char in (",", '"', "\n", "\r"):
        bad |= np.char.find(values, char) >= 0
    i = _first(bad)
    if i is not None:
        raise ConfigError(
            f"{name} value {str(values[i])!r} (event {i}) contains a comma, quote or line "
            "break, which the HiggsML CSV format cannot hold; use names like 'z_tautau'"
        )


# --------------------------------------------------------------------------- splitting


def split(
    data: HiggsMLData,
    *,
    seed: int | np.random.Generator,
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25),
) -> tuple[HiggsMLData, HiggsMLData, HiggsMLData]:
    """Split events into (train, validation, test) parts whose weights each give the full sample.

    * With ``data.kaggle_set`` (the Open Data file), the challenge's own split is used and
      ``seed``/``fractions`` are ignored: train = ``t`` (Kaggle training set), validation =
      ``b`` (public leaderboard), test = ``v`` (private leaderboard); ``u`` events are
      dropped. Each part's ``weight`` is replaced by ``KaggleWeight``, which the file already
      normalises within each set to the full luminosity.
    * Otherwise the events are split at random with ``numpy.random.default_rng(seed)``,
      stratified by label (each part gets ``fractions`` of the signal and of the
      background, rounded). In each part the weights of each class are then rescaled so that
      the part's total signal weight and total background weight equal those of ``data``.

    Either way the expected numbers of signal and background events s and b, hence the AMS
    (:func:`colliderlab.higgsml.ams.ams`), computed on any one part estimate those of the full
    luminosity, as on the challenge leaderboards. Events keep their file order within a part.
    The same ``seed`` gives the same split.
    """
    if not isinstance(data, HiggsMLData):
        raise ConfigError(f"data must be a HiggsMLData, got {type(data).__name__}")
    if data.kaggle_set is not None:
        return _split_kaggle(data)
    if data.label is None:
        raise ConfigError(
            "split() stratifies by label but data.label is None (a Kaggle test file); only "
            "labelled data can be split"
        )
    fr = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in (1, 0):
        idx = rng.permutation(np.flatnonzero(data.label == cls))
        n_first = round(fr[0] * idx.size)
        n_second = min(idx.size, n_first + round(fr[1] * idx.size))
        for part, chunk in zip(parts, np.split(idx, [n_first, n_second]), strict=True):
            part.append(chunk)
    label, weight = data.label, data.weight
    out = []
    for role, chunks in zip(("train", "validation", "test"), parts, strict=True):
        idx = np.sort(np.concatenate(chunks))
        sub = data.subset(idx)
        if weight is not None:
            sub = dataclasses.replace(sub, weight=_rescale(weight, label, idx, role))
        out.append(sub)
    return out[0], out[1], out[2]


def _check_fractions(fractions: Any) -> tuple[float, float, float]:
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        fr = ()
    if len(fr) != 3 or not all(0 < f < 1 for f in fr) or abs(sum(fr) - 1) > 1e-9:
        raise ConfigError(
            f"fractions must be three numbers in (0, 1) summing to 1 (train, validation, "
            f"test), got {fractions!r}; e.g. (0.5, 0.25, 0.25)"
        )
    return fr[0], fr[1], fr[2]


def _rescale(weight: np.ndarray, label: np.ndarray, idx: np.ndarray, role: str) -> np.ndarray:
    """``weight[idx]`` with each class scaled to the class's total weight over all events."""
    part = weight[idx]
    for cls, name in ((1, "signal"), (0, "background")):
        sel = label[idx] == cls
        target = weight[label == cls].sum()
        have = part[sel].sum()
        if target > 0 and not have > 0:
            raise ConfigError(
                f"the {role} part of the split has no {name} event with a positive weight "
                f"({weight.size} events in all), so its weights cannot be rescaled to the full "
                "sample; use more events or larger fractions"
            )
        if have > 0:
            part[sel] *= target / have
    return part


def _split_kaggle(data: HiggsMLData) -> tuple[HiggsMLData, HiggsMLData, HiggsMLData]:
    if data.kaggle_weight is None:
        raise ConfigError(
            "data.kaggle_set is set but data.kaggle_weight is None; the Kaggle split needs both "
            "(or drop kaggle_set with dataclasses.replace(data, kaggle_set=None) for a random "
            "split)"
        )
    out = []
    for code, role in (("t", "train"), ("b", "validation"), ("v", "test")):
        mask = data.kaggle_set == code
        if not mask.any():
            raise ConfigError(
                f"data has a KaggleSet column but no event in set {code!r} (the {role} part); "
                "for a random split of such a sample, drop it first: split(dataclasses.replace("
                "data, kaggle_set=None, kaggle_weight=None), seed=...)"
            )
        sub = data.subset(mask)
        out.append(dataclasses.replace(sub, weight=sub.kaggle_weight))
    return out[0], out[1], out[2]
