"""The reference calorimeter simulation (colliderlab.calosim): physics checks and contracts.

Physics tests use fixed seeds and state their tolerances; samples are small, so most run
on the cheap ``atlas5`` geometry or on purpose-built test geometries (fine longitudinal
layers for the shower maximum, rings of R_M for the containment).
"""

from __future__ import annotations

import itertools

import h5py
import numpy as np
import pytest
from scipy.optimize import curve_fit

from colliderlab.calosim import (
    CaloGeometry,
    geometry_names,
    get_geometry,
    get_material,
    make_dataset,
    read_calochallenge_h5,
    sample_incident_energies,
    simulate_showers,
    write_calochallenge_h5,
)
from colliderlab.core.errors import ConfigError, DatasetError, OutputError, UnknownNameError

GEV = 1000.0
PB_LAR = get_material("pb_lar")
X0, RM = PB_LAR.radiation_length, PB_LAR.moliere_radius


# ---------------------------------------------------------------------- helpers
def _resolution_fit(e_gev, rel_sigma, n):
    """Fit sigma/E = a / sqrt(E) (+) b; returns (a, b)."""
    e_gev, rel_sigma = np.asarray(e_gev, float), np.asarray(rel_sigma, float)
    (a, b), _ = curve_fit(
        lambda e, a, b: np.sqrt(a**2 / e + b**2),
        e_gev,
        rel_sigma,
        p0=(0.1, 0.01),
        sigma=rel_sigma / np.sqrt(2 * n),
    )
    return abs(a), abs(b)


def _scan(particle, energies_gev, n, seed):
    """Total visible energy (MeV) of ``n`` showers at each energy, in ``atlas5``."""
    return {
        e: simulate_showers("atlas5", particle, np.full(n, e * GEV), seed=seed + i).sum(axis=1)
        for i, e in enumerate(energies_gev)
    }


@pytest.fixture(scope="module")
def electron_scan():
    scan = _scan("e-", [1, 4, 16, 64, 256], 400, seed=100)
    scan.update(_scan("e-", [1024], 60, seed=200))
    return scan


@pytest.fixture(scope="module")
def pion_scan():
    return _scan("pi+", [4, 16, 64, 256], 200, seed=300)


# ---------------------------------------------------------------------- geometry
def test_registered_geometries_have_the_calochallenge_sizes():
    assert {"challenge", "atlas5"} <= set(geometry_names())
    ch = get_geometry("challenge")
    assert (ch.n_layers, ch.n_voxels) == (45, 6480)
    assert ch.n_radial == (9,) * 45
    assert ch.n_alpha == (16,) * 45
    assert ch.r_edges[0][-1] == pytest.approx(41.85)
    assert ch.layer_edges_x0[-1] == pytest.approx(36.3, abs=0.1)  # 90 x (1.4 mm W + 0.3 mm Si)
    a5 = get_geometry("atlas5")
    assert a5.n_voxels == 368
    assert a5.layer_sizes == (8, 160, 190, 5, 5)
    assert np.allclose(a5.layer_edges_x0[:5], [0, 2, 6.5, 22.5, 25])
    assert a5.layer_edges_lambda[-1] - a5.layer_edges_lambda[4] == pytest.approx(6.0)
    slices = a5.layer_slices
    assert slices[0].start == 0
    assert slices[-1].stop == 368
    assert all(a.stop == b.start for a, b in itertools.pairwise(slices))


def test_voxel_order_is_alpha_major_then_radius_as_in_calochallenge():
    ch = get_geometry("challenge")
    c = ch.voxel_centres()
    # first voxels: the 9 radial bins of the first angular slice of layer 0
    assert np.allclose(c.r[:9], 2.325 + 4.65 * np.arange(9))
    assert np.allclose(c.alpha[:9], -np.pi + np.pi / 16)
    assert np.allclose(c.alpha[9:18], -np.pi + 3 * np.pi / 16)
    assert np.all(c.layer[:144] == 0)
    assert c.layer[144] == 1
    assert ch.voxel_index(3, 5, 7) == 3 * 144 + 5 * 9 + 7
    assert np.allclose(c.x, c.r * np.cos(c.alpha))
    assert np.allclose(c.z[:144], 1.7)
    # layers with one angular bin sit at alpha = 0
    a5 = get_geometry("atlas5").voxel_centres()
    assert np.all(a5.alpha[:8] == 0.0)
    assert np.allclose(a5.r[:3], [2.5, 7.5, 20])
    # in simulated showers, energy falls with the radial (fast) index and is flat in alpha
    showers = simulate_showers("challenge", "e-", np.full(40, 50 * GEV), seed=1)
    layer = showers[:, ch.layer_slices[12]].mean(axis=0).reshape(16, 9)
    radial, angular = layer.sum(axis=0), layer.sum(axis=1)
    assert np.all(np.diff(radial[:6]) < 0)
    assert angular.std() / angular.mean() < 0.1  # 16 slices, 40 showers: a few % scatter


def test_unknown_names_and_bad_inputs_give_clear_errors():
    with pytest.raises(UnknownNameError, match="Did you mean 'challenge'"):
        get_geometry("challnge")
    with pytest.raises(ConfigError, match="Did you mean 'e-'"):
        simulate_showers("atlas5", "e+", [1e3], seed=1)
    with pytest.raises(ConfigError, match=r"energies\[1\]"):
        simulate_showers("atlas5", "e-", [1e3, -5.0], seed=1)
    with pytest.raises(ConfigError, match="theta"):
        simulate_showers("atlas5", "e-", [1e3], theta=2.0, seed=1)
    with pytest.raises(ConfigError, match="r_edges"):
        CaloGeometry("bad", "pb_lar", (0.0, 10.0), ((0.0, 5.0, 4.0),), (1,))


def test_material_constants_follow_the_pdg_tables():
    # effective Pb/LAr (1.53 mm Pb + 4.2 mm LAr): X0 ~ 1.9 cm, R_M ~ 4 cm, E_c ~ 10 MeV
    assert X0 == pytest.approx(18.94, rel=1e-3)
    assert RM == pytest.approx(40.35, rel=1e-3)
    assert PB_LAR.critical_energy == pytest.approx(9.95, rel=1e-3)
    assert PB_LAR.sampling_fraction == pytest.approx(0.2166, rel=1e-3)
    assert PB_LAR.stochastic_term == pytest.approx(0.0988, rel=1e-3)  # 2.7% sqrt(d / f_mip)
    w_si = get_material("w_si")
    assert w_si.radiation_length == pytest.approx(4.219, rel=1e-3)
    assert w_si.moliere_radius == pytest.approx(10.87, rel=1e-3)


# ---------------------------------------------------------------------- (a) longitudinal
def _fine_geometry():
    dt, depth = 0.25, 45.0  # X0
    n = int(depth / dt)
    return CaloGeometry(
        name="fine_pb_lar",
        material="pb_lar",
        layer_edges=tuple(np.arange(n + 1) * dt * X0),
        r_edges=((0.0, 50 * RM),) * n,
        n_alpha=(1,) * n,
    )


def _tmax(profile, dt=0.25):
    """Depth (X0) of the maximum of a Gamma function fitted around the peak of ``profile``."""
    t = (np.arange(len(profile)) + 0.5) * dt
    k = np.argmax(profile)
    sel = profile > 0.3 * profile[k]
    (_, a, b), _ = curve_fit(
        lambda t, c, a, b: c * t ** (a - 1) * np.exp(-b * t),
        t[sel],
        profile[sel],
        p0=(profile[k], 3.0, 0.5),
        maxfev=20000,
    )
    return (a - 1) / b


def test_shower_maximum_grows_like_log_energy():
    """t_max(E) = ln(E/E_c) - 0.5 (e-) / + 0.5 (gamma) within 1 X0; slope within 20% of 1."""
    geom = _fine_geometry()
    ec = PB_LAR.critical_energy
    energies = np.array([1, 4, 16, 64, 256])
    tmax = {}
    for particle, es in (("e-", energies), ("gamma", np.array([4, 64]))):
        for i, e in enumerate(es):
            s = simulate_showers(geom, particle, np.full(150, e * GEV), seed=10 + i)
            tmax[particle, e] = _tmax(s.mean(axis=0))
    for e in energies:
        expected = np.log(e * GEV / ec) - 0.5
        assert abs(tmax["e-", e] - expected) < 1.0, (e, tmax["e-", e], expected)
    for e in (4, 64):
        expected = np.log(e * GEV / ec) + 0.5
        assert abs(tmax["gamma", e] - expected) < 1.0, (e, tmax["gamma", e], expected)
        # photons start 9/7 X0 later on average
        assert 0.8 < tmax["gamma", e] - tmax["e-", e] < 1.8
    slope = np.polyfit(np.log(energies), [tmax["e-", e] for e in energies], 1)[0]
    assert slope == pytest.approx(1.0, rel=0.2)


# ---------------------------------------------------------------------- (b) lateral
def test_moliere_radius_contains_90_and_95_percent():
    """~90% of the energy within 1 R_M and ~95% within 2 R_M (+- 3%)."""
    rings = CaloGeometry(
        name="rings",
        material="pb_lar",
        layer_edges=(0.0, 60 * X0),
        r_edges=((0.0, RM, 2 * RM, 1000 * RM),),
        n_alpha=(1,),
    )
    for i, e in enumerate((10, 100)):
        mean = simulate_showers(rings, "e-", np.full(100, e * GEV), seed=20 + i).mean(axis=0)
        inside = np.cumsum(mean) / mean.sum()
        assert inside[0] == pytest.approx(0.90, abs=0.03), e
        assert inside[1] == pytest.approx(0.95, abs=0.03), e


# ---------------------------------------------------------------------- (c), (d) electrons
def test_electron_response_is_linear(electron_scan):
    """Mean visible energy / E constant within 2% from 1 GeV to 1 TeV: the sampling fraction."""
    response = {e: tot.mean() / (e * GEV) for e, tot in electron_scan.items()}
    values = np.array(list(response.values()))
    assert values.max() / values.min() - 1 < 0.02, response
    # full containment in atlas5 (56 X0 deep): the response is the sampling fraction (+- 2%)
    assert values.mean() == pytest.approx(PB_LAR.sampling_fraction, rel=0.02)


def test_electron_resolution_matches_the_stochastic_and_constant_terms(electron_scan):
    """sigma/E = a/sqrt(E) (+) b with a and b within 20% of the calorimeter's values."""
    es = [1, 4, 16, 64, 256]
    rel = [electron_scan[e].std() / electron_scan[e].mean() for e in es]
    a, b = _resolution_fit(es, rel, 400)
    assert a == pytest.approx(PB_LAR.stochastic_term, rel=0.2)  # 9.9%
    assert b == pytest.approx(PB_LAR.constant_term, rel=0.2)  # 0.7%


def test_pions_respond_less_and_fluctuate_more_than_electrons(electron_scan, pion_scan):
    """Non-compensation (pi/e < 1) and a resolution several times worse than electrons'."""
    for e, tot in pion_scan.items():
        pi_resp = tot.mean() / (e * GEV)
        e_resp = electron_scan[e].mean() / (e * GEV)
        assert 0.6 < pi_resp / e_resp < 0.9, (e, pi_resp / e_resp)
        pi_res, e_res = tot.std() / tot.mean(), electron_scan[e].std() / electron_scan[e].mean()
        assert pi_res > 3 * e_res, (e, pi_res, e_res)
    es = sorted(pion_scan)
    a, b = _resolution_fit(es, [pion_scan[e].std() / pion_scan[e].mean() for e in es], 200)
    assert 0.4 < a < 0.75  # ~ 55% / sqrt(E)
    assert 0.02 < b < 0.12  # ~ 6% from the event-by-event f_em


@pytest.mark.parametrize("particle", ["e-", "gamma", "pi+"])
def test_visible_energy_is_at_most_the_sampled_share_of_the_incident_energy(particle):
    """Down to 50 MeV, the mean visible energy is at most f_mip (the largest sampled share)."""
    for i, e in enumerate((50.0, 300.0, 2000.0)):
        tot = simulate_showers("atlas5", particle, np.full(200, e), seed=40 + i).sum(axis=1)
        assert tot.mean() / e < PB_LAR.mip_fraction, (e, tot.mean() / e)


# ---------------------------------------------------------------------- angle
def test_inclined_showers_develop_in_shallower_layers():
    geom = get_geometry("challenge")
    e = np.full(40, 50 * GEV)
    depth, total = {}, {}
    for th in (0.0, 0.5):
        layers = geom.layer_energies(simulate_showers(geom, "e-", e, theta=th, seed=30))
        depth[th] = (layers * np.arange(geom.n_layers)).sum() / layers.sum()
        total[th] = layers.sum(axis=1).mean()
    # the mean depth along the detector axis shrinks by cos(theta) (+- 5%) ...
    assert depth[0.5] / depth[0.0] == pytest.approx(np.cos(0.5), rel=0.05)
    # ... while the visible energy stays the same (+- 2%)
    assert total[0.5] == pytest.approx(total[0.0], rel=0.02)


# ---------------------------------------------------------------------- (e) reproducibility
@pytest.mark.parametrize("particle", ["e-", "gamma", "pi-"])
def test_same_seed_same_showers_whatever_the_block(particle):
    energies = sample_incident_energies(25, e_min=1e3, e_max=2e5, seed=5)
    a = simulate_showers("atlas5", particle, energies, seed=42)
    b = simulate_showers("atlas5", particle, energies, seed=42, block=4)
    c = simulate_showers("atlas5", particle, energies, seed=43)
    assert a.dtype == np.float32
    assert a.shape == (25, 368)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a >= 0)
    # a shower does not depend on the others: simulating a subset gives the same rows
    assert np.array_equal(simulate_showers("atlas5", particle, energies[:3], seed=42), a[:3])


def test_sample_incident_energies_is_log_uniform_and_reproducible():
    e = sample_incident_energies(20_000, seed=1)
    assert e.min() >= 1e3
    assert e.max() <= 1e6
    assert np.log10(e).mean() == pytest.approx(4.5, abs=0.02)  # uniform in log10 on [3, 6]
    assert np.array_equal(e, sample_incident_energies(20_000, seed=1))
    with pytest.raises(ConfigError, match="e_min"):
        sample_incident_energies(3, e_min=10.0, e_max=1.0, seed=1)


# ---------------------------------------------------------------------- (f) HDF5 files
def test_hdf5_round_trip_in_the_calochallenge_layout(tmp_path):
    energies = sample_incident_energies(12, e_min=1e3, e_max=1e5, seed=2)
    showers = simulate_showers("challenge", "e-", energies, seed=3)
    path = write_calochallenge_h5(
        tmp_path / "ds2.h5", energies, showers, geometry_name="challenge", particle="e-"
    )
    with h5py.File(path, "r") as f:
        assert f["incident_energies"].shape == (12, 1)
        assert f["showers"].shape == (12, 6480)
        assert f["showers"].dtype == np.float32
        assert f.attrs["geometry"] == "challenge"
        assert f.attrs["particle"] == "e-"
    e2, s2 = read_calochallenge_h5(path, geometry="challenge")
    assert e2.shape == (12,)
    assert e2.dtype == np.float32
    assert np.allclose(e2, energies, rtol=1e-6)
    assert np.array_equal(s2, showers)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def _h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


@pytest.mark.parametrize(
    ("datasets", "message"),
    [
        ({"energies": np.ones((2, 1))}, r"no dataset 'incident_energies' or 'showers'.*energies"),
        ({"incident_energies": np.ones((2, 1))}, r"no dataset 'showers'.*incident_energies"),
        (
            {"incident_energies": np.array([[1.0], [0.0]]), "showers": np.ones((2, 368))},
            r"finite and > 0.*row 1",
        ),
        (
            {"incident_energies": np.array([[1.0], [np.nan]]), "showers": np.ones((2, 368))},
            r"finite and > 0.*row 1",
        ),
        (
            {"incident_energies": np.ones((2, 1)), "showers": -np.eye(2, 368)},
            r"shower 0, voxel 0 is negative",
        ),
        (
            {"incident_energies": np.ones((2, 1)), "showers": np.full((2, 368), np.nan)},
            r"shower 0, voxel 0 is NaN",
        ),
        (
            {"incident_energies": np.ones((3, 1)), "showers": np.ones((2, 368))},
            r"3 incident energies but 2 showers",
        ),
        (
            {"incident_energies": np.ones((2, 1)), "showers": np.ones((2, 533))},
            r"533 voxels but geometry 'atlas5' has 368",
        ),
    ],
)
def test_reading_a_bad_file_says_what_is_wrong(tmp_path, datasets, message):
    path = _h5(tmp_path / "bad.h5", **datasets)
    with pytest.raises(DatasetError, match=message) as err:
        read_calochallenge_h5(path, geometry="atlas5")
    assert str(path) in str(err.value)


def test_reading_a_missing_or_non_hdf5_file_fails_clearly(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        read_calochallenge_h5(tmp_path / "missing.h5")
    text = tmp_path / "showers.h5"
    text.write_text("incident_energies,showers\n1,2\n")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        read_calochallenge_h5(text)


def test_writing_bad_showers_leaves_no_file(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(DatasetError, match="voxel 3 is negative"):
        write_calochallenge_h5(path, np.ones(2), -np.eye(2, 10, k=3))
    with pytest.raises(DatasetError, match="2 incident energies but 1 showers"):
        write_calochallenge_h5(path, np.ones(2), np.ones((1, 10)))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- datasets
def test_make_dataset_resumes_after_a_crash_and_gives_the_same_file(tmp_path, monkeypatch):
    import colliderlab.calosim.shower as shower

    kwargs = {"seed": 9, "e_min": 1e3, "e_max": 5e4, "block": 10, "progress": False}
    ref = make_dataset(tmp_path / "ref.h5", "atlas5", "gamma", 30, **kwargs)

    calls = {"n": 0}
    real = shower._simulate

    def crash_on_second_block(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(shower, "_simulate", crash_on_second_block)
    path = tmp_path / "ds.h5"
    with pytest.raises(KeyboardInterrupt):
        make_dataset(path, "atlas5", "gamma", 30, **kwargs)
    assert not path.exists()
    assert len(list((tmp_path / "ds.h5.parts").glob("block-*.npy"))) == 1
    monkeypatch.setattr(shower, "_simulate", real)
    make_dataset(path, "atlas5", "gamma", 30, **kwargs)
    assert not (tmp_path / "ds.h5.parts").exists()

    e_ref, s_ref = read_calochallenge_h5(ref, geometry="atlas5")
    e, s = read_calochallenge_h5(path, geometry="atlas5")
    assert np.array_equal(e, e_ref)
    assert np.array_equal(s, s_ref)
    assert e.min() >= 1e3
    assert e.max() <= 5e4
    # the stored energies are the simulated ones
    assert np.array_equal(s[:5], simulate_showers("atlas5", "gamma", e[:5], seed=_key_of(9)))
    # same request: returned as is; another request on the same path: refused
    assert make_dataset(path, "atlas5", "gamma", 30, **kwargs) == path
    with pytest.raises(OutputError, match="exists"):
        make_dataset(path, "atlas5", "gamma", 31, **kwargs)


def _key_of(seed):
    """The shower stream that make_dataset derives from ``seed``."""
    return np.random.SeedSequence(seed).spawn(2)[1]
