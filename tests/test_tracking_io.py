"""TrackML file I/O: the real (thinned) TrackML event and detector file, round trips, and a
clear DatasetError for each kind of bad input."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from colliderlab.core.errors import DatasetError
from colliderlab.tracking.event import DETECTOR_COLUMNS, TrackingEvent
from colliderlab.tracking.io import (
    event_prefix,
    iter_events,
    list_events,
    read_detectors,
    read_event,
    write_detectors,
    write_event,
)

DATA = Path(__file__).parent / "data" / "trackml"
PREFIX = DATA / "event000000001"
TABLES = ("hits", "particles", "truth", "cells")


@pytest.fixture(scope="module")
def event() -> TrackingEvent:
    return read_event(PREFIX)


def assert_events_equal(a: TrackingEvent, b: TrackingEvent) -> None:
    assert a.event_id == b.event_id
    for name in TABLES:
        left, right = getattr(a, name), getattr(b, name)
        if left is None or right is None:
            assert left is None, name
            assert right is None, name
            continue
        pd.testing.assert_frame_equal(
            left.reset_index(drop=True), right.reset_index(drop=True), check_exact=True
        )


@pytest.fixture
def plain_copy(tmp_path: Path, event: TrackingEvent) -> Path:
    """The real event as plain .csv files in tmp_path (easy to corrupt); returns the prefix."""
    return write_event(event, tmp_path, compress=False)


def _edit(prefix: Path, part: str, change) -> None:
    path = Path(f"{prefix}-{part}.csv")
    df = pd.read_csv(path, dtype=str)
    df = change(df)
    df.to_csv(path, index=False)


# --------------------------------------------------------------------------- the real files


def test_real_event_is_read_with_the_documented_sizes_and_dtypes(event: TrackingEvent) -> None:
    assert event.event_id == 1
    assert event.n_hits == 5527
    assert len(event.truth) == 5527
    assert len(event.particles) == 548
    assert event.cells is not None
    assert len(event.cells) == 18564
    # the public particles file has an extra particle_type column: kept
    assert "particle_type" in event.particles.columns
    assert event.particles["particle_type"].dtype == np.int64
    for col in ("hit_id", "volume_id", "layer_id", "module_id"):
        assert event.hits[col].dtype == np.int64
    for col in ("x", "y", "z"):
        assert event.hits[col].dtype == np.float32
    assert event.truth["particle_id"].dtype == np.int64
    assert event.truth["weight"].dtype == np.float64
    # particle ids above 2**53 survive (they would not as float64)
    big = event.particles["particle_id"].max()
    assert big > 2**53
    raw = pd.read_csv(DATA / "event000000001-particles.csv.gz", dtype={"particle_id": str})
    assert str(big) in set(raw["particle_id"])


def test_one_file_of_the_event_may_be_given_instead_of_the_prefix(event: TrackingEvent) -> None:
    again = read_event(DATA / "event000000001-truth.csv.gz", cells=False)
    assert again.cells is None
    pd.testing.assert_frame_equal(again.truth, event.truth)


def test_real_detector_file_drops_the_index_column() -> None:
    det = read_detectors(DATA / "detectors.csv.gz")
    assert len(det) == 18728
    assert tuple(det.columns) == DETECTOR_COLUMNS
    assert det["module_id"].dtype == np.int64
    assert det["cx"].dtype == np.float64
    # the packaged default geometry is the same file
    pd.testing.assert_frame_equal(read_detectors(), det)


def test_detectors_round_trip(tmp_path: Path) -> None:
    det = read_detectors()
    path = write_detectors(det, tmp_path / "sub" / "detectors.csv.gz")
    pd.testing.assert_frame_equal(read_detectors(path), det, check_exact=True)


def test_duplicate_module_is_an_error(tmp_path: Path) -> None:
    det = read_detectors()
    bad = pd.concat([det, det.iloc[[7]]], ignore_index=True)
    path = write_detectors(bad, tmp_path / "detectors.csv")
    with pytest.raises(DatasetError, match="listed more than once"):
        read_detectors(path)


def test_missing_detector_column_is_named(tmp_path: Path) -> None:
    det = read_detectors().drop(columns=["pitch_v"])
    path = tmp_path / "detectors.csv"
    det.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="'pitch_v'"):
        read_detectors(path)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_is_exact(tmp_path: Path, event: TrackingEvent, compress: bool) -> None:
    prefix = write_event(event, tmp_path, compress=compress)
    assert prefix == tmp_path / "event000000001"
    suffix = ".csv.gz" if compress else ".csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"event000000001-{part}{suffix}" for part in TABLES
    )
    assert_events_equal(read_event(prefix), event)


def test_rewriting_in_the_other_format_leaves_one_file_per_part(
    tmp_path: Path, event: TrackingEvent
) -> None:
    write_event(event, tmp_path, compress=False)
    prefix = write_event(event, tmp_path, compress=True)
    assert len(list(tmp_path.iterdir())) == 4
    assert_events_equal(read_event(prefix), event)


def test_empty_event_round_trips(tmp_path: Path, event: TrackingEvent) -> None:
    empty = TrackingEvent(
        event_id=42,
        hits=event.hits.iloc[:0],
        particles=event.particles.iloc[:0],
        truth=event.truth.iloc[:0],
        cells=event.cells.iloc[:0],
    )
    prefix = write_event(empty, tmp_path)
    assert prefix.name == "event000000042"
    back = read_event(prefix)
    assert back.n_hits == 0
    assert_events_equal(back, empty)


def test_event_without_cells_reads_back_without_cells(tmp_path: Path, event: TrackingEvent) -> None:
    no_cells = TrackingEvent(3, event.hits, event.particles, event.truth, None)
    prefix = write_event(no_cells, tmp_path)
    assert not Path(f"{prefix}-cells.csv.gz").exists()
    assert read_event(prefix).cells is None


def test_list_and_iter_events_in_id_order(tmp_path: Path, event: TrackingEvent) -> None:
    small = TrackingEvent(0, event.hits.iloc[:10], event.particles, event.truth.iloc[:10], None)
    for eid in (20, 3, 1000):
        small.event_id = eid
        write_event(small, tmp_path)
    (tmp_path / "notes.txt").write_text("not an event")
    prefixes = list_events(tmp_path)
    assert [p.name for p in prefixes] == ["event000000003", "event000000020", "event000001000"]
    assert [e.event_id for e in iter_events(tmp_path)] == [3, 20, 1000]
    assert [e.event_id for e in iter_events(tmp_path, limit=2)] == [3, 20]
    assert event_prefix(tmp_path, 7) == tmp_path / "event000000007"


# --------------------------------------------------------------------------- bad input


def test_missing_file_is_named(plain_copy: Path) -> None:
    Path(f"{plain_copy}-particles.csv").unlink()
    with pytest.raises(DatasetError, match=r"missing file event000000001-particles\.csv"):
        read_event(plain_copy)


def test_missing_column_is_named(plain_copy: Path) -> None:
    _edit(plain_copy, "truth", lambda df: df.drop(columns=["tz"]))
    with pytest.raises(DatasetError, match=r"truth\.csv lacks the column\(s\) 'tz'"):
        read_event(plain_copy)


def test_duplicate_hit_id_is_named(plain_copy: Path) -> None:
    def dup(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[1, "hit_id"] = df.loc[0, "hit_id"]
        return df

    _edit(plain_copy, "hits", dup)
    with pytest.raises(DatasetError, match=r"hit_id\(s\) appear more than once \(6\)"):
        read_event(plain_copy)


def test_truth_not_matching_hits_gives_counts(plain_copy: Path) -> None:
    _edit(plain_copy, "truth", lambda df: df.iloc[3:])
    with pytest.raises(DatasetError, match=r"3 hit id\(s\) have no truth row \(6, 9, 31\)"):
        read_event(plain_copy)


@pytest.mark.parametrize("value", ["nan", "inf", ""])
def test_non_finite_coordinate_is_named(plain_copy: Path, value: str) -> None:
    def spoil(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[4, "y"] = value
        return df

    _edit(plain_copy, "hits", spoil)
    with pytest.raises(DatasetError, match=r"column 'y' has 1 NaN or infinite value.*row\(s\) 4"):
        read_event(plain_copy)


@pytest.mark.parametrize("value", ["12.5", "abc", ""])
def test_non_integer_id_is_named(plain_copy: Path, value: str) -> None:
    def spoil(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[2, "particle_id"] = value
        return df

    _edit(plain_copy, "particles", spoil)
    with pytest.raises(DatasetError, match=r"'particle_id' must hold integers.*row 2"):
        read_event(plain_copy)


def test_truth_particle_missing_from_particles(plain_copy: Path, event: TrackingEvent) -> None:
    used = event.truth["particle_id"].iloc[0]
    _edit(plain_copy, "particles", lambda df: df[df["particle_id"] != str(used)])
    with pytest.raises(DatasetError, match="not in the particles table"):
        read_event(plain_copy)


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    for src in DATA.glob("event000000001-*"):
        shutil.copy(src, tmp_path / src.name)
    target = tmp_path / "event000000001-hits.csv.gz"
    data = target.read_bytes()
    target.chmod(0o644)
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="not a complete gzip file"):
        read_event(tmp_path / "event000000001")


def test_foreign_files_are_reported(tmp_path: Path) -> None:
    for src in DATA.glob("event000000001-*"):
        shutil.copy(src, tmp_path / src.name)
    hits = tmp_path / "event000000001-hits.csv.gz"
    hits.chmod(0o644)
    hits.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # not gzip at all
    with pytest.raises(DatasetError, match=r"hits\.csv\.gz"):
        read_event(tmp_path / "event000000001")
    # a valid gzip CSV of the wrong kind: the columns say so
    with gzip.open(hits, "wt") as f:
        f.write("EventId,DER_mass_MMC\n1,2.0\n")
    with pytest.raises(DatasetError, match="lacks the column"):
        read_event(tmp_path / "event000000001")


def test_both_plain_and_gzip_files_are_ambiguous(plain_copy: Path, event: TrackingEvent) -> None:
    src = Path(f"{plain_copy}-hits.csv")
    with gzip.open(f"{src}.gz", "wb") as f:
        f.write(src.read_bytes())
    with pytest.raises(DatasetError, match="keep one of them"):
        read_event(plain_copy)


def test_directory_or_bad_prefix_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"is a directory.*event000000001"):
        read_event(DATA)
    with pytest.raises(DatasetError, match="not a TrackML event prefix"):
        read_event(tmp_path / "myevent")
    with pytest.raises(DatasetError, match="holds no TrackML event"):
        read_event(tmp_path / "event000000009")
    with pytest.raises(DatasetError, match="not a directory"):
        list_events(tmp_path / "nowhere")


def test_errors_are_value_errors(plain_copy: Path) -> None:
    Path(f"{plain_copy}-truth.csv").unlink()
    with pytest.raises(ValueError, match="truth"):
        read_event(plain_copy)
