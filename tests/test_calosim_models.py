"""Calorimeter shower generators: the contract of every registered model, resumable training,
the CaloChallenge high-level features, separation power and classifier AUC."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
import torch

from colliderlab.calosim.evaluate import (
    classifier_auc,
    evaluate_models,
    roc_auc,
    time_per_shower,
)
from colliderlab.calosim.features import (
    feature_table,
    high_level_features,
    layer_sizes,
    plot_features,
    separation_power,
    worst_feature,
)
from colliderlab.calosim.models import ShowerPreprocessing, count_parameters
from colliderlab.calosim.train import (
    CHECKPOINT,
    TrainConfig,
    build_model,
    load_model,
    mean_loss,
    model_names,
    train,
)
from colliderlab.core.errors import ConfigError, UnknownNameError

MODELS = ("flow", "flow_matching", "vae", "wgan")
#: Tiny sizes: every training below takes well under a second.
TINY = {
    "vae": {"hidden": (32,), "latent_dim": 4},
    "wgan": {"hidden": (32,), "critic_hidden": (32,), "latent_dim": 8, "n_critic": 2},
    "flow": {"transforms": 2, "hidden": (32,)},
    "flow_matching": {"hidden": (32, 32), "steps": 4},
    "vae+flow": {"hidden": (32,), "latent_dim": 4, "energy_model": "flow", "energy_hidden": (16,)},
    "vae+iaf": {"hidden": (32,), "latent_dim": 4, "energy_model": "iaf", "energy_hidden": (16,)},
    "vae+spline_iaf": {
        "hidden": (32,),
        "latent_dim": 4,
        "energy_model": "spline_iaf",
        "energy_hidden": (16,),
        "energy_transforms": 2,
    },
    "vae+mask": {"hidden": (32,), "latent_dim": 4, "zero_mask": True},
    "vae+flow+mask": {
        "hidden": (32,),
        "latent_dim": 4,
        "energy_model": "flow",
        "energy_hidden": (16,),
        "zero_mask": True,
    },
    "vae+mask+sigma+iafprior": {
        "hidden": (32,),
        "latent_dim": 4,
        "zero_mask": True,
        "conditional_sigma": True,
        "latent_prior": "iaf",
        "prior_hidden": (16,),
    },
    "vae+iaf+prior": {
        "hidden": (32,),
        "latent_dim": 4,
        "energy_model": "iaf",
        "energy_hidden": (16,),
        "latent_prior": "flow",
        "prior_hidden": (16,),
        "prior_transforms": 2,
    },
    "vae+layersigma": {
        "hidden": (32,),
        "latent_dim": 4,
        "conditional_sigma": "layer",
        "sample_noise": 1.0,
    },
    "vae+iaf+mask+layersigma": {
        "hidden": (32,),
        "latent_dim": 4,
        "energy_model": "iaf",
        "energy_hidden": (16,),
        "zero_mask": True,
        "conditional_sigma": "layer",
        "sample_noise": 0.85,
    },
    "flow_matching+iaf": {
        "hidden": (32, 32),
        "steps": 4,
        "energy_model": "iaf",
        "energy_hidden": (16,),
    },
    "flow_matching+occupancy": {"hidden": (32, 32), "steps": 4, "occupancy": True},
    "vae+spline_iaf+mask+sigma+rank": {
        "hidden": (32,),
        "latent_dim": 4,
        "energy_model": "spline_iaf",
        "energy_hidden": (16,),
        "energy_transforms": 2,
        "zero_mask": True,
        "conditional_sigma": True,
        "sample_noise": 0.85,
        "decoder_rank": 6,
    },
    "flow_matching+iaf+occupancy": {
        "hidden": (32, 32),
        "steps": 4,
        "energy_model": "iaf",
        "energy_hidden": (16,),
        "occupancy": True,
    },
}
#: The contract tests run over every model and the options with their own code paths.
VARIANTS = (
    *MODELS,
    "vae+flow",
    "vae+iaf",
    "vae+spline_iaf",
    "vae+mask",
    "vae+flow+mask",
    "vae+mask+sigma+iafprior",
    "vae+iaf+prior",
    "vae+layersigma",
    "vae+iaf+mask+layersigma",
    "flow_matching+iaf",
    "flow_matching+occupancy",
    "vae+spline_iaf+mask+sigma+rank",
    "flow_matching+iaf+occupancy",
)


class ToyGeometry:
    """Stand-in for calosim.geometry.CaloGeometry: cylindrical layers of (n_radial, n_alpha)
    voxels, flat index = layer offset + alpha bin * n_radial + radial bin, centres (r, alpha)."""

    def __init__(self, layers=((3, 1), (4, 4), (2, 1)), r_max: float = 100.0) -> None:
        self.n_radial = [r for r, _ in layers]
        self.n_alpha = [a for _, a in layers]
        self.radial_edges = [np.linspace(0.0, r_max, r + 1) for r, _ in layers]
        starts = np.cumsum([0, *(r * a for r, a in layers)])
        self.layer_slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(starts)]
        self.n_voxels = int(starts[-1])
        r, alpha = [], []
        for (n_r, n_a), edges in zip(layers, self.radial_edges, strict=True):
            mid = 0.5 * (edges[1:] + edges[:-1])
            centres = (np.arange(n_a) + 0.5) * 2 * np.pi / n_a if n_a > 1 else np.zeros(1)
            for a in centres:
                r.extend(mid)
                alpha.extend([a] * n_r)
        self._centres = (np.array(r), np.array(alpha))

    def voxel_centres(self):
        return self._centres


class XYGeometry:
    """Six voxels with cartesian centres: layer 0 a 2x2 grid at (+-1, +-1), layer 1 two voxels
    at x = 0 and x = 2 on y = 0."""

    n_voxels = 6
    layer_slices = (slice(0, 4), slice(4, 6))

    def voxel_centres(self):
        return np.array([-1.0, 1, -1, 1, 0, 2]), np.array([-1.0, -1, 1, 1, 0, 0])


def toy_showers(geometry, n: int, seed: int = 0, scale: float = 1.0):
    """Gaussian-profile showers, log-uniform E in 1 GeV - 1 TeV (MeV): the depth of the shower
    maximum and the lateral width grow with log E; 90 % of E deposited; per-voxel log-normal
    fluctuations; voxels below 5 MeV read out as zero. ``scale`` widens the showers."""
    rng = np.random.default_rng(seed)
    e = np.exp(rng.uniform(np.log(1e3), np.log(1e6), n))
    lg = np.log10(e / 1e3)
    n_layers = len(geometry.layer_slices)
    t_max = 0.3 + 0.4 * lg[:, None] * (n_layers - 1) / 3
    profile = np.exp(-0.5 * (np.arange(n_layers)[None, :] - t_max) ** 2)
    profile *= rng.gamma(20.0, 1 / 20.0, (n, n_layers))
    profile /= profile.sum(1, keepdims=True)
    total = 0.9 * e * rng.normal(1.0, 0.03, n)
    r, _ = geometry.voxel_centres()
    x = np.zeros((n, geometry.n_voxels))
    for layer, sl in enumerate(geometry.layer_slices):
        width = 20.0 * scale * (1 + 0.15 * lg)[:, None]
        shape = np.exp(-r[sl][None, :] / width) * rng.lognormal(0.0, 0.5, (n, sl.stop - sl.start))
        shape /= shape.sum(1, keepdims=True)
        x[:, sl] = shape * (profile[:, layer] * total)[:, None]
    x[x < 5.0] = 0.0
    return e.astype(np.float32), x.astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tensors here are tiny: one thread is fastest, and OpenMP threads that wait for
    each other on a loaded machine can make a step a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def geometry():
    return ToyGeometry()


@pytest.fixture(scope="module")
def data(geometry):
    return toy_showers(geometry, 1024, seed=0)


def _config(name: str, geometry, epochs: int = 2, **kw) -> TrainConfig:
    kwargs = {**TINY[name], "layer_sizes": layer_sizes(geometry)}
    return TrainConfig(
        name.partition("+")[0],
        epochs=epochs,
        batch_size=32,
        lr=1e-3,
        seed=3,
        model_kwargs=kwargs,
        **kw,
    )


def _model(name: str, geometry, data):
    torch.manual_seed(0)
    return build_model(_config(name, geometry), geometry.n_voxels).prepare(*data)


# ------------------------------------------------------------------------------ contract
def test_every_model_is_registered_and_unknown_names_list_the_valid_ones():
    assert model_names() == sorted(MODELS)
    with pytest.raises(UnknownNameError, match="Did you mean 'vae'") as err:
        TrainConfig("vea").validate()
    assert "flow_matching" in str(err.value)


def test_unknown_hyperparameter_is_refused(geometry):
    with pytest.raises(ConfigError, match="latent_dim"):
        build_model(TrainConfig("vae", model_kwargs={"latent_dims": 3}), geometry.n_voxels)


@pytest.mark.parametrize("name", VARIANTS)
def test_sample_shapes_non_negative_finite_and_reproducible(name, geometry, data):
    model = _model(name, geometry, data)
    energies = torch.tensor([1e3, 3e4, 1e6, 5e5, 2e3])
    showers = model.sample(energies, seed=7)
    assert showers.shape == (5, geometry.n_voxels)
    assert showers.dtype == torch.float32
    assert torch.isfinite(showers).all()
    assert (showers >= 0).all()
    assert (showers.sum(1) > 0).all()
    assert torch.equal(showers, model.sample(energies, seed=7))  # eval is deterministic
    assert "arXiv" in repr(model)
    # state_dict round trip (what the checkpoints hold)
    clone = build_model(_config(name, geometry), geometry.n_voxels)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.sample(energies, seed=7), showers)


@pytest.mark.parametrize("name", ["vae", "vae+spline_iaf", "flow"])
def test_large_batches_are_sampled_in_chunks_of_the_same_stream(name, geometry, data, monkeypatch):
    """A batch larger than a chunk is generated chunk by chunk from one seeded stream: the
    same showers as the chunks drawn one after the other, reproducible, in the input order
    (each row's energy), with the energy sum of one big batch within its statistical error."""
    from colliderlab.calosim import models

    model = _model(name, geometry, data)
    energies = torch.exp(torch.empty(600).uniform_(math.log(1e3), math.log(1e6)))
    whole = model.sample(energies, seed=5)  # 600 <= one chunk (2**19 values)
    monkeypatch.setattr(models, "_SAMPLE_CHUNK_VALUES", 128 * geometry.n_voxels)
    chunked = model.sample(energies, seed=5)
    with torch.inference_mode(), models._seeded(5):
        parts = [model._sample(energies[i : i + 128]) for i in range(0, 600, 128)]
    assert chunked.shape == (600, geometry.n_voxels)
    assert torch.equal(chunked, torch.cat(parts))
    assert torch.equal(chunked, model.sample(energies, seed=5))
    # the same model: the visible fraction agrees within 5 standard errors
    fw, fc = whole.sum(1) / energies, chunked.sum(1) / energies
    err = math.hypot(float(fw.std()), float(fc.std())) / math.sqrt(600)
    assert abs(float(fw.mean() - fc.mean())) < 5 * err + 1e-6
    # the rows follow their energies: the highest-energy row is among the most energetic
    top = int(energies.argmax())
    assert float(chunked[top].sum()) > float(chunked.sum(1).median())


def test_decoder_rank_factorises_the_last_decoder_layer(geometry):
    """``decoder_rank``: hidden[0] -> rank (linear) -> outputs instead of hidden[0] -> outputs;
    the parameter count drops by the formula; ranks that are not integers in [1, outputs)
    are refused with the range."""
    from colliderlab.calosim.models import CaloVAE

    kw = {"layer_sizes": layer_sizes(geometry), "hidden": (48, 16), "zero_mask": True}
    full = CaloVAE(geometry.n_voxels, **kw)
    low = CaloVAE(geometry.n_voxels, decoder_rank=5, **kw)
    n_out = full.decoder[-1].out_features
    assert [type(m).__name__ for m in low.decoder][-2:] == ["Linear", "Linear"]
    assert (low.decoder[-2].in_features, low.decoder[-2].out_features) == (48, 5)
    assert (low.decoder[-1].in_features, low.decoder[-1].out_features) == (5, n_out)
    saved = (48 * n_out + n_out) - (48 * 5 + 5 + 5 * n_out + n_out)
    assert count_parameters(full) - count_parameters(low) == saved
    for bad in (0, n_out, 2.5, True, "8"):
        with pytest.raises(ConfigError, match="decoder_rank"):
            CaloVAE(geometry.n_voxels, decoder_rank=bad, **kw)


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_every_parameter(name, geometry, data):
    model = _model(name, geometry, data).train()
    e, x = (torch.from_numpy(a[:64]) for a in data)
    loss = model.loss(e, x)
    if name == "wgan":  # the critic loss trains the critic, this one the generator
        loss = loss + model.generator_loss(e)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


def test_flow_on_principal_components(geometry, data, tmp_path):
    config = TrainConfig(
        "flow",
        epochs=2,
        batch_size=32,
        lr=1e-3,
        model_kwargs={**TINY["flow"], "layer_sizes": layer_sizes(geometry), "n_components": 8},
    )
    model = build_model(config, geometry.n_voxels).prepare(*data)
    before = mean_loss(model, *map(torch.from_numpy, data), seed=0)
    train(config, *data, tmp_path, progress=False)
    trained = load_model(tmp_path)
    assert mean_loss(trained, *map(torch.from_numpy, data), seed=0) < before
    showers = trained.sample(torch.tensor([1e3, 1e6]), seed=0)
    assert showers.shape == (2, geometry.n_voxels)
    assert bool((showers >= 0).all())


def test_preprocessing_round_trip_keeps_voxels_and_layer_energies(geometry, data):
    e, x = (torch.from_numpy(a[:200]) for a in data)
    prep = ShowerPreprocessing(geometry.n_voxels, layer_sizes(geometry)).fit(e, x)
    y = prep(e, x)
    assert abs(float(y.mean())) < 0.05  # standardised
    back = prep.inverse(y, e)
    torch.testing.assert_close(back, x, rtol=1e-4, atol=1e-3)  # MeV
    assert torch.equal(back > 0, x > 0)  # sparsity kept


def _inverse_before(prep: ShowerPreprocessing, y: torch.Tensor, energies: torch.Tensor):
    """The conversion y -> showers as first written (gather per voxel, float masks): the
    reference of the vectorised in-place ``ShowerPreprocessing.inverse``."""
    raw = y * prep.std + prep.mean
    v, w = raw[:, : prep.n_voxels], raw[:, prep.n_voxels :]
    s = (torch.sigmoid(v) - prep.alpha) / (1.0 - 2.0 * prep.alpha)
    s = torch.where(s > prep.alpha, s, 0.0)
    norm = prep.layer_energies(s)[:, prep.layer_index]
    s = torch.where(norm > 0, s / norm.clamp_min(1e-30), 0.0)
    f = (torch.exp(w.clamp(max=30.0)) - prep.eps_layer).clamp_min(0.0)
    shares, total = f[:, :-1], f[:, -1:] * energies.unsqueeze(1)
    norm = shares.sum(1, keepdim=True)
    layers = torch.where(norm > 0, shares / norm.clamp_min(1e-30), 0.0) * total
    x = s * layers[:, prep.layer_index]
    x = torch.where(x >= prep.threshold, x, 0.0)
    return torch.nan_to_num(x, nan=0.0, posinf=0.0)


def test_fast_inverse_gives_the_showers_of_the_first_implementation(geometry, data):
    e, x = (torch.from_numpy(a[:300]) for a in data)
    prep = ShowerPreprocessing(geometry.n_voxels, layer_sizes(geometry)).fit(e, x)
    gen = torch.Generator().manual_seed(5)
    # generated-like representations: the data's, widened, plus outliers and a NaN
    y = prep(e, x) + 0.5 * torch.randn(300, prep.features, generator=gen)
    y[0, :3] = -40.0  # fractions below alpha: zeroed
    y[1, : geometry.n_voxels] = -40.0  # a whole shower without shape: all zero
    y[2, 5] = math.nan  # a NaN logit: that voxel zero, not the shower NaN
    y[3, -1] = 60.0  # a total far above the range: clipped, finite
    before, after = _inverse_before(prep, y, e), prep.inverse(y, e)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-4)  # MeV; float32 sums
    assert torch.equal(after > 0, before > 0)  # the same voxels above threshold
    assert bool(torch.isfinite(after).all())
    assert bool((after >= 0).all())
    assert float(after[1].sum()) == 0.0
    assert float(after[2, 5]) == 0.0
    assert bool(y[2, 5].isnan())  # the input is not modified


# ------------------------------------------------------------------ layer-energy flow
@pytest.mark.parametrize("kind", ["flow", "spline_iaf"])
def test_energy_flow_reproduces_the_response_of_toy_showers(kind, geometry, data):
    """E_total / E_inc of the toy showers: 0.9 x N(1, 0.03) (minus the voxels under 5 MeV);
    the flow, trained alone for 400 steps, reproduces its mean to 0.01 and its width to 30 %."""
    from colliderlab.calosim.models import LayerEnergyFlow

    torch.manual_seed(0)
    e, x = (torch.from_numpy(a) for a in data)
    prep = ShowerPreprocessing(geometry.n_voxels, layer_sizes(geometry)).fit(e, x)
    layers = prep.layer_energies(x)
    flow = LayerEnergyFlow(3, kind, transforms=2, hidden=(32, 32)).fit(layers, e, prep.threshold)
    c = 2.0 * (torch.log(e) - math.log(1e3)) / math.log(1e3) - 1.0
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        b = torch.randint(len(e), (256,), generator=gen)
        u = flow.features(layers[b], e[b], prep.threshold, dequantise=True)
        opt.zero_grad()
        (-flow.log_prob(u, c[b, None]).mean()).backward()
        opt.step()
    with torch.no_grad():
        sampled = flow.layers(flow.sample(c[:, None]), e)
    ref, got = layers.sum(1) / e, sampled.sum(1) / e
    assert abs(float(got.mean() - ref.mean())) < 0.01
    assert abs(float(got.std() / ref.std()) - 1.0) < 0.3
    assert bool((sampled >= 0).all())
    assert bool((sampled <= e[:, None]).all())  # a layer sees at most the incident energy


def test_spline_iaf_samples_with_one_forward_pass_of_the_spline_flow():
    """``spline_iaf`` is the spline flow inverted: with the spline flow's weights, its sample
    of a base draw z is the spline flow's forward map of z (one pass per transform), and its
    density's map (n_layers passes per transform) takes the sample back to z."""
    from colliderlab.calosim.models import LayerEnergyFlow

    torch.manual_seed(0)
    spline = LayerEnergyFlow(5, "flow", transforms=2, hidden=(16,))
    fast = LayerEnergyFlow(5, "spline_iaf", transforms=2, hidden=(16,))
    last = 1  # transforms - 1: the inverse applies them in the reverse order
    state = {
        re.sub(r"transforms\.(\d+)\.", lambda m: f"transforms.{last - int(m[1])}.transform.", k): v
        for k, v in spline.state_dict().items()
    }
    fast.load_state_dict(state)
    c, z = torch.rand(200, 1) * 2 - 1, torch.randn(200, 5)
    with torch.no_grad():
        x = fast.flow(c).transform.inv(z)  # how the spline IAF samples
        torch.testing.assert_close(x, spline.flow(c).transform(z), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast.flow(c).transform(x), z, rtol=1e-4, atol=1e-4)
        assert bool(torch.isfinite(fast.log_prob(x, c)).all())
    assert not torch.allclose(x, z, atol=1e-2)  # the transforms do something


def test_rqs_forward_equals_zukos_spline():
    """The sampling spline (:func:`_rqs_forward`) is zuko's ``MonotonicRQSTransform``: on
    steep random splines, over [-7, 7] (identity outside [-5, 5]) and at the knots, equal to
    1e-10 in float64."""
    from zuko.transforms import MonotonicRQSTransform

    from colliderlab.calosim.models import _rqs_forward

    gen = torch.Generator().manual_seed(3)
    shape = (400, 5)
    w = 3.0 * torch.randn(*shape, 8, generator=gen, dtype=torch.float64)
    h = 3.0 * torch.randn(*shape, 8, generator=gen, dtype=torch.float64)
    d = 3.0 * torch.randn(*shape, 7, generator=gen, dtype=torch.float64)
    x = 14.0 * torch.rand(*shape, generator=gen, dtype=torch.float64) - 7.0
    zuko_map = MonotonicRQSTransform(w, h, d, slope=1e-3)
    x[:5, 0] = zuko_map.horizontal[:5, 0, 1:6].diagonal()  # points on inner knots
    x[5, :] = torch.tensor([-5.0, 5.0, 0.0, -7.0, 7.0], dtype=torch.float64)
    got = _rqs_forward(x, w, h, d, slope=1e-3)
    torch.testing.assert_close(got, zuko_map(x), rtol=0.0, atol=1e-10)
    outside = x.abs() > 5.0
    assert bool(outside.any())
    assert bool((got[outside] == x[outside]).all())


def test_spline_iaf_fast_sampling_equals_zukos_path():
    """``LayerEnergyFlow.sample`` of ``spline_iaf`` goes through :func:`_rqs_forward`: with the
    same seed it gives zuko's sample of the same flow (the same base draw) to float32
    rounding, and the flows are far from the identity (weights scaled up)."""
    from colliderlab.calosim.models import LayerEnergyFlow

    torch.manual_seed(0)
    flow = LayerEnergyFlow(5, "spline_iaf", transforms=3, hidden=(32, 32))
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(3.0)
        c = torch.rand(2000, 1) * 2 - 1
        torch.manual_seed(7)
        fast = flow.sample(c)
        torch.manual_seed(7)
        zuko_sample = flow.flow(c).sample()
        torch.manual_seed(7)
        base = flow.flow(c).base.sample()
    torch.testing.assert_close(fast, zuko_sample, rtol=1e-4, atol=1e-4)
    assert float((fast - base).abs().mean()) > 0.1


def test_energy_features_map_back_to_the_layer_energies(geometry, data):
    """Response and stick-breaking ratios -> layer energies: the filled layers come back to
    1e-4 (float32), the empty ones below the readout threshold."""
    from colliderlab.calosim.models import LayerEnergyFlow

    e, x = (torch.from_numpy(a) for a in data)
    x = x.clone()
    x[:100, :3] = 0.0  # the first layer of 100 showers empty
    x[100:150, -2:] = 0.0  # and the last layer of 50
    prep = ShowerPreprocessing(geometry.n_voxels, layer_sizes(geometry)).fit(e, x)
    layers = prep.layer_energies(x)
    flow = LayerEnergyFlow(3, "iaf", transforms=1, hidden=(8,)).fit(layers, e, prep.threshold)
    u = flow.features(layers, e, prep.threshold)
    assert u.shape == (len(e), 3)
    assert abs(float(u.mean())) < 0.05  # standardised
    back = flow.layers(u, e)
    filled = layers > 0
    torch.testing.assert_close(back[filled], layers[filled], rtol=1e-4, atol=1e-3)  # MeV
    assert int((~filled).sum()) == 150
    assert bool((back[~filled] < prep.threshold).all())


@pytest.mark.parametrize("variant", ["vae+iaf", "flow_matching+iaf"])
def test_energy_model_sets_the_layer_energies_of_the_samples(variant, geometry, data):
    """With the energy model each layer of a sample carries the energy drawn by the flow
    (threshold 0: nothing is cut away)."""
    from colliderlab.calosim.models import _seeded

    kwargs = {**TINY[variant], "layer_sizes": layer_sizes(geometry), "threshold": 0.0}
    torch.manual_seed(0)
    name = variant.split("+")[0]
    model = build_model(TrainConfig(name, model_kwargs=kwargs), geometry.n_voxels)
    model.prepare(*data).eval()
    energies = torch.tensor([1e3, 1e4, 1e5, 1e6])
    showers = model.sample(energies, seed=4)
    with torch.no_grad(), _seeded(4):  # the flow draws first
        layers = model.energy.layers(model.energy.sample(model.condition(energies)), energies)
    sums = model.preprocessing.layer_energies(showers)
    filled = sums > 0  # a layer whose every voxel fraction fell under alpha stays empty
    assert bool(filled.any(1).all())
    torch.testing.assert_close(sums[filled], layers[filled], rtol=1e-5, atol=1e-3)  # MeV


def test_energy_model_options_are_checked_and_the_plain_vae_keeps_its_weights(geometry):
    n = geometry.n_voxels
    sizes = layer_sizes(geometry)
    with pytest.raises(ConfigError, match="energy_model must be None or one of"):
        build_model(TrainConfig("vae", model_kwargs={"layer_sizes": sizes, "energy_model": "x"}), n)
    with pytest.raises(ConfigError, match="layer_sizes"):  # one layer: nothing to model
        build_model(TrainConfig("vae", model_kwargs={"energy_model": "flow"}), n)
    plain = build_model(TrainConfig("vae", model_kwargs={"layer_sizes": sizes}), n)
    # checkpoints written before the energy model load into the plain VAE unchanged
    assert not any(k.startswith("energy") for k in plain.state_dict())
    assert plain.decoder[-1].out_features == plain.features


@pytest.mark.parametrize("variant", ["flow_matching+occupancy", "flow_matching+iaf+occupancy"])
def test_flow_matching_occupancy_channels_round_trip(variant, geometry, data):
    """The occupancy target (filled +-1, shape logits standardised over the filled voxels)
    decodes back to the same showers, empty voxels included; the filled channels are
    standardised (mean 0, std 1 over the filled entries of each voxel)."""
    model = _model(variant, geometry, data)
    energies, showers = (torch.as_tensor(a) for a in data)
    prep, n = model.preprocessing, model.n_voxels
    target = model.encode_occupancy(prep(energies, showers), showers)
    assert target.shape == (len(energies), 2 * n + len(model.layer_sizes) + 1)
    filled = showers > 0
    torch.testing.assert_close(target[:, :n], 2.0 * filled.float() - 1.0)
    assert bool((target[:, n : 2 * n][~filled] == 0).all())
    often = filled.sum(0) > 50
    shape = target[:, n : 2 * n]
    means = (shape * filled).sum(0)[often] / filled.sum(0)[often]
    torch.testing.assert_close(means, torch.zeros_like(means), atol=1e-3, rtol=0)
    back = prep.inverse(model.decode_occupancy(target), energies)
    torch.testing.assert_close(back, showers, rtol=1e-3, atol=1e-2)  # MeV
    assert bool((back[~filled] == 0).all())


@pytest.mark.parametrize("energy_model", [None, "iaf"])
def test_zero_mask_draws_which_voxels_are_empty(energy_model, geometry, data):
    """Mask logits of logit(0.3) for every voxel: 30 % of the voxels that the shape alone
    would fill stay filled (2000 showers; tolerance 0.02, about 8 standard deviations)."""
    kwargs = {"hidden": (32,), "latent_dim": 4, "layer_sizes": layer_sizes(geometry)}
    kwargs["energy_model"] = energy_model
    torch.manual_seed(0)
    plain = build_model(TrainConfig("vae", model_kwargs=kwargs), geometry.n_voxels)
    plain.prepare(*data).eval()
    masked = build_model(
        TrainConfig("vae", model_kwargs={**kwargs, "zero_mask": True}), geometry.n_voxels
    ).eval()
    state = plain.state_dict()
    last = "decoder.2"
    n_out = state[f"{last}.weight"].shape[0]
    n = geometry.n_voxels
    state[f"{last}.weight"] = torch.cat([state[f"{last}.weight"], torch.zeros(n, 32)])
    state[f"{last}.bias"] = torch.cat([state[f"{last}.bias"], torch.full((n,), math.log(3 / 7))])
    masked.load_state_dict(state)
    assert masked.decoder[-1].out_features == n_out + n
    energies = torch.full((2000,), 1e5)
    filled = plain.sample(energies, seed=1) > 0
    kept = masked.sample(energies, seed=1) > 0
    fraction = float(kept.sum()) / float(filled.sum())
    assert abs(fraction - 0.3) < 0.02
    with pytest.raises(ConfigError, match="zero_mask"):
        build_model(TrainConfig("vae", model_kwargs={"zero_mask": "yes"}), geometry.n_voxels)


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("name", VARIANTS)
def test_two_epochs_reduce_the_loss(name, geometry, data, tmp_path):
    config = _config(name, geometry)
    before = mean_loss(_model(name, geometry, data), *map(torch.from_numpy, data), seed=0)
    result = train(config, *data, tmp_path, val=(data[0][:100], data[1][:100]), progress=False)
    after = mean_loss(load_model(tmp_path), *map(torch.from_numpy, data), seed=0)
    assert after < before
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert all(math.isfinite(h["val_loss"]) for h in result["history"])
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["n_params"] > 0
    assert len(saved["seconds_per_epoch"]) == 2
    assert saved["config"]["lr"] == 1e-3
    assert saved["n_voxels"] == geometry.n_voxels


class _Interrupt(Exception):
    pass


def _stop_after_first_epoch(entry):
    if entry["epoch"] == 1:
        raise _Interrupt


@pytest.mark.parametrize("name", VARIANTS)
def test_resume_after_interruption_equals_uninterrupted_training(name, geometry, data, tmp_path):
    config = _config(name, geometry)
    full = train(config, *data, tmp_path / "full", progress=False)
    with pytest.raises(_Interrupt):
        train(config, *data, tmp_path / "cut", progress=False, on_epoch=_stop_after_first_epoch)
    resumed = train(config, *data, tmp_path / "cut", progress=False)
    assert resumed["train_loss"] == full["train_loss"]
    a, b = load_model(tmp_path / "full").state_dict(), load_model(tmp_path / "cut").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_raising_epochs_continues_a_finished_run(geometry, data, tmp_path):
    two = train(_config("vae", geometry, epochs=2), *data, tmp_path / "two", progress=False)
    train(_config("vae", geometry, epochs=1), *data, tmp_path / "more", progress=False)
    more = train(_config("vae", geometry, epochs=2), *data, tmp_path / "more", progress=False)
    assert more["train_loss"] == two["train_loss"]


def test_checkpoint_of_another_model_geometry_config_or_data_is_refused(geometry, data, tmp_path):
    e, x = data
    train(_config("vae", geometry, epochs=1), e, x, tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).is_file()
    fewer = {**TINY["vae"], "layer_sizes": layer_sizes(geometry)[:-1]}
    n_fewer = sum(fewer["layer_sizes"])
    with pytest.raises(ConfigError, match=f"checkpoint for showers of {geometry.n_voxels} voxels"):
        train(TrainConfig("vae", 1, 32, 1e-3, 3, fewer), e, x[:, :n_fewer], tmp_path)
    with pytest.raises(ConfigError, match="checkpoint of model 'vae', not 'flow'"):
        train(_config("flow", geometry, epochs=1), e, x, tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        train(
            TrainConfig("vae", 1, 64, 1e-3, 3, _config("vae", geometry).model_kwargs),
            e,
            x,
            tmp_path,
        )
    with pytest.raises(ConfigError, match="other showers"):
        train(_config("vae", geometry, epochs=1), e[:-1], x[:-1], tmp_path)


def test_bad_inputs_are_refused(geometry, data, tmp_path):
    model = _model("vae", geometry, data)
    with pytest.raises(ConfigError, match="energies"):
        model.sample(torch.tensor([-1.0]))
    e, x = data
    with pytest.raises(ConfigError, match="non-negative"):
        train(_config("vae", geometry), e, -x, tmp_path)
    with pytest.raises(ConfigError, match="shape"):
        model.loss(torch.from_numpy(e[:4]), torch.from_numpy(x[:4, :-1]))


# ------------------------------------------------------------------------------ features
def test_high_level_features_of_a_hand_made_shower():
    showers = np.array([[1.0, 3, 0, 0, 0, 0], [0, 0, 0, 0, 2, 2]])
    feats = high_level_features(showers, np.array([8.0, 4.0]), XYGeometry())
    expected = {
        "E_total_over_incident": [0.5, 1.0],
        "E_layer_0": [4.0, 0.0],
        "E_layer_1": [0.0, 4.0],
        "centre_x_layer_0": [0.5, 0.0],  # (-1 * 1 + 1 * 3) / 4; an empty layer gives 0
        "centre_y_layer_0": [-1.0, 0.0],
        "width_x_layer_0": [math.sqrt(0.75), 0.0],  # sqrt(<x^2> - <x>^2) = sqrt(1 - 0.25)
        "width_y_layer_0": [0.0, 0.0],
        "sparsity_layer_0": [0.5, 0.0],
        "centre_x_layer_1": [0.0, 1.0],
        "width_x_layer_1": [0.0, 1.0],
        "sparsity_layer_1": [0.0, 1.0],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(feats[name], values, atol=1e-12, err_msg=name)
    assert len(feats) == 1 + 6 * 2


def test_features_with_the_atlas5_geometry():
    from colliderlab.calosim.geometry import get_geometry

    geometry = get_geometry("atlas5")  # layer 2: 19 radial x 10 angular bins
    centres = geometry.voxel_centres()
    i = geometry.layer_slices[2].start + 3 * 19 + 5  # alpha bin 3, radial bins 5 and 6
    shower = np.zeros((1, geometry.n_voxels))
    shower[0, i], shower[0, i + 1] = 10.0, 30.0
    feats = high_level_features(shower, np.array([100.0]), geometry)
    np.testing.assert_allclose(feats["E_layer_2"], [40.0])
    np.testing.assert_allclose(feats["E_total_over_incident"], [0.4])
    x_mean = (10 * centres.x[i] + 30 * centres.x[i + 1]) / 40
    np.testing.assert_allclose(feats["centre_x_layer_2"], [x_mean], rtol=1e-12)
    x_var = (10 * centres.x[i] ** 2 + 30 * centres.x[i + 1] ** 2) / 40 - x_mean**2
    np.testing.assert_allclose(feats["width_x_layer_2"], [math.sqrt(x_var)], rtol=1e-9)
    np.testing.assert_allclose(feats["sparsity_layer_2"], [2 / 190])
    assert feats["E_layer_1"][0] == feats["sparsity_layer_0"][0] == 0.0


@pytest.fixture(scope="module")
def simulated():
    """256 photon showers of the reference simulation in the 368-voxel atlas5 geometry."""
    from colliderlab.calosim.geometry import get_geometry
    from colliderlab.calosim.shower import sample_incident_energies, simulate_showers

    geometry = get_geometry("atlas5")
    energies = sample_incident_energies(256, seed=5).astype(np.float32)
    return geometry, energies, simulate_showers(geometry, "gamma", energies, seed=6)


@pytest.mark.parametrize("name", MODELS)
def test_models_train_and_sample_on_simulated_atlas5_showers(name, simulated, tmp_path):
    geometry, energies, showers = simulated
    config = _config(name, geometry, epochs=1)
    result = train(config, energies, showers, tmp_path, progress=False)
    assert math.isfinite(result["train_loss"][0])
    generated = load_model(tmp_path).sample(energies[:16], seed=0)
    assert generated.shape == (16, 368)
    assert torch.isfinite(generated).all()
    assert (generated >= 0).all()


def test_polar_voxel_centres_are_converted_to_x_and_y():
    class Polar:
        n_voxels = 2
        layer_slices = (slice(0, 2),)

        def voxel_centres(self):
            return np.array([2.0, 2.0]), np.array([0.0, np.pi / 2])  # (r, alpha)

    feats = high_level_features(np.array([[1.0, 1.0]]), np.array([2.0]), Polar())
    np.testing.assert_allclose(feats["centre_x_layer_0"], [1.0], atol=1e-12)
    np.testing.assert_allclose(feats["centre_y_layer_0"], [1.0], atol=1e-12)
    np.testing.assert_allclose(feats["width_x_layer_0"], [1.0], atol=1e-12)


def test_separation_power_is_zero_for_identical_and_one_for_disjoint_histograms():
    rng = np.random.default_rng(1)
    a = rng.normal(size=5000)
    assert separation_power(a, a) == 0.0
    assert separation_power(a, a + 100.0) == pytest.approx(1.0, abs=1e-12)
    assert separation_power(a, a - 100.0) == pytest.approx(1.0, abs=1e-12)
    same = separation_power(a, rng.normal(size=5000))
    shifted = separation_power(a, rng.normal(1.0, 1.0, 5000))
    assert same < 0.01 < 0.1 < shifted < 0.9
    ones = np.ones(100)  # a point mass (a sparsity of 1 in every shower)
    assert separation_power(ones, ones) == 0.0
    assert separation_power(ones, 0.5 * ones) == pytest.approx(1.0)
    assert separation_power([0.5, 0.5], [1.5, 1.5], bins=[0.0, 1.0, 2.0]) == pytest.approx(1.0)


def test_feature_table_and_plot(geometry, data, tmp_path):
    e, x = data
    ref = high_level_features(x[:500], e[:500], geometry)
    gen = high_level_features(x[500:] * 1.5, e[500:], geometry)
    table = feature_table(ref, gen)
    assert [row["feature"] for row in table] == list(ref)
    name, sep = worst_feature(table)
    assert name.startswith("E_")
    assert sep > 0.5
    path = plot_features(ref, {"scaled": gen}, tmp_path / "features.png", names=list(ref)[:4])
    assert path.stat().st_size > 1000


# ------------------------------------------------------------------------------ classifier
def test_roc_auc_counts_ties_as_one_half():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.2, 0.3]) == 0.5


@pytest.mark.parametrize("level", ["high", "low"])
def test_classifier_auc_is_one_half_for_the_same_distribution(level, geometry):
    # 4000 showers each -> 800 + 800 test showers: the AUC's standard deviation is
    # sqrt((n1 + n2 + 1) / (12 n1 n2)) = 0.014, so the tolerance 0.05 is 3.5 sigma.
    e1, x1 = toy_showers(geometry, 4000, seed=11)
    e2, x2 = toy_showers(geometry, 4000, seed=12)
    auc = classifier_auc(
        x1, e1, x2, e2, level=level, geometry=geometry, seed=0, hidden=(64, 64), epochs=8
    )
    assert abs(auc - 0.5) < 0.05


@pytest.mark.parametrize("level", ["high", "low"])
def test_classifier_auc_separates_wider_showers(level, geometry):
    e1, x1 = toy_showers(geometry, 2000, seed=13)
    e2, x2 = toy_showers(geometry, 2000, seed=14, scale=1.5)
    auc = classifier_auc(
        x1, e1, x2, e2, level=level, geometry=geometry, seed=0, hidden=(64, 64), epochs=8
    )
    assert auc > 0.9


def test_time_per_shower_and_evaluate_models(geometry, data, tmp_path):
    e, x = data
    train(_config("vae", geometry, epochs=1), e, x, tmp_path / "vae", progress=False)
    fm = _model("flow_matching", geometry, data)
    seconds = time_per_shower(fm, e[:20], batch_size=1)
    assert 0 < seconds < 1
    assert 0 < time_per_shower(fm, e[:20], batch_size=10, repeats=3) < 1
    with pytest.raises(ConfigError, match="repeats"):
        time_per_shower(fm, e[:20], repeats=0)
    ref_e, ref_x = toy_showers(geometry, 300, seed=21)
    report = evaluate_models(
        ref_x,
        ref_e,
        {"vae": tmp_path / "vae", "flow_matching": fm},
        geometry,
        tmp_path / "eval",
        large_batch=100,
        extra_batches=(150,),
        n_timing=5,
        timing_repeats=2,
        classifier={"hidden": (16,), "epochs": 2},
        plot=False,
    )
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows) == {"vae", "flow_matching"}
    for row in rows.values():
        assert 0 <= row["auc_high"] <= 1
        assert 0 <= row["auc_low"] <= 1
        assert 0 <= row["worst_separation"] <= 1
        assert row["worst_feature"] in {t["feature"] for t in report["features"][row["model"]]}
        assert row["s_per_shower_batch1"] > 0
        assert row["s_per_shower_large_batch"] > 0
        assert row["s_per_shower_batch150"] > 0
    assert rows["vae"]["train_s"] > 0
    assert rows["flow_matching"]["train_s"] is None
    saved = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert len(saved["rows"]) == 2
    table = (tmp_path / "eval" / "evaluation.md").read_text()
    assert "| vae |" in table
    assert "s_per_shower_batch150" in table


@pytest.mark.parametrize("mode", [True, "layer"])
def test_vae_conditional_sigma_learns_energy_dependent_fluctuations(mode, geometry, tmp_path):
    """Toy showers whose per-voxel fluctuations fall with the energy (log-normal width 0.8 at
    1 GeV, 0.1 at 1 TeV): after 40 epochs the conditional decoder's noise on the shape
    features (an offset per voxel, or a factor per layer) is > 2.5x larger at 1 GeV than at
    1 TeV, in the ratio of the data's spread of the standardised shapes (within a factor
    1.6); one width per feature cannot differ."""
    rng = np.random.default_rng(5)
    n = 2048
    e = np.exp(rng.uniform(np.log(1e3), np.log(1e6), n)).astype(np.float32)
    r, _ = geometry.voxel_centres()
    noise = (0.8 - 0.7 * np.log10(e / 1e3) / 3)[:, None]
    x = np.exp(-r[None, :] / 20.0) * np.exp(noise * rng.standard_normal((n, len(r))))
    x = (x / x.sum(1, keepdims=True) * 0.9 * e[:, None]).astype(np.float32)
    kwargs = {"hidden": (32,), "latent_dim": 2, "layer_sizes": layer_sizes(geometry)}
    config = TrainConfig(
        "vae",
        epochs=40,
        batch_size=64,
        lr=3e-3,
        seed=0,
        model_kwargs={**kwargs, "conditional_sigma": mode},
    )
    train(config, e, x, tmp_path, progress=False)
    model = load_model(tmp_path).eval()
    probes = torch.tensor([1e3] * 500 + [1e6] * 500, dtype=torch.float32)
    with torch.no_grad():
        torch.manual_seed(0)
        c = model.condition(probes)
        z = torch.randn(len(probes), model.latent_dim)
        sigma = model._sigma(model.decode(z, c))[:, : geometry.n_voxels].mean(1)
    ratio = float(sigma[:500].mean() / sigma[500:].mean())
    y = model.preprocessing(torch.from_numpy(e), torch.from_numpy(x))[:, : geometry.n_voxels]
    low, high = torch.from_numpy(e) < 2e3, torch.from_numpy(e) > 5e5
    spread = float(y[low].std(0).mean() / y[high].std(0).mean())
    assert ratio > 2.5
    assert spread / 1.6 < ratio < spread * 1.6
    plain = build_model(TrainConfig("vae", model_kwargs=kwargs), geometry.n_voxels)
    assert plain._sigma(plain.decode(z, c)).dim() == 1  # one width per feature
    with pytest.raises(ConfigError, match="conditional_sigma"):
        build_model(
            TrainConfig("vae", model_kwargs={"conditional_sigma": "yes"}), geometry.n_voxels
        )


def test_vae_flow_prior_kl_estimate_is_unbiased_and_the_prior_is_sampled(geometry):
    """With the flow prior replaced by N(0, 1), the one-draw KL estimate averages to the exact
    Gaussian KL of the plain VAE (200,000 draws: within 5 standard errors); sampling draws z
    from the prior (a prior shifted by +3 moves the decoded latent)."""
    kwargs = {"hidden": (32,), "latent_dim": 4, "layer_sizes": layer_sizes(geometry)}
    plain = build_model(TrainConfig("vae", model_kwargs=kwargs), geometry.n_voxels)
    prior = build_model(
        TrainConfig("vae", model_kwargs={**kwargs, "latent_prior": "flow"}), geometry.n_voxels
    )
    assert any(k.startswith("prior.") for k in prior.state_dict())
    assert not any(k.startswith("prior.") for k in plain.state_dict())  # old checkpoints load

    class Shifted(torch.nn.Module):
        def __init__(self, shift: float) -> None:
            super().__init__()
            self.shift = shift

        def forward(self, c):
            loc = torch.full((c.shape[0], 4), self.shift)
            return torch.distributions.Independent(torch.distributions.Normal(loc, 1.0), 1)

    prior.prior = Shifted(0.0)
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.5, -1.0, 0.0, 2.0]).expand(n, 4)
    log_var = torch.tensor([0.0, -1.0, 1.0, -2.0]).expand(n, 4)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(n, 4, generator=gen)
    c = torch.zeros(n, 1)
    exact = plain._kl(mu, log_var, z, c)
    estimate = prior._kl(mu, log_var, z, c)
    assert torch.allclose(exact, exact[:1].expand(n))  # the exact KL does not depend on z
    error = float(estimate.std()) / math.sqrt(n)
    assert abs(float(estimate.mean()) - float(exact[0])) < 5 * error
    prior.prior = Shifted(3.0)
    with torch.no_grad():
        torch.manual_seed(0)
        c = plain.condition(torch.full((4000,), 1e4))
        z_drawn = []
        original = prior.decode
        prior.decode = lambda z, c: (z_drawn.append(z), original(z, c))[1]
        prior.generate(c)
    assert abs(float(z_drawn[0].mean()) - 3.0) < 0.05
    with pytest.raises(ConfigError, match="latent_prior"):
        build_model(TrainConfig("vae", model_kwargs={"latent_prior": "gauss"}), geometry.n_voxels)
    with pytest.raises(ConfigError, match="prior_transforms"):
        build_model(TrainConfig("vae", model_kwargs={"prior_transforms": 0}), geometry.n_voxels)


def test_vae_sample_noise_widens_the_samples(geometry, data):
    torch.manual_seed(0)
    kwargs = {**TINY["vae"], "layer_sizes": layer_sizes(geometry)}
    mean = build_model(TrainConfig("vae", model_kwargs=kwargs), geometry.n_voxels).prepare(*data)
    noisy = build_model(
        TrainConfig("vae", model_kwargs={**kwargs, "sample_noise": 1.0}), geometry.n_voxels
    )
    noisy.load_state_dict(mean.state_dict())  # the same weights: only the sampling differs
    c = mean.condition(torch.full((2000,), 1e4))
    with torch.no_grad():
        torch.manual_seed(1)
        y_mean = mean.generate(c)
        torch.manual_seed(1)
        y_noisy = noisy.generate(c)
    sigma = float((mean.min_sigma + torch.nn.functional.softplus(mean.rho.detach())).mean())
    spread = (y_noisy - y_mean).std(0).mean()  # the added noise: sigma per feature
    assert abs(float(spread) - sigma) < 0.1 * sigma
    showers = noisy.sample(torch.tensor([1e3, 1e6]), seed=0)
    assert bool((showers >= 0).all())
    assert bool(torch.isfinite(showers).all())
    with pytest.raises(ConfigError, match="sample_noise"):
        build_model(TrainConfig("vae", model_kwargs={"sample_noise": -1}), geometry.n_voxels)


def test_layer_sigma_sampling_draws_the_widths_of_the_likelihood(geometry, data):
    """``conditional_sigma="layer"`` samples with its own fast path (no per-voxel softplus):
    with the same random stream, generate() equals the decoder mean plus sample_noise times
    the likelihood's width _sigma() times the same Gaussian draw; the widths of one layer
    share one factor per shower."""
    model = _model("vae+layersigma", geometry, data).eval()
    model.sample_noise = 0.7
    c = model.condition(torch.from_numpy(data[0][:300]))
    with torch.no_grad():
        torch.manual_seed(5)
        y = model.generate(c)
        torch.manual_seed(5)
        z = torch.randn(len(c), model.latent_dim)
        out = model.decode(z, c)
        d = model.rho.shape[0]
        eps = torch.randn(len(c), d)
        sigma = model._sigma(out)
    assert sigma.shape == (len(c), d)
    torch.testing.assert_close(y, out[:, :d] + 0.7 * sigma * eps, rtol=1e-5, atol=1e-5)
    base = model.min_sigma + torch.nn.functional.softplus(model.rho.detach())
    ratio = sigma / base
    for sl in geometry.layer_slices:  # one factor per layer and shower
        torch.testing.assert_close(ratio[:, sl], ratio[:, sl][:, :1].expand_as(ratio[:, sl]))
    torch.testing.assert_close(
        ratio[:, geometry.n_voxels :], torch.ones(len(c), d - geometry.n_voxels)
    )
    with pytest.raises(ConfigError, match="conditional_sigma"):
        build_model(
            TrainConfig("vae", model_kwargs={"conditional_sigma": "voxels"}), geometry.n_voxels
        )
