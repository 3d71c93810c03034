"""HiggsML challenge files (colliderlab.higgsml.csvio) and the AMS (colliderlab.higgsml.ams).

The reference file is the first 1,000 events of the CERN Open Data HiggsML file
(tests/data/README.md says where it comes from).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from colliderlab.core.errors import ConfigError, DatasetError, UnknownNameError
from colliderlab.higgsml.ams import ams, ams_at, ams_curve, best_threshold, plot_ams_curve
from colliderlab.higgsml.csvio import HiggsMLData, read_higgsml_csv, split, write_higgsml_csv
from colliderlab.higgsml.schema import (
    FEATURES,
    KAGGLE_COLUMNS,
    MAY_BE_UNDEFINED,
    NEEDS_ONE_JET,
    NEEDS_TWO_JETS,
    OPENDATA_COLUMNS,
    UNDEFINED,
)

REAL = (
    Path(__file__).parent / "data" / "higgsml" / "atlas-higgs-challenge-2014-v2_first1000rows.csv"
)
ARRAYS = ("event_id", "features", "weight", "label", "kaggle_set", "kaggle_weight", "process")


@pytest.fixture(scope="module")
def real() -> HiggsMLData:
    return read_higgsml_csv(REAL)


def assert_same(a: HiggsMLData, b: HiggsMLData) -> None:
    """Bit-identical arrays, field by field (None where the other is None)."""
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)


# --------------------------------------------------------------------------- the real file


def test_real_file_contents(real):
    assert len(real) == 1000
    np.testing.assert_array_equal(real.event_id, np.arange(100000, 101000))
    assert real.features.shape == (1000, 30)
    assert (real.label == 1).sum() == 349
    assert (real.label == 0).sum() == 651
    assert set(real.kaggle_set.tolist()) == {"t"}
    assert real.process is None
    assert real.column("DER_mass_MMC")[0] == 138.47
    assert real.label[0] == 1  # 's'
    assert real.label[1] == 0  # 'b'
    # The weights are those of the full file: positive, the signal ones much smaller.
    assert (real.weight > 0).all()
    assert real.weight[real.label == 1].max() < real.weight[real.label == 0].min()
    assert real.event_id.dtype == np.int64
    assert real.label.dtype == np.int8


def test_real_file_undefined_pattern(real):
    jets = real.column("PRI_jet_num")
    assert set(np.unique(jets)) == {0.0, 1.0, 2.0, 3.0}
    for name in NEEDS_ONE_JET:
        np.testing.assert_array_equal(real.column(name) == UNDEFINED, jets == 0)
    for name in NEEDS_TWO_JETS:
        np.testing.assert_array_equal(real.column(name) == UNDEFINED, jets <= 1)
    assert (real.column("DER_mass_MMC") == UNDEFINED).any()  # the mass estimate can fail
    others = [f for f in FEATURES if f not in NEEDS_ONE_JET + NEEDS_TWO_JETS + MAY_BE_UNDEFINED]
    assert not (real.features[:, [FEATURES.index(f) for f in others]] == UNDEFINED).any()


def test_data_helpers(real):
    assert "n=1000" in repr(real)
    with pytest.raises(UnknownNameError, match="DER_mass_MMC"):
        real.column("DER_mass_mmc")
    sub = real.subset(real.label == 1)
    assert len(sub) == 349
    assert (sub.label == 1).all()
    np.testing.assert_array_equal(real.subset([2, 0]).event_id, [100002, 100000])
    assert len(real.subset(slice(10, 20))) == 10
    with pytest.raises(ConfigError, match="one entry per event"):
        real.subset(np.ones(3, dtype=bool))
    frame = real.to_frame()
    assert tuple(frame.columns) == OPENDATA_COLUMNS
    assert frame["Label"].iloc[0] == "s"
    assert frame["DER_mass_MMC"].iloc[0] == 138.47
    with pytest.raises(ConfigError, match=r"shape \(n_events, 30\)"):
        HiggsMLData(event_id=np.arange(3), features=np.zeros((3, 29)))
    with pytest.raises(ConfigError, match="weight must have one entry per event"):
        HiggsMLData(event_id=np.arange(3), features=np.zeros((3, 30)), weight=np.ones(2))


# --------------------------------------------------------------------------- round trips


def test_opendata_round_trip_reproduces_the_original_bytes(real, tmp_path):
    out = write_higgsml_csv(tmp_path / "copy.csv", real, variant="opendata")
    # Shortest round-trip floats with '.0' on integral values: the very format of the file.
    assert out.read_bytes() == REAL.read_bytes()
    assert_same(read_higgsml_csv(out), real)
    assert [p.name for p in tmp_path.iterdir()] == ["copy.csv"]  # no temporary file left


def test_kaggle_round_trip_gzip_and_process(real, tmp_path):
    path = write_higgsml_csv(tmp_path / "training.csv.gz", real, variant="kaggle")
    with gzip.open(path, "rt") as f:
        assert f.readline().rstrip("\n").split(",") == list(KAGGLE_COLUMNS)
    back = read_higgsml_csv(path)
    assert back.kaggle_set is None
    assert back.kaggle_weight is None
    assert_same(back, dataclasses.replace(real, kaggle_set=None, kaggle_weight=None))

    process = np.where(real.label == 1, "h_tautau", "z_tautau")
    with_process = dataclasses.replace(real, process=process)
    back = read_higgsml_csv(write_higgsml_csv(tmp_path / "p.csv", with_process, variant="opendata"))
    assert_same(back, with_process)
    assert back.process[0] == "h_tautau"


def test_round_trip_is_exact_for_full_precision_floats(real, tmp_path):
    rng = np.random.default_rng(5)
    defined = real.features != UNDEFINED
    defined[:, FEATURES.index("PRI_jet_num")] = False
    features = real.features.copy()
    features[defined] *= 1 + 1e-7 * rng.standard_normal(defined.sum())
    noisy = dataclasses.replace(real, features=features, weight=real.weight * np.pi)
    back = read_higgsml_csv(write_higgsml_csv(tmp_path / "x.csv", noisy, variant="opendata"))
    assert_same(back, noisy)


def test_kaggle_test_file_without_weight_and_label(real, tmp_path):
    unlabelled = HiggsMLData(event_id=real.event_id, features=real.features)
    path = write_higgsml_csv(tmp_path / "test.csv", unlabelled)
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == ["EventId", *FEATURES]
    assert len(lines) == 1001
    back = read_higgsml_csv(path)
    assert back.weight is None
    assert back.label is None
    assert_same(back, unlabelled)
    with pytest.raises(ConfigError, match="stratifies by label"):
        split(back, seed=1)


def test_write_errors(real, tmp_path):
    with pytest.raises(ConfigError, match=r"'kaggle' or 'opendata'.*Did you mean 'kaggle'"):
        write_higgsml_csv(tmp_path / "a.csv", real, variant="kagle")  # type: ignore[arg-type]
    plain = dataclasses.replace(real, kaggle_set=None, kaggle_weight=None)
    with pytest.raises(ConfigError, match=r"data\.kaggle_set, data\.kaggle_weight"):
        write_higgsml_csv(tmp_path / "a.csv", plain, variant="opendata")
    with pytest.raises(ConfigError, match="has label but no weight"):
        write_higgsml_csv(tmp_path / "a.csv", dataclasses.replace(real, weight=None))
    bad = dataclasses.replace(real, process=np.full(len(real), "h,tautau"))
    with pytest.raises(ConfigError, match="Process value 'h,tautau'"):
        write_higgsml_csv(tmp_path / "a.csv", bad)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bad files

HEADER = REAL.read_text().splitlines()[0].split(",")
ROWS = [line.split(",") for line in REAL.read_text().splitlines()[1:21]]
# Rows of the reference file: EventId 100001 has one jet, 100003 none, 100000 two.


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def edit(event_id: int, column: str, value: str):
    def change(header, rows):
        rows[event_id - 100000][header.index(column)] = value

    return change


def drop_columns(*names: str):
    def change(header, rows):
        for name in names:
            j = header.index(name)
            for r in [header, *rows]:
                del r[j]

    return change


def add_column(name: str):
    def change(header, rows):
        header.append(name)
        for r in rows:
            r.append("1")

    return change


def every_row(column: str, value: str):
    def change(header, rows):
        for r in rows:
            r[header.index(column)] = value

    return change


BAD_FILES = {
    "missing": (drop_columns("PRI_met", "Weight"), ["lacks", "PRI_met", "Weight"]),
    "missing_kaggle_weight": (drop_columns("KaggleWeight"), ["lacks", "KaggleWeight"]),
    "unknown": (add_column("Foo"), ["unknown column", "Foo"]),
    "misspelt": (
        lambda h, r: h.__setitem__(1, "DER_mass_MMCC"),
        ["DER_mass_MMCC", "Did you mean 'DER_mass_MMC'"],
    ),
    "nan": (edit(100002, "DER_pt_h", "nan"), ["'DER_pt_h'", "EventId 100002", "finite"]),
    "inf": (edit(100005, "PRI_met", "inf"), ["'PRI_met'", "EventId 100005", "finite"]),
    "empty_value": (edit(100004, "PRI_tau_pt", ""), ["'PRI_tau_pt'", "EventId 100004", "empty"]),
    "not_a_number": (edit(100006, "DER_sum_pt", "12.x"), ["'DER_sum_pt'", "100006", "'12.x'"]),
    "undefined_not_allowed": (
        edit(100004, "DER_mass_vis", "-999.0"),
        ["'DER_mass_vis'", "EventId 100004", "-999"],
    ),
    "undefined_jet_with_jet": (
        edit(100001, "PRI_jet_leading_pt", "-999.0"),
        ["'PRI_jet_leading_pt'", "EventId 100001", "PRI_jet_num = 1"],
    ),
    "defined_jet_without_jet": (
        edit(100003, "PRI_jet_leading_eta", "0.5"),
        ["'PRI_jet_leading_eta'", "EventId 100003", "PRI_jet_num = 0", "-999"],
    ),
    "defined_second_jet_with_one": (
        edit(100001, "DER_mass_jet_jet", "50.0"),
        ["'DER_mass_jet_jet'", "EventId 100001", "PRI_jet_num = 1"],
    ),
    "jet_num": (edit(100000, "PRI_jet_num", "4"), ["'PRI_jet_num'", "EventId 100000", "0, 1, 2"]),
    "label": (edit(100007, "Label", "x"), ["'Label'", "EventId 100007", "'x'"]),
    "negative_weight": (edit(100008, "Weight", "-0.5"), ["'Weight'", "EventId 100008", "-0.5"]),
    "nan_weight": (edit(100009, "Weight", "nan"), ["'Weight'", "EventId 100009"]),
    "negative_kaggle_weight": (
        edit(100010, "KaggleWeight", "-1.0"),
        ["'KaggleWeight'", "EventId 100010"],
    ),
    "zero_total_weight": (every_row("Weight", "0.0"), ["Weight", "sums to zero"]),
    "kaggle_set": (edit(100011, "KaggleSet", "z"), ["'KaggleSet'", "EventId 100011", "t, b, v, u"]),
    "duplicate_id": (edit(100012, "EventId", "100003"), ["EventId 100003", "unique"]),
    "short_row": (lambda h, r: r[3].pop(), ["34 comma-separated values", "35 columns", "100003"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_rejected_naming_column_and_event(case, tmp_path):
    change, expected = BAD_FILES[case]
    header, rows = list(HEADER), [list(r) for r in ROWS]
    change(header, rows)
    path = write_rows(tmp_path / f"{case}.csv", header, rows)
    with pytest.raises(DatasetError) as info:
        read_higgsml_csv(path)
    message = str(info.value)
    assert str(path) in message
    for text in expected:
        assert text in message


def test_validate_false_skips_value_checks_but_not_column_checks(tmp_path):
    header, rows = list(HEADER), [list(r) for r in ROWS]
    edit(100002, "DER_pt_h", "nan")(header, rows)
    edit(100001, "PRI_jet_leading_pt", "-999.0")(header, rows)
    data = read_higgsml_csv(write_rows(tmp_path / "a.csv", header, rows), validate=False)
    assert math.isnan(data.column("DER_pt_h")[2])
    add_column("Foo")(header, rows)
    with pytest.raises(DatasetError, match="Foo"):
        read_higgsml_csv(write_rows(tmp_path / "b.csv", header, rows), validate=False)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (",".join(HEADER).encode() + b"\n", "no events"),
        (bytes(range(256)) * 4, "not a CSV text file"),
        (b"PAR1\x15\x04\x15\x80\x00\x00garbage", "not a CSV text file"),
        (b"\x1f\x8b\x08\x00truncated gzip", "gzip"),
        (b"hello world\n1 2 3\n", "none of the expected column names"),
        (";".join(HEADER).encode() + b"\n", "separated by commas"),
    ],
)
def test_unreadable_files(content, expected, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=expected) as info:
        read_higgsml_csv(path, validate=False)
    assert str(path) in str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_higgsml_csv(tmp_path / "nothing.csv")


# --------------------------------------------------------------------------- split


def class_sums(data: HiggsMLData) -> np.ndarray:
    return np.array([data.weight[data.label == c].sum() for c in (1, 0)])


def test_random_split_is_stratified_disjoint_complete_and_keeps_the_luminosity(real):
    data = dataclasses.replace(real, kaggle_set=None, kaggle_weight=None)
    parts = split(data, seed=3)
    ids = np.concatenate([p.event_id for p in parts])
    assert ids.size == len(data)  # disjoint and complete
    np.testing.assert_array_equal(np.sort(ids), data.event_id)
    assert [len(p) for p in parts] == [500, 250, 250]
    for part, fraction in zip(parts, (0.5, 0.25, 0.25), strict=True):
        assert abs((part.label == 1).sum() - fraction * 349) <= 1  # stratified, 1 for rounding
        assert (np.diff(part.event_id) > 0).all()  # file order kept
        # Each class sums to its full-sample weight (so an AMS on a part is at full scale).
        np.testing.assert_allclose(class_sums(part), class_sums(data), rtol=1e-9)
    again = split(data, seed=3)
    for a, b in zip(parts, again, strict=True):
        assert_same(a, b)
    other = split(data, seed=np.random.default_rng(4))
    assert not np.array_equal(other[0].event_id, parts[0].event_id)
    assert [len(p) for p in split(data, seed=3, fractions=(0.6, 0.2, 0.2))] == [600, 200, 200]
    with pytest.raises(ConfigError, match="summing to 1"):
        split(data, seed=3, fractions=(0.5, 0.5, 0.5))
    two_signal_three_background = [0, 1, 2, 3, int(np.flatnonzero(data.label == 1)[1])]
    with pytest.raises(ConfigError, match="validation part of the split has no signal event"):
        split(data.subset(two_signal_three_background), seed=0)


def test_kaggle_split_uses_the_challenge_sets(real):
    codes = np.array(["t", "b", "v", "u"])[np.arange(len(real)) % 4]
    data = dataclasses.replace(real, kaggle_set=codes, kaggle_weight=real.weight * 3)
    train, val, test = split(data, seed=0)
    for part, code in ((train, "t"), (val, "b"), (test, "v")):
        assert (part.kaggle_set == code).all()
        assert len(part) == 250
        np.testing.assert_array_equal(part.weight, part.kaggle_weight)
    # The 1000 reference events are all in the training set: no Kaggle split possible.
    with pytest.raises(ConfigError, match="no event in set 'b'"):
        split(real, seed=0)


# --------------------------------------------------------------------------- AMS


def test_ams_by_hand():
    s, b = 10.0, 100.0
    by_hand = math.sqrt(2 * ((s + b + 10) * math.log(1 + s / (b + 10)) - s))
    assert ams(s, b) == pytest.approx(by_hand, rel=1e-12)
    assert ams(s, b, b_reg=0.0) == pytest.approx(
        math.sqrt(2 * ((s + b) * math.log(1 + s / b) - s)), rel=1e-12
    )
    assert ams(0.0, 50.0) == 0.0
    values = ams(np.array([10.0, 20.0]), 100.0)
    assert values.shape == (2,)
    assert values[0] == pytest.approx(by_hand, rel=1e-12)
    with pytest.raises(ConfigError, match="non-negative"):
        ams(-1.0, 10.0)
    with pytest.raises(ConfigError, match="b_reg"):
        ams(1.0, 10.0, b_reg=-1)


@pytest.mark.parametrize(("s", "b"), [(1.0, 1e4), (1e-3, 100.0), (1e-9, 1e6)])
def test_ams_small_signal_limit(s, b):
    # s << b + b_reg: AMS -> s / sqrt(b + b_reg) (within 1%; the next term is -s/(6(b+b_reg))).
    assert ams(s, b) == pytest.approx(s / math.sqrt(b + 10), rel=1e-2)


def test_ams_curve_matches_brute_force():
    rng = np.random.default_rng(7)
    n = 400
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.random(n) + 0.3 * labels, 2)  # ties on purpose
    weights = rng.exponential(1.0, n) * np.where(labels == 1, 0.05, 2.0)
    thr, values, s, b = ams_curve(labels, scores, sample_weight=weights)
    np.testing.assert_array_equal(thr, np.unique(scores)[::-1])
    for t, a, s_t, b_t in zip(thr, values, s, b, strict=True):
        sel = scores >= t
        assert s_t == pytest.approx(weights[sel & (labels == 1)].sum(), rel=1e-12)
        assert b_t == pytest.approx(weights[sel & (labels == 0)].sum(), rel=1e-12)
        assert a == pytest.approx(ams_at(labels, scores, t, sample_weight=weights), rel=1e-12)
    best = best_threshold(labels, scores, sample_weight=weights)
    assert ams_at(labels, scores, best, sample_weight=weights) == pytest.approx(values.max())
    thin = ams_curve(labels, scores, sample_weight=weights, n_points=10)
    assert len(thin[0]) == 10
    assert thin[0][0] == thr[0]
    assert thin[0][-1] == thr[-1]


def staircase() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events at scores 0.9, 0.8, ... adding (signal, background) weight step by step.

    Cumulative AMS: 7.13 (a lone spike: 30 signal, no background), 1.46, 6.12, 6.36, 6.59,
    4.95. The plain maximum is the spike at 0.9; averaged over 3 neighbours, the plateau
    around 0.6 wins (6.36 against 4.30 for the spike).
    """
    steps = [(30, 0), (0, 400), (100, 0), (10, 30), (10, 30), (0, 400)]
    labels, scores, weights = [], [], []
    for k, (ds, db) in enumerate(steps):
        for label, w in ((1, ds), (0, db)):
            if w:
                labels.append(label)
                scores.append(0.9 - 0.1 * k)
                weights.append(float(w))
    return np.array(labels), np.array(scores), np.array(weights)


def test_best_threshold_known_optimum():
    labels, scores, weights = staircase()
    assert best_threshold(labels, scores, sample_weight=weights) == pytest.approx(0.9)
    assert best_threshold(labels, scores, sample_weight=weights, smooth=3) == pytest.approx(0.6)
    assert ams_at(labels, scores, 0.9, sample_weight=weights) == pytest.approx(ams(30, 0))
    assert ams_at(labels, scores, 0.6, sample_weight=weights) == pytest.approx(ams(140, 430))
    # A plain optimum: 50 signal over 50 background beats the looser and tighter cuts.
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    weights = np.array([10.0, 50.0, 40.0, 1000.0])
    assert ams(50, 50) > max(ams(10, 0), ams(10, 50), ams(50, 1050))
    assert best_threshold(labels, scores, sample_weight=weights) == 0.7


@pytest.mark.parametrize(
    ("labels", "scores", "weights", "expected"),
    [
        ([1, 0, 1], [0.1, 0.2], [1.0, 1.0, 1.0], "scores has shape"),
        ([1, 0, 1], [0.1, 0.2, 0.3], [1.0, 1.0], "sample_weight has shape"),
        ([1, 2, 0], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], "0 .background. or 1"),
        ([1, 0, 1], [0.1, 0.2, 0.3], [1.0, -1.0, 1.0], "non-negative"),
        ([1, 0, 1], [0.1, np.nan, 0.3], [1.0, 1.0, 1.0], "NaN"),
        ([], [], [], "non-empty"),
    ],
)
def test_ams_input_errors(labels, scores, weights, expected):
    with pytest.raises(ConfigError, match=expected):
        ams_curve(labels, scores, sample_weight=weights)
    with pytest.raises(ConfigError, match=expected):
        ams_at(labels, scores, 0.5, sample_weight=weights)


def test_best_threshold_rejects_bad_smooth():
    labels, scores, weights = staircase()
    with pytest.raises(ConfigError, match="smooth"):
        best_threshold(labels, scores, sample_weight=weights, smooth=-1)


def test_plot_ams_curve(tmp_path):
    labels, scores, weights = staircase()
    thr, values, s, b = ams_curve(labels, scores, sample_weight=weights)
    fraction = (s + b) / (s[-1] + b[-1])
    path = plot_ams_curve({"staircase": (fraction, values)}, tmp_path / "plots" / "ams.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["ams.png"]
    with pytest.raises(ConfigError, match="same length"):
        plot_ams_curve({"x": (thr, values[:-1])}, tmp_path / "bad.png")
