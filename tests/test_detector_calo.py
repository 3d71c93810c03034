"""Calorimeter depth segments, electronic noise, tower output and NanoEvents compatibility."""

from __future__ import annotations

import copy

import awkward as ak
import numpy as np
import pytest
from scipy.stats import norm

from colliderlab.core.errors import ConfigError
from colliderlab.detector import load_card
from colliderlab.detector.calorimeter import TowerGridMap, depth_fractions
from colliderlab.detector.card import card_from_dict

CARD = load_card("generic_lhc")


def test_em_shower_depth_grows_like_ln_e():
    rng = np.random.default_rng(1)
    depth = CARD.ecal.depth
    mean_depth = {}
    for e in (2.0, 20.0, 200.0):
        f = depth_fractions(depth, np.full(20000, e), rng)
        assert np.allclose(f.sum(axis=1), 1.0)  # the last segment keeps the tail
        assert (f >= 0).all()
        centres = 0.5 * (np.array(depth.edges[:-1]) + np.array(depth.edges[1:]))
        mean_depth[e] = float((f.mean(axis=0) * centres).sum())
    # Shower maximum t_max = ln(E / E_c) - 0.5: deeper by ln(10) X0 per decade; through the
    # segment centres the mean depth grows monotonically and the front fraction falls.
    assert mean_depth[2.0] < mean_depth[20.0] < mean_depth[200.0]
    front = [depth_fractions(depth, np.full(20000, e), rng)[:, 0].mean() for e in (2.0, 200.0)]
    assert front[0] > 2 * front[1]
    # photons start later than electrons (C = +0.5 vs -0.5): less energy in the front
    photon = depth_fractions(depth, np.full(20000, 20.0), rng, photon=np.ones(20000, bool))
    electron = depth_fractions(depth, np.full(20000, 20.0), rng, photon=np.zeros(20000, bool))
    assert photon[:, 0].mean() < electron[:, 0].mean()


def test_hadronic_profile_containment_matches_pdg():
    # PDG: 95% longitudinal containment at L = t_max + 2.5 lambda (E/GeV)^0.13, with
    # t_max = 0.2 ln(E/GeV) + 0.7; for E = 100 GeV: L95 = 1.62 + 4.55 = 6.2 lambda.
    from scipy.special import gammaincinv

    from colliderlab.detector.calorimeter import HAD_B

    t_max = 0.2 * np.log(100.0) + 0.7
    l95 = gammaincinv(1 + HAD_B * t_max, 0.95) / HAD_B
    assert l95 == pytest.approx(t_max + 2.5 * 100**0.13, rel=0.1)


def test_noise_only_towers_follow_the_gaussian_tail():
    rng = np.random.default_rng(3)
    hcal = TowerGridMap(CARD.hcal)
    n_events = 2000
    keys, energy = hcal.noise_keys(n_events, rng)
    # expected count: sum over towers of P(noise > threshold), per event
    expected = 0.0
    for g in CARD.hcal.grids:
        deta = (g.eta_max - g.eta_min) / g.n_eta
        rows = g.eta_min + (np.arange(g.n_eta) + 0.5) * deta
        sigma = CARD.hcal.noise_sigma(rows)
        expected += 2 * g.n_phi * norm.sf(CARD.hcal.energy_min / sigma).sum()
    assert len(keys) / n_events == pytest.approx(expected, rel=0.1)
    assert (energy > CARD.hcal.energy_min).all()
    assert len(np.unique(keys)) == len(keys)
    assert (keys // hcal.n_towers < n_events).all()


def test_zero_noise_gives_no_noise_towers():
    raw = copy.deepcopy(CARD.to_dict())
    raw["hcal"]["tower_noise"] = [0.0, 0.0]
    card = card_from_dict(raw)
    keys, _ = TowerGridMap(card.hcal).noise_keys(100, np.random.default_rng(1))
    assert len(keys) == 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (("ecal", "depth", "unit"), "cm", "unit must be one of X0, lambda"),
        (("ecal", "depth", "edges"), [1.0, 5.0], "must start at the front face"),
        (("hcal", "tower_noise"), [0.2], "one value per |eta| bin"),
        (("hcal", "tower_noise"), [-0.1, 0.2], "tower_noise must be a finite number >= 0"),
    ],
)
def test_bad_depth_and_noise_settings(key, value, message):
    raw = copy.deepcopy(CARD.to_dict())
    node = raw
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        card_from_dict(raw)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NanoAOD cross-references we lack
def test_tower_collections_and_nanoevents(tmp_path, zmumu_dataset):
    from colliderlab.detector.run import simulate
    from colliderlab.io import load

    ds = simulate(
        zmumu_dataset.directory,
        tmp_path / "reco",
        towers=True,
        format="root",
        workers=1,
        progress=False,
    )
    ev = load(ds.directory)
    for name, calo in (("EcalTower", CARD.ecal), ("HcalTower", CARD.hcal)):
        tw = ev[name]
        segments = [f"depth_{j + 1}" for j in range(calo.depth.n_segments)]
        assert set(["energy", "eta", "phi", *segments]) <= set(tw.fields)
        total = sum(ak.to_numpy(ak.flatten(tw[s])) for s in segments)
        e = ak.to_numpy(ak.flatten(tw.energy))
        assert np.allclose(total, e, rtol=1e-5)  # the segments add up to the tower
        assert (e > calo.energy_min).all()
    # Z -> mumu: muons leave little in the calorimeters; the ECAL sees the photons of pi0s
    assert ak.mean(ak.num(ev.EcalTower)) > 10
    # NanoAOD names for the event identity and generator information
    assert ak.all(ev.event == zmumu_dataset.read().event_id)
    assert ak.all(ev.run == 1)
    assert "nPU" in ev.Pileup.fields
    assert ak.all(ev.MET.pt >= 0)  # one-per-event records come back as records from ROOT

    coffea = pytest.importorskip("coffea.nanoevents")
    nano = coffea.NanoEventsFactory.from_root(
        {str(ds.directory / ds.chunks[0]["file"]): "events"},
        schemaclass=coffea.NanoAODSchema,
        mode="eager",
    ).events()
    first = load(ds.directory, vector=False)[: len(nano)]
    assert ak.all(nano.Muon.pt == first.Muon.pt)
    # coffea's candidate behaviour: the dimuon mass from NanoEvents
    two = nano[ak.num(nano.Muon) >= 2]
    mass = ak.to_numpy((two.Muon[:, 0] + two.Muon[:, 1]).mass)
    assert np.median(mass) == pytest.approx(91.0, abs=3.0)
