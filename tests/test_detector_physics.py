"""Physics validation of the fast detector simulation, with the tolerances stated in the
tests (one chunk generated and simulated in-process, without Dask)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from colliderlab.core.seeding import chunk_seed
from colliderlab.detector import load_card
from colliderlab.detector.reco import FastSimulation
from colliderlab.detector.validation import (
    match_jets,
    reference_jet_resolution,
    response_table,
)
from colliderlab.generate import GenerationConfig
from colliderlab.generate.engine import TruthFlag, generate_chunk
from colliderlab.generate.truth import contained, resonance_decays
from colliderlab.io.events import with_vector
from colliderlab.report.generation import core_peak, voigt_peak

CARD = load_card("generic_lhc")
_W_HADRONIC = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")


def reco(process, n, seed=4, **kw):
    cfg = GenerationConfig(process, n_events=n, seed=seed, chunk_size=n, **kw)
    gen, _ = generate_chunk(cfg, 0, chunk_seed(seed, 0))
    out = FastSimulation(CARD)(gen, np.random.default_rng(seed))
    return with_vector(gen), with_vector(out)


def dilepton_masses(leptons):
    two = leptons[ak.num(leptons) >= 2]
    a, b = two[:, 0], two[:, 1]
    os = a.charge != b.charge
    return ak.to_numpy((a + b).mass[os])


@pytest.fixture(scope="module")
def zmumu():
    return reco("z_ll", 1000, params={"flavour": "mu"})


def _truth_z_peak(gen):
    z = gen.truth[(abs(gen.truth.pid) == 23) & ((gen.truth.flags & int(TruthFlag.RESONANCE)) != 0)]
    return voigt_peak(ak.to_numpy(ak.flatten(z.mass)))[0]


def test_reconstructed_z_to_mumu_peak(zmumu):
    gen, ev = zmumu
    m = dilepton_masses(ev.Muon)
    # 42% of Z -> mumu have both muons in |eta| < 2.4, pT > 10 GeV; x 0.95^2 ID, x isolation
    assert len(m) > 280
    # The generated line shape peaks at m_Z (PDF skew: -0.1 GeV) ...
    truth = _truth_z_peak(gen)
    assert truth == pytest.approx(91.19, abs=0.15)
    # ... and the reconstructed dimuon peak (Voigt fit) within 0.5 GeV of it. (Bare muons:
    # QED FSR lowers the peak by ~0.3 GeV, the resolution by ~0.2 GeV more.)
    peak, _err, sigma = voigt_peak(m)
    assert peak == pytest.approx(truth, abs=0.5)
    assert 0.5 < sigma < 2.5  # dimuon mass resolution ~1.2 GeV


def test_reconstructed_z_to_ee_peak():
    gen, ev = reco("z_ll", 2500, params={"flavour": "e"})
    m = dilepton_masses(ev.Electron)
    assert len(m) > 500
    # Electron energies from ECAL clusters, calibrated by the card's energy_scale.
    peak, _err, sigma = voigt_peak(m)
    assert peak == pytest.approx(_truth_z_peak(gen), abs=0.5)
    assert 1.0 < sigma < 3.0


def test_track_resolution_and_efficiency_follow_the_card(zmumu):
    gen, ev = zmumu
    t = ev.Track
    truth = gen.particles[t.gen_index]
    pt_gen = ak.to_numpy(ak.flatten(truth.pt))
    pt_rec = ak.to_numpy(ak.flatten(t.pt))
    abseta = np.abs(ak.to_numpy(ak.flatten(truth.eta)))
    pid = np.abs(ak.to_numpy(ak.flatten(t.pid)))
    had = (pid != 11) & (pid != 13)
    sigma = CARD.tracker.resolution["hadron"](pt_gen[had], abseta[had])
    pull = (pt_rec[had] / pt_gen[had] - 1.0) / sigma
    # Pull width 1 (Gaussian smearing with the card's resolution), +-5% over > 10^4 tracks.
    assert np.std(pull) == pytest.approx(1.0, abs=0.05)
    assert abs(np.mean(pull)) < 0.05
    # Efficiency plateau of charged hadrons, |eta| < 1.5, pT > 1 GeV: 0.95 (card) +- 0.01.
    p = gen.particles
    charged_had = (p.charge != 0) & (abs(p.pid) != 11) & (abs(p.pid) != 13)
    plateau = charged_had & (p.pt > 1.0) & (abs(p.eta) < 1.5)
    n_all = int(ak.sum(plateau))
    tracked = ak.zeros_like(p.pid, dtype=bool)
    idx = ak.flatten(t.gen_index + ak.Array(np.cumsum(np.r_[0, ak.to_numpy(ak.num(p))[:-1]])))
    flat = np.zeros(int(ak.sum(ak.num(p))), dtype=bool)
    flat[ak.to_numpy(idx)] = True
    tracked = ak.unflatten(flat, ak.num(p))
    assert ak.sum(tracked & plateau) / n_all == pytest.approx(0.95, abs=0.01)


@pytest.mark.parametrize(
    ("pthat", "pt_lo", "pt_hi", "n", "tolerance"),
    [
        (20.0, 30.0, 45.0, 1200, 0.15),
        (60.0, 80.0, 125.0, 600, 0.15),
        # at ~500 GeV the simulation is ~30% better than CMS (no calorimeter non-linearity,
        # no dead material): checked as "not worse than CMS, at most 40% better" until modelled
        (400.0, 450.0, 600.0, 250, None),
    ],
)
def test_jet_response_and_resolution(pthat, pt_lo, pt_hi, n, tolerance):
    _, ev = reco("qcd_dijet", n, params={"pthat_min": pthat})
    reco_pt, _, gen_pt, _ = match_jets(ev)
    rows = response_table(reco_pt, gen_pt, bins=(pt_lo, pt_hi))
    assert rows, "too few matched jets"
    row = rows[0]
    # Calibrated response 1 within 3%; resolution within `tolerance` of the CMS PF-jet
    # resolution (arXiv:1607.03663: 15-20% at 30 GeV, ~10% at 100 GeV, 5% at 1 TeV).
    assert row["response"] == pytest.approx(1.0, abs=0.03)
    ref = float(reference_jet_resolution(row["pt_mean"]))
    if tolerance is None:
        assert 0.6 * ref < row["resolution"] < 1.15 * ref
    else:
        assert row["resolution"] == pytest.approx(ref, rel=tolerance)


def _fatjets_in_window(ev, lo=550.0, hi=650.0):
    fj = ev.FatJet
    return fj[(fj.pt > lo) & (fj.pt < hi) & (abs(fj.eta) < 2.0)]


def test_boosted_top_jets_versus_qcd():
    gen, ev = reco("zprime_ttbar", 300, params={"mass": 1400.0}, settings=_W_HADRONIC)
    fj = _fatjets_in_window(ev)
    # top jets as in arXiv:1902.09914: the top and its three quarks within R = 0.8
    matched = contained(fj, resonance_decays(gen.truth, 6), 0.8)
    top_msd = ak.to_numpy(ak.flatten(fj.msoftdrop[matched]))
    top_mass = ak.to_numpy(ak.flatten(fj.mass[matched]))
    top_tau32 = ak.to_numpy(ak.flatten(fj.tau_32[matched]))
    assert len(top_msd) > 40
    # The mass and the soft-drop mass of top jets peak near m_t = 172.5 GeV (within 10 GeV).
    assert core_peak(top_mass, 120.0, 230.0) == pytest.approx(172.5, abs=10.0)
    assert core_peak(top_msd, 120.0, 230.0) == pytest.approx(172.5, abs=10.0)

    _, qcd = reco("qcd_dijet", 200, params={"pthat_min": 500.0})
    q = _fatjets_in_window(qcd)
    q_msd = ak.to_numpy(ak.flatten(q.msoftdrop))
    q_tau32 = ak.to_numpy(ak.flatten(q.tau_32))
    assert len(q_msd) > 40
    # QCD jets do not peak at the top mass: most of them are far below.
    assert np.mean((q_msd > 140) & (q_msd < 210)) < 0.25
    assert np.mean((top_msd > 140) & (top_msd < 210)) > 0.6
    # tau32 separates: three-prong top jets have a smaller tau3/tau2 than QCD (by > 0.1).
    assert np.nanmean(q_tau32) - np.nanmean(top_tau32) > 0.1
    # D2 (two-prong ratio) is smaller for the structured top jets than for QCD jets.
    top_d2 = ak.to_numpy(ak.flatten(fj.d2[matched]))
    assert np.median(top_d2) < np.median(ak.to_numpy(ak.flatten(q.d2)))


def test_b_tagging_reproduces_the_working_point():
    _, ev = reco("ttbar", 200)
    j = ev.Jet[(ev.Jet.pt > 30) & (abs(ev.Jet.eta) < 2.4)]
    for flavour, table, min_jets in ((5, CARD.btag.b, 150), (0, CARD.btag.light, 300)):
        sel = j[j.hadron_flavour == flavour]
        pt = ak.to_numpy(ak.flatten(sel.pt))
        eta = np.abs(ak.to_numpy(ak.flatten(sel.eta)))
        assert len(pt) > min_jets
        expected = table(pt, eta).mean()
        observed = ak.to_numpy(ak.flatten(sel.btag)).mean()
        # Binomial: within 3 standard deviations of the card's efficiency (+ 0.005 floor).
        se = np.sqrt(expected * (1 - expected) / len(pt))
        assert abs(observed - expected) < 3 * se + 0.005
    # ttbar: two b quarks -> on average ~1.5-2 ghost-associated b jets in acceptance.
    assert 1.0 < ak.mean(ak.sum(j.hadron_flavour == 5, axis=1)) < 2.2


def test_missing_transverse_momentum_follows_the_neutrinos():
    _, ev = reco("wjets", 300, params={"decay": "munu"})
    met, gen_met = ak.to_numpy(ev.MET.pt), ak.to_numpy(ev.GenMET.pt)
    big = gen_met > 30
    # W -> mu nu: MET measures the neutrino; median relative difference within 20%.
    assert np.median(met[big] / gen_met[big]) == pytest.approx(1.0, abs=0.2)


def test_w_jets_peak_at_the_w_mass():
    gen, ev = reco("wjets", 300, params={"decay": "had", "pthat_min": 300.0})
    fj = ev.FatJet[(ev.FatJet.pt > 300) & (ev.FatJet.pt < 450) & (abs(ev.FatJet.eta) < 2.0)]
    matched = contained(fj, resonance_decays(gen.truth, 24), 0.8)  # W and its two quarks
    msd = ak.to_numpy(ak.flatten(fj.msoftdrop[matched]))
    assert len(msd) > 80
    # Soft-drop mass of W jets (pT 300-450 GeV): core within 5 GeV of m_W = 80.4 GeV.
    assert core_peak(msd, 50.0, 120.0) == pytest.approx(80.4, abs=5.0)


def test_pileup_reaches_the_detector_and_chs_removes_it():
    gen, ev = reco("z_ll", 100, params={"flavour": "mu"}, pileup=20.0)
    t = ev.Track
    from_pileup = gen.particles.pileup[t.gen_index] > 0
    assert ak.mean(ak.num(t)) > 300  # ~20 extra interactions of charged tracks
    # CHS: pile-up tracks farther than 1 mm in z from the PV are flagged. Vertices spread with
    # sigma_z = 50 mm, so only ~1.6% of pile-up vertices lie within 1 mm: > 95% flagged.
    assert ak.mean(~t.from_pv[from_pileup]) > 0.95
    assert ak.mean(t.from_pv[~from_pileup]) > 0.97  # hard-scatter tracks are kept
    # the reconstructed PV is the hard-scatter vertex (resolution 0.02 mm)
    assert ak.all(abs(ev.PV.z - gen.vertices.z[:, 0]) < 0.2)
