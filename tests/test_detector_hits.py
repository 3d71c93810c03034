"""Tracker hits: geometry, efficiency, Highland multiple scattering, noise."""

from __future__ import annotations

import dataclasses

import awkward as ak
import numpy as np
import pytest

from colliderlab.detector import load_card
from colliderlab.detector.physics import MUON_MASS
from colliderlab.detector.tracker import DISK_ID, highland, noise_hits, simulate_hits

CARD = load_card("generic_lhc")


def _card(**tracker):
    return dataclasses.replace(CARD, tracker=dataclasses.replace(CARD.tracker, **tracker))


def muons(n, pt, eta=0.0):
    ones = np.ones(n)
    return pt * ones, eta * ones, np.zeros(n), ones, np.zeros(n), MUON_MASS * ones


def test_barrel_hits_sit_on_the_layers_with_the_card_efficiency():
    rng = np.random.default_rng(1)
    h = simulate_hits(CARD, *muons(3000, 20.0, eta=0.1), rng)
    barrel = np.abs(h["layer"]) < DISK_ID
    r = np.hypot(h["x"][barrel], h["y"][barrel])
    radii = np.asarray(CARD.tracker.barrel_radii)[h["layer"][barrel]]
    np.testing.assert_allclose(r, radii, atol=1e-6)  # r-phi smearing keeps r (mm)
    per_muon = np.bincount(h["particle"][barrel], minlength=3000)
    # 13 barrel layers x hit efficiency 0.99 = 12.87 hits (binomial; +-0.02 is > 5 sigma)
    assert per_muon.mean() == pytest.approx(13 * CARD.tracker.hit_efficiency, abs=0.02)


def test_helix_curvature_matches_the_field():
    # A 1 GeV muon in 3.8 T: radius 877.7 mm; at r = R its azimuth turned by asin(R / 2 rho).
    h = simulate_hits(
        _card(layer_x0=0.0, hit_resolution=(0.0, 0.0), hit_efficiency=1.0),
        *muons(1, 1.0),
        np.random.default_rng(0),
    )
    rho = 1.0 / (0.299792458e-3 * 3.8)
    for layer, radius in enumerate(CARD.tracker.barrel_radii):
        k = np.flatnonzero(h["layer"] == layer)[0]
        phi = np.arctan2(h["y"][k], h["x"][k])
        assert phi == pytest.approx(-np.arcsin(radius / (2 * rho)), abs=1e-9)


@pytest.mark.parametrize("pt", [1.0, 10.0])
def test_multiple_scattering_follows_highland(pt):
    n = 4000
    ideal = simulate_hits(
        _card(layer_x0=0.0, hit_resolution=(0.0, 0.0), hit_efficiency=1.0),
        *muons(n, pt),
        np.random.default_rng(0),
    )
    real = simulate_hits(
        _card(hit_resolution=(0.0, 0.0), hit_efficiency=1.0),
        *muons(n, pt),
        np.random.default_rng(1),
    )
    last = len(CARD.tracker.barrel_radii) - 1
    a = np.flatnonzero(ideal["layer"] == last)
    b = np.flatnonzero(real["layer"] == last)
    radius = CARD.tracker.barrel_radii[last]
    dphi = np.arctan2(real["y"][b], real["x"][b]) - np.arctan2(ideal["y"][a], ideal["x"][a])
    measured = np.std(radius * dphi)
    # Expected: kicks theta0 (Highland, x/X0 per layer at normal incidence) in each inner
    # layer, displacing the last hit by theta0 * (path to the last layer); summed in quadrature.
    p = pt
    beta = p / np.hypot(p, MUON_MASS)
    theta0 = highland(np.array(p), np.array(beta), np.array(CARD.tracker.layer_x0))
    rho = pt / (0.299792458e-3 * 3.8)
    r = np.asarray(CARD.tracker.barrel_radii)
    path = 2 * rho * np.arcsin(r / (2 * rho))
    path = path[r < 2 * rho]  # (all 13 layers are reached at these momenta)
    expected = theta0 * np.sqrt(np.sum((path[-1] - path[:-1]) ** 2))
    # 4000 muons: the RMS is known to ~1.1%; tolerance 5%.
    assert measured == pytest.approx(expected, rel=0.05)


def test_highland_formula_value():
    # 1 GeV/c muon (beta = 0.99445) through 0.03 X0, by hand:
    # 13.6 MeV / 0.99445 GeV * sqrt(0.03) * (1 + 0.038 ln(0.03 / 0.98893)) = 2.054 mrad
    beta = 1.0 / np.hypot(1.0, MUON_MASS)
    theta0 = highland(np.array(1.0), np.array(beta), np.array(0.03))
    assert theta0 == pytest.approx(2.054e-3, rel=2e-3)


def test_noise_hits_per_layer():
    card = _card(noise_hits=5.0)
    noise = noise_hits(card, 400, np.random.default_rng(2))
    n_layers = len(card.tracker.barrel_radii) + 2 * len(card.tracker.endcap_z)
    # Poisson(5) per layer and event: 400 x 33 x 5 = 66000 hits (+-1% is > 3 sigma)
    assert len(noise["x"]) == pytest.approx(400 * n_layers * 5.0, rel=0.01)
    disk = np.abs(noise["layer"]) >= DISK_ID
    r = np.hypot(noise["x"][disk], noise["y"][disk])
    assert r.min() >= card.tracker.endcap_radius[0]
    assert r.max() <= card.tracker.endcap_radius[1]
    assert ak.all(np.isin(np.abs(noise["z"][disk]), card.tracker.endcap_z))
