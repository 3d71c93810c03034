"""Generative models of calorimeter showers, conditioned on the incident energy.

Every model is registered as ``@register("calo model", NAME)``; its constructor takes the
number of voxels and hyperparameters only. Tensors are float32:

* ``energies`` (B,): incident energies in MeV (the CaloChallenge range is 1 GeV - 1 TeV);
* ``showers`` (B, n_voxels): deposited energy per voxel in MeV, non-negative.

The common interface (:class:`CaloModel`):

* ``prepare(energies, showers)`` fits the preprocessing on the training data (once, before
  training; it is stored in buffers, so it travels with ``state_dict``);
* ``loss(energies, showers)`` -> scalar tensor, the training objective (per feature);
* ``training_step(energies, showers, optimizers, step)`` one optimisation step (the WGAN
  alternates critic and generator here), with ``configure_optimizers(lr)``;
* ``sample(energies, *, seed=None)`` -> (B, n_voxels) showers in MeV, non-negative and finite.

=================  =================  ==========================================================
name               class              paper
=================  =================  ==========================================================
``vae``            CaloVAE            Kingma, Welling, arXiv:1312.6114 (per-layer normalisation
                                      after CaloFlow, Krause, Shih, arXiv:2106.05285; optional
                                      layer-energy flow, CaloFlow's flow I, and zero mask)
``wgan``           CaloWGAN           Paganini, de Oliveira, Nachman, CaloGAN, arXiv:1705.02355;
                                      WGAN-GP, Gulrajani et al., arXiv:1704.00028
``flow``           CaloFlow           masked autoregressive flow (Papamakarios et al.,
                                      arXiv:1705.07057) in the spirit of CaloFlow,
                                      arXiv:2106.05285
``flow_matching``  CaloFlowMatching   conditional flow matching, Lipman et al.,
                                      arXiv:2210.02747
=================  =================  ==========================================================

Preprocessing (:class:`ShowerPreprocessing`, shared by all models). A shower is split, as in
CaloFlow, into its energy, its layer energies and its normalised shape inside each layer:

* total energy ``E_tot`` (MeV) -> ``t = log(E_tot / E_inc + eps)`` (eps = 1e-7): the narrow
  response distribution gets a feature of its own;
* layer energies ``L_l`` -> shares of the total ``w_l = log(L_l / E_tot + eps)``;
* voxel energies ``x_i`` -> fraction of their layer ``s_i = x_i / L_layer(i)`` ->
  ``v_i = logit(alpha + (1 - 2 alpha) s_i)`` (alpha = 1e-6, CaloFlow's logit transform);
* ``y = ([v, w, t] - mean) / std`` with the mean and std of the training data (std floored
  at 0.01), so a shower is a vector of D = ``n_voxels + n_layers + 1`` features of order one.

The inverse maps any ``y`` to a valid shower: fractions below ``alpha`` become zero, the others
are renormalised to sum to one in each layer; the layer shares ``exp(w_l) - eps`` (clipped at
zero) are renormalised to sum to one and multiplied by ``E_tot = E_inc (exp(t) - eps)``
(clipped at zero). So the energies are non-negative, the layers add up exactly to the
generated total and each layer carries exactly its generated energy; voxels below the readout
``threshold`` (by default just below the smallest non-zero voxel energy of the training data)
are then set to zero, which reproduces the sparsity. Without ``layer_sizes`` the whole shower
is one layer.

The incident energy enters every network as ``c = 2 (log E - log e_min) / (log e_max -
log e_min) - 1``, in [-1, 1] over [e_min, e_max] (1 GeV - 1 TeV by default).

:class:`LayerEnergyFlow` (``CaloVAE(energy_model="flow" | "iaf" | "spline_iaf")``) models the
layer energies given the incident energy on their own; the VAE then generates only the
normalised shapes, given E_inc and those energies, and ``ShowerPreprocessing.compose`` scales
them.

The default sizes (a few 1e5 parameters, 1e6 for the flow) train on a CPU in minutes on 1e4
showers of the 368-voxel CaloChallenge dataset-1 photon geometry (``atlas5``). For the
6480-voxel geometry the flow should be given ``n_components`` (it then models the layer
energies and the leading principal components of the shape representation).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from colliderlab.core.errors import ConfigError
from colliderlab.core.registry import register

#: Default incident-energy range of the conditioning (MeV): 1 GeV to 1 TeV.
E_MIN_MEV, E_MAX_MEV = 1.0e3, 1.0e6


def _mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """Fully connected network with widths ``sizes``; no activation after the last layer."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: Voxel values per chunk of :meth:`CaloModel.sample` (2**19: 2 MB per float32 tensor of a
#: chunk; atlas5 at batch 10,000, one thread: chunks of 1,024 / 1,536 / 2,038 showers 13.0 /
#: 12.4 / 12.7 us per shower, 2,560 / 3,072 / 4,096 and the whole batch 16.6-17.4).
_SAMPLE_CHUNK_VALUES = 2**19


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the block with the CPU random stream seeded by ``seed`` (restored afterwards)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _as_tensor(a: Any, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    return t.to(device=device, dtype=torch.float32)


class ShowerPreprocessing(nn.Module):
    """Invertible map showers (B, n_voxels) MeV <-> representation y (B, D).

    D = ``features`` = n_voxels + n_layers + 1 (shapes, layer shares, total energy).

    See the module docstring. ``fit(energies, showers)`` sets the standardisation and the
    threshold from training data; until then the mean is 0, the std 1 and the threshold 0.

    Args:
        n_voxels: voxels per shower.
        layer_sizes: voxels of each layer, in the order of the flat voxel axis (summing to
            ``n_voxels``); None for a single layer.
        alpha: floor of the logit transform of the in-layer fractions.
        eps_layer: added to the energy fractions (total / incident, layer / total) before
            the log.
        threshold: voxel energies below it (MeV) are zeroed by ``inverse``; None to take the
            smallest non-zero voxel energy of the data in ``fit`` (times 0.999).
    """

    def __init__(
        self,
        n_voxels: int,
        layer_sizes: Sequence[int] | None = None,
        alpha: float = 1e-6,
        eps_layer: float = 1e-7,
        threshold: float | None = None,
    ) -> None:
        super().__init__()
        n_voxels = int(n_voxels)
        if n_voxels < 1:
            raise ConfigError(f"n_voxels must be >= 1; got {n_voxels}.")
        sizes = (n_voxels,) if layer_sizes is None else tuple(int(s) for s in layer_sizes)
        if any(s < 1 for s in sizes) or sum(sizes) != n_voxels:
            raise ConfigError(
                f"layer_sizes {sizes} must be positive and sum to n_voxels = {n_voxels}; make "
                "them with colliderlab.calosim.features.layer_sizes(geometry)."
            )
        if not 0 < alpha < 0.5:
            raise ConfigError(f"alpha must be in (0, 0.5); got {alpha}.")
        self.n_voxels, self.layer_sizes = n_voxels, sizes
        self.n_layers = len(sizes)
        self.features = n_voxels + self.n_layers + 1
        self.alpha, self.eps_layer = float(alpha), float(eps_layer)
        self.fixed_threshold = threshold
        index = torch.repeat_interleave(torch.arange(self.n_layers), torch.tensor(sizes))
        self.register_buffer("layer_index", index, persistent=False)
        self.register_buffer("mean", torch.zeros(self.features))
        self.register_buffer("std", torch.ones(self.features))
        self.register_buffer("threshold", torch.tensor(float(threshold or 0.0)))

    def layer_energies(self, showers: torch.Tensor) -> torch.Tensor:
        """showers (B, n_voxels) -> energy per layer (B, n_layers), same unit."""
        out = showers.new_zeros(showers.shape[0], self.n_layers)
        return out.index_add_(1, self.layer_index, showers)

    def _raw(self, energies: torch.Tensor, showers: torch.Tensor, dequantise: bool) -> torch.Tensor:
        layers = self.layer_energies(showers)
        per_voxel = layers[:, self.layer_index]
        s = torch.where(per_voxel > 0, showers / per_voxel.clamp_min(1e-30), 0.0)
        total = layers.sum(1, keepdim=True)
        shares = torch.where(total > 0, layers / total.clamp_min(1e-30), 0.0)
        f = torch.cat([shares, total / energies.unsqueeze(1)], dim=1)
        eps = torch.full_like(f, self.eps_layer)
        if dequantise:  # uniform noise at the scale of the floors: no point masses
            s = s + self.alpha * torch.rand_like(s)
            eps = eps * (1.0 + torch.rand_like(f))
        u = self.alpha + (1.0 - 2.0 * self.alpha) * s
        return torch.cat([torch.log(u) - torch.log1p(-u), torch.log(f + eps)], dim=1)

    def forward(
        self, energies: torch.Tensor, showers: torch.Tensor, dequantise: bool = False
    ) -> torch.Tensor:
        """energies (B,) MeV, showers (B, n_voxels) MeV -> y (B, D).

        ``dequantise`` adds uniform noise of the size of the floors (alpha, eps_layer) before
        the transforms, so that empty voxels and layers are not point masses (for densities)."""
        if showers.dim() != 2 or showers.shape[1] != self.n_voxels:
            raise ConfigError(
                f"showers must have shape (B, n_voxels) = (B, {self.n_voxels}); got "
                f"{tuple(showers.shape)}. A model is built for one geometry: train another one "
                "for showers with another voxel count."
            )
        if energies.shape != showers.shape[:1]:
            raise ConfigError(
                f"energies must have shape (B,) = ({showers.shape[0]},), one incident energy per "
                f"shower; got {tuple(energies.shape)}."
            )
        return (self._raw(energies, showers, dequantise) - self.mean) / self.std

    def inverse(self, y: torch.Tensor, energies: torch.Tensor) -> torch.Tensor:
        """y (B, D), energies (B,) MeV -> showers (B, n_voxels) MeV, >= 0."""
        n = self.n_voxels
        w = torch.addcmul(self.mean[n:], y[:, n:], self.std[n:])
        v = torch.addcmul(self.mean[:n], y[:, :n], self.std[:n])
        return self.compose(v, self.layer_energies_from(w, energies), inplace=True)

    def layer_energies_from(self, w: torch.Tensor, energies: torch.Tensor) -> torch.Tensor:
        """Unstandardised energy features w (B, n_layers + 1) (the last n_layers + 1 columns
        of the representation), energies (B,) MeV -> layer energies (B, n_layers) MeV,
        finite and >= 0: the shares renormalised times the total."""
        f = (torch.exp(w.clamp(max=30.0)) - self.eps_layer).clamp_min(0.0)
        shares, total = f[:, :-1], f[:, -1:] * energies.unsqueeze(1)
        norm = shares.sum(1, keepdim=True)
        layers = torch.where(norm > 0, shares / norm.clamp_min(1e-30), 0.0) * total
        return torch.nan_to_num(layers, nan=0.0, posinf=0.0)

    def compose(
        self, v: torch.Tensor, layers: torch.Tensor, *, inplace: bool = False
    ) -> torch.Tensor:
        """Unstandardised shape logits v (B, n_voxels) and layer energies (B, n_layers) MeV
        -> showers (B, n_voxels) MeV, >= 0.

        The in-layer fractions ``s = (sigmoid(v) - alpha) / (1 - 2 alpha)`` below ``alpha`` are
        zeroed, the others renormalised per layer and multiplied by the layer energy; voxels
        below the threshold are zeroed. Vectorised over the batch, every step in place on one
        (B, n_voxels) tensor: a new one, or ``v`` itself with ``inplace`` (the constant
        1 / (1 - 2 alpha) cancels in the renormalisation; a NaN logit gives a zero voxel)."""
        a = self.alpha
        x = v.sigmoid_() if inplace else torch.sigmoid(v)
        x.nan_to_num_(nan=0.0).sub_(a)
        nn.functional.threshold(x, a * (1.0 - 2.0 * a), 0.0, inplace=True)
        parts = x.split(self.layer_sizes, dim=1)  # views, one per layer
        sums = torch.cat([part.sum(1, keepdim=True) for part in parts], dim=1)
        scale = torch.where(sums > 0, layers / sums.clamp_min(1e-30), 0.0)
        scale = torch.nan_to_num(scale, nan=0.0, posinf=0.0)
        for layer, part in enumerate(parts):  # n_layers steps, each over the whole batch
            part.mul_(scale[:, layer : layer + 1])
        # x >= threshold  <=>  x > the float32 just below it
        below = torch.nextafter(self.threshold, self.threshold.new_tensor(-math.inf))
        return nn.functional.threshold(x, float(below), 0.0, inplace=True)

    @torch.no_grad()
    def fit(self, energies: torch.Tensor, showers: torch.Tensor) -> ShowerPreprocessing:
        """Set mean and std of the representation (and the threshold) from training data."""
        raw = self._raw(energies, showers, dequantise=False).double()
        self.mean.copy_(raw.mean(0))
        self.std.copy_(raw.std(0, correction=0).clamp_min(1e-2))
        if self.fixed_threshold is None:  # just below the smallest deposit (float rounding)
            positive = showers[showers > 0]
            self.threshold.fill_(float(positive.min()) * (1 - 1e-3) if positive.numel() else 0.0)
        return self

    def extra_repr(self) -> str:
        return (
            f"n_voxels={self.n_voxels}, layer_sizes={self.layer_sizes}, alpha={self.alpha}, "
            f"eps_layer={self.eps_layer}, threshold={float(self.threshold):.3g} MeV"
        )


class CaloModel(nn.Module):
    """Base of the shower generators: conditioning, preprocessing, sampling, a training step.

    Subclasses implement ``generate(c) -> y`` (a batch in the representation of
    :class:`ShowerPreprocessing`) and ``loss(energies, showers)``.

    Args:
        n_voxels: voxels per shower.
        layer_sizes: voxels per layer (see :class:`ShowerPreprocessing`).
        e_min, e_max: incident-energy range (MeV) mapped to c in [-1, 1].
        threshold: readout threshold in MeV (None: learned from the data by ``prepare``).
    """

    description = ""

    #: Sample on the CPU through the compiled kernels of :mod:`colliderlab.calosim.kernels`
    #: where the model has them (the spline energy flow; the voxels of a ``zero_mask``,
    #: ``conditional_sigma`` VAE with an energy model): the same distribution as the PyTorch
    #: path, other random numbers. Set False on an instance to sample through PyTorch only.
    fused_sampling = True
    #: Precision of the widest network layer in fused sampling (``CaloVAE``: the decoder's
    #: last layer): ``"float32"``, or ``"bfloat16"`` (inputs and weights rounded to bfloat16,
    #: products summed in float32, outputs rounded to bfloat16; 2x the multiply-adds per
    #: cycle on CPUs with AVX-512 BF16 or AMX, emulated and slower on others). A sampling
    #: option: training and the PyTorch path stay float32.
    fused_precision = "float32"

    def __init__(
        self,
        n_voxels: int,
        layer_sizes: Sequence[int] | None = None,
        e_min: float = E_MIN_MEV,
        e_max: float = E_MAX_MEV,
        threshold: float | None = None,
    ) -> None:
        super().__init__()
        if not 0 < e_min < e_max:
            raise ConfigError(f"need 0 < e_min < e_max (MeV); got e_min={e_min}, e_max={e_max}.")
        self.preprocessing = ShowerPreprocessing(n_voxels, layer_sizes, threshold=threshold)
        self.n_voxels = self.preprocessing.n_voxels
        self.layer_sizes = self.preprocessing.layer_sizes
        self.features = self.preprocessing.features
        self.e_min, self.e_max = float(e_min), float(e_max)
        self.energy: LayerEnergyFlow | None = None

    def _add_energy_model(
        self, kind: str | None, transforms: int, hidden: Sequence[int], bins: int
    ) -> int:
        """With ``kind`` ("flow", "iaf", "spline_iaf"), a :class:`LayerEnergyFlow` for the layer
        energies: the model then generates only the normalised shapes (n_voxels features) given
        ``[c, u]``. Returns the width of the model's context (1, or 1 + n_layers)."""
        if kind is None:
            return 1
        self.energy = LayerEnergyFlow(len(self.layer_sizes), kind, transforms, hidden, bins)
        return 1 + len(self.layer_sizes)

    def _energy_terms(
        self, energies: torch.Tensor, showers: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised, dequantised layer-energy features u (B, n_layers) of the showers and
        the energy flow's negative log-likelihood per layer (batch mean)."""
        assert self.energy is not None
        prep = self.preprocessing
        u = self.energy.features(prep.layer_energies(showers), energies, prep.threshold, True)
        c = self.condition(energies)
        return u, -self.energy.log_prob(u, c).mean() / self.energy.n_layers

    # -- conditioning and data --------------------------------------------------------------
    def condition(self, energies: torch.Tensor) -> torch.Tensor:
        """energies (B,) MeV -> c (B, 1), linear in log E, -1 at e_min and +1 at e_max."""
        lo, hi = math.log(self.e_min), math.log(self.e_max)
        return (2.0 * (torch.log(energies) - lo) / (hi - lo) - 1.0).unsqueeze(1)

    def _device(self) -> torch.device:
        return next(itertools.chain(self.parameters(), self.buffers())).device

    def _check(self, energies: Any, showers: Any | None = None) -> tuple[torch.Tensor, ...]:
        dev = self._device()
        e = _as_tensor(energies, dev)
        if e.dim() != 1 or not torch.isfinite(e).all() or (e <= 0).any():
            raise ConfigError(
                f"{type(self).__name__}: energies must be a 1-D tensor (B,) of finite incident "
                f"energies > 0 in MeV; got shape {tuple(e.shape)}."
            )
        if showers is None:
            return (e,)
        x = _as_tensor(showers, dev)
        if x.dim() != 2 or x.shape != (e.shape[0], self.n_voxels):
            raise ConfigError(
                f"{type(self).__name__}: showers must have shape (B, n_voxels) = "
                f"({e.shape[0]}, {self.n_voxels}); got {tuple(x.shape)}. A model is built for "
                "one geometry: train another one for showers with another voxel count."
            )
        return e, x

    @torch.no_grad()
    def prepare(self, energies: Any, showers: Any) -> CaloModel:
        """Fit the preprocessing on training data: energies (N,) MeV, showers (N, n_voxels)."""
        e, x = self._check(energies, showers)
        self.preprocessing.fit(e, x)
        if self.energy is not None:
            prep = self.preprocessing
            self.energy.fit(prep.layer_energies(x), e, prep.threshold)
        return self

    # -- training ---------------------------------------------------------------------------
    def loss(self, energies: torch.Tensor, showers: torch.Tensor) -> torch.Tensor:
        """energies (B,) MeV, showers (B, n_voxels) MeV -> scalar training loss."""
        raise NotImplementedError

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """The optimisers of :meth:`training_step`, by name (Adam on every parameter)."""
        return {"model": torch.optim.Adam(self.parameters(), lr=lr)}

    def training_step(
        self,
        energies: torch.Tensor,
        showers: torch.Tensor,
        optimizers: dict[str, torch.optim.Optimizer],
        step: int,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """One optimisation step on a batch; returns the losses to log (``"loss"`` first).

        ``loss_fn`` (default :meth:`loss`) computes the loss: under ``torchrun`` the training
        loop passes the model's DistributedDataParallel wrapper, whose backward pass averages
        the gradients of all processes."""
        opt = optimizers["model"]
        opt.zero_grad()
        loss = (self.loss if loss_fn is None else loss_fn)(energies, showers)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    # -- sampling ---------------------------------------------------------------------------
    def generate(self, c: torch.Tensor) -> torch.Tensor:
        """c (B, 1) -> y (B, D), the preprocessed representation (D = ``features``)."""
        raise NotImplementedError

    @torch.inference_mode()
    def sample(self, energies: Any, *, seed: int | None = None) -> torch.Tensor:
        """energies (B,) MeV -> showers (B, n_voxels) MeV, non-negative and finite.

        ``seed`` makes the draw reproducible without touching the global random stream. Runs
        under ``torch.inference_mode`` (no autograd bookkeeping): the showers are read-only
        outside of it (copy them with ``clone()`` to modify them in place).

        With an energy model: the layer energies u from the flow, then the shapes given
        ``[c, u]``, each layer's shape scaled to its energy.

        On the CPU a large batch is generated in chunks of about ``_SAMPLE_CHUNK_VALUES``
        voxels (1,424 showers of 368 voxels): the intermediate tensors of a chunk stay small
        enough for the memory allocator to reuse their buffers, where those of one huge batch
        are fresh pages each time (atlas5, batch 10,000, one thread: 17-19 -> 12.3 us per
        shower). On a GPU (PyTorch's caching allocator; wide batches) the batch is one.
        With ``fused_sampling`` (the default) the CPU path takes the compiled kernels of
        :mod:`colliderlab.calosim.kernels` where the model has them: the same distribution,
        other random numbers (still reproducible with ``seed``)."""
        (e,) = self._check(energies)
        chunk = max(64, _SAMPLE_CHUNK_VALUES // self.n_voxels)
        if self.fused_precision not in FUSED_PRECISIONS:
            raise ConfigError(
                f"fused_precision must be one of {FUSED_PRECISIONS}; got {self.fused_precision!r}."
            )
        with _seeded(seed):
            if e.shape[0] <= chunk or e.device.type != "cpu":
                return self._sample(e)
            first = self._sample(e[:chunk])
            out = first.new_empty((e.shape[0], self.n_voxels))
            out[:chunk] = first
            for start in range(chunk, e.shape[0], chunk):
                part = out[start : start + chunk]
                got = self._sample(e[start : start + chunk], into=part)
                if got.data_ptr() != part.data_ptr():  # not written in place
                    part.copy_(got)
        return out

    def _fused(self, e: torch.Tensor) -> bool:
        """Whether :meth:`_sample` of e takes the compiled kernels (``fused_sampling``, CPU,
        no autograd)."""
        return self.fused_sampling and e.device.type == "cpu" and not torch.is_grad_enabled()

    def _sample(self, e: torch.Tensor, into: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`sample` of checked energies (B,) MeV, in one batch. ``into``: a (B,
        n_voxels) tensor the showers may be written to (returned then; a model that does not
        use it returns a tensor of its own)."""
        if self.energy is None:
            return self.preprocessing.inverse(self.generate(self.condition(e)), e)
        c = self.condition(e)
        u = self.energy.sample(c, fused=self._fused(e))
        y = self.generate(torch.cat([c, u], 1))
        prep, n = self.preprocessing, self.n_voxels
        v = y.mul_(prep.std[:n]).add_(prep.mean[:n])  # y is this call's own tensor
        return prep.compose(v, self.energy.layers(u, e), inplace=True)

    def extra_repr(self) -> str:
        return (
            f"n_voxels={self.n_voxels}, n_layers={len(self.layer_sizes)}, "
            f"e_range=[{self.e_min:g}, {self.e_max:g}] MeV, "
            f"parameters={count_parameters(self)}\n{self.description}"
        )


# --------------------------------------------------------------------------------------------
# Layer energies given the incident energy (CaloFlow's flow I)
# --------------------------------------------------------------------------------------------

#: Values of :attr:`CaloModel.fused_precision`.
FUSED_PRECISIONS = ("float32", "bfloat16")

#: Subtracted from the shape logit of a voxel drawn empty (``zero_mask``): the sigmoid of the
#: result is exactly 0 and, unlike -inf, it stays finite under the affine steps that follow.
_EMPTY_LOGIT = 1e30

#: Priors of the VAE's latent space: N(0, 1), or a conditional flow learned with the VAE
#: (MAF: fast density, latent_dim passes per transform to sample; IAF: the reverse).
LATENT_PRIORS = ("normal", "flow", "iaf")


def _affine_iaf(features: int, context: int, transforms: int, hidden: Sequence[int]) -> nn.Module:
    """Conditional affine inverse autoregressive flow (zuko; arXiv:1606.04934) over
    ``features``, the order reversed between transforms, base N(0, 1): sampling is one
    network pass per transform, the density ``features`` passes per transform."""
    from zuko.distributions import DiagNormal
    from zuko.flows import Flow, MaskedAutoregressiveTransform, UnconditionalDistribution

    n = int(features)
    order = torch.arange(n)
    steps = [
        MaskedAutoregressiveTransform(
            n,
            int(context),
            order=order if i % 2 == 0 else order.flip(0),
            hidden_features=tuple(int(h) for h in hidden),
        ).inv
        for i in range(int(transforms))
    ]
    base = UnconditionalDistribution(DiagNormal, torch.zeros(n), torch.ones(n), buffer=True)
    return Flow(steps, base)


#: Kinds of :class:`LayerEnergyFlow`: spline MAF (accurate), affine IAF (fast sampling),
#: spline IAF (the spline's accuracy, one pass per transform to sample).
ENERGY_MODELS = ("flow", "iaf", "spline_iaf")


def _rqs_forward(
    x: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    bound: float = 5.0,
    slope: float = 1e-3,
) -> torch.Tensor:
    """The monotonic rational-quadratic spline (Durkan et al., arXiv:1906.04032) of zuko's
    ``MonotonicRQSTransform`` applied to x (..., n): the same parametrisation (the softly
    clipped unnormalised widths, heights and inner-knot log-derivatives (..., n, K), (..., n,
    K), (..., n, K - 1); K bins over [-bound, bound], identity outside), computed for
    sampling with fewer and cheaper operations: softmax as exp over the normalising sum (the
    clipping keeps |logit| <= |log slope| / 2, so no max is subtracted), no padded copies,
    and only the two knot derivatives of each point's bin exponentiated. Equal to zuko's
    map to float rounding (1e-13 in float64)."""
    ls = math.log(slope)
    w = torch.exp(widths / (1.0 + (widths * (2.0 / ls)).abs()))
    h = torch.exp(heights / (1.0 + (heights * (2.0 / ls)).abs()))
    cw, ch = w.cumsum(-1), h.cumsum(-1)
    right_x = cw * (2.0 * bound / cw[..., -1:]) - bound  # the right edge of each bin
    right_y = ch * (2.0 * bound / ch[..., -1:]) - bound
    n_bins = widths.shape[-1]
    k = (right_x < x.unsqueeze(-1)).sum(-1, keepdim=True)  # bin of x (n_bins: beyond)
    inside = (x > -bound) & (k.squeeze(-1) < n_bins)
    k1 = k.clamp(max=n_bins - 1)
    k0 = (k1 - 1).clamp(min=0)
    first = k1.squeeze(-1) == 0  # the left edge of the first bin is -bound
    x1, y1 = right_x.gather(-1, k1).squeeze(-1), right_y.gather(-1, k1).squeeze(-1)
    x0 = right_x.gather(-1, k0).squeeze(-1).masked_fill(first, -bound)
    y0 = right_y.gather(-1, k0).squeeze(-1).masked_fill(first, -bound)
    # knot derivatives exp(d) at the inner knots, 1 at the two ends
    d = derivatives / (1.0 + (derivatives / ls).abs())
    inner = d.shape[-1]  # n_bins - 1
    d0 = d.gather(-1, (k1 - 1).clamp(0, inner - 1)).squeeze(-1).exp().masked_fill(first, 1.0)
    d1 = d.gather(-1, k1.clamp(max=inner - 1)).squeeze(-1).exp()
    d1 = d1.masked_fill(k1.squeeze(-1) == n_bins - 1, 1.0)
    s = (y1 - y0) / (x1 - x0)
    z = (x - x0) / (x1 - x0)
    zz = z * (1.0 - z)
    y = y0 + (y1 - y0) * (s * z * z + d0 * zz) / (s + (d0 + d1 - 2.0 * s) * zz)
    return torch.where(inside, y, x)


def _rqs_step(t: nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The forward map of zuko's spline ``MaskedAutoregressiveTransform`` ``t`` (one pass of
    its masked network on ``[x, c]``) through :func:`_rqs_forward`."""
    phi = t.hyper(torch.cat([x, c], dim=-1)).unflatten(-1, (-1, t.total))
    widths, heights, derivatives = phi.split([int(sh[0]) for sh in t.shapes], dim=-1)
    return _rqs_forward(x, widths, heights, derivatives, **t.univariate.keywords)


def _transposed_mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network ``mlp`` (a sequence of linear layers, zuko's masked ones included, and
    activations) on x given transposed, (features, B) -> (outputs, B): each linear layer as
    ``W x + b`` (``torch.addmm``), so the output comes in the layout the compiled spline
    reads, without a transposed copy."""
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            mask = getattr(layer, "mask", None)
            weight = layer.weight if mask is None else layer.weight * mask
            x = torch.addmm(layer.bias.unsqueeze(1), weight, x)
        elif isinstance(layer, nn.ReLU):
            x = x.relu_()
        else:
            x = layer(x.T).T.contiguous()
    return x


def _rqs_steps_fused(steps: Sequence[nn.Module], u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The forward maps of the spline transforms ``steps``, first to last, on u (B, n) given
    c (B, 1), through the compiled :func:`colliderlab.calosim.kernels.rqs_forward` (CPU, no
    autograd): u and the networks' outputs kept transposed, (n, B) and (n (3 bins - 1), B),
    throughout. The map of :func:`_rqs_step` to float32 rounding, 2x faster."""
    from colliderlab.calosim import kernels

    ut, ct = u.T.contiguous(), c.T.contiguous()
    for t in steps:
        keywords = {"bound": 5.0, "slope": 1e-3, **t.univariate.keywords}
        phi = _transposed_mlp(t.hyper, torch.cat([ut, ct], 0))
        ut = torch.from_numpy(
            kernels.rqs_forward(
                ut.numpy(), phi.numpy(), int(t.shapes[0][0]), keywords["bound"], keywords["slope"]
            )
        )
    return ut.T


class LayerEnergyFlow(nn.Module):
    """Conditional density of the layer energies given the incident energy (zuko).

    CaloFlow's flow I (Krause, Shih, arXiv:2106.05285): the energies are learned by a small
    flow of their own, so the narrow response of the calorimeter is not left to the shape
    model. Features (B, n_layers), CaloFlow's parametrisation: the response
    ``log(E_tot / E_inc)`` (a feature of its own, so its narrow width is learned directly)
    and the stick-breaking ratios ``logit(r_l)``, ``r_l = L_l / (L_l + L_l+1 + ...)`` for every
    layer but the last (unconstrained, unlike the shares, which sum to one); standardised with
    the mean and std of the training data. An empty layer (no voxel at or above the readout
    threshold) gets an energy drawn log-uniformly in the decade below the threshold (the middle
    of the decade in ``fit``), so it is not a point mass, and the energy sampled there reads
    out as empty again. Context: c (B, 1).

    * ``kind="flow"``: neural spline flow (rational-quadratic MAF, arXiv:1906.04032) with
      ``bins`` bins: exact density, sampling needs n_layers passes per transform (slow);
    * ``kind="iaf"``: affine inverse autoregressive flow (arXiv:1606.04934): one network pass
      per transform to sample, n_layers passes per transform for the density (training).
    * ``kind="spline_iaf"``: the spline flow's transforms inverted (zuko ``.inv``): the same
      rational-quadratic splines, one pass per transform to sample (about 5x faster than
      ``"flow"`` with 5 layers), n_layers passes per transform for the density (training:
      the VAE with it took 2.7x as long as with ``"flow"`` on 50,000 atlas5 showers).

    ``layers(u, energies)`` maps features back to layer energies in MeV: the response is
    clipped at 1, the layers sum to the total.
    """

    def __init__(
        self,
        n_layers: int,
        kind: str = "flow",
        transforms: int = 3,
        hidden: Sequence[int] = (64, 64),
        bins: int = 8,
    ) -> None:
        import zuko

        super().__init__()
        n = int(n_layers)
        if n < 2:
            raise ConfigError(
                f"the layer-energy flow needs at least 2 layers; got {n}. Give the model "
                "layer_sizes (colliderlab.calosim.features.layer_sizes(geometry)) or use "
                "energy_model=None."
            )
        if kind not in ENERGY_MODELS:
            raise ConfigError(f"energy_model must be None or one of {ENERGY_MODELS}; got {kind!r}.")
        if int(transforms) < 1:
            raise ConfigError(f"energy_transforms must be >= 1; got {transforms}.")
        self.n_layers, self.kind = n, kind
        hidden = tuple(int(h) for h in hidden)
        if kind in ("flow", "spline_iaf"):
            self.flow = zuko.flows.NSF(
                n, context=1, transforms=int(transforms), hidden_features=hidden, bins=int(bins)
            )
            if kind == "spline_iaf":  # the exact inverse of the spline flow's map
                steps = [t.inv for t in reversed(self.flow.transform.transforms)]
                self.flow = zuko.flows.Flow(steps, self.flow.base)
        else:
            self.flow = _affine_iaf(n, 1, int(transforms), hidden)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def raw(
        self,
        layers: torch.Tensor,
        energies: torch.Tensor,
        threshold: torch.Tensor,
        dequantise: bool = False,
    ) -> torch.Tensor:
        """layers (B, n_layers) MeV, energies (B,) MeV -> unstandardised features
        ``[log(E_tot / E_inc), logit(r_0), ..., logit(r_L-2)]`` (B, n_layers).

        Empty layers: threshold * 10^-U, U ~ U(0, 1) with ``dequantise`` (else 0.5); with a
        zero threshold 1e-7 E_inc stands in for it."""
        e = energies.unsqueeze(1)
        floor = torch.where(threshold > 0, threshold, 1e-7 * e)
        noise = torch.rand_like(layers) if dequantise else torch.full_like(layers, 0.5)
        filled = torch.where(layers > 0, layers, floor * torch.exp(-math.log(10.0) * noise))
        remaining = filled.flip(1).cumsum(1).flip(1)  # L_l + L_l+1 + ...
        r = (filled[:, :-1] / remaining[:, :-1]).clamp(1e-6, 1.0 - 1e-6)
        response = torch.log(remaining[:, :1] / e)
        return torch.cat([response, torch.log(r) - torch.log1p(-r)], dim=1)

    @torch.no_grad()
    def fit(
        self, layers: torch.Tensor, energies: torch.Tensor, threshold: torch.Tensor
    ) -> LayerEnergyFlow:
        """Standardisation from training data (layer energies and incident energies, MeV)."""
        u = self.raw(layers, energies, threshold).double()
        self.mean.copy_(u.mean(0))
        self.std.copy_(u.std(0, correction=0).clamp_min(1e-2))
        return self

    def features(
        self,
        layers: torch.Tensor,
        energies: torch.Tensor,
        threshold: torch.Tensor,
        dequantise: bool = False,
    ) -> torch.Tensor:
        """Standardised features (B, n_layers) of the layer energies."""
        return (self.raw(layers, energies, threshold, dequantise) - self.mean) / self.std

    def log_prob(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """u (B, n_layers) standardised, c (B, 1) -> log density (B,) (nats)."""
        return self.flow(c).log_prob(u)

    def sample(self, c: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """c (B, 1) -> standardised features u (B, n_layers), finite.

        ``spline_iaf`` samples through :func:`_rqs_forward` (the same base draw and maps
        as zuko's path, 2x faster), or with ``fused`` (CPU, no autograd) through the
        compiled spline of :mod:`colliderlab.calosim.kernels`; the other kinds through
        zuko."""
        if self.kind == "spline_iaf":
            # zuko's base draw (as ``self.flow(c).sample()`` makes it, without building the
            # flow's lazy transforms: 0.4 ms per call); the flow's transforms are the spline
            # flow's, inverted and in reverse order: the sample applies each spline
            # transform's forward map, first to last
            u = self.flow.base(c).expand(c.shape[:-1]).sample()
            steps = [step.inv for step in reversed(self.flow.transform.transforms)]
            if fused:
                u = _rqs_steps_fused(steps, u, c)
            else:
                for step in steps:
                    u = _rqs_step(step, u, c)
        else:
            u = self.flow(c).sample()
        return torch.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0)

    def layers(self, u: torch.Tensor, energies: torch.Tensor) -> torch.Tensor:
        """Standardised features u (B, n_layers), energies (B,) MeV -> layer energies (B,
        n_layers) MeV, >= 0, summing to at most E_inc."""
        raw = torch.addcmul(self.mean, u, self.std)
        total = torch.exp(raw[:, :1].clamp(max=0.0)) * energies.unsqueeze(1)
        r = torch.sigmoid(raw[:, 1:])
        left = torch.cumprod(1.0 - r, dim=1)  # share left after layers 0..l
        before = torch.cat([torch.ones_like(left[:, :1]), left[:, :-1]], dim=1)
        return torch.cat([r * before, left[:, -1:]], dim=1) * total

    def extra_repr(self) -> str:
        return f"n_layers={self.n_layers}, kind={self.kind!r}"


# --------------------------------------------------------------------------------------------
# Variational autoencoder
# --------------------------------------------------------------------------------------------


@register("calo model", "vae")
class CaloVAE(CaloModel):
    """Conditional variational autoencoder (arXiv:1312.6114) on the preprocessed showers.

    Encoder MLP ``[y, c] (D + 1) -> hidden -> (mu, log var)`` of the latent (``latent_dim``);
    decoder MLP ``[z, c] -> reversed(hidden) -> D`` gives the mean of a Gaussian of learned
    width per feature (``sigma = min_sigma + softplus(rho)``, so no feature can collapse the
    likelihood). Loss: negative ELBO per feature, ``(NLL + beta * KL) / D``. ``sample`` decodes
    z ~ N(0, 1) to the mean and adds ``sample_noise`` times the decoder's Gaussian noise
    (``sample_noise * sigma * N(0, 1)`` per feature; 0: the mean, 1: a draw of the full
    likelihood, which restores the fluctuations the mean lacks); the inverse preprocessing
    gives the shapes per layer (normalised) and the layer energies.

    ``zero_mask``: the decoder also gives the probability of each voxel to be filled
    (Bernoulli, binary cross-entropy; the Gaussian likelihood then covers only the filled
    voxels), and ``sample`` draws which voxels are empty: a Gaussian alone puts the mean of a
    voxel that is sometimes empty between the two, so too many voxels get a little energy.

    ``energy_model`` (``"flow"``, ``"iaf"`` or ``"spline_iaf"``): CaloFlow's split in two models
    (arXiv:2106.05285). A :class:`LayerEnergyFlow` (``energy_transforms``, ``energy_hidden``,
    ``energy_bins``) learns the layer energies given E_inc; the VAE learns only the
    normalised shapes (D = n_voxels), conditioned on ``[c, u]`` (1 + n_layers: c and the
    standardised layer energies u of the flow). The loss is the sum of the two (the VAE's
    ELBO per voxel and the flow's NLL per layer); ``sample`` draws u from the flow, then the
    shapes given u, and scales each layer's shape to its energy. Sampling cost: the decoder
    plus the flow (``"iaf"``, ``"spline_iaf"``: one pass per transform; ``"flow"``: n_layers
    passes).

    ``conditional_sigma``: the width of the Gaussian of each feature depends on z and the
    context (the decoder gives an offset to rho per shower): the shape fluctuations of a
    1 GeV shower (a few hundred spots) are several times those of a 1 TeV one, which one
    width per feature cannot follow. ``True`` (or ``"voxel"``): an offset per feature;
    ``"layer"``: one factor per layer, ``sigma = (min_sigma + softplus(rho)) * exp(a_l)``
    (n_layers decoder outputs instead of D, and no per-voxel softplus in sampling).

    ``latent_prior="flow"``: the prior of z is a conditional masked autoregressive flow (zuko
    MAF, ``prior_transforms`` affine transforms of ``prior_hidden``, context as the decoder's)
    learned with the VAE, instead of N(0, 1) (a learned prior, as in the variational lossy
    autoencoder, arXiv:1611.02731): the KL term becomes E_q[log q(z)] - log p(z | c) at the
    drawn z, and ``sample`` draws z from the flow (latent_dim passes per transform;
    ``latent_prior="iaf"``: an affine inverse autoregressive flow, one pass per transform to
    sample, latent_dim passes per transform in training). The prior
    follows the aggregate posterior, so z can carry the shower-to-shower fluctuations (with a
    small ``beta``) without the samples missing the region the decoder was trained on.

    ``decoder_rank``: the decoder's last layer (widest: hidden[0] x the outputs, one to three
    per voxel) factorised through a linear bottleneck of this width, ``hidden[0] -> rank ->
    outputs``, fewer multiply-adds per shower (rank 32 after 128: 3.5x fewer in that layer).

    D = n_voxels + n_layers + 1. Default (hidden (256, 128), latent 16) on 368 voxels in 5 layers:
    about 2.7e5 parameters (``hidden=(64, 32)``: 5e4, sampling about 3x faster).
    """

    description = "conditional VAE, arXiv:1312.6114 (per-layer normalisation of arXiv:2106.05285)"

    def __init__(
        self,
        n_voxels: int,
        layer_sizes: Sequence[int] | None = None,
        latent_dim: int = 16,
        hidden: Sequence[int] = (256, 128),
        beta: float = 1.0,
        min_sigma: float = 0.05,
        sample_noise: float = 0.0,
        energy_model: str | None = None,
        energy_transforms: int = 3,
        energy_hidden: Sequence[int] = (64, 64),
        energy_bins: int = 8,
        zero_mask: bool = False,
        latent_prior: str = "normal",
        prior_transforms: int = 3,
        conditional_sigma: bool | str = False,
        prior_hidden: Sequence[int] = (64, 64),
        decoder_rank: int | None = None,
        e_min: float = E_MIN_MEV,
        e_max: float = E_MAX_MEV,
        threshold: float | None = None,
    ) -> None:
        super().__init__(n_voxels, layer_sizes, e_min, e_max, threshold)
        if latent_prior not in LATENT_PRIORS:
            raise ConfigError(f"latent_prior must be one of {LATENT_PRIORS}; got {latent_prior!r}.")
        if int(prior_transforms) < 1:
            raise ConfigError(f"prior_transforms must be >= 1; got {prior_transforms}.")
        if not float(sample_noise) >= 0:
            raise ConfigError(f"sample_noise must be >= 0; got {sample_noise}.")
        if not isinstance(zero_mask, bool):
            raise ConfigError(f"zero_mask must be true or false; got {zero_mask!r}.")
        modes = {False: None, True: "voxel", "voxel": "voxel", "layer": "layer"}
        if isinstance(conditional_sigma, (int, float)) and not isinstance(conditional_sigma, bool):
            conditional_sigma = str(conditional_sigma)  # 1 is not True here
        if conditional_sigma not in modes:
            raise ConfigError(
                'conditional_sigma must be true (one offset per feature), "layer" (one '
                f"factor per layer) or false; got {conditional_sigma!r}."
            )
        self.zero_mask = zero_mask
        self.sigma_mode = modes[conditional_sigma]
        self.conditional_sigma = self.sigma_mode is not None
        hidden = tuple(int(h) for h in hidden)
        self.latent_dim, self.beta, self.min_sigma = int(latent_dim), float(beta), min_sigma
        self.sample_noise = float(sample_noise)
        n_context = self._add_energy_model(
            energy_model, energy_transforms, energy_hidden, energy_bins
        )
        n_out = self.features if self.energy is None else self.n_voxels
        self.encoder = _mlp([n_out + n_context, *hidden, 2 * self.latent_dim])
        n_mask = self.n_voxels if zero_mask else 0
        n_sigma = {None: 0, "voxel": n_out, "layer": len(self.layer_sizes)}[self.sigma_mode]
        widths = [self.latent_dim + n_context, *reversed(hidden), n_out + n_mask + n_sigma]
        if decoder_rank is None:
            self.decoder = _mlp(widths)
        else:
            rank_ok = isinstance(decoder_rank, int) and not isinstance(decoder_rank, bool)
            if not (rank_ok and 1 <= decoder_rank < widths[-1]):
                raise ConfigError(
                    f"decoder_rank must be an integer from 1 to {widths[-1] - 1} (the "
                    f"decoder's outputs); got {decoder_rank!r}."
                )
            bottleneck = _mlp([*widths[:-1], decoder_rank])  # linear into the bottleneck
            self.decoder = nn.Sequential(*bottleneck, nn.Linear(decoder_rank, widths[-1]))
        self.rho = nn.Parameter(torch.zeros(n_out))
        self.latent_prior = latent_prior
        self.prior: nn.Module | None = None
        if latent_prior == "flow":
            import zuko

            self.prior = zuko.flows.MAF(
                self.latent_dim,
                context=n_context,
                transforms=int(prior_transforms),
                hidden_features=tuple(int(h) for h in prior_hidden),
            )
        elif latent_prior == "iaf":
            self.prior = _affine_iaf(self.latent_dim, n_context, prior_transforms, prior_hidden)

    def encode(self, y: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y (B, D), c (B, 1) (with the energy model: (B, 1 + n_layers)) -> (mu, log_var),
        each (B, latent_dim)."""
        mu, log_var = self.encoder(torch.cat([y, c], 1)).chunk(2, dim=1)
        return mu, log_var.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim), c as in :meth:`encode` -> mean of y (B, D); with ``zero_mask``
        followed by the logits (B, n_voxels) of each voxel being filled, with
        ``conditional_sigma`` then by the offsets (B, D) of the noise parameter rho."""
        return self.decoder(torch.cat([z, c], 1))

    def _sigma(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output (B, ...) -> width of the Gaussian of each feature: (D,), or (B, D)
        with ``conditional_sigma``."""
        rho = self.rho
        if self.sigma_mode == "voxel":
            rho = rho + out[:, out.shape[1] - rho.shape[0] :]
        sigma = self.min_sigma + nn.functional.softplus(rho)
        if self.sigma_mode != "layer":
            return sigma
        scale = self._layer_scale(out)[:, self.preprocessing.layer_index]  # (B, n_voxels)
        rest = sigma.shape[0] - self.n_voxels  # the energy features (no energy model)
        return sigma * torch.cat([scale, scale.new_ones(scale.shape[0], rest)], dim=1)

    def _layer_scale(self, out: torch.Tensor) -> torch.Tensor:
        """``conditional_sigma="layer"``: decoder output -> factor of each layer's widths
        (B, n_layers), exp of the last n_layers outputs (clamped to [-6, 6])."""
        n_layers = len(self.layer_sizes)
        return torch.exp(out[:, out.shape[1] - n_layers :].clamp(-6.0, 6.0))

    def _elbo(self, y: torch.Tensor, c: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per feature of y (B, D) given c; ``filled`` (B, n_voxels): the
        voxels with energy (with ``zero_mask`` only those enter the Gaussian likelihood)."""
        mu, log_var = self.encode(y, c)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        out = self.decode(z, c)
        sigma = self._sigma(out)
        d = y.shape[1]
        nll = 0.5 * ((y - out[:, :d]) / sigma) ** 2 + torch.log(sigma)
        if self.zero_mask:
            n, f = self.n_voxels, filled.to(y.dtype)
            logits = out[:, d : d + n]
            bce = nn.functional.binary_cross_entropy_with_logits(logits, f, reduction="none")
            nll = torch.cat([nll[:, :n] * f + bce, nll[:, n:]], dim=1)
        return (nll.sum(1) + self.beta * self._kl(mu, log_var, z, c)).mean() / d

    def _kl(
        self, mu: torch.Tensor, log_var: torch.Tensor, z: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """KL(q(z | y, c) || p(z | c)) per shower (B,): exact for the N(0, 1) prior; with the
        flow prior E_q[log q] (exact: minus the entropy of q) - log p(z | c) at the drawn z
        (an unbiased one-draw estimate)."""
        if self.prior is None:
            return (0.5 * (mu**2 + log_var.exp() - 1.0 - log_var)).sum(1)
        neg_entropy = -0.5 * (1.0 + math.log(2 * math.pi) + log_var).sum(1)
        return neg_entropy - self.prior(c).log_prob(z)

    def loss(self, energies: torch.Tensor, showers: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per feature (nats), batch mean; with the energy model plus the
        flow's negative log-likelihood per layer of the (dequantised) layer energies."""
        c = self.condition(energies)
        y = self.preprocessing(energies, showers)
        filled = showers > 0
        if self.energy is None:
            return self._elbo(y, c, filled)
        u, nll = self._energy_terms(energies, showers)
        return self._elbo(y[:, : self.n_voxels], torch.cat([c, u], 1), filled) + nll

    def _latent(self, c: torch.Tensor) -> torch.Tensor:
        """c (B, n_context) -> z (B, latent_dim) drawn from the prior."""
        if self.prior is None:
            return torch.randn(c.shape[0], self.latent_dim, device=c.device)
        return torch.nan_to_num(self.prior(c).sample(), nan=0.0, posinf=0.0, neginf=0.0)

    def _sample(self, e: torch.Tensor, into: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`CaloModel._sample`; with an energy model, ``zero_mask`` and
        ``conditional_sigma=True`` on the CPU (``fused_sampling``) the voxels are drawn by
        the compiled :func:`colliderlab.calosim.kernels.vae_voxels` from the decoder output:
        the fill draw, the noise, the fractions and their normalisation in one pass, with
        the kernels' counter-based random numbers (keyed from PyTorch's generator), written
        to ``into`` where it is a C-contiguous float32 tensor of the right shape."""
        fused = self._fused(e) and self.zero_mask and self.sigma_mode == "voxel"
        if not fused or self.energy is None:
            return super()._sample(e)
        from colliderlab.calosim import kernels

        c = self.condition(e)
        u = self.energy.sample(c, fused=True)
        cu = torch.cat([c, u], 1)
        x = torch.cat([self._latent(cu), cu], 1)
        if self.fused_precision == "bfloat16":  # the last (widest) layer; see fused_precision
            last, bf16 = self.decoder[-1], torch.bfloat16
            h = self.decoder[:-1](x).to(bf16)
            y = torch.addmm(last.bias.to(bf16), h, last.weight.to(bf16).T)
            out = y.view(torch.int16).numpy().view(np.uint16)  # the kernel reads the bits
        else:
            out = self.decoder(x).float().contiguous().numpy()
        prep, n = self.preprocessing, self.n_voxels
        shape = (e.shape[0], n)
        ok = into is not None and into.dtype == torch.float32 and into.shape == shape
        target = into.numpy() if ok and into.is_contiguous() else None
        starts = np.cumsum((0, *self.layer_sizes), dtype=np.int64)
        key = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        showers = kernels.vae_voxels(
            out,
            self.rho.detach().float().numpy(),
            prep.std[:n].float().contiguous().numpy(),
            prep.mean[:n].float().contiguous().numpy(),
            starts,
            self.energy.layers(u, e).float().contiguous().numpy(),
            np.uint64(key),
            self.sample_noise,
            float(self.min_sigma),
            prep.alpha,
            np.float32(prep.threshold),
            into=target,
        )
        return into if target is not None else torch.from_numpy(showers)

    def generate(self, c: torch.Tensor) -> torch.Tensor:
        """c (B, 1) -> y (B, D); with the energy model c is (B, 1 + n_layers) (c and u) and
        y the shape part (B, n_voxels)."""
        z = self._latent(c)
        out = self.decode(z, c)
        d = self.rho.shape[0]
        y = out[:, :d].contiguous() if out.shape[1] > d else out
        if self.zero_mask:  # empty voxels: a logit of -1e30, which reads out as zero
            logits = out[:, d : d + self.n_voxels]
            empty = (torch.rand_like(logits) >= torch.sigmoid(logits)).to(y.dtype)
            y[:, : self.n_voxels].add_(empty, alpha=-_EMPTY_LOGIT)  # (masked_fill_: 20x slower)
        if self.sample_noise > 0 and self.sigma_mode == "layer":  # no (B, D) softplus
            base = self.min_sigma + nn.functional.softplus(self.rho)
            noise = torch.randn_like(y).mul_(self.sample_noise * base)
            scale = self._layer_scale(out)
            views = noise[:, : self.n_voxels].split(self.layer_sizes, dim=1)
            for layer, view in enumerate(views):
                view.mul_(scale[:, layer : layer + 1])
            y.add_(noise)  # y: a copy of the decoder's mean columns (out has more)
        elif self.sample_noise > 0:
            y = y.addcmul(torch.randn_like(y), self.sample_noise * self._sigma(out))
        return y


# --------------------------------------------------------------------------------------------
# Wasserstein GAN with gradient penalty
# --------------------------------------------------------------------------------------------


@register("calo model", "wgan")
class CaloWGAN(CaloModel):
    """Conditional Wasserstein GAN with gradient penalty (arXiv:1704.00028), CaloGAN-like.

    CaloGAN (arXiv:1705.02355) generates each layer with a convolutional network; here
    generator and critic are MLPs on the preprocessed representation (layer energies and
    normalised shapes), which carries CaloGAN's per-layer energy information explicitly:

    * generator ``[z (latent_dim), c] -> hidden -> y (D)``, LeakyReLU(0.2);
    * critic ``[y (D), c] -> critic_hidden -> score``, LeakyReLU(0.2), no normalisation.

    ``loss`` is the critic loss ``E[D(fake)] - E[D(real)] + gp_weight * E[(|grad D| - 1)^2]``
    on interpolates; ``generator_loss`` is ``-E[D(G(z, c))]``. A training step updates the
    critic; every ``n_critic``-th step also the generator (Adam, betas (0.5, 0.9)).
    D = n_voxels + n_layers + 1. Default (hidden (256, 256), latent 32) on 368 voxels in 5 layers:
    about 3.3e5 parameters.
    """

    description = "conditional WGAN-GP, arXiv:1704.00028 (CaloGAN, arXiv:1705.02355)"

    def __init__(
        self,
        n_voxels: int,
        layer_sizes: Sequence[int] | None = None,
        latent_dim: int = 32,
        hidden: Sequence[int] = (256, 256),
        critic_hidden: Sequence[int] = (256, 256),
        n_critic: int = 5,
        gp_weight: float = 10.0,
        e_min: float = E_MIN_MEV,
        e_max: float = E_MAX_MEV,
        threshold: float | None = None,
    ) -> None:
        super().__init__(n_voxels, layer_sizes, e_min, e_max, threshold)
        if int(n_critic) < 1:
            raise ConfigError(f"n_critic must be >= 1; got {n_critic}.")
        self.latent_dim, self.n_critic, self.gp_weight = int(latent_dim), int(n_critic), gp_weight

        def leaky() -> nn.Module:
            return nn.LeakyReLU(0.2)

        self.generator = _mlp([self.latent_dim + 1, *hidden, self.features], leaky)
        self.critic = _mlp([self.features + 1, *critic_hidden, 1], leaky)

    def generate(self, c: torch.Tensor) -> torch.Tensor:
        z = torch.randn(c.shape[0], self.latent_dim, device=c.device)
        return self.generator(torch.cat([z, c], 1))

    def score(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Critic: y (B, D), c (B, 1) -> (B,)."""
        return self.critic(torch.cat([y, c], 1)).squeeze(1)

    def loss(self, energies: torch.Tensor, showers: torch.Tensor) -> torch.Tensor:
        """Critic loss with gradient penalty (scalar); the generated batch is detached."""
        c = self.condition(energies)
        real = self.preprocessing(energies, showers)
        with torch.no_grad():
            fake = self.generate(c)
        t = torch.rand(real.shape[0], 1, device=real.device)
        create_graph = torch.is_grad_enabled()  # no graph of the penalty when evaluating
        with torch.enable_grad():
            mixed = (t * real + (1.0 - t) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(
                self.score(mixed, c).sum(), mixed, create_graph=create_graph
            )
        penalty = ((grad.norm(dim=1) - 1.0) ** 2).mean()
        return self.score(fake, c).mean() - self.score(real, c).mean() + self.gp_weight * penalty

    def generator_loss(self, energies: torch.Tensor) -> torch.Tensor:
        """-E[critic(G(z, c))] (scalar)."""
        c = self.condition(energies)
        return -self.score(self.generate(c), c).mean()

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {
            "critic": torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9)),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.9)),
        }

    def training_step(
        self,
        energies: torch.Tensor,
        showers: torch.Tensor,
        optimizers: dict[str, torch.optim.Optimizer],
        step: int,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """A critic step; every ``n_critic``-th step (step counted from 0) a generator step.
        (One process only: ``loss_fn`` must be None.)

        Returns ``loss`` (the critic loss) and ``generator_loss`` (NaN when not updated)."""
        if loss_fn is not None:
            raise ConfigError(
                "the WGAN trains in one process only (its critic and generator steps are not "
                "set up for DistributedDataParallel); run it without torchrun."
            )
        optimizers["critic"].zero_grad()
        loss = self.loss(energies, showers)
        loss.backward()
        optimizers["critic"].step()
        out = {"loss": float(loss.detach()), "generator_loss": math.nan}
        if (step + 1) % self.n_critic == 0:
            self.critic.requires_grad_(False)
            try:
                optimizers["generator"].zero_grad()
                g_loss = self.generator_loss(energies)
                g_loss.backward()
                optimizers["generator"].step()
            finally:
                self.critic.requires_grad_(True)
            out["generator_loss"] = float(g_loss.detach())
        return out


# --------------------------------------------------------------------------------------------
# Normalising flow
# --------------------------------------------------------------------------------------------


@register("calo model", "flow")
class CaloFlow(CaloModel):
    """Conditional normalising flow (zuko) on the preprocessed showers, after CaloFlow.

    CaloFlow (arXiv:2106.05285) uses one flow for the layer energies and one for the
    normalised shapes; here one masked autoregressive flow (MAF, arXiv:1705.07057) with
    ``transforms`` affine transformations (or rational-quadratic splines with ``spline_bins``
    bins: NSF, arXiv:1906.04032) models both, as the representation y (D = n_voxels +
    n_layers + 1) holds the energies next to the shapes; context c (B, 1). The training data
    are dequantised (uniform noise at the scale of the floors of the preprocessing, as
    CaloFlow adds noise to the voxels), the loss is the negative log-likelihood per feature.

    ``n_components``: model the leading principal components of y instead of y (fitted by
    ``prepare``, each scaled to unit variance); sampling maps them back (a lossy
    reconstruction). This keeps the flow small on large geometries (6480 voxels): use a few
    hundred components there. ``passes=2`` turns the autoregressive transforms into coupling
    layers (fast sampling, one pass instead of D).

    Default (4 affine transforms, hidden (256, 256)) on 368 voxels in 5 layers: about 1.4e6
    parameters. Sampling a full MAF takes D sequential network passes per transform.
    """

    description = "conditional MAF/NSF (zuko), arXiv:1705.07057, after CaloFlow arXiv:2106.05285"

    def __init__(
        self,
        n_voxels: int,
        layer_sizes: Sequence[int] | None = None,
        transforms: int = 4,
        hidden: Sequence[int] = (256, 256),
        spline_bins: int = 0,
        n_components: int | None = None,
        passes: int | None = None,
        e_min: float = E_MIN_MEV,
        e_max: float = E_MAX_MEV,
        threshold: float | None = None,
    ) -> None:
        import zuko

        super().__init__(n_voxels, layer_sizes, e_min, e_max, threshold)
        if n_components is not None and not 1 <= int(n_components) <= self.features:
            raise ConfigError(
                f"n_components must be between 1 and n_voxels + n_layers + 1 = {self.features}; "
                f"got {n_components}."
            )
        self.n_components = None if n_components is None else int(n_components)
        dim = self.n_components or self.features
        if self.n_components is not None:
            self.register_buffer("basis", torch.eye(self.features)[:, :dim].clone())
            self.register_buffer("scale", torch.ones(dim))
        kwargs: dict[str, Any] = {
            "transforms": int(transforms),
            "hidden_features": tuple(int(h) for h in hidden),
        }
        if passes is not None:
            kwargs["passes"] = int(passes)
        if dim == 1:  # zuko's autoregressive transforms need two features
            raise ConfigError("the flow needs at least 2 features; raise n_components.")
        if spline_bins:
            self.flow = zuko.flows.NSF(dim, context=1, bins=int(spline_bins), **kwargs)
        else:
            self.flow = zuko.flows.MAF(dim, context=1, **kwargs)

    @torch.no_grad()
    def prepare(self, energies: Any, showers: Any) -> CaloFlow:
        super().prepare(energies, showers)
        if self.n_components is not None:
            e, x = self._check(energies, showers)
            y = self.preprocessing(e, x).double()
            _, sv, vh = torch.linalg.svd(y - y.mean(0), full_matrices=False)
            k = self.n_components
            self.basis.copy_(vh[:k].T)
            self.scale.copy_((sv[:k] / math.sqrt(max(len(y), 1))).clamp_min(1e-3))
        return self

    def _to_flow(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.n_components is None else (y @ self.basis) / self.scale

    def _from_flow(self, p: torch.Tensor) -> torch.Tensor:
        return p if self.n_components is None else (p * self.scale) @ self.basis.T

    def loss(self, energies: torch.Tensor, showers: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per feature (nats) of the dequantised batch."""
        y = self._to_flow(self.preprocessing(energies, showers, dequantise=True))
        return -self.flow(self.condition(energies)).log_prob(y).mean() / y.shape[1]

    def generate(self, c: torch.Tensor) -> torch.Tensor:
        return self._from_flow(self.flow(c).sample())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}\nn_components={self.n_components}"


# --------------------------------------------------------------------------------------------
# Flow matching
# --------------------------------------------------------------------------------------------


@register("calo model", "flow_matching")
class CaloFlowMatching(CaloModel):
    """Conditional flow matching (arXiv:2210.02747) with straight paths (rectified flow).

    A velocity MLP ``v([y_t (D), c, fourier(t) (2 * n_frequencies)]) -> D`` (SiLU) is trained
    on ``y_t = (1 - t) y_0 + t y_1`` (y_0 ~ N(0, 1), y_1 the preprocessed, dequantised shower,
    t ~ U(0, 1)) to regress ``y_1 - y_0`` (loss: mean squared error). ``sample`` integrates
    dy/dt = v from t = 0 to 1 with ``steps`` midpoint steps (2 * steps network passes).
    The empty voxels are the dequantised floor of the shape logits, far below the filled ones:
    the flow carries them as a mode of their own and samples below the floor read out empty.

    ``energy_model`` (``"flow"``, ``"iaf"`` or ``"spline_iaf"``), as in :class:`CaloVAE`: a
    :class:`LayerEnergyFlow` learns the layer energies given E_inc and the flow matching
    only the normalised shapes (D = n_voxels) given ``[c, u]``; the loss is the sum of the
    two. Unlike the VAE's independent per-voxel noise, the flow maps one Gaussian draw to the
    whole shower: its fluctuations are correlated between voxels.

    ``occupancy``: each voxel gets two channels instead of one, whether it is filled (+1 or
    -1; sampled: filled if > 0) and its shape logit standardised over the filled voxels only
    (0 for an empty one): the empty voxels are no longer a far-away mode of the logit, which
    the flow smears into many small deposits.

    Default (hidden (256, 256, 256), 16 steps) on 368 voxels in 5 layers: about 3.3e5
    parameters.
    """

    description = "conditional flow matching, arXiv:2210.02747"

    def __init__(
        self,
        n_voxels: int,
        layer_sizes: Sequence[int] | None = None,
        hidden: Sequence[int] = (256, 256, 256),
        steps: int = 16,
        n_frequencies: int = 8,
        energy_model: str | None = None,
        energy_transforms: int = 3,
        energy_hidden: Sequence[int] = (64, 64),
        energy_bins: int = 8,
        occupancy: bool = False,
        e_min: float = E_MIN_MEV,
        e_max: float = E_MAX_MEV,
        threshold: float | None = None,
    ) -> None:
        super().__init__(n_voxels, layer_sizes, e_min, e_max, threshold)
        if int(steps) < 1:
            raise ConfigError(f"steps must be >= 1; got {steps}.")
        self.steps = int(steps)
        self.register_buffer(
            "frequencies", math.pi * 2.0 ** torch.arange(int(n_frequencies), dtype=torch.float32)
        )
        n_context = self._add_energy_model(
            energy_model, energy_transforms, energy_hidden, energy_bins
        )
        if not isinstance(occupancy, bool):
            raise ConfigError(f"occupancy must be true or false; got {occupancy!r}.")
        self.occupancy = occupancy
        self.n_out = self.features if self.energy is None else self.n_voxels
        if occupancy:  # (buffers only then: the checkpoints without it keep their keys)
            self.n_out += self.n_voxels
            self.register_buffer("filled_mean", torch.zeros(self.n_voxels))
            self.register_buffer("filled_std", torch.ones(self.n_voxels))
        n_in = self.n_out + n_context + 2 * int(n_frequencies)
        self.velocity = _mlp([n_in, *hidden, self.n_out])

    @torch.no_grad()
    def prepare(self, energies: Any, showers: Any) -> CaloFlowMatching:
        super().prepare(energies, showers)
        if self.occupancy:  # mean and std of each voxel's shape logit where it is filled
            e, x = self._check(energies, showers)
            prep, n = self.preprocessing, self.n_voxels
            raw = (prep(e, x)[:, :n] * prep.std[:n] + prep.mean[:n]).double()
            filled = (x > 0).double()
            count = filled.sum(0)
            mean = (raw * filled).sum(0) / count.clamp_min(1)
            var = (((raw - mean) ** 2) * filled).sum(0) / count.clamp_min(1)
            self.filled_mean.copy_(torch.where(count > 0, mean, 0.0))
            self.filled_std.copy_(torch.where(count > 1, var.sqrt(), 1.0).clamp_min(1e-2))
        return self

    def encode_occupancy(self, y: torch.Tensor, showers: torch.Tensor) -> torch.Tensor:
        """Representation y (B, D) of the showers (B, n_voxels) -> the flow's target with
        ``occupancy``: ``[filled (+1/-1), standardised shape logits (0 if empty), rest]``."""
        prep, n = self.preprocessing, self.n_voxels
        filled = showers > 0
        raw = torch.addcmul(prep.mean[:n], y[:, :n], prep.std[:n])
        shape = torch.where(filled, (raw - self.filled_mean) / self.filled_std, 0.0)
        return torch.cat([2.0 * filled.to(y.dtype) - 1.0, shape, y[:, n:]], dim=1)

    def decode_occupancy(self, out: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode_occupancy`: empty voxels (filled <= 0) get the logit
        -inf, which reads out as zero."""
        prep, n = self.preprocessing, self.n_voxels
        raw = torch.addcmul(self.filled_mean, out[:, n : 2 * n], self.filled_std)
        raw = raw.masked_fill(out[:, :n] <= 0, -math.inf)
        return torch.cat([(raw - prep.mean[:n]) / prep.std[:n], out[:, 2 * n :]], dim=1)

    def field(self, y: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """y (B, D), t (B, 1) in [0, 1], c (B, 1) (with the energy model (B, 1 + n_layers))
        -> velocity (B, D)."""
        angle = t * self.frequencies
        return self.velocity(torch.cat([y, c, torch.sin(angle), torch.cos(angle)], 1))

    def loss(self, energies: torch.Tensor, showers: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the velocity (per feature); with the energy model plus the
        energy flow's negative log-likelihood per layer."""
        c = self.condition(energies)
        y1 = self.preprocessing(energies, showers, dequantise=True)
        if self.occupancy:
            y1 = self.encode_occupancy(y1, showers)
        nll = None
        if self.energy is not None:
            u, nll = self._energy_terms(energies, showers)
            y1, c = y1[:, : self.n_out], torch.cat([c, u], 1)
        y0 = torch.randn_like(y1)
        t = torch.rand(y1.shape[0], 1, device=y1.device)
        mse = ((self.field((1 - t) * y0 + t * y1, t, c) - (y1 - y0)) ** 2).mean()
        return mse if nll is None else mse + nll

    def generate(self, c: torch.Tensor) -> torch.Tensor:
        """c (B, 1) -> y (B, D); with the energy model c is (B, 1 + n_layers) (c and u) and
        y the shape part (B, n_voxels)."""
        y = torch.randn(c.shape[0], self.n_out, device=c.device)
        dt = 1.0 / self.steps
        for i in range(self.steps):
            t = torch.full_like(c[:, :1], i * dt)
            half = y + 0.5 * dt * self.field(y, t, c)
            y = y + dt * self.field(half, t + 0.5 * dt, c)
        return self.decode_occupancy(y) if self.occupancy else y
