"""The generated calorimeter in the detector simulation (``calo_model``): the calibrated
shower responses and their effect on the reconstructed electron energy, with the
tolerances stated in the tests."""

from __future__ import annotations

import dataclasses
import json

import awkward as ak
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from colliderlab.calosim.loop import core_width, energy_resolution, response_resolution  # noqa: E402
from colliderlab.calosim.response import (  # noqa: E402
    CALIBRATION,
    ModelResponse,
    ReferenceResponse,
    get_response,
    measure_calibration,
    write_run_info,
)
from colliderlab.calosim.shower import sample_incident_energies, simulate_showers  # noqa: E402
from colliderlab.calosim.train import TrainConfig, train  # noqa: E402
from colliderlab.core.errors import ConfigError  # noqa: E402
from colliderlab.core.seeding import chunk_seed  # noqa: E402
from colliderlab.detector import load_card  # noqa: E402
from colliderlab.detector.reco import FastSimulation  # noqa: E402
from colliderlab.detector.run import SimulationConfig  # noqa: E402
from colliderlab.generate import GenerationConfig  # noqa: E402
from colliderlab.generate.engine import generate_chunk  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """A tiny VAE trained for 2 epochs on 300 atlas5 photon showers (seconds)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "atlas5-gamma" / "vae"
    energies = sample_incident_energies(300, seed=5)
    showers = simulate_showers("atlas5", "gamma", energies, seed=6)
    config = TrainConfig(
        "vae", epochs=2, batch_size=64, model_kwargs={"hidden": (32,), "latent_dim": 4}
    )
    train(config, energies, showers, out, progress=False)
    write_run_info(out, "atlas5", "gamma")
    return out


def _gun(energy: float, n: int, seed: int = 3):
    params = {"e_min": energy, "e_max": energy, "eta_min": -1.0, "eta_max": 1.0}
    cfg = GenerationConfig("gun_e", n_events=n, seed=seed, chunk_size=n, params=params)
    return generate_chunk(cfg, 0, chunk_seed(seed, 0))[0]


def test_calibration_table_matches_a_new_measurement():
    # 200 showers at 16 and 64 GeV: statistical error ~0.1%; tolerance 0.5%
    m = measure_calibration("atlas5", "e-", energies_gev=(16.0, 64.0), n=200, seed=7)
    assert m == pytest.approx(CALIBRATION[("atlas5", "e-")], rel=5e-3)


def test_reference_response_is_unbiased_with_the_reference_resolution():
    res = response_resolution("reference", energies=(2.0, 8.0, 32.0, 128.0), n=600)
    for p in res["points"]:
        assert p["scale"] == pytest.approx(1.0, abs=0.015)  # unbiased within 1.5%
    # the reference simulation: 9.8% / sqrt(E) (+) 0.7% for electrons in Pb/LAr
    assert res["a"] == pytest.approx(0.099, abs=0.008)
    assert res["b"] == pytest.approx(0.007, abs=0.003)


def test_response_refuses_energies_outside_its_range_and_unknown_particles():
    ref = ReferenceResponse()
    with pytest.raises(ConfigError, match=r"\[1, 1000\] GeV"):
        ref(np.array([0.5, 10.0]), "e-", seed=1)
    with pytest.raises(ConfigError, match="pi\\+"):
        ref(np.array([10.0]), "pi+", seed=1)
    assert ref.in_range([0.5, 10.0, 2000.0]).tolist() == [False, True, False]


def test_a_trained_vae_plugs_in(vae_dir):
    resp = get_response(vae_dir)
    assert isinstance(resp, ModelResponse)
    assert resp.geometry.name == "atlas5"
    assert resp.trained_on == "gamma"
    e = resp(np.array([1.0, 10.0, 100.0, 500.0]), "e-", seed=1)
    assert e.shape == (4,)
    assert np.isfinite(e).all()
    assert (e >= 0).all()
    again = resp(np.array([1.0, 10.0, 100.0, 500.0]), "e-", seed=1)
    np.testing.assert_array_equal(e, again)  # the seed fixes the draw
    assert resp.digest() != ReferenceResponse().digest()


def test_bad_model_path_and_other_geometry_are_named(tmp_path, vae_dir):
    with pytest.raises(ConfigError, match=r"no checkpoint\.pt.*'reference'"):
        get_response(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"368 voxels.*geometry 'challenge'"):
        ModelResponse(vae_dir, geometry="challenge")
    # a run directory whose calosim.json names another geometry than its checkpoint
    (vae_dir.parent / "wrong").mkdir()
    other = vae_dir.parent / "wrong"
    (other / "checkpoint.pt").write_bytes((vae_dir / "checkpoint.pt").read_bytes())
    (other / "calosim.json").write_text(json.dumps({"geometry": "challenge", "particle": "e-"}))
    with pytest.raises(ConfigError, match=r"calosim\.json asks for geometry 'challenge'"):
        get_response(other)


def test_default_simulation_is_unchanged_by_the_option():
    gen = _gun(50.0, 40)
    card = load_card("generic_lhc")
    a = FastSimulation(card)(gen, np.random.default_rng(2))
    b = FastSimulation(card, calo_model=None)(gen, np.random.default_rng(2))
    assert ak.to_list(a.Electron) == ak.to_list(b.Electron)
    # the dataset identity: unchanged without a model, different with one
    cfg = SimulationConfig("in", "d", (), card)
    assert cfg.digest() == dataclasses.replace(cfg, calo_model=None).digest()
    ref = dataclasses.replace(cfg, calo_model="reference", calo_model_digest="x")
    assert ref.digest() != cfg.digest()
    assert dataclasses.replace(ref, calo_model_digest="y").digest() != ref.digest()


def test_reference_in_the_loop_replaces_the_card_smearing_of_electrons():
    # A card with a poor ECAL (30%/sqrt(E), no constant, no noise): with the reference showers
    # the electrons get the Pb/LAr resolution 9.9%/sqrt(E) (+) 0.7% instead.
    card = load_card("generic_lhc")
    res = dataclasses.replace(
        card.ecal.resolution,
        stochastic=(0.30, 0.30, 0.30),
        noise=(0.0, 0.0, 0.0),
        constant=(0.0, 0.0, 0.0),
    )
    card = dataclasses.replace(
        card, ecal=dataclasses.replace(card.ecal, resolution=res, tower_noise=(0.0, 0.0, 0.0))
    )
    energy = 40.0
    gen = _gun(energy, 300)
    widths = {}
    for model in (None, "reference"):
        out = FastSimulation(card, calo_model=model)(gen, np.random.default_rng(4))
        lead = out.Electron[ak.num(out.Electron) > 0][:, 0]
        ratio = np.asarray(lead.pt) * np.cosh(np.asarray(lead.eta)) / energy
        assert len(ratio) > 200
        widths[model] = core_width(ratio)
    card_pred = 0.30 / np.sqrt(energy)  # 4.7%
    ref_pred = np.hypot(0.099 / np.sqrt(energy), 0.007)  # 1.7%
    # scale within 2% of the card's electron calibration (tower thresholds); widths within 20%
    for scale, _, _ in widths.values():
        assert scale == pytest.approx(1.0, abs=0.02)
    assert widths[None][1] == pytest.approx(card_pred, rel=0.2)
    assert widths["reference"][1] == pytest.approx(ref_pred, rel=0.2)


def test_energy_resolution_study_runs_with_a_model(vae_dir):
    result = energy_resolution(
        [None, "reference", vae_dir], energies=(20.0, 50.0, 100.0), n_events=60
    )
    assert [r["config"] for r in result["rows"]] == ["card", "reference", "atlas5-gamma/vae"]
    for row in result["rows"]:
        assert len(row["points"]) == 3
        assert all(np.isfinite(p["scale"]) for p in row["points"])
    for row in result["rows"][:2]:  # card and reference are calibrated: scale ~ 1
        assert all(abs(p["scale"] - 1) < 0.03 for p in row["points"])
