"""Deep-learning jet taggers: shapes, symmetries, IRC safety, ONNX export, jet images, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from colliderlab.core.registry import lookup
from colliderlab.tagging.features import F, particle_inputs
from colliderlab.tagging.models import (
    IMAGE_INPUTS,
    PARTICLE_INPUTS,
    _knn,
    count_parameters,
    example_inputs,
    export_onnx,
    jet_images,
)

PARTICLE_TAGGERS = ("pfn", "efn", "particlenet", "part", "lorentznet")
TAGGERS = (*PARTICLE_TAGGERS, "cnn")


def _build(name: str, **kwargs) -> nn.Module:
    """Tagger ``name`` in eval mode, with batch-norm statistics from two training batches."""
    torch.manual_seed(0)
    model = lookup("tagger", name)(**kwargs)
    model.train()
    with torch.no_grad():
        for seed in (101, 102):
            model(*example_inputs(model, batch=16, n=20, seed=seed))
    return model.eval()


@pytest.fixture(scope="module")
def taggers() -> dict[str, nn.Module]:
    return {name: _build(name) for name in TAGGERS}


def _truncated(inputs, n_real):
    """Keep the first n_real[b] particles of jet b (the rest becomes padding)."""
    features, vectors, mask = (t.clone() for t in inputs)
    for b, n in enumerate(n_real):
        features[b, n:], vectors[b, n:], mask[b, n:] = 0.0, 0.0, 0.0
    return features, vectors, mask


def _few_particle_inputs(model):
    """Jets with 1, 2, 3, 5, 8 and 20 real particles out of 20 (fewer than k = 7 included)."""
    return _truncated(example_inputs(model, batch=6, n=20, seed=3), [1, 2, 3, 5, 8, 20])


def _run(model, *inputs):
    with torch.no_grad():
        return model(*inputs)


@pytest.mark.parametrize("name", TAGGERS)
def test_registered_with_description_and_small_default(name):
    cls = lookup("tagger", name)
    assert cls.inputs in (PARTICLE_INPUTS, IMAGE_INPUTS)
    assert "arXiv:" in cls.description
    assert "\n" not in cls.description
    assert 1e4 < count_parameters(cls()) < 2e5


def test_example_inputs_are_physical_and_padded():
    features, vectors, mask = example_inputs(lookup("tagger", "pfn"), batch=50, n=30)
    assert features.shape == (50, 30, 13)
    assert vectors.shape == (50, 30, 4)
    assert mask.shape == (50, 30)
    n_real = mask.sum(1)
    assert n_real.min() >= 1
    assert len(torch.unique(n_real)) > 10
    padded = mask == 0
    assert (features[padded] == 0).all()
    assert (vectors[padded] == 0).all()
    momentum = vectors[..., :3].norm(dim=-1)
    assert (vectors[..., 3] >= momentum * (1 - 1e-6)).all()
    pt = vectors[..., :2].norm(dim=-1)[~padded]
    assert pt.min() >= 0.5 * (1 - 1e-6)
    torch.testing.assert_close(torch.exp(features[..., F["log_pt"]][~padded]), pt)


@pytest.mark.parametrize("name", TAGGERS)
def test_finite_logits_and_gradients(taggers, name):
    model = taggers[name]
    inputs = example_inputs(model, batch=5, n=25)
    logits = _run(model, *inputs)
    assert logits.shape == (5,)
    assert torch.isfinite(logits).all()

    model.train()
    try:
        if model.inputs == PARTICLE_INPUTS:
            inputs = _few_particle_inputs(model)
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(*inputs), torch.ones(inputs[0].shape[0])
        )
        loss.backward()
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", PARTICLE_TAGGERS)
def test_padding_does_not_change_the_output(taggers, name):
    model = taggers[name]
    features, vectors, mask = _few_particle_inputs(model)
    b = features.shape[0]
    padded = (
        torch.cat([features, torch.zeros(b, 9, features.shape[2])], dim=1),
        torch.cat([vectors, torch.zeros(b, 9, 4)], dim=1),
        torch.cat([mask, torch.zeros(b, 9)], dim=1),
    )
    expected = _run(model, features, vectors, mask)
    torch.testing.assert_close(_run(model, *padded), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", PARTICLE_TAGGERS)
def test_permuting_particles_does_not_change_the_output(taggers, name):
    model = taggers[name]
    inputs = _few_particle_inputs(model)
    order = torch.randperm(inputs[0].shape[1], generator=torch.Generator().manual_seed(5))
    permuted = [t[:, order] for t in inputs]
    torch.testing.assert_close(_run(model, *permuted), _run(model, *inputs), rtol=0, atol=1e-4)


def test_particlenet_never_picks_padding_as_neighbour():
    points = torch.randn(3, 2, 10)
    mask = torch.zeros(3, 10)
    mask[0, :1], mask[1, :4], mask[2, :] = 1.0, 1.0, 1.0
    idx = _knn(points, mask, k=7)
    assert idx.shape == (3, 10, 7)
    for b in range(3):
        n_real = int(mask[b].sum())
        real = idx[b, :n_real]
        assert (mask[b][real] == 1).all()
        if n_real > 7:
            assert (real != torch.arange(n_real)[:, None]).all()  # never itself if avoidable


def _with_extra_particle(inputs, jet, row):
    """Append ``row`` (a features row) as a real particle to ``jet`` after its last one."""
    features, vectors, mask = (t.clone() for t in inputs)
    slot = int(mask[jet].sum())
    features[jet, slot], mask[jet, slot] = row, 1.0
    return features, vectors, mask


def test_efn_is_infrared_safe(taggers):
    model = taggers["efn"]
    inputs = _truncated(example_inputs(model, batch=2, n=20, seed=4), [10, 6])
    soft = inputs[0][0, 3].clone()
    soft[F["deta"]], soft[F["dphi"]], soft[F["log_pt"]] = 0.5, -0.4, -80.0  # pT ~ 1e-35 GeV
    changed = _with_extra_particle(inputs, 0, soft)
    torch.testing.assert_close(_run(model, *changed), _run(model, *inputs), rtol=0, atol=1e-6)


def _split_leading(inputs, shift):
    """Split the leading particle of jet 0 into two halves, the second moved by ``shift`` in
    deta."""
    half = inputs[0][0, 0].clone()
    half[F["log_pt"]] -= math.log(2.0)
    moved = half.clone()
    moved[F["deta"]] += shift
    features, vectors, mask = _with_extra_particle(inputs, 0, moved)
    features[0, 0] = half
    return features, vectors, mask


def test_efn_is_collinear_safe(taggers):
    model = taggers["efn"]
    inputs = _truncated(example_inputs(model, batch=2, n=20, seed=4), [10, 6])
    expected = _run(model, *inputs)
    torch.testing.assert_close(
        _run(model, *_split_leading(inputs, 0.0)), expected, rtol=0, atol=1e-6
    )
    # a wide-angle split does change the output: the check above is not trivially satisfied
    assert (_run(model, *_split_leading(inputs, 0.3)) - expected)[0].abs() > 1e-5


def _z_boost(vectors, beta):
    gamma = 1.0 / math.sqrt(1.0 - beta**2)
    out = vectors.clone()
    out[..., 2] = gamma * (vectors[..., 2] + beta * vectors[..., 3])
    out[..., 3] = gamma * (vectors[..., 3] + beta * vectors[..., 2])
    return out


def _x_boost(vectors, beta):
    gamma = 1.0 / math.sqrt(1.0 - beta**2)
    out = vectors.clone()
    out[..., 0] = gamma * (vectors[..., 0] + beta * vectors[..., 3])
    out[..., 3] = gamma * (vectors[..., 3] + beta * vectors[..., 0])
    return out


def _z_rotation(vectors, angle):
    out = vectors.clone()
    out[..., 0] = math.cos(angle) * vectors[..., 0] - math.sin(angle) * vectors[..., 1]
    out[..., 1] = math.sin(angle) * vectors[..., 0] + math.cos(angle) * vectors[..., 1]
    return out


@pytest.fixture(scope="module")
def lorentznet_no_beams() -> nn.Module:
    return _build("lorentznet", beams=False)


@pytest.mark.parametrize(
    "transform",
    [lambda v: _z_boost(v, 0.5), lambda v: _z_rotation(v, 0.7), lambda v: _x_boost(v, 0.3)],
    ids=["z-boost", "z-rotation", "x-boost"],
)
def test_lorentznet_without_beams_is_lorentz_invariant(lorentznet_no_beams, transform):
    features, vectors, mask = _few_particle_inputs(lorentznet_no_beams)
    expected = _run(lorentznet_no_beams, features, vectors, mask)
    transformed = _run(lorentznet_no_beams, features, transform(vectors), mask)
    torch.testing.assert_close(transformed, expected, rtol=1e-3, atol=1e-5)
    # the output does depend on the 4-vectors: a non-Lorentz change (harder pz) moves it
    stretched = vectors.clone()
    stretched[..., 2] *= 1.5
    changed = _run(lorentznet_no_beams, features, stretched, mask)
    assert not torch.allclose(changed, expected, rtol=1e-3, atol=1e-5)


def test_lorentznet_with_beams_is_invariant_under_rotations_about_the_beam(taggers):
    model = taggers["lorentznet"]
    features, vectors, mask = _few_particle_inputs(model)
    expected = _run(model, features, vectors, mask)
    rotated = _run(model, features, _z_rotation(vectors, 0.7), mask)
    torch.testing.assert_close(rotated, expected, rtol=1e-3, atol=1e-5)
    # the beams are fixed in the lab frame: a z-boost changes their products with the particles
    boosted = _run(model, features, _z_boost(vectors, 0.5), mask)
    assert not torch.allclose(boosted, expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", TAGGERS)
def test_onnx_runtime_matches_torch(taggers, tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    model = taggers[name]
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, path, n_particles=20)
    assert model.training is False
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(model.inputs)
    assert [o.name for o in session.get_outputs()] == ["logit"]
    for batch in (1, 8):  # exported with batch 2: the batch axis is dynamic
        inputs = example_inputs(model, batch=batch, n=20, seed=batch)
        feed = {key: t.numpy() for key, t in zip(model.inputs, inputs, strict=True)}
        (logits,) = session.run(None, feed)
        assert logits.shape == (batch,)
        np.testing.assert_allclose(logits, _run(model, *inputs).numpy(), rtol=0, atol=1e-5)


def test_export_failure_is_a_clear_error(tmp_path):
    class DataDependent(nn.Module):
        inputs = IMAGE_INPUTS
        npix = 4

        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            if image.sum() > 0:  # Python control flow on data cannot be exported
                return image.sum((1, 2, 3)) * self.weight
            return image.mean((1, 2, 3))

    with pytest.raises(RuntimeError, match="ONNX export of DataDependent"):
        export_onnx(DataDependent(), tmp_path / "bad.onnx", n_particles=20)


@pytest.mark.parametrize(
    ("argument", "shape", "message"),
    [
        ("features", (3, 20, 12), r"features must have shape \(B, N, 13\)"),
        ("features", (3, 20), r"features must have shape \(B, N, 13\)"),
        ("vectors", (3, 20, 3), r"vectors must hold \(px, py, pz, E\)"),
        ("vectors", (3, 19, 4), r"vectors must have shape \(B, N, 4\) = \(3, 20, 4\)"),
        ("mask", (3, 21), r"mask must have shape \(B, N\) = \(3, 20\)"),
        ("mask", (3, 20, 1), r"mask must have shape \(B, N\)"),
    ],
)
@pytest.mark.parametrize("name", PARTICLE_TAGGERS)
def test_wrong_input_shape_is_a_clear_error(taggers, name, argument, shape, message):
    model = taggers[name]
    inputs = dict(zip(PARTICLE_INPUTS, example_inputs(model, batch=3, n=20), strict=True))
    inputs[argument] = torch.zeros(shape)
    with pytest.raises(ValueError, match=f"{type(model).__name__}: {message}"):
        model(**inputs)


def test_wrong_image_size_is_a_clear_error(taggers):
    with pytest.raises(ValueError, match=r"image must have shape \(B, 1, 33, 33\).*npix=33"):
        taggers["cnn"](torch.zeros(2, 1, 40, 40))


def _random_jet_constituents(rng, batch=20, n=25):
    """(deta, dphi, pt, mask) of random jets with 3 to n particles."""
    n_real = rng.integers(3, n + 1, size=batch)
    mask = (np.arange(n)[None, :] < n_real[:, None]).astype(np.float32)
    deta = rng.normal(0.0, 0.2, size=(batch, n)) * mask
    dphi = rng.normal(0.0, 0.1, size=(batch, n)) * mask
    pt = rng.exponential(20.0, size=(batch, n)) * mask
    return deta, dphi, pt, mask


def test_jet_images_are_normalised():
    images = jet_images(*_random_jet_constituents(np.random.default_rng(1)))
    assert images.shape == (20, 1, 33, 33)
    assert images.dtype == np.float32
    np.testing.assert_allclose(images.sum((1, 2, 3)), 1.0, rtol=1e-5)


def test_jet_image_puts_the_principal_axis_vertical():
    deta = np.array([[0.0, 0.3, 0.0]])
    dphi = np.zeros((1, 3))
    pt = np.array([[100.0, 50.0, 0.0]])
    image = jet_images(deta, dphi, pt, np.array([[1.0, 1.0, 0.0]]), npix=33, radius=0.8)[0, 0]
    centre = 16
    rows = np.nonzero(image[:, centre])[0]
    assert image[:, centre].sum() == pytest.approx(1.0)  # both particles in the central column
    assert len(rows) == 2
    # centroid at 0.1: the harder particle at v = +0.1 (flipped to the top), the softer at -0.2
    np.testing.assert_allclose(image[rows, centre], [1 / 3, 2 / 3], rtol=1e-6)
    assert rows[0] < centre < rows[1]


def test_jet_image_is_invariant_under_rotations_and_translations():
    deta, dphi, pt, mask = _random_jet_constituents(np.random.default_rng(2))
    images = jet_images(deta, dphi, pt, mask)
    angle = 1.1
    rotated_deta = math.cos(angle) * deta - math.sin(angle) * dphi + 0.05
    rotated_dphi = math.sin(angle) * deta + math.cos(angle) * dphi - 0.02
    np.testing.assert_allclose(
        jet_images(rotated_deta, rotated_dphi, pt, mask), images, rtol=0, atol=1e-6
    )
    assert np.abs(images - images[:, :, ::-1, :]).max() > 0.01  # not trivially symmetric


def test_jet_images_reject_mismatched_shapes():
    deta, dphi, pt, mask = _random_jet_constituents(np.random.default_rng(3))
    with pytest.raises(ValueError, match=r"got pt with shape \(20, 24\)"):
        jet_images(deta, dphi, pt[:, :-1], mask)


def _toy_jets(rng, n_jets, n=16):
    """Jets of soft particles; signal jets (label 1) have one extra 50-100 GeV particle."""
    labels = rng.integers(0, 2, size=n_jets)
    n_soft = rng.integers(4, n, size=n_jets)
    mask = np.arange(n)[None, :] < (n_soft + labels)[:, None]
    pt = rng.uniform(0.5, 20.0, size=(n_jets, n))
    pt[:, 0] = np.where(labels == 1, rng.uniform(50.0, 100.0, size=n_jets), pt[:, 0])
    pt = np.where(mask, pt, 0.0)
    eta = rng.normal(0.0, 0.2, size=(n_jets, n))
    phi = rng.normal(0.0, 0.2, size=(n_jets, n))
    energy = pt * np.cosh(eta)
    zeros = np.zeros_like(pt)
    jet_pt = pt.sum(1)
    features, vectors, mask = particle_inputs(
        pt,
        eta,
        phi,
        energy,
        zeros,
        zeros + 22,
        mask,
        jet_pt,
        zeros[:, 0],
        zeros[:, 0],
        energy.sum(1),
    )
    tensors = (torch.from_numpy(a) for a in (features, vectors, mask))
    return (*tensors, torch.from_numpy(labels.astype(np.float32)))


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve from the ranks of the scores (Mann-Whitney U)."""
    ranks = np.argsort(np.argsort(scores)) + 1
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_pfn_learns_a_toy_problem():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    *train_inputs, train_labels = _toy_jets(rng, 1024)
    *test_inputs, test_labels = _toy_jets(rng, 1024)
    model = lookup("tagger", "pfn")()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    assert _auc(_run(model, *test_inputs).numpy(), test_labels.numpy()) < 0.9  # untrained
    for step in range(200):
        batch = torch.randint(0, 1024, (64,), generator=torch.Generator().manual_seed(step))
        loss = loss_fn(model(*(t[batch] for t in train_inputs)), train_labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    scores = _run(model.eval(), *test_inputs).numpy()
    assert _auc(scores, test_labels.numpy()) > 0.9


@pytest.mark.parametrize("update_coordinates", [True, False])
def test_lorentznet_block_eval_path_equals_its_definition(update_coordinates):
    """The eval-mode block (batch norms folded, phi_e's first layer per particle) computes
    the block's defining map on the concatenated pair features to float32 rounding."""
    from colliderlab.tagging.models import _LGEB

    torch.manual_seed(4)
    block = _LGEB(16, 6, c_weight=0.01, update_coordinates=update_coordinates)
    for norm in (block.phi_e[1], block.phi_h[1]):  # statistics far from the identity
        norm.running_mean.uniform_(-2.0, 2.0)
        norm.running_var.uniform_(0.2, 3.0)
        nn.init.uniform_(norm.weight, 0.5, 1.5)
        nn.init.uniform_(norm.bias, -0.5, 0.5)
    if block.phi_x is not None:  # a coordinate update large enough to be seen
        nn.init.normal_(block.phi_x[2].weight, std=1.0)
    block.eval()
    b, n = 3, 9
    h, x, scalars = torch.randn(b, n, 16), torch.randn(b, n, 4), torch.randn(b, n, 6)
    mask = torch.ones(b, n)
    mask[0, 5:] = 0.0  # padding
    mask[2, 1:] = 0.0  # a single particle: no neighbours
    edge_mask = (mask.unsqueeze(2) * mask.unsqueeze(1) * (1 - torch.eye(n))).unsqueeze(-1)
    with torch.no_grad():
        h_fast, x_fast = block(h, x, scalars, edge_mask)
        h_ref, x_ref = block._forward_pairs(h, x, scalars, edge_mask)
    torch.testing.assert_close(h_fast, h_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_fast, x_ref, rtol=1e-5, atol=1e-6)
    if update_coordinates:
        assert (x_ref - x).abs().max() > 1e-3  # the update is tested, not skipped
    else:
        torch.testing.assert_close(x_fast, x)
    # the fold uses the running statistics: other statistics give another output
    block.phi_e[1].running_mean.add_(1.0)
    with torch.no_grad():
        assert not torch.allclose(block(h, x, scalars, edge_mask)[0], h_ref, atol=1e-3)


def test_lorentznet_eval_path_on_physical_jets_equals_its_definition(taggers, monkeypatch):
    """On jets of ~600 GeV (coordinates of a few units, where |x_i - x_j|^2 computed from the
    products cancels most), the eval-mode model equals the defining blocks to 1e-5."""
    from colliderlab.tagging.models import _LGEB

    model = taggers["lorentznet"]
    inputs = example_inputs(model, batch=16, n=40, seed=11)
    assert inputs[1][..., 3].sum(1).min() > 300.0  # jets of hundreds of GeV
    fast = _run(model, *inputs)
    monkeypatch.setattr(_LGEB, "forward", _LGEB._forward_pairs)
    reference = _run(model, *inputs)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)
