"""The TrackML-like detector: module geometry, tracker card and event simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from colliderlab.core.errors import ConfigError, DatasetError, UnknownNameError
from colliderlab.detector.physics import K_CURV
from colliderlab.detector.tracker import highland
from colliderlab.tracking.card import TrackerCard, card_from_dict, load_tracker_card
from colliderlab.tracking.geometry import GeometryError, default_geometry
from colliderlab.tracking.simulate import generate_events, make_dataset, simulate_event

DATA = Path(__file__).parent / "data" / "trackml"


@pytest.fixture(scope="module")
def geometry():
    return default_geometry()


@pytest.fixture(scope="module")
def card():
    return load_tracker_card("trackml")


def gun(n, pt, eta, *, seed=0, q=None, pid=211):
    """``n`` particles of transverse momentum ``pt`` (GeV) at pseudorapidity ``eta`` from 0."""
    rng = np.random.default_rng(seed)
    phi = rng.uniform(-np.pi, np.pi, n)
    eta = np.broadcast_to(np.asarray(eta, float), (n,))
    charge = rng.choice([-1, 1], n) if q is None else np.full(n, q)
    return pd.DataFrame(
        {
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta),
            "vx": 0.0,
            "vy": 0.0,
            "vz": 0.0,
            "charge": charge,
            "pid": pid * charge,
        }
    )


IDEAL = {
    "noise": False,
    "efficiency": False,
    "material": False,
    "energy_loss": False,
    "smear": False,
}


def merged(event):
    return event.truth.merge(event.hits, on="hit_id")


# ----------------------------------------------------------------------------- geometry
def test_geometry_has_the_trackml_modules_and_layers(geometry):
    assert geometry.n_modules == 18_728
    layers = pd.DataFrame([vars(ly) for ly in geometry.layers])
    per_volume = layers.groupby("volume_id").size().to_dict()
    assert per_volume == {7: 7, 8: 4, 9: 7, 12: 6, 13: 4, 14: 6, 16: 6, 17: 2, 18: 6}
    assert layers["barrel"].sum() == 10
    radii = layers[layers.barrel].sort_values("position")["position"].to_numpy()
    np.testing.assert_allclose(radii, [32, 72, 116, 172, 260, 360, 500, 660, 820, 1020], atol=0.1)


def test_real_hits_lie_on_their_modules(geometry):
    # the rot_* convention (columns = local u, v, w axes) and the trapezoid bounds: every hit of
    # the public TrackML event is on its module's mid-plane (|w| < 2.5% of the thickness) and inside
    hits = pd.read_csv(DATA / "event000000001-hits.csv.gz")
    rows = geometry.module_rows(hits.volume_id, hits.layer_id, hits.module_id)
    local = geometry.to_local(hits[["x", "y", "z"]].to_numpy(), rows)
    assert np.all(np.abs(local[:, 2]) < 0.025 * geometry.thickness[rows])
    assert geometry.inside(local, rows, tolerance=1e-3).all()
    geometry.check_hits(hits)
    # and the point lookup finds the very module of each hit
    np.testing.assert_array_equal(geometry.locate(hits.x, hits.y, hits.z), rows)


def test_geometry_errors_name_the_problem(geometry):
    with pytest.raises(UnknownNameError, match="volume 8 has layers"):
        geometry.layer(8, 3)
    with pytest.raises(UnknownNameError, match="valid volumes"):
        geometry.layer(10, 2)
    with pytest.raises(UnknownNameError, match="module ids run from 1 to 224"):
        geometry.module_rows(8, 2, 225)
    with pytest.raises(GeometryError, match="outside the detector volume"):
        geometry.locate([0.0, 2000.0], [0.0, 0.0], [0.0, 0.0])
    with pytest.raises(GeometryError, match="on no module"):
        geometry.module_of(0.0, 0.0, 0.0)
    hits = pd.read_csv(DATA / "event000000001-hits.csv.gz").head(10)
    hits.loc[3, "z"] += 5.0  # off its module plane
    with pytest.raises(GeometryError, match="outside their module"):
        geometry.check_hits(hits)


# ----------------------------------------------------------------------------- card
def test_card_loads_and_rejects_bad_values(card):
    assert card.bz == 2.0
    assert card.eta_max == 4.0
    assert card.resolution == "pitch"
    good = card.to_dict()
    with pytest.raises(ConfigError, match="Did you mean 'hit_efficiency'"):
        card_from_dict({**good, "hit_eficiency": 0.9})
    with pytest.raises(ConfigError, match="probability"):
        card_from_dict({**good, "hit_efficiency": 1.5})
    with pytest.raises(ConfigError, match="implausible"):
        card_from_dict(
            {**good, "material": {"pixel": 2.0, "short_strip": 0.02, "long_strip": 0.03}}
        )
    with pytest.raises(ConfigError, match="misses long_strip"):
        card_from_dict({**good, "material": {"pixel": 0.02, "short_strip": 0.02}})
    with pytest.raises(ConfigError, match="sigma_u, sigma_v"):
        card_from_dict({**good, "resolution": {t: [0.1] for t in good["material"]}})
    with pytest.raises(ConfigError, match="bz must be > 0"):
        TrackerCard(bz=0.0)
    with pytest.raises(UnknownNameError, match="Shipped cards: trackml"):
        load_tracker_card("trackm")


# ----------------------------------------------------------------------------- propagation
def test_helix_reproduces_the_radius_of_curvature(geometry, card):
    # no material, no smearing: the true hits of a pT = 1 GeV track lie on a circle of
    # radius pT / (0.3 B) (0.1% tolerance; the circle is fitted to the barrel hits + the origin)
    pt = 1.0
    ev = simulate_event(gun(20, pt, 0.3, seed=1), geometry, card, 1, **IDEAL)
    m = merged(ev)
    expected = pt / (K_CURV * card.bz)
    for _, d in m[m.volume_id.isin([8, 13, 17])].groupby("particle_id"):
        x = np.r_[0.0, d.tx.to_numpy(float)]
        y = np.r_[0.0, d.ty.to_numpy(float)]
        a = np.c_[x, y, np.ones_like(x)]
        sol = np.linalg.lstsq(a, x**2 + y**2, rcond=None)[0]
        radius = np.sqrt(sol[2] + (sol[0] ** 2 + sol[1] ** 2) / 4)
        assert radius == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(("eta", "n_layers"), [(0.0, 10), (1.0, 9), (3.0, 10)])
def test_straight_tracks_cross_the_expected_layers(geometry, card, eta, n_layers):
    # 100 GeV tracks from the origin: eta 0 crosses the 10 barrel layers; eta 1 the 4 pixel and
    # 4 short-strip barrel layers and one long-strip disk; eta 3 the innermost pixel layer, the
    # 7 pixel disks and the 2 outermost short-strip disks
    ev = simulate_event(gun(200, 100.0, eta, seed=2), geometry, card, 2, **IDEAL)
    m = merged(ev)
    layers = m.groupby("particle_id").apply(
        lambda d: len(set(zip(d.volume_id, d.layer_id, strict=True))), include_groups=False
    )
    assert len(layers) == 200
    assert (layers == n_layers).all()
    if eta == 0.0:
        assert set(m.volume_id) == {8, 13, 17}


def test_multiple_scattering_matches_highland(geometry, card):
    # the kink in the polar angle between the first and second pixel layers is the scattering
    # in the first layer only: its width must be Highland's theta0 (10% tolerance)
    p_t = 1.0
    ev = simulate_event(
        gun(4000, p_t, 0.0, seed=3), geometry, card, 3, noise=False, efficiency=False, smear=False
    )
    m = merged(ev)
    m = m[(m.volume_id == 8) & m.layer_id.isin([2, 4])]
    first = m.sort_values("hit_id").groupby(["particle_id", "layer_id"]).first().reset_index()
    theta = np.arctan2(np.hypot(first.tpx, first.tpy), first.tpz)
    first["theta"] = theta
    wide = first.pivot(index="particle_id", columns="layer_id", values="theta").dropna()
    kink = (wide[4] - wide[2]).to_numpy()
    p = p_t  # eta 0
    beta = p / np.hypot(p, 0.13957)
    expected = highland(np.array([p]), np.array([beta]), np.array([card.material["pixel"]]))[0]
    assert len(kink) > 3000
    assert np.std(kink) == pytest.approx(expected, rel=0.10)


def test_hit_efficiency_matches_the_card(geometry, card):
    particles = gun(3000, 2.0, 0.5, seed=4)
    all_hits = simulate_event(particles, geometry, card, 4, noise=False, efficiency=False)
    kept = simulate_event(particles, geometry, card, 4, noise=False)
    n, k = len(all_hits.hits), len(kept.hits)
    eff = card.hit_efficiency
    assert abs(k - eff * n) < 3 * np.sqrt(n * eff * (1 - eff))


def test_resolution_is_pitch_over_sqrt12(geometry, card):
    ev = simulate_event(gun(4000, 5.0, 0.4, seed=5), geometry, card, 5, noise=False)
    m = merged(ev)
    rows = geometry.module_rows(m.volume_id, m.layer_id, m.module_id)
    meas = geometry.to_local(m[["x", "y", "z"]].to_numpy(float), rows)
    true = geometry.to_local(m[["tx", "ty", "tz"]].to_numpy(float), rows)
    res = meas - true
    for volume, tech in ((8, "pixel"), (13, "short strip")):
        sel = (m.volume_id == volume).to_numpy()
        for axis, pitch in ((0, geometry.pitch_u), (1, geometry.pitch_v)):
            expected = pitch[rows[sel]][0] / np.sqrt(12)
            got = np.std(res[sel, axis])
            assert got == pytest.approx(expected, rel=0.10), (tech, axis)


def test_same_seed_same_event(geometry, card):
    particles = gun(300, 1.0, 1.0, seed=6)
    a = simulate_event(particles, geometry, card, 7)
    b = simulate_event(particles, geometry, card, 7)
    c = simulate_event(particles, geometry, card, 8)
    for part in ("hits", "truth", "particles", "cells"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))
    assert not a.hits[["x", "y", "z"]].equals(c.hits[["x", "y", "z"]])


def test_event_tables_are_consistent(geometry, card):
    from colliderlab.tracking.io import validate_event

    ev = simulate_event(gun(500, 0.5, 1.5, seed=9), geometry, card, 9)
    validate_event(ev)
    geometry.check_hits(ev.hits, tolerance=1e-3)
    counts = ev.truth[ev.truth.particle_id > 0].groupby("particle_id").size()
    nhits = ev.particles.set_index("particle_id").nhits
    pd.testing.assert_series_equal(
        counts.reindex(nhits.index, fill_value=0), nhits, check_names=False
    )
    noise = (ev.truth.particle_id == 0).mean()
    assert noise == pytest.approx(card.noise_fraction / (1 + card.noise_fraction), abs=0.03)
    assert ev.truth.weight.sum() == pytest.approx(1.0)
    assert (ev.truth.weight[ev.truth.particle_id == 0] == 0).all()
    assert (ev.cells.ch0 >= 0).all()
    assert (ev.cells.ch1 >= 0).all()


def test_bad_particle_tables_are_named_errors(geometry, card):
    particles = gun(5, 1.0, 0.0)
    with pytest.raises(DatasetError, match="no charge column"):
        simulate_event(particles.drop(columns="charge"), geometry, card, 0)
    bad = particles.copy()
    bad.loc[2, "px"] = np.nan
    with pytest.raises(DatasetError, match="non-finite values in column 'px'"):
        simulate_event(bad, geometry, card, 0)
    with pytest.raises(DatasetError, match="unique and > 0"):
        simulate_event(particles.assign(particle_id=0), geometry, card, 0)


def test_loopers_turn_back(geometry, card):
    # pT = 0.12 GeV: 2 rho = 400 mm, the track turns between the short-strip layers at r = 360
    # and 500 mm and comes back in: it crosses the outer pixel layer twice, far apart
    ev = simulate_event(gun(50, 0.12, 0.05, seed=10), geometry, card, 10, **IDEAL)
    m = merged(ev)
    assert not ((m.volume_id == 13) & (m.layer_id == 6)).any()
    outer = m[(m.volume_id == 8) & (m.layer_id == 8)]
    spread = outer.groupby("particle_id").apply(
        lambda d: np.ptp(d.tx) + np.ptp(d.ty), include_groups=False
    )
    assert len(spread) == 50
    assert (spread > 50.0).mean() > 0.9  # mm: a hit on the way out and one on the way back


# ----------------------------------------------------------------------------- events
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trackml")
    summary = make_dataset(directory, 2, mu=0, seed=11, progress=False)
    return directory, summary


def test_make_dataset_writes_trackml_files_and_resumes(dataset):
    from colliderlab.tracking.io import read_event

    directory, summary = dataset
    assert summary["written"] == 2
    assert (directory / "detectors.csv.gz").exists()
    again = make_dataset(directory, 2, mu=0, seed=11, progress=False)
    assert again["written"] == 0
    assert again["skipped"] == 2
    with pytest.raises(DatasetError, match="another configuration"):
        make_dataset(directory, 2, mu=0, seed=12, progress=False)
    # the same seed gives the same event as generate_events
    fresh = next(generate_events(1, mu=0, seed=11))
    stored = read_event(directory / "event000000000")
    pd.testing.assert_frame_equal(fresh.hits, stored.hits, check_dtype=False)
    assert stored.particles["pileup"].eq(0).all()


def test_ttbar_tracks_have_enough_hits(dataset):
    # MU = 0 ttbar: every primary particle (vertex within 1 mm of the beam line) with
    # pT > 1 GeV and |eta| < 2.5 crosses >= 9 layers; with overlaps and 1% inefficiency each
    # has at least 8 hits
    from colliderlab.tracking.io import read_event

    directory, _ = dataset
    for name in ("event000000000", "event000000001"):
        p = read_event(directory / name).particles
        pt = np.hypot(p.px, p.py)
        eta = np.arcsinh(p.pz / pt)
        sel = (pt > 1) & (np.abs(eta) < 2.5) & (np.hypot(p.vx, p.vy) < 1)
        assert sel.sum() > 10
        assert p.nhits[sel].min() >= 8


def test_hits_scale_with_pileup(card, geometry):
    from colliderlab.tracking.simulate import generate_particles

    parts = generate_particles(0, mu=10, seed=13)
    ev = simulate_event(parts, geometry, card, 1, noise=False)
    n_pu = int(parts.pileup.max())
    pileup_hits = ev.particles.loc[ev.particles.pileup > 0, "nhits"].sum()
    assert n_pu > 0
    # a minimum-bias interaction leaves ~300-900 hits (TrackML: ~1e5 hits at MU = 200)
    assert 150 * n_pu < pileup_hits < 1500 * n_pu
