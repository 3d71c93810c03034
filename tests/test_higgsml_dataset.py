"""The generated HiggsML dataset: preselection, weights, features, format, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from colliderlab.core.errors import ConfigError
from colliderlab.higgsml.csvio import read_higgsml_csv
from colliderlab.higgsml.dataset import SAMPLES, assign_sets, build_dataset, lep_had_fraction
from colliderlab.higgsml.schema import FEATURES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def signal_only(tmp_path_factory):
    """H -> tau tau (lepton + hadronic tau forced), 1,500 events through the whole chain."""
    d = tmp_path_factory.mktemp("higgsml")
    path = build_dataset(d, events_per_sample=1500, samples=SAMPLES[:1], workers=2, progress=False)
    return d, path


def col(data, name):
    return data.features[:, FEATURES.index(name)]


def test_lep_had_fraction_is_twice_the_product_of_the_branching_fractions():
    # PDG: B(tau -> e nu nu) + B(tau -> mu nu nu) = 35.2%, so 2 * 0.352 * 0.648 = 0.456
    assert lep_had_fraction() == pytest.approx(0.456, abs=0.005)


def test_signal_dataset(signal_only):
    d, path = signal_only
    data = read_higgsml_csv(path)  # the reader validates the format and the -999 pattern
    meta = json.loads(path.with_suffix(".json").read_text())["samples"][0]
    n = len(data)
    assert meta["selected"] == n
    # lepton + hadronic tau forced: ~8% of the events pass the preselection (lepton > 26 GeV
    # from a tau decay is the main loss); 3-15% allowed
    assert 0.03 < n / 1500 < 0.15, n
    assert (data.label == 1).all()
    assert set(data.process) == {"h_tautau"}
    # preselection thresholds
    assert (col(data, "PRI_lep_pt") > 26).all()
    assert (col(data, "PRI_tau_pt") > 20).all()
    assert (np.abs(col(data, "PRI_lep_eta")) < 2.5).all()
    jets = col(data, "PRI_jet_leading_pt")
    assert (jets[jets != -999] > 30).all()
    # weights: sigma * L * 0.455 / N, summing to the expected selected events in 139 fb^-1
    w = meta["sigma_pb"] * 1000 * 139 * lep_had_fraction() / 1500
    np.testing.assert_allclose(data.weight, w, rtol=1e-9)
    # ggF + VBF H -> tautau at LO: sigma * B ~ 1-4 pb at 13.6 TeV
    assert 1.0 < meta["sigma_pb"] < 4.0
    # KaggleWeight: each set scaled to the full luminosity
    for s in "tbv":
        m = data.kaggle_set == s
        assert data.kaggle_weight[m].sum() == pytest.approx(data.weight.sum(), rel=1e-9)
    # physics: the MMC mass peaks near 125 GeV (median within 15%), well above the visible
    # mass (the neutrinos carry ~40% of the di-tau mass)
    mmc = col(data, "DER_mass_MMC")
    ok = mmc > 0
    assert ok.mean() > 0.9  # the MMC finds a solution for almost every event
    assert np.median(mmc[ok]) == pytest.approx(125, rel=0.15)
    assert np.median(col(data, "DER_mass_vis")) < 0.85 * np.median(mmc[ok])
    # a second request with the same arguments is served from the cache
    again = build_dataset(d, events_per_sample=1500, samples=SAMPLES[:1], workers=1)
    assert again == path
    assert again.read_bytes() == path.read_bytes()


def test_assign_sets_keeps_class_totals():
    rng = np.random.default_rng(1)
    labels = (rng.random(1000) < 0.3).astype(np.int8)
    w = rng.exponential(1.0, 1000)
    codes, kw = assign_sets(labels, w, seed=4)
    assert set(codes) == {"t", "b", "v"}
    assert (codes == "t").mean() == pytest.approx(0.5, abs=0.05)
    for s in "tbv":
        for c in (0, 1):
            m = (codes == s) & (labels == c)
            assert kw[m].sum() == pytest.approx(w[labels == c].sum())
    again, _ = assign_sets(labels, w, seed=4)
    np.testing.assert_array_equal(codes, again)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="events_per_sample"):
        build_dataset(tmp_path, events_per_sample=3)
    with pytest.raises(ConfigError, match="lumi"):
        build_dataset(tmp_path, lumi_fb=-1)


def test_tau_charge_and_prongs_from_the_signal_cone(signal_only):
    """Hadronic taus of H -> tau tau: the tracks in the 0.1 signal cone give 1 or 3 prongs and
    charge +-1 for most truth-matched taus (tracking efficiency and pile-in of soft tracks
    spoil the rest), and the charge of the tau-tagged jet is that of the visible tau."""
    import awkward as ak

    from colliderlab.io import Dataset

    d, _ = signal_only
    ev = Dataset(d / "higgsml" / "samples" / "h_tautau-1500-seed1" / "reco").read(vector=False)
    taus = ev.Tau[ev.Tau.gen_matched]
    prongs = ak.to_numpy(ak.flatten(taus.n_prongs))
    charge = ak.to_numpy(ak.flatten(taus.charge))
    assert len(prongs) > 300
    assert np.isin(prongs, (1, 3)).mean() > 0.75
    assert (np.abs(charge) == 1).mean() > 0.75
    # forced decays: tau+ (pid -15) is the hadronic one, so a matched tau has charge +1
    assert (charge == 1).mean() > 0.7
    assert (charge == -1).mean() < 0.05
