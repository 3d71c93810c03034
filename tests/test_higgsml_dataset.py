"""The generated HiggsML dataset: preselection, weights, features, format, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from colliderlab.core.errors import ConfigError
from colliderlab.higgsml.csvio import read_higgsml_csv
from colliderlab.higgsml.dataset import (
    SAMPLES,
    _draw_leading,
    assign_sets,
    build_dataset,
    lep_had_fraction,
    select_objects,
)
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
    # the tag-rate function: each event weighted by the tag probability of its tau candidates
    w = meta["sigma_pb"] * 1000 * 139 * lep_had_fraction() / 1500
    tag = data.weight / w
    assert (tag > 0).all()
    assert (tag <= 1 + 1e-9).all()
    # lepton + hadronic tau forced: ~8% of the events pass the preselection with the tau tag
    # (lepton > 26 GeV from a tau decay is the main loss); 3-15% allowed. Most selected events
    # have the visible tau as candidate (tag probability = efficiency 0.6): the weighted
    # dataset holds ~1/0.6 more events than the tagged ones
    expected = tag.sum()
    assert 0.03 < expected / 1500 < 0.15, expected
    assert meta["expected_events"] == pytest.approx(expected * w, rel=1e-9)
    assert 1.3 < n / expected < 2.5, (n, expected)
    assert np.median(tag) == pytest.approx(0.6, abs=0.01)
    assert (data.label == 1).all()
    assert set(data.process) == {"h_tautau"}
    # preselection thresholds
    assert (col(data, "PRI_lep_pt") > 26).all()
    assert (col(data, "PRI_tau_pt") > 20).all()
    assert (np.abs(col(data, "PRI_lep_eta")) < 2.5).all()
    jets = col(data, "PRI_jet_leading_pt")
    assert (jets[jets != -999] > 30).all()
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


def test_several_data_seeds_give_the_union_of_their_samples(signal_only):
    """seed=(1, 2): the events of seed 1 then those of seed 2 (the seed-1 sample reused, not
    regenerated), weighted by the mean cross section over all 3,000 generated events."""
    d, path1 = signal_only
    gen1 = d / "higgsml" / "samples" / "h_tautau-1500-seed1" / "gen"
    stamps = {f: f.stat().st_mtime_ns for f in gen1.iterdir()}
    path2 = build_dataset(d, events_per_sample=1500, seed=2, samples=SAMPLES[:1], workers=2)
    both = build_dataset(d, events_per_sample=1500, seed=(1, 2), samples=SAMPLES[:1], workers=2)
    assert both.name == "higgsml-1500-seed1+2.csv"
    assert {f: f.stat().st_mtime_ns for f in gen1.iterdir()} == stamps
    d1, d2, d12 = (read_higgsml_csv(p) for p in (path1, path2, both))
    n1 = len(d1)
    assert len(d12) == n1 + len(d2)
    np.testing.assert_array_equal(d12.features[:n1], d1.features)
    np.testing.assert_array_equal(d12.features[n1:], d2.features)
    s1, s2, s12 = (
        json.loads(p.with_suffix(".json").read_text())["samples"][0] for p in (path1, path2, both)
    )
    assert s12["generated"] == 3000
    assert s12["sigma_pb"] == pytest.approx((s1["sigma_pb"] + s2["sigma_pb"]) / 2, rel=1e-12)
    np.testing.assert_allclose(d12.weight[:n1], d1.weight * s12["sigma_pb"] / s1["sigma_pb"] / 2)
    np.testing.assert_allclose(d12.weight[n1:], d2.weight * s12["sigma_pb"] / s2["sigma_pb"] / 2)
    # the expected yield is the mean of the two estimates
    assert s12["expected_events"] == pytest.approx(
        (
            s1["expected_events"] * s12["sigma_pb"] / s1["sigma_pb"]
            + s2["expected_events"] * s12["sigma_pb"] / s2["sigma_pb"]
        )
        / 2,
        rel=1e-9,
    )
    # and the two agree within 4 sigma (~120 effective events each: 13% on the difference)
    assert s1["expected_events"] == pytest.approx(s2["expected_events"], rel=0.5)


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
    with pytest.raises(ConfigError, match="Did you mean 'weighted'"):
        build_dataset(tmp_path, tau_tagging="weigted")
    with pytest.raises(ConfigError, match="must differ"):
        build_dataset(tmp_path, seed=(1, 1))
    with pytest.raises(ConfigError, match="non-negative integers"):
        build_dataset(tmp_path, seed=(1, -2))
    with pytest.raises(ConfigError, match="at least one"):
        build_dataset(tmp_path, seed=())


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


def test_draw_leading_tag_probabilities():
    """The tag-rate function for known probabilities: two candidates of 0.5 give P(any) =
    0.75 and the first is the leading tagged one in 2/3 of the draws; (0.01, 0.6) give 0.604."""
    n = 40000
    p = np.tile([0.5, 0.5], n)
    pick, weight = _draw_leading(p, np.full(n, 2), np.random.default_rng(1))
    np.testing.assert_allclose(weight, 0.75)
    first = (pick % 2 == 0).mean()
    assert first == pytest.approx(2 / 3, abs=4 * np.sqrt(2 / 9 / n))
    pick, weight = _draw_leading(
        np.array([0.01, 0.6, 0.0]), np.array([2, 1]), np.random.default_rng(2)
    )
    np.testing.assert_allclose(weight, [0.604, 0.0])


def test_weighted_tau_tagging_reproduces_random_tags(signal_only):
    """Tag-rate weighting against explicit random tagging of the same candidates, and against
    the detector's own tags: same yields and the same tau pT spectrum."""
    from colliderlab.detector.card import load_card
    from colliderlab.io import Dataset

    d, _ = signal_only
    ev = Dataset(d / "higgsml" / "samples" / "h_tautau-1500-seed1" / "reco").read(vector=False)
    cfg = load_card("generic_lhc").tau
    sel = select_objects(ev, tau_tagging="weighted", tau_tag=cfg, rng=np.random.default_rng(3))
    expected = sel["tag_weight"].sum()
    # the detector's random tags: a Poisson-like count around the expectation (4 sigma)
    detector = select_objects(ev)
    assert abs(len(detector["index"]) - expected) < 4 * np.sqrt(expected)
    # the same candidates tagged at random 200 times, the leading tagged one taken
    replicas = _random_tag_replicas(ev, cfg, n=200, seed=4)
    counts = np.array([len(r) for r in replicas])
    assert counts.mean() == pytest.approx(expected, abs=4 * counts.std() / np.sqrt(len(counts)))
    pt_random = np.concatenate(replicas)
    pt_weighted = np.average(sel["tau"]["pt"], weights=sel["tag_weight"])
    assert pt_weighted == pytest.approx(pt_random.mean(), rel=0.02)
    with pytest.raises(ConfigError, match="tau_tagging"):
        select_objects(ev, tau_tagging="fake")
    with pytest.raises(ConfigError, match="tau_tag"):
        select_objects(ev, tau_tagging="weighted")


def _random_tag_replicas(ev, cfg, n, seed):
    """Tau pT of the selected events for ``n`` random tag decisions of every candidate."""
    import awkward as ak

    from colliderlab.higgsml.dataset import Preselection, _dr, _tau_candidates

    presel = Preselection()
    cand = _tau_candidates(ev, cfg)
    fields = ("pt", "eta", "phi", "charge")
    leptons = ak.concatenate(
        [ak.zip({k: ev.Electron[k] for k in fields}), ak.zip({k: ev.Muon[k] for k in fields})],
        axis=1,
    )
    lep = ak.firsts(leptons)
    ok_lep = ak.to_numpy(
        ak.fill_none((ak.num(leptons) == 1) & (lep.pt > 26) & (abs(lep.eta) < 2.5), False)
    )
    cand, lep = cand[ok_lep], lep[ok_lep]
    ok = (
        (cand.pt > presel.tau_pt_min)
        & (abs(cand.eta) < presel.tau_eta_max)
        & (_dr(cand.eta, cand.phi, lep.eta, lep.phi) > presel.overlap_dr)
        & ((cand.n_prongs == 1) | (cand.n_prongs == 3))
        & (cand.charge == -lep.charge)
    )
    cand = cand[ok]
    cand = cand[ak.argsort(cand.pt, ascending=False)]
    p = np.where(ak.to_numpy(ak.flatten(cand.gen_matched)), cfg.efficiency, cfg.fake_rate)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tagged = ak.unflatten(rng.random(len(p)) < p, ak.num(cand))
        lead = ak.firsts(cand[tagged])
        out.append(ak.to_numpy(ak.drop_none(lead.pt)))
    return out
