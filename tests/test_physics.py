"""Physics checks of generated events, one chunk at a time (no Dask), with stated tolerances."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from colliderlab.core.seeding import chunk_seed
from colliderlab.generate import GenerationConfig
from colliderlab.generate.engine import TauDecay, TruthFlag, generate_chunk
from colliderlab.io.events import with_vector
from colliderlab.report.generation import peak_position, top_mass, truth_decay_mass


def chunk(process, n, seed=3, **kw):
    cfg = GenerationConfig(process, n_events=n, seed=seed, chunk_size=n, **kw)
    events, meta = generate_chunk(cfg, 0, chunk_seed(seed, 0))
    return with_vector(events), meta


@pytest.fixture(scope="module")
def zmumu():
    return chunk("z_ll", 400, params={"flavour": "mu"})


def test_z_to_mumu_truth_mass_peaks_at_mz(zmumu):
    events, meta = zmumu
    m = truth_decay_mass(events, 23, (13,))
    assert len(m) == len(events)  # one Z -> mu mu per event
    # PDG m_Z = 91.1876 GeV; tolerance 1 GeV (the statistical error of the median is ~0.2 GeV).
    assert peak_position(m, 81.0, 101.0) == pytest.approx(91.19, abs=1.0)
    # Cross section of pp -> Z -> mu mu at 13.6 TeV at LO: ~1.5-2 nb.
    assert 1.0e3 < meta["sigma_pb"] < 2.5e3
    assert meta["sigma_err_pb"] < 0.1 * meta["sigma_pb"]


def test_final_state_is_physical(zmumu):
    events, _ = zmumu
    p = events.particles
    # On-shell final-state particles: E^2 - p^2 = m^2 to 1e-6 relative (float64 momenta).
    m2 = p.E**2 - (p.px**2 + p.py**2 + p.pz**2)
    assert ak.all(abs(m2 - p.gen_mass**2) < 1e-6 * p.E**2 + 1e-6)
    # Momentum balance: the transverse momenta of all final-state particles sum to zero.
    assert np.all(
        np.abs(ak.to_numpy(ak.sum(p.px, axis=1))) < 1e-6 * ak.to_numpy(ak.sum(p.E, axis=1))
    )
    # Charges are those of the PDG table; total charge = +2 (two protons).
    assert set(np.unique(ak.to_numpy(ak.flatten(p.charge)))) <= {-2, -1, 0, 1, 2}
    assert ak.all(ak.sum(p.charge, axis=1) == 2)
    # Every event has its hard-scatter vertex; all particles come from interaction 0.
    assert ak.all(ak.num(events.vertices) == 1)
    assert ak.all(p.pileup == 0)


def test_top_decay_products_add_up_to_the_top_mass():
    events, _ = chunk("ttbar", 60)
    truth = events.truth
    tops = (abs(truth.pid) == 6) & ((truth.flags & int(TruthFlag.RESONANCE)) != 0)
    assert ak.all(ak.sum(tops, axis=1) == 2)  # a t and a tbar in every event
    m = top_mass(events)
    assert len(m) == 2 * len(events)
    # Per top, the decay products (W + b) add up to the top's own (Breit-Wigner) mass:
    top_masses = np.sort(ak.to_numpy(ak.flatten(truth.mass[tops])))
    np.testing.assert_allclose(np.sort(m), top_masses, rtol=1e-3)
    # ... which peaks at the generated 172.5 GeV (width 1.4 GeV): median within 1 GeV.
    assert peak_position(m, 162.5, 182.5) == pytest.approx(172.5, abs=1.0)


def test_semileptonic_ttbar_has_one_leptonic_w():
    events, meta = chunk("ttbar_semilep", 40)
    t = events.truth
    mother = t.pid[ak.where(t.mother >= 0, t.mother, 0)]
    from_w = (t.mother >= 0) & (abs(mother) == 24) & ((t.flags & int(TruthFlag.HARD)) != 0)
    n_lep = ak.sum(from_w & ((abs(t.pid) == 11) | (abs(t.pid) == 13)), axis=1)
    n_quark = ak.sum(from_w & (abs(t.pid) <= 5), axis=1)
    assert ak.all(n_lep == 1)
    assert ak.all(n_quark == 2)
    # sigma(ttbar) x 2 x BR(W->e/mu nu) x BR(W->had) = sigma x 2 x 0.216 x 0.675 ~ 0.29 sigma
    assert 100 < meta["sigma_pb"] < 250


def test_h_to_tautau_taus_and_visible_decays():
    events, _ = chunk("h_tautau", 150)
    t = events.truth
    is_tau = (t.flags & int(TruthFlag.TAU)) != 0
    h = (abs(t.pid) == 25) & ((t.flags & int(TruthFlag.RESONANCE)) != 0)
    assert ak.all(ak.sum(h, axis=1) == 1)
    assert ak.all(ak.sum(is_tau, axis=1) >= 2)
    vis = events.vistau
    taus = t[vis.tau_index]
    # Visible decay products carry part of the tau's energy, and its charge.
    assert ak.all(vis.E < taus.E + 1e-9)
    assert ak.all(vis.charge == -np.sign(taus.pid))
    modes = ak.to_numpy(ak.flatten(vis.decay_mode))
    leptonic = np.isin(modes, [TauDecay.ELECTRON, TauDecay.MUON]).mean()
    # BR(tau -> e nu nu) + BR(tau -> mu nu nu) = 0.352 (PDG); >= 300 taus: +- 0.1 is > 3 sigma.
    assert leptonic == pytest.approx(0.352, abs=0.1)
    one_prong = (modes == TauDecay.HADRONIC_1PRONG).sum() / max((modes >= 2).sum(), 1)
    assert one_prong == pytest.approx(0.77, abs=0.12)  # 1-prong share of hadronic decays ~77%


def test_wprime_to_xy_decays():
    events, _ = chunk("wprime_xy", 15)
    t = events.truth
    x = t[(t.pid == 9000001) & ((t.flags & int(TruthFlag.RESONANCE)) != 0)]
    y = t[(abs(t.pid) == 9000002) & ((t.flags & int(TruthFlag.RESONANCE)) != 0)]
    assert ak.all(ak.num(x) == 1)
    assert ak.all(ak.num(y) == 1)
    # Narrow resonances (1% widths): masses within 10 widths of 500 and 100 GeV.
    assert ak.all(abs(x.mass - 500.0) < 50.0)
    assert ak.all(abs(y.mass - 100.0) < 10.0)


def test_pileup_follows_poisson_and_the_luminous_region():
    mu = 4.0
    events, _ = chunk("gun_mu", 400, pileup=mu)
    n = ak.to_numpy(events.n_pileup)
    # Poisson(4) over 400 events: mean and variance within 4 standard errors
    # (se(mean) = 0.1, se(var) ~ sqrt(2 mu^2 / N) ~ 0.3).
    assert n.mean() == pytest.approx(mu, abs=0.4)
    assert n.var() == pytest.approx(mu, abs=1.2)
    assert ak.all(ak.num(events.vertices) == events.n_pileup + 1)
    p = events.particles
    assert ak.all((p.pileup >= 0) & (p.pileup <= events.n_pileup))
    assert ak.all(ak.any(p.pileup == 0, axis=1))  # the hard scatter is always there
    z = ak.to_numpy(ak.flatten(events.vertices.z))
    # Luminous region: sigma_z = 50 mm; ~2000 vertices -> 10% tolerance is > 4 sigma.
    assert np.std(z) == pytest.approx(50.0, rel=0.1)
    # Particles of interaction k start at (or, after decays, near) its vertex.
    vz_of = events.vertices.z[p.pileup]
    near = abs(p.vz - vz_of) < 1.0
    assert ak.mean(near) > 0.95


@pytest.mark.parametrize(("process", "pid"), [("gun_e", 11), ("gun_gamma", 22), ("gun_pi", 211)])
def test_particle_guns(process, pid):
    events, meta = chunk(
        process, 300, params={"e_min": 10, "e_max": 100, "eta_min": -1, "eta_max": 1}
    )
    gun = events.truth[:, 0]
    assert ak.all(abs(gun.pid) == pid)
    assert ak.all((gun.E >= 10 - 1e-9) & (gun.E <= 100 + 1e-9))
    assert ak.all(abs(gun.eta) <= 1 + 1e-9)
    # log-uniform: half of the events below sqrt(10 * 100) = 31.6 GeV (+- 4 sigma = 0.115)
    assert np.mean(ak.to_numpy(gun.E) < np.sqrt(1000)) == pytest.approx(0.5, abs=0.115)
    if pid != 22:  # both charges
        assert 0.35 < np.mean(ak.to_numpy(gun.pid) > 0) < 0.65
    # The gun particle reaches the final state unchanged (stable at generator level).
    assert ak.all(ak.num(events.particles) == 1)
    assert meta["sigma_pb"] == 0.0


def test_same_seed_same_events_other_seed_other_events():
    a, _ = chunk("z_ll", 20, seed=5)
    b, _ = chunk("z_ll", 20, seed=5)
    c, _ = chunk("z_ll", 20, seed=6)
    assert ak.array_equal(a, b)
    assert not ak.array_equal(a.particles.px, c.particles.px)


def test_qcd_dijet_respects_the_pthat_range():
    events, meta = chunk("qcd_dijet", 40, params={"pthat_min": 200, "pthat_max": 300})
    t = events.truth
    outgoing = t[((t.flags & int(TruthFlag.HARD)) != 0) & (abs(t.status) == 23)]
    assert ak.all(ak.num(outgoing) == 2)  # 2 -> 2 scattering
    # pTHat is the transverse momentum of the outgoing partons (massless, before showering);
    # 1 GeV of tolerance covers the small mass of c/b quarks.
    pt = ak.to_numpy(outgoing.pt[:, 0])
    assert np.all((pt > 199.0) & (pt < 301.0))
    # sigma(pTHat in 200-300 GeV) at 13.6 TeV at LO: of order 1e5 pb.
    assert 1e4 < meta["sigma_pb"] < 1e6


def test_vh_bb_higgs_decays_to_b_quarks_at_125_gev():
    events, _ = chunk("vh_bb", 40)
    m = truth_decay_mass(events, 25, (5,))
    assert len(m) == len(events)
    # The b quarks from the decay add up to the Higgs line shape: m_H = 125 GeV, width 4 MeV
    # with Pythia's Breit-Wigner tails: all within 0.5 GeV, the median within 0.02 GeV.
    assert np.all(np.abs(m - 125.0) < 0.5)
    assert np.median(m) == pytest.approx(125.0, abs=0.02)
