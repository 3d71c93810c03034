"""HiggsML methods and the analysis runner, on the real 1,000-row challenge sample and on toys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from colliderlab.core.errors import ConfigError, UnknownNameError
from colliderlab.higgsml.ams import ams
from colliderlab.higgsml.csvio import HiggsMLData, read_higgsml_csv, split
from colliderlab.higgsml.features import canonical_frame
from colliderlab.higgsml.methods import BDT, DNN, CutBased, FeatureScaler, make_method
from colliderlab.higgsml.schema import FEATURES, LOW_LEVEL, UNDEFINED
from colliderlab.tagging.metrics import auc

REAL = (
    Path(__file__).parent / "data" / "higgsml" / "atlas-higgs-challenge-2014-v2_first1000rows.csv"
)
#: the 1,000 rows are a slice of the 818,238-row file whose weights are normalised to it
SCALE = 818238 / 1000


@pytest.fixture(scope="module")
def real():
    data = read_higgsml_csv(REAL)
    # a random split of the slice (it holds only KaggleSet t), weights for the full luminosity
    data = dataclasses.replace(
        data, kaggle_set=None, kaggle_weight=None, weight=data.weight * SCALE
    )
    return split(data, seed=3)


def _toy(n=4000, seed=0):
    """Signal: DER_mass_MMC ~ N(125, 12); background: N(91, 12) ten times heavier; the other
    features are noise (copied from a fixed pattern with 0 jets)."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.5).astype(np.int8)
    X = np.tile(np.abs(rng.normal(50, 10, size=(1, len(FEATURES)))), (n, 1))
    X = X + rng.normal(0, 1, size=X.shape)
    X[:, FEATURES.index("DER_mass_MMC")] = np.where(
        label == 1, rng.normal(125, 12, n), rng.normal(91, 12, n)
    )
    X[:, FEATURES.index("PRI_jet_num")] = 0
    X[:, FEATURES.index("PRI_jet_all_pt")] = 0
    for f in FEATURES:
        if "jet" in f and f not in ("PRI_jet_num", "PRI_jet_all_pt"):
            X[:, FEATURES.index(f)] = UNDEFINED
    X[:, FEATURES.index("DER_met_phi_centrality")] = rng.uniform(-1.4, 1.4, n)
    w = np.where(label == 1, 0.5, 5.0)
    return X, label, w


def test_cut_based_finds_the_mass_window():
    X, y, w = _toy()
    cuts = CutBased().fit(X, y, w)
    lo, hi = cuts.cuts_[0]
    # with ten times more background, the lower edge sits more than one resolution (12 GeV)
    # above the 91 GeV peak and near the 125 GeV one; the upper edge keeps the signal's tail
    assert 103 < lo < 130, lo
    assert hi > 135, hi
    sel = cuts.predict_score(X) > 0.5
    assert cuts.train_ams_ == pytest.approx(ams(w[sel & (y == 1)].sum(), w[sel & (y == 0)].sum()))
    assert cuts.train_ams_ > 1.5 * ams(w[y == 1].sum(), w[y == 0].sum())
    assert "DER_mass_MMC" in cuts.describe()


def test_bdt_and_dnn_separate_real_higgsml_events(real):
    train, val, test = real
    for method in (BDT(n_estimators=100), DNN(epochs=15)):
        method.fit(train.features, train.label, train.weight, val.features, val.label, val.weight)
        score = method.predict_score(test.features)
        assert score.shape == (len(test),)
        assert np.isfinite(score).all()
        # published AUCs on the challenge data are ~0.9; 250 test events: > 0.75
        assert auc(test.label, score, test.weight) > 0.75, type(method).__name__


def test_low_level_dnn_sees_only_primitives(real):
    train, _val, _ = real
    dnn = make_method("dnn_low")
    assert dnn.features == LOW_LEVEL
    X = train.features.copy()
    dnn.epochs = 2
    dnn.fit(X, train.label, train.weight)
    base = dnn.predict_score(X[:20])
    X[:, FEATURES.index("DER_mass_MMC")] = 1e6  # a derived feature: no effect
    np.testing.assert_array_equal(dnn.predict_score(X[:20]), base)


def test_scaler_flags_undefined_values():
    X = np.array([[1.0, UNDEFINED], [3.0, 2.0], [5.0, 4.0]])
    sc = FeatureScaler().fit(X, ["PRI_tau_eta", "DER_mass_MMC"])
    Z = sc.transform(X)
    assert Z.shape == (3, 3)  # two features + one missing flag (MMC)
    np.testing.assert_allclose(Z[:, 2], [1, 0, 0])
    assert Z[0, 1] == 0.0  # an undefined value sits at the mean
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(Z[:, 0].mean(), 0, atol=1e-6)


def test_dnn_resumes_to_the_same_model(tmp_path, real):
    train, val, test = real

    class Killed(Exception):
        pass

    class Dies(DNN):
        def _on_epoch(self, epoch):
            if epoch == 3:
                raise Killed

    ck = tmp_path / "ck.pt"
    args = (train.features, train.label, train.weight, val.features, val.label, val.weight)
    with pytest.raises(Killed):
        Dies(epochs=6, seed=5).fit(*args, checkpoint=ck)
    resumed = DNN(epochs=6, seed=5).fit(*args, checkpoint=ck)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4, 5, 6]
    straight = DNN(epochs=6, seed=5).fit(*args)
    np.testing.assert_allclose(
        resumed.predict_score(test.features), straight.predict_score(test.features), atol=1e-6
    )


def test_bad_inputs():
    with pytest.raises(UnknownNameError, match="bdt"):
        make_method("bdtt")
    with pytest.raises(ConfigError, match="30"):
        BDT().fit(np.zeros((5, 3)), np.zeros(5), np.ones(5))
    X, y, w = _toy(200)
    with pytest.raises(ConfigError, match="signal"):
        DNN(epochs=1).fit(X, np.zeros_like(y), w)


def test_analysis_end_to_end(tmp_path):
    from colliderlab.higgsml.analysis import run_analysis

    data = read_higgsml_csv(REAL)
    report = run_analysis(
        data, tmp_path / "a", methods=["cuts", "bdt"], seed=2, weight_scale=SCALE, progress=False
    )
    res = report["results"]
    assert set(res) == {"cuts", "bdt"}
    for r in res.values():
        assert r["ams_test"] > 0
        assert np.isfinite(r["z0"])
    assert res["cuts"]["lumi_factor"] == pytest.approx(1.0)
    assert res["bdt"]["auc_test"] > res["cuts"]["auc_test"]
    # full-file normalisation: ~692 signal and ~411k background events at 20 fb^-1 (the
    # challenge's documented sums), within the statistics of 1,000 rows
    total_s = report["expected_test"]["signal"]
    assert 400 < total_s < 1100
    md = (tmp_path / "a" / "results.md").read_text()
    assert "| BDT | all 30 |" in md
    assert "Cut-based selection" in md
    assert (tmp_path / "a" / "ams.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["results"]["bdt"]["ams_test"] == res["bdt"]["ams_test"]
    # a rerun reuses the finished methods
    stamp = (tmp_path / "a" / "runs" / "bdt" / "result.json").stat().st_mtime_ns
    run_analysis(data, tmp_path / "a", methods=["cuts", "bdt"], seed=2, weight_scale=SCALE)
    assert (tmp_path / "a" / "runs" / "bdt" / "result.json").stat().st_mtime_ns == stamp
    # another threshold rule re-thresholds the stored scores without training again
    scores_stamp = (tmp_path / "a" / "runs" / "bdt" / "scores.npz").stat().st_mtime_ns
    again = run_analysis(
        data, tmp_path / "a", methods=["cuts", "bdt"], seed=2, weight_scale=SCALE, smooth=25
    )["results"]["bdt"]
    assert (tmp_path / "a" / "runs" / "bdt" / "scores.npz").stat().st_mtime_ns == scores_stamp
    from colliderlab.higgsml.ams import best_threshold
    from colliderlab.higgsml.analysis import prepare

    val = split(prepare(data, weight_scale=SCALE), seed=2)[1]
    s_val = np.load(tmp_path / "a" / "runs" / "bdt" / "scores.npz")["val"]
    expected = best_threshold(
        val.label, s_val, sample_weight=val.weight, smooth=25, min_background=20
    )
    assert again["smooth"] == 25
    assert again["threshold"] == expected
    assert again["auc_test"] == res["bdt"]["auc_test"]


def test_analysis_needs_weights(tmp_path):
    from colliderlab.higgsml.analysis import run_analysis

    data = read_higgsml_csv(REAL)
    no_w = HiggsMLData(event_id=data.event_id, features=data.features, label=data.label)
    with pytest.raises(ConfigError, match=r"[Ww]eight"):
        run_analysis(no_w, tmp_path / "b", methods=["cuts"], progress=False)


def test_cli_evaluate_and_train(tmp_path, capsys):
    from colliderlab.cli.main import main

    args = ["--csv", str(REAL), "--no-progress", "--seed", "2"]
    rc = main(
        [
            "evaluate",
            "higgsml",
            *args,
            "--methods",
            "cuts",
            "--weight-scale",
            str(SCALE),
            "-o",
            str(tmp_path / "e"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| cut-based | 5 derived |" in out
    rc = main(["train", "higgsml", *args, "--method", "bdt", "-o", str(tmp_path / "t")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "bdt"
    assert 0.5 < result["auc_test"] <= 1
    assert main(["train", "higgsml", *args, "--method", "xgb"]) == 2
    assert "unknown HiggsML method 'xgb'" in capsys.readouterr().err
    assert main(["evaluate", "higgsml", "--csv", str(tmp_path / "missing.csv")]) != 0


def test_threshold_keeps_a_minimum_of_simulated_background():
    from colliderlab.higgsml.ams import best_threshold

    labels = np.r_[np.ones(10), np.zeros(30)].astype(int)
    scores = np.r_[np.linspace(0.9, 1.0, 10), np.linspace(0.0, 0.8, 30)]
    w = np.r_[np.full(10, 5.0), np.full(30, 100.0)]
    # without the constraint the best selection is the ten signal events alone
    assert best_threshold(labels, scores, sample_weight=w) == pytest.approx(0.9)
    # with it, the selection reaches down to the fifth background event (score 0.8 - 4 step)
    t = best_threshold(labels, scores, sample_weight=w, min_background=5)
    assert t == pytest.approx(np.linspace(0.0, 0.8, 30)[-5])
    with pytest.raises(ConfigError, match="background"):
        best_threshold(labels, scores, sample_weight=w, min_background=31)


# ----------------------------------------------------------------- the canonical frame
def _transformed(X, rng):
    """Each event rotated about the beam by a random angle, mirrored (phi -> -phi) and
    turned around (eta -> -eta) at random: the same physics event."""
    X = X.copy()
    undefined = X == UNDEFINED
    n = len(X)
    phi = [FEATURES.index(f) for f in FEATURES if f.endswith("_phi")]
    eta = [FEATURES.index(f) for f in FEATURES if f.endswith("_eta")]
    X[:, phi] = np.angle(np.exp(1j * (X[:, phi] + rng.uniform(-np.pi, np.pi, (n, 1)))))
    X[:, phi] *= rng.choice([-1.0, 1.0], (n, 1))
    X[:, eta] *= rng.choice([-1.0, 1.0], (n, 1))
    X[undefined] = UNDEFINED
    return X


def _unambiguous(X):
    """Events whose frame is fixed: lepton not at 0 or pi from the tau, tau not at eta = 0."""
    d = np.angle(
        np.exp(1j * (X[:, FEATURES.index("PRI_lep_phi")] - X[:, FEATURES.index("PRI_tau_phi")]))
    )
    return (
        (np.abs(d) > 1e-6) & (np.pi - np.abs(d) > 1e-6) & (X[:, FEATURES.index("PRI_tau_eta")] != 0)
    )


def test_canonical_frame_is_the_same_for_rotated_mirrored_events(real):
    X = real[0].features
    X = X[_unambiguous(X)]
    a = canonical_frame(X)
    b = canonical_frame(_transformed(X, np.random.default_rng(4)))
    phi = [FEATURES.index(f) for f in FEATURES if f.endswith("_phi")]
    other = [j for j in range(len(FEATURES)) if j not in phi]
    assert np.allclose(a[:, other], b[:, other], rtol=0, atol=1e-9)
    d = np.where(a[:, phi] == UNDEFINED, 0.0, np.angle(np.exp(1j * (a[:, phi] - b[:, phi]))))
    assert np.abs(d).max() < 1e-9
    assert np.array_equal(a[:, phi] == UNDEFINED, b[:, phi] == UNDEFINED)
    # the conventions: tau at phi = 0 and eta >= 0, lepton at phi >= 0
    assert np.all(a[:, FEATURES.index("PRI_tau_phi")] == 0.0)
    assert np.all(a[:, FEATURES.index("PRI_lep_phi")] >= 0.0)
    assert np.all(a[:, FEATURES.index("PRI_tau_eta")] >= 0.0)
    # the derived features and the undefined entries are untouched
    der = [FEATURES.index(f) for f in FEATURES if f.startswith("DER_")]
    assert np.array_equal(a[:, der], X[:, der])
    assert np.array_equal(a == UNDEFINED, X == UNDEFINED)


def test_methods_in_the_canonical_frame_score_transformed_events_the_same(real):
    train, _, test = real
    X = test.features[_unambiguous(test.features)]
    Xt = _transformed(X, np.random.default_rng(5))
    bdt = BDT(LOW_LEVEL, n_estimators=30).fit(train.features, train.label, train.weight)
    assert np.allclose(bdt.predict_score(X), bdt.predict_score(Xt), rtol=0, atol=1e-5)
    lab = BDT(LOW_LEVEL, n_estimators=30, frame="lab")
    lab.fit(train.features, train.label, train.weight)
    # in the file's frame the azimuths are features of their own: the scores change
    assert not np.allclose(lab.predict_score(X), lab.predict_score(Xt), rtol=0, atol=1e-3)


def test_canonical_frame_and_frame_option_reject_bad_input():
    with pytest.raises(ConfigError, match="30"):
        canonical_frame(np.zeros((4, 29)))
    with pytest.raises(ConfigError, match="frame"):
        DNN(frame="rest")


def test_analysis_learning_curve_trains_on_a_fraction(tmp_path):
    from colliderlab.higgsml.analysis import prepare, run_analysis

    data = read_higgsml_csv(REAL)
    full = len(split(prepare(data, weight_scale=SCALE), seed=2)[0])
    res = run_analysis(
        data,
        tmp_path / "half",
        methods=["cuts", "bdt"],
        seed=2,
        weight_scale=SCALE,
        train_fraction=0.5,
        progress=False,
        plots=False,
    )
    assert res["results"]["bdt"]["n_train"] == round(0.5 * full)
    assert res["n_events"]["train"] == round(0.5 * full)
    assert res["n_events"]["test"] == len(split(prepare(data, weight_scale=SCALE), seed=2)[2])
    with pytest.raises(ConfigError, match="train_fraction"):
        run_analysis(data, tmp_path / "bad", methods=["cuts"], train_fraction=0.0)
