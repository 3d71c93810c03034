"""The compiled sampling kernels of the shower models (colliderlab.calosim.kernels) and the
fused CPU sampling path of the VAE."""

import itertools
import math

import numpy as np
import pytest
import torch

from colliderlab.calosim import kernels, models
from colliderlab.calosim.features import layer_sizes
from colliderlab.calosim.models import CaloVAE, LayerEnergyFlow, _rqs_forward
from colliderlab.core.errors import ConfigError


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_polynomial_exp_log_and_normal_quantile_match_numpy_and_torch():
    """The spline's exp (float64) to 1e-12 relative over [-700, 700]; the voxel kernel's
    float32 exp to 5e-7 relative over [-87, 87], log to 2e-7 over 1e-35 - 1e35, on and
    next to powers of two and sqrt(2) (the branch points of the mantissa), and the normal
    quantile sqrt(2) erfinv(2u - 1) within 2e-6 on the kernel's uniforms (k + 1/2) / 2^23,
    odd, reaching +-5.3."""
    x = np.concatenate([np.linspace(-700.0, 700.0, 200_001), [0.0, -0.0, 1e-300, math.log(2)]])
    np.testing.assert_allclose(kernels.polynomials(x)["exp"], np.exp(x), rtol=1e-12)
    x32 = np.linspace(-87.0, 87.0, 200_001, dtype=np.float32)
    got = kernels.polynomials(x32)
    assert got["exp"].dtype == np.float32
    np.testing.assert_allclose(got["exp"], np.exp(x32.astype(np.float64)), rtol=5e-7)
    edges = np.array([1.0, 2.0, 0.5, math.sqrt(2.0), np.nextafter(math.sqrt(2.0), 2.0)])
    y = np.concatenate([np.exp(np.linspace(-80.0, 80.0, 200_001)), edges]).astype(np.float32)
    y = np.concatenate([y, np.nextafter(y[-5:], np.float32(0.0))])
    exact = np.log(y.astype(np.float64))
    np.testing.assert_allclose(kernels.polynomials(y)["log"], exact, rtol=2e-7, atol=2e-7)
    k = np.concatenate([np.arange(0, 2**23, 61), [2**23 - 1]]).astype(np.float64)
    u = ((k + 0.5) / 2**23).astype(np.float32)
    z = kernels.polynomials(u)["normal_quantile"]
    exact = math.sqrt(2.0) * torch.erfinv(torch.from_numpy(2.0 * u.astype(np.float64) - 1.0))
    np.testing.assert_allclose(z, exact.numpy(), rtol=0.0, atol=2e-6)
    flipped = kernels.polynomials(np.float32(1.0) - u)["normal_quantile"]
    np.testing.assert_allclose(flipped, -z, rtol=0.0, atol=1e-6)
    assert -5.4 < z[0] < -5.2
    assert 5.2 < z[-1] < 5.4
    r = np.concatenate([np.linspace(-80.0, 80.0, 200_001), [0.0, 1e-30, -1e-30]])
    softplus = kernels.polynomials(r.astype(np.float32))["softplus"]
    exact = np.logaddexp(0.0, r.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(softplus, exact, rtol=5e-7, atol=0.0)


def test_counter_based_uniforms_are_uniform_independent_and_keyed():
    """1e6 draws: means 1/2 and variances 1/12 (5 standard errors), no correlation between
    the two uniforms of a counter nor between neighbours (|r| < 5e-3), the Gaussian from
    the second has the moments and the 3-sigma tails of N(0, 1); the same key gives the
    same stream, another key another one; the fill uniform lies in [0, 1), the Gaussian's
    in (0, 1) symmetric about 1/2 (both float32)."""
    n = 1_000_000
    u1, u2 = kernels.uniforms(np.uint64(12345), n)
    assert u1.dtype == u2.dtype == np.float32
    assert u1.min() >= 0.0
    assert u1.max() < 1.0
    assert u2.min() > 0.0
    assert u2.max() < 1.0
    assert u2.min() >= 2.0**-24
    se_mean, se_var = math.sqrt(1 / 12 / n), 1 / 12 * math.sqrt(0.8 / n) * 1.2
    u1, u2 = u1.astype(np.float64), u2.astype(np.float64)
    for u in (u1, u2):
        assert abs(u.mean() - 0.5) < 5 * se_mean
        assert abs(u.var() - 1 / 12) < 5 * se_var
        assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5e-3
    assert abs(np.corrcoef(u1, u2)[0, 1]) < 5e-3
    z = kernels.polynomials(u2.astype(np.float32))["normal_quantile"].astype(np.float64)
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3.0) < 0.05
    tail = np.mean(np.abs(z) > 3.0)
    assert abs(tail - 0.0026998) < 5 * math.sqrt(0.0027 / n)
    again, _ = kernels.uniforms(np.uint64(12345), 1000)
    other, _ = kernels.uniforms(np.uint64(12346), 1000)
    np.testing.assert_array_equal(again, u1[:1000].astype(np.float32))
    assert np.mean(other == again) < 0.01


@pytest.mark.parametrize("bins", [8, 5])
def test_compiled_spline_equals_the_pytorch_spline(bins):
    """The compiled rational-quadratic spline (the specialised 8-bin kernel and the general
    one) on 3 features of 1000 points, the parameters in the rows of a transposed network
    output, equals ``models._rqs_forward`` to 1e-10 in float64 on steep random splines, over
    [-7, 7] (the identity outside [-5, 5]), at the knots, and to float32 rounding in
    float32; parameters of the wrong shape are refused."""
    gen = torch.Generator().manual_seed(4)
    n, m = 3, 1000
    w = 3.0 * torch.randn(m, n, bins, generator=gen, dtype=torch.float64)
    h = 3.0 * torch.randn(m, n, bins, generator=gen, dtype=torch.float64)
    d = 3.0 * torch.randn(m, n, bins - 1, generator=gen, dtype=torch.float64)
    x = 14.0 * torch.rand(m, n, generator=gen, dtype=torch.float64) - 7.0
    x[:4, 0] = torch.tensor([-5.0, 5.0, 0.0, -7.0], dtype=torch.float64)
    expected = _rqs_forward(x, w, h, d, slope=1e-3).T.numpy()  # (n, m)
    # the network output (m, n (3 bins - 1)), feature-major, transposed
    rows = torch.cat([w, h, d], 2).reshape(m, -1).T.contiguous().numpy()
    xt = x.T.contiguous().numpy()
    got = kernels.rqs_forward(xt, rows, bins, 5.0, 1e-3)
    np.testing.assert_allclose(got, expected, rtol=0.0, atol=1e-10)
    outside = np.abs(xt) > 5.0
    assert outside.any()
    assert np.array_equal(got[outside], xt[outside])
    got32 = kernels.rqs_forward(xt.astype(np.float32), rows.astype(np.float32), bins, 5.0, 1e-3)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="3 bins - 1"):
        kernels.rqs_forward(xt, rows[1:], bins, 5.0, 1e-3)


def test_fused_energy_flow_sample_equals_the_pytorch_path():
    """``LayerEnergyFlow.sample(c, fused=True)`` (spline_iaf): the same base draw through the
    compiled spline gives the PyTorch path's sample to float32 rounding."""
    torch.manual_seed(0)
    flow = LayerEnergyFlow(5, "spline_iaf", transforms=3, hidden=(32, 32))
    with torch.inference_mode():
        for p in flow.parameters():
            p.mul_(3.0)  # far from the identity
        c = torch.rand(3000, 1) * 2 - 1
        torch.manual_seed(7)
        plain = flow.sample(c)
        torch.manual_seed(7)
        fused = flow.sample(c, fused=True)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
    assert float((fused - plain).abs().max()) > 0  # not the same code


class _Layers:
    """Five layers of 3, 40, 60, 10 and 7 voxels (120)."""

    n_voxels = 120
    layer_slices = (slice(0, 3), slice(3, 43), slice(43, 103), slice(103, 113), slice(113, 120))


def _fused_vae(seed: int = 0) -> CaloVAE:
    torch.manual_seed(seed)
    geometry = _Layers()
    model = CaloVAE(
        geometry.n_voxels,
        layer_sizes(geometry),
        latent_dim=4,
        hidden=(32,),
        energy_model="spline_iaf",
        energy_hidden=(16,),
        energy_transforms=2,
        zero_mask=True,
        conditional_sigma=True,
        sample_noise=0.85,
    ).eval()
    with torch.no_grad():
        model.rho.normal_(0.0, 1.0)
        model.preprocessing.std[: geometry.n_voxels].uniform_(0.5, 2.0)
        model.preprocessing.mean[: geometry.n_voxels].normal_(-3.0, 1.0)
        model.preprocessing.threshold.fill_(0.05)
    return model


def test_voxel_kernel_equals_the_pytorch_steps_with_its_uniforms():
    """vae_voxels on random decoder outputs equals the steps of ``CaloVAE.generate`` and
    ``ShowerPreprocessing.compose`` written in PyTorch (float64) with the kernel's own
    uniforms: the fill draw, the noise of width min_sigma + softplus(rho + offset), the
    fractions renormalised to each layer energy, the readout threshold."""
    model = _fused_vae()
    prep, n, alpha = model.preprocessing, model.n_voxels, model.preprocessing.alpha
    gen = torch.Generator().manual_seed(2)
    b = 400
    out = torch.randn(b, 3 * n, generator=gen) * 2.0
    out[:, n : 2 * n] += 0.5  # fill logits
    layers = torch.rand(b, 5, generator=gen, dtype=torch.float64) * 1e3
    layers[:3, 4] = 0.0  # empty layers stay empty
    starts = np.cumsum((0, *model.layer_sizes), dtype=np.int64)
    key = np.uint64(987654321)
    rho, scale, shift = model.rho.detach(), prep.std[:n].contiguous(), prep.mean[:n].contiguous()
    threshold = np.float32(prep.threshold)
    got = kernels.vae_voxels(
        out.numpy(), rho.numpy(), scale.numpy(), shift.numpy(), starts,
        layers.float().numpy(), key, 0.85, float(model.min_sigma), alpha, threshold,
    )  # fmt: skip
    rho, scale, shift = rho.double(), scale.double(), shift.double()
    layers = layers.float().double()
    u1, u2 = (torch.from_numpy(u).double().view(b, n) for u in kernels.uniforms(key, b * n))
    o = out.double()
    filled = u1 < torch.sigmoid(o[:, n : 2 * n])
    sigma = model.min_sigma + torch.nn.functional.softplus(rho + o[:, 2 * n :])
    gauss = math.sqrt(2.0) * torch.erfinv(2.0 * u2 - 1.0)
    y = o[:, :n] + 0.85 * sigma * gauss
    s = torch.sigmoid(y * scale + shift) - alpha
    s = torch.where(filled & (s > alpha * (1 - 2 * alpha)), s, 0.0)
    expected = torch.zeros(b, n, dtype=torch.float64)
    for layer, (lo, hi) in enumerate(itertools.pairwise(starts)):
        total = s[:, lo:hi].sum(1, keepdim=True)
        f = torch.where(total > 0, layers[:, layer : layer + 1] / total, 0.0)
        expected[:, lo:hi] = s[:, lo:hi] * f
    expected = expected.float()
    expected = torch.where(expected >= float(threshold), expected, 0.0)
    assert got.dtype == np.float32
    assert got.shape == (b, n)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-5)
    assert 0.2 < float((expected > 0).float().mean()) < 0.8  # both outcomes are exercised
    assert (got[:3, starts[4] :] == 0).all()


def test_fused_vae_sampling_has_the_distribution_of_the_pytorch_path():
    """The fused CPU path of a zero_mask, conditional_sigma VAE with a spline energy flow and
    the PyTorch path (``fused_sampling = False``) draw other random numbers from the same
    distribution: 4000 showers each at three energies, the response and the energy of each
    layer within 5 standard errors, the filled fraction of each layer within 0.01; the fused
    path is seeded (same seed, same showers), non-negative and finite."""
    model = _fused_vae(seed=1)
    energies = torch.cat([torch.full((4000,), e) for e in (2e3, 5e4, 8e5)])
    fused = model.sample(energies, seed=3)
    assert torch.equal(fused, model.sample(energies, seed=3))
    assert bool((fused >= 0).all() and torch.isfinite(fused).all())
    model.fused_sampling = False
    plain = model.sample(energies, seed=3)
    assert not torch.equal(fused, plain)
    for k in range(3):
        rows = slice(4000 * k, 4000 * (k + 1))
        for sl in _Layers.layer_slices:
            a, b = fused[rows, sl], plain[rows, sl]
            ea, eb = a.sum(1).double(), b.sum(1).double()
            err = math.hypot(float(ea.std()), float(eb.std())) / math.sqrt(4000)
            assert abs(float(ea.mean() - eb.mean())) < 5 * err + 1e-9
            fa, fb = float((a > 0).float().mean()), float((b > 0).float().mean())
            assert abs(fa - fb) < 0.01


def test_voxel_kernel_output_is_finite_and_non_negative_for_non_finite_decoder_outputs():
    """NaN and inf in the decoder output (a broken network) give finite, non-negative voxel
    energies, each layer summing to at most its energy, as the PyTorch path guarantees."""
    gen = torch.Generator().manual_seed(6)
    n, b = 12, 50
    out = torch.randn(b, 3 * n, generator=gen)
    out[::3, 0] = math.nan
    out[1::3, n + 1] = math.nan
    out[2::3, 2 * n + 2] = math.inf
    out[::5, 5] = -math.inf
    starts = np.array([0, 4, 12], dtype=np.int64)
    layers = np.full((b, 2), 100.0, dtype=np.float32)
    ones, zeros = np.ones(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    got = kernels.vae_voxels(
        out.numpy(), zeros, ones, zeros, starts, layers, np.uint64(3), 0.85, 0.05, 1e-6,
        np.float32(0.0),
    )  # fmt: skip
    assert np.isfinite(got).all()
    assert (got >= 0).all()
    assert (got[:, :4].sum(1) <= 100.0 * (1 + 1e-5)).all()
    assert (got[:, 4:].sum(1) <= 100.0 * (1 + 1e-5)).all()


def test_voxel_kernel_refuses_inconsistent_shapes():
    """The compiled loop does no bounds checks: shapes that do not fit one another are
    refused with the expected ones named."""
    n, b = 12, 4
    out = np.zeros((b, 3 * n), dtype=np.float32)
    ones, zeros = np.ones(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    starts, layers = np.array([0, 4, 12]), np.ones((b, 2), dtype=np.float32)
    args = (ones, zeros, starts, layers, 1, 0.85, 0.05, 1e-6, 0.0)
    assert kernels.vae_voxels(out, zeros, *args).shape == (b, n)
    with pytest.raises(ValueError, match=r"out \(B, 3 n\)"):
        kernels.vae_voxels(out[:, :-1], zeros, *args)
    with pytest.raises(ValueError, match="starts"):
        kernels.vae_voxels(out, zeros, ones, zeros, np.array([0, 4, 11]), *args[3:])
    with pytest.raises(ValueError, match="layers"):
        kernels.vae_voxels(out, zeros, ones, zeros, starts, layers[:, :1], *args[4:])


def _bfloat16_bits(x: torch.Tensor) -> np.ndarray:
    return x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def test_voxel_kernel_reads_bfloat16_bits_and_writes_into_a_given_array():
    """A decoder output given as bfloat16 bits (uint16) gives exactly the showers of its
    float32 value; ``into`` (e.g. the rows of a larger batch) is written and returned; a
    wrong ``into`` is refused."""
    model = _fused_vae(seed=4)
    prep, n = model.preprocessing, model.n_voxels
    gen = torch.Generator().manual_seed(8)
    b = 200
    out = torch.randn(b, 3 * n, generator=gen) * 2.0
    starts = np.cumsum((0, *model.layer_sizes), dtype=np.int64)
    layers = (torch.rand(b, 5, generator=gen) * 1e3).numpy()
    args = (
        model.rho.detach().numpy(), prep.std[:n].contiguous().numpy(),
        prep.mean[:n].contiguous().numpy(), starts, layers, np.uint64(11), 0.85,
        float(model.min_sigma), prep.alpha, np.float32(prep.threshold),
    )  # fmt: skip
    bits = _bfloat16_bits(out)
    rounded = out.to(torch.bfloat16).float().numpy()
    assert not np.array_equal(rounded, out.numpy())
    expected = kernels.vae_voxels(rounded, *args)
    np.testing.assert_array_equal(kernels.vae_voxels(bits, *args), expected)
    big = np.full((b + 10, n), -1.0, dtype=np.float32)
    got = kernels.vae_voxels(bits, *args, into=big[5 : b + 5])
    assert np.shares_memory(got, big)
    np.testing.assert_array_equal(big[5 : b + 5], expected)
    assert (big[:5] == -1).all()
    assert (big[b + 5 :] == -1).all()
    strided = np.empty((b, 2 * n), np.float32)[:, ::2]
    for wrong in (np.empty((b, n), np.float64), np.empty((b + 1, n), np.float32), strided):
        with pytest.raises(ValueError, match="into"):
            kernels.vae_voxels(bits, *args, into=wrong)


def test_fused_bfloat16_sampling_stays_close_to_float32_and_chunks_write_in_place(monkeypatch):
    """``fused_precision="bfloat16"`` (the decoder's last layer in bfloat16) draws the same
    random numbers: the showers of one seed keep their filled voxels (all but a few per
    mille), their layer energies (which the energy flow sets, in float32) to 1e-5 and their
    shapes (median energy moved between voxels < 3e-3 of the shower's); it is seeded.
    Batches larger than a chunk are written chunk by chunk into the result: the same showers
    as the chunks drawn one after the other. An unknown precision is refused."""
    model = _fused_vae(seed=5)
    energies = torch.exp(torch.empty(700).uniform_(math.log(1e3), math.log(1e6)))
    a = model.sample(energies, seed=2)
    model.fused_precision = "bfloat16"
    b = model.sample(energies, seed=2)
    assert torch.equal(b, model.sample(energies, seed=2))
    assert not torch.equal(a, b)
    assert float(((a > 0) != (b > 0)).float().mean()) < 5e-3
    # the shapes: the energy moved between voxels, per shower, 3e-4 of it in the median
    moved = (a - b).abs().sum(1) / a.sum(1).clamp_min(1e-9)
    assert float(moved.median()) < 3e-3
    for sl in _Layers.layer_slices:
        torch.testing.assert_close(b[:, sl].sum(1), a[:, sl].sum(1), rtol=1e-5, atol=1e-3)
    monkeypatch.setattr(models, "_SAMPLE_CHUNK_VALUES", 128 * model.n_voxels)
    chunked = model.sample(energies, seed=2)
    with torch.inference_mode(), models._seeded(2):
        parts = [model._sample(energies[i : i + 128]) for i in range(0, 700, 128)]
    assert torch.equal(chunked, torch.cat(parts))
    model.fused_precision = "float16"
    with pytest.raises(ConfigError, match="fused_precision"):
        model.sample(energies[:5])
