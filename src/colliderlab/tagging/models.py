"""Deep-learning jet taggers, registered as ``@register("tagger", NAME)``.

Particle-based taggers take the three arrays of :mod:`colliderlab.tagging.features` as float32
tensors, ``forward(features, vectors, mask)``:

* ``features`` (B, N, 13): the columns of :data:`colliderlab.tagging.features.FEATURES`;
* ``vectors`` (B, N, 4): (px, py, pz, E) in GeV;
* ``mask`` (B, N): 1 for a real particle, 0 for padding (padded rows are all zero); every jet
  has at least one real particle.

The image tagger takes ``forward(image)`` with ``image`` (B, 1, H, W), made by :func:`jet_images`.
Every tagger returns one logit per jet, shape (B,), signal = 1 (to be trained with
``BCEWithLogitsLoss``). The class attribute ``inputs`` names the arguments of ``forward``.

===============  ===================  ===========================================
name             class                paper
===============  ===================  ===========================================
``pfn``          ParticleFlowNetwork  Komiske, Metodiev, Thaler, arXiv:1810.05165
``efn``          EnergyFlowNetwork    Komiske, Metodiev, Thaler, arXiv:1810.05165
``particlenet``  ParticleNet          Qu, Gouskos, arXiv:1902.08570
``part``         ParticleTransformer  Qu, Li, Qian, arXiv:2202.03772
``lorentznet``   LorentzNet           Gong et al., arXiv:2201.08187
``cnn``          JetImageCNN          Kasieczka et al., arXiv:1701.08784
===============  ===================  ===========================================

The default sizes are small (a few 10^4 to 10^5 parameters) so that the models train on a CPU
in minutes; each docstring gives the paper's sizes. In eval mode every particle-based tagger is
invariant (up to float rounding) under permutations of the particles and under added padding.
Batch-normalisation layers include padded (zeroed) entries in their training-mode statistics;
in eval mode they are fixed affine maps, so padding has no effect there.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from colliderlab.core.registry import register
from colliderlab.tagging.features import FEATURES, N_FEATURES, PF_CODES, F, particle_inputs

PARTICLE_INPUTS = ("features", "vectors", "mask")
IMAGE_INPUTS = ("image",)
#: Default side of a jet image in pixels.
DEFAULT_NPIX = 33
#: ONNX opset of :func:`export_onnx` (the lowest the torch.export-based exporter targets).
ONNX_OPSET = 18

#: Columns of ``features`` used as the LorentzNet scalars (charge and the PF-type one-hots).
_SCALAR_COLUMNS = (F["charge"], *(F[name] for name in FEATURES[F["is_ch_hadron"] :]))
_ANGLE_COLUMNS = (F["deta"], F["dphi"])


def _check_particle_inputs(
    model: nn.Module, features: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor
) -> None:
    """Raise ValueError unless features (B, N, 13), vectors (B, N, 4) and mask (B, N) agree."""
    name = type(model).__name__
    if features.dim() != 3 or features.shape[-1] != N_FEATURES:
        raise ValueError(
            f"{name}: features must have shape (B, N, {N_FEATURES}) with the columns of "
            f"colliderlab.tagging.features.FEATURES, got {tuple(features.shape)}; build them "
            "with colliderlab.tagging.features.particle_inputs"
        )
    batch, n = features.shape[0], features.shape[1]
    if vectors.dim() != 3 or vectors.shape[0] != batch or vectors.shape[1] != n:
        raise ValueError(
            f"{name}: vectors must have shape (B, N, 4) = ({batch}, {n}, 4) like features, "
            f"got {tuple(vectors.shape)}"
        )
    if vectors.shape[2] != 4:
        raise ValueError(
            f"{name}: vectors must hold (px, py, pz, E) in their last axis, shape (B, N, 4), "
            f"got {tuple(vectors.shape)}"
        )
    if mask.dim() != 2 or mask.shape[0] != batch or mask.shape[1] != n:
        raise ValueError(
            f"{name}: mask must have shape (B, N) = ({batch}, {n}) like features (1 = real "
            f"particle, 0 = padding), got {tuple(mask.shape)}"
        )


def _mlp(sizes: Sequence[int], final_activation: bool = True) -> nn.Sequential:
    """Fully connected ReLU network with layer widths ``sizes`` (input width first)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, N, C) over the real particles of mask (B, N) -> (B, C)."""
    return (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)


class _TransposedBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last axis of a (..., C) tensor (channels last)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., C) -> (..., C), normalised per channel."""
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


# --------------------------------------------------------------------------------------------
# Particle and Energy Flow Networks
# --------------------------------------------------------------------------------------------


@register("tagger", "pfn")
class ParticleFlowNetwork(nn.Module):
    """Particle Flow Network: ``F(sum_i Phi(p_i))`` over the real particles.

    ``Phi`` is an MLP applied to every particle's 13 features, the latent vectors are summed
    over the real particles (a permutation-invariant deep set), and ``F`` maps the sum to one
    logit. The paper uses Phi = (100, 100, 256) and F = (100, 100, 100); the defaults here are
    Phi = (64, 64, 128), F = (64, 64), about 2.6e4 parameters.

    Args:
        phi_sizes: widths of the per-particle network; the last one is the latent dimension.
        f_sizes: hidden widths of the network after the sum.
    """

    inputs = PARTICLE_INPUTS
    description = "Particle Flow Network, deep set over all particle features (arXiv:1810.05165)"

    def __init__(
        self, phi_sizes: Sequence[int] = (64, 64, 128), f_sizes: Sequence[int] = (64, 64)
    ) -> None:
        super().__init__()
        self.phi = _mlp([N_FEATURES, *phi_sizes])
        self.f = nn.Sequential(_mlp([phi_sizes[-1], *f_sizes]), nn.Linear(f_sizes[-1], 1))

    def forward(
        self, features: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """features (B, N, 13), vectors (B, N, 4) (unused), mask (B, N) -> logits (B,)."""
        _check_particle_inputs(self, features, vectors, mask)
        latent = (self.phi(features) * mask.unsqueeze(-1)).sum(1)  # (B, L)
        return self.f(latent).squeeze(-1)


@register("tagger", "efn")
class EnergyFlowNetwork(nn.Module):
    """Energy Flow Network: ``F(sum_i z_i Phi(deta_i, dphi_i))``, infrared and collinear safe.

    ``z_i = pT_i / sum_j pT_j`` is computed from the ``log_pt`` feature over the real particles
    and ``Phi`` sees only the angular coordinates, so the output is linear in the energies: a
    particle with pT -> 0 has no effect and splitting a particle into collinear fragments gives
    the same sum. Paper sizes Phi = (100, 100, 256), F = (100, 100, 100); defaults
    Phi = (64, 64, 128), F = (64, 64), about 2.5e4 parameters.

    Args:
        phi_sizes: widths of the angular network; the last one is the latent dimension.
        f_sizes: hidden widths of the network after the weighted sum.
    """

    inputs = PARTICLE_INPUTS
    description = "Energy Flow Network, IRC-safe pT-weighted deep set on angles (arXiv:1810.05165)"

    def __init__(
        self, phi_sizes: Sequence[int] = (64, 64, 128), f_sizes: Sequence[int] = (64, 64)
    ) -> None:
        super().__init__()
        self.phi = _mlp([len(_ANGLE_COLUMNS), *phi_sizes])
        self.f = nn.Sequential(_mlp([phi_sizes[-1], *f_sizes]), nn.Linear(f_sizes[-1], 1))

    def forward(
        self, features: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """features (B, N, 13), vectors (B, N, 4) (unused), mask (B, N) -> logits (B,)."""
        _check_particle_inputs(self, features, vectors, mask)
        pt = torch.exp(features[..., F["log_pt"]]) * mask  # (B, N), 0 for padding
        z = pt / pt.sum(1, keepdim=True)
        angles = features[..., list(_ANGLE_COLUMNS)]  # (B, N, 2)
        latent = (z.unsqueeze(-1) * self.phi(angles)).sum(1)  # (B, L)
        return self.f(latent).squeeze(-1)


# --------------------------------------------------------------------------------------------
# ParticleNet
# --------------------------------------------------------------------------------------------


def _knn(points: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, N, k) of the k nearest real particles of every particle.

    points (B, C, N) are the coordinates, mask (B, N). A particle is never its own neighbour
    and padded particles are never neighbours; where a jet has fewer than k + 1 real particles
    the missing neighbours are the particle itself (a zero edge ``x_j - x_i``).
    """
    n = points.shape[-1]
    sq = (points * points).sum(1)  # (B, N)
    dist = sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * points.transpose(1, 2) @ points  # (B, N, N)
    eye = torch.eye(n, dtype=torch.bool, device=points.device)
    excluded = (mask.unsqueeze(1) == 0) | eye  # (B, N, N): padded columns and the diagonal
    dist = torch.where(excluded, torch.full_like(dist, math.inf), dist)
    values, idx = torch.topk(-dist, k, dim=-1)  # (B, N, k)
    self_idx = torch.arange(n, device=points.device).view(1, n, 1).expand_as(idx)
    return torch.where(torch.isinf(values), self_idx, idx)


def _gather_neighbours(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, C, N), idx (B, N, k) -> (B, C, N, k), ``out[b, :, i, j] = x[b, :, idx[b, i, j]]``."""
    channels, n, k = x.shape[1], x.shape[2], idx.shape[2]
    flat = idx.reshape(idx.shape[0], 1, n * k).expand(-1, channels, -1)
    return torch.gather(x, 2, flat).reshape(x.shape[0], channels, n, k)


class _EdgeConvBlock(nn.Module):
    """EdgeConv on a kNN graph: edge MLP on [x_i, x_j - x_i], mean over the k neighbours,
    plus a 1x1-convolution shortcut; (B, C_in, N) -> (B, C_out, N), zero at padding."""

    def __init__(self, k: int, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        width = 2 * in_channels
        for out in channels:
            layers += [nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            width = out
        self.edge_mlp = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(
            nn.Conv1d(in_channels, channels[-1], 1, bias=False), nn.BatchNorm1d(channels[-1])
        )
        self.activation = nn.ReLU()

    def forward(self, points: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """points (B, P, N) kNN coordinates, x (B, C_in, N), mask (B, N) -> (B, C_out, N)."""
        idx = _knn(points, mask, min(self.k, points.shape[-1]))
        neighbours = _gather_neighbours(x, idx)  # (B, C_in, N, k)
        centre = x.unsqueeze(-1).expand_as(neighbours)
        edges = torch.cat([centre, neighbours - centre], dim=1)  # (B, 2 C_in, N, k)
        out = self.edge_mlp(edges).mean(-1) + self.shortcut(x)
        return self.activation(out) * mask.unsqueeze(1)


@register("tagger", "particlenet")
class ParticleNet(nn.Module):
    """ParticleNet: EdgeConv blocks on a dynamic kNN graph of the particles.

    The first block builds the graph from (deta, dphi), later ones from the features learned by
    the previous block. The outputs of all blocks are concatenated, fused by a 1x1 convolution,
    averaged over the real particles and classified by a fully connected layer with dropout.
    The paper's ParticleNet uses k = 16, blocks (64, 64, 64), (128, 128, 128), (256, 256, 256)
    and FC 256 (3.7e5 parameters); ParticleNet-Lite uses k = 7, blocks (32, 32, 32),
    (64, 64, 64) and FC 128 (2.6e4 parameters), both with dropout 0.1. The default here is
    ParticleNet-Lite plus the 128-channel fusion layer, about 4.8e4 parameters.

    Args:
        k: number of neighbours; jets with fewer real particles repeat the particle itself.
        conv_channels: the widths of the three-layer edge MLP of each EdgeConv block.
        fusion_channels: width of the 1x1 convolution on the concatenated block outputs.
        fc_channels: width of the hidden fully connected layer.
        dropout: dropout probability before the output layer.
    """

    inputs = PARTICLE_INPUTS
    description = "ParticleNet(-Lite), EdgeConv on a dynamic kNN particle graph (arXiv:1902.08570)"

    def __init__(
        self,
        k: int = 7,
        conv_channels: Sequence[Sequence[int]] = ((32, 32, 32), (64, 64, 64)),
        fusion_channels: int = 128,
        fc_channels: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm1d(N_FEATURES)
        blocks = []
        width = N_FEATURES
        for channels in conv_channels:
            blocks.append(_EdgeConvBlock(k, width, channels))
            width = channels[-1]
        self.blocks = nn.ModuleList(blocks)
        concatenated = sum(channels[-1] for channels in conv_channels)
        self.fusion = nn.Sequential(
            nn.Conv1d(concatenated, fusion_channels, 1, bias=False),
            nn.BatchNorm1d(fusion_channels),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(fusion_channels, fc_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(fc_channels, 1),
        )

    def forward(
        self, features: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """features (B, N, 13), vectors (B, N, 4) (unused), mask (B, N) -> logits (B,)."""
        _check_particle_inputs(self, features, vectors, mask)
        points = features[..., list(_ANGLE_COLUMNS)].transpose(1, 2)  # (B, 2, N)
        x = self.input_norm(features.transpose(1, 2)) * mask.unsqueeze(1)  # (B, 13, N)
        outputs = []
        for block in self.blocks:
            x = block(points, x, mask)
            outputs.append(x)
            points = x
        fused = self.fusion(torch.cat(outputs, dim=1)).transpose(1, 2)  # (B, N, fusion)
        return self.head(_masked_mean(fused, mask)).squeeze(-1)


# --------------------------------------------------------------------------------------------
# Particle Transformer
# --------------------------------------------------------------------------------------------


def pair_features(vectors: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ParT interaction features of every particle pair, (B, N, 4) -> (B, 4, N, N).

    The channels are ln Delta, ln kT, ln z, ln m^2 with Delta = sqrt(dy^2 + dphi^2) (rapidity
    y), kT = min(pT_a, pT_b) Delta, z = min(pT_a, pT_b) / (pT_a + pT_b) and
    m^2 = (p_a + p_b)^2 in GeV units. Arguments of the logarithms are clamped at ``eps``, so
    pairs with a padded (zero) vector, the diagonal and collinear pairs stay finite.
    """
    px, py, pz, e = vectors.unbind(-1)  # (B, N) each
    pt = torch.sqrt(px * px + py * py)
    rapidity = 0.5 * torch.log((e + pz).clamp(min=eps) / (e - pz).clamp(min=eps))

    def rows(t: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, N, 1), particle a
        return t.unsqueeze(-1)

    def cols(t: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, 1, N), particle b
        return t.unsqueeze(-2)

    # dphi = phi_b - phi_a in (-pi, pi] from the transverse cross and dot products; the dot
    # product is replaced by 1 where a transverse momentum vanishes to keep atan2(0, 0) away.
    cross = rows(px) * cols(py) - rows(py) * cols(px)
    dot = rows(px) * cols(px) + rows(py) * cols(py)
    dphi = torch.atan2(cross, torch.where(rows(pt) * cols(pt) > 0, dot, torch.ones_like(dot)))
    delta = torch.sqrt((rows(rapidity) - cols(rapidity)) ** 2 + dphi**2)
    pt_min = torch.minimum(rows(pt), cols(pt))
    z = pt_min / (rows(pt) + cols(pt)).clamp(min=eps)
    m2 = (
        (rows(e) + cols(e)) ** 2
        - (rows(px) + cols(px)) ** 2
        - (rows(py) + cols(py)) ** 2
        - (rows(pz) + cols(pz)) ** 2
    )
    channels = [delta, pt_min * delta, z, m2]
    return torch.stack([torch.log(c.clamp(min=eps)) for c in channels], dim=1)


class _Attention(nn.Module):
    """Multi-head scaled dot-product attention written out (simple to export to ONNX)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"the embedding dimension {dim} must be divisible by heads={heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        key_mask: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (B, Q, D) attends over context (B, K, D); key_mask (B, K) (0 = ignore this key),
        bias (B, H, Q, K) added to the attention logits or None -> (B, Q, D)."""
        b, n_q, dim = x.shape
        n_k = context.shape[1]
        head_dim = dim // self.heads
        q = self.query(x).reshape(b, n_q, self.heads, head_dim).transpose(1, 2)  # (B, H, Q, d)
        kv = self.key_value(context).reshape(b, n_k, 2, self.heads, head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, K, d) each
        logits = (q @ k.transpose(-1, -2)) * self.scale  # (B, H, Q, K)
        if bias is not None:
            logits = logits + bias
        ignore = (key_mask == 0).view(b, 1, 1, n_k)
        logits = torch.where(ignore, torch.full_like(logits, -math.inf), logits)
        weights = self.dropout(logits.softmax(-1))
        out = (weights @ v).transpose(1, 2).reshape(b, n_q, dim)
        return self.out(out)


class _AttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block: x += attention(LN(x), LN(context)); x += MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = _Attention(dim, heads, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_ratio * dim, dim),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor,
        context: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, Q, D), key_mask (B, K), context (B, K, D) (None: self-attention, K = Q),
        bias (B, H, Q, K) or None -> (B, Q, D)."""
        normed = self.norm_attention(x)
        normed_context = normed if context is None else self.norm_attention(context)
        x = x + self.dropout(self.attention(normed, normed_context, key_mask, bias))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


@register("tagger", "part")
class ParticleTransformer(nn.Module):
    """Particle Transformer (ParT): self-attention over particles with pairwise biases.

    Every particle's features are embedded by an MLP; the pairwise features of
    :func:`pair_features` are embedded by 1x1 convolutions into one bias per head, added to the
    attention logits of every particle attention block. Class-attention blocks then let a
    learned class token attend over the particles, and a LayerNorm + linear layer gives the
    logit. Padded particles are removed from the keys. The paper uses embedding (128, 512, 128),
    pair embedding (64, 64, 64), 8 heads, 8 particle blocks, 2 class blocks, MLP ratio 4
    (2.1e6 parameters); the defaults here (dimension 64, 4 heads, 3 + 1 blocks, MLP ratio 2)
    have about 1.4e5 parameters.

    Args:
        embed_dims: widths of the particle embedding (each LayerNorm, Linear, GELU); the last one
            is the transformer dimension.
        pair_dims: widths of the pair embedding before its projection onto the heads.
        heads: attention heads (must divide the transformer dimension).
        num_layers: particle attention blocks.
        num_class_layers: class-attention blocks.
        mlp_ratio: hidden width of the block MLPs in units of the transformer dimension.
        dropout: dropout probability inside the blocks.
    """

    inputs = PARTICLE_INPUTS
    description = (
        "Particle Transformer, attention with pairwise interaction bias (arXiv:2202.03772)"
    )

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 64),
        pair_dims: Sequence[int] = (32, 32),
        heads: int = 4,
        num_layers: int = 3,
        num_class_layers: int = 1,
        mlp_ratio: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        dim = embed_dims[-1]
        embed: list[nn.Module] = [_TransposedBatchNorm(N_FEATURES)]
        width = N_FEATURES
        for out in embed_dims:
            embed += [nn.LayerNorm(width), nn.Linear(width, out), nn.GELU()]
            width = out
        self.embed = nn.Sequential(*embed)
        pair: list[nn.Module] = [nn.BatchNorm2d(4)]
        width = 4
        for out in pair_dims:
            pair += [nn.Conv2d(width, out, 1), nn.BatchNorm2d(out), nn.GELU()]
            width = out
        pair.append(nn.Conv2d(width, heads, 1))
        self.pair_embed = nn.Sequential(*pair)
        self.blocks = nn.ModuleList(
            _AttentionBlock(dim, heads, mlp_ratio, dropout) for _ in range(num_layers)
        )
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.class_token, std=0.02)
        self.class_blocks = nn.ModuleList(
            _AttentionBlock(dim, heads, mlp_ratio, dropout) for _ in range(num_class_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)

    def forward(
        self, features: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """features (B, N, 13), vectors (B, N, 4) in GeV, mask (B, N) -> logits (B,)."""
        _check_particle_inputs(self, features, vectors, mask)
        x = self.embed(features)  # (B, N, D)
        bias = self.pair_embed(pair_features(vectors))  # (B, H, N, N)
        for block in self.blocks:
            x = block(x, mask, bias=bias)
        token = self.class_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        class_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # (B, 1 + N)
        for block in self.class_blocks:
            token = block(token, class_mask, context=torch.cat([token, x], dim=1))
        return self.head(self.norm(token[:, 0])).squeeze(-1)


# --------------------------------------------------------------------------------------------
# LorentzNet
# --------------------------------------------------------------------------------------------


def _psi(a: torch.Tensor) -> torch.Tensor:
    """psi(a) = sgn(a) ln(|a| + 1), LorentzNet's compression of Minkowski products."""
    return torch.sign(a) * torch.log1p(torch.abs(a))


#: Minkowski metric for (px, py, pz, E).
_METRIC = (-1.0, -1.0, -1.0, 1.0)


class _LGEB(nn.Module):
    """Lorentz group equivariant block on a fully connected graph of particles.

    m_ij = phi_e(h_i, h_j, psi(|x_i - x_j|^2), psi(<x_i, x_j>)),
    x_i <- x_i + c sum_j phi_x(m_ij) x_j (if ``update_coordinates``),
    h_i <- h_i + phi_h(h_i, mean_j phi_m(m_ij) m_ij, s_i), over real j != i (the mean keeps
    the scale of h independent of the multiplicity; the paper sums).

    In eval mode the same map is computed in fewer passes over the (B, N, N, hidden) pair
    tensors (:meth:`_forward_inference`): the batch norms are folded into the linear layers
    before them, phi_e's first layer is applied per particle and broadcast over the pairs
    (W [h_i, h_j, n_ij, d_ij] = W_i h_i + W_j h_j + W_p [n_ij, d_ij]), |x_i - x_j|^2 is
    x_i^2 + x_j^2 - 2 <x_i, x_j>, and the sums over the neighbours are matrix products.
    :meth:`_forward_pairs` (training mode) is the definition; both agree to float32 rounding.
    """

    def __init__(
        self, hidden: int, n_scalars: int, c_weight: float, update_coordinates: bool
    ) -> None:
        super().__init__()
        self.c_weight = c_weight
        self.phi_e = nn.Sequential(
            nn.Linear(2 * hidden + 2, hidden, bias=False),
            _TransposedBatchNorm(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.phi_m = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())
        self.phi_h = nn.Sequential(
            nn.Linear(2 * hidden + n_scalars, hidden),
            _TransposedBatchNorm(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
        )
        self.phi_x: nn.Sequential | None = None
        if update_coordinates:
            last = nn.Linear(hidden, 1, bias=False)
            nn.init.xavier_uniform_(last.weight, gain=0.001)
            self.phi_x = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), last)

    def forward(
        self, h: torch.Tensor, x: torch.Tensor, scalars: torch.Tensor, edge_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, N, hidden), x (B, N, 4), scalars (B, N, S), edge_mask (B, N, N, 1)
        -> updated (h, x)."""
        if self.training:
            return self._forward_pairs(h, x, scalars, edge_mask)
        return self._forward_inference(h, x, scalars, edge_mask)

    @staticmethod
    def _invariants(x: torch.Tensor) -> torch.Tensor:
        """x (B, N, 4) -> (B, N, N, 2): psi(|x_i - x_j|^2) and psi(<x_i, x_j>)."""
        metric = x.new_tensor(_METRIC)
        diff = x.unsqueeze(2) - x.unsqueeze(1)  # (B, N, N, 4): x_i - x_j
        norms = (diff * diff * metric).sum(-1, keepdim=True)  # (B, N, N, 1)
        dots = ((x * metric) @ x.transpose(1, 2)).unsqueeze(-1)  # (B, N, N, 1)
        return torch.cat([_psi(norms), _psi(dots)], dim=-1)

    @staticmethod
    def _folded(linear: nn.Linear, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (out, in) and bias (out,) of ``norm(linear(.))`` with the running stats."""
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        bias = norm.bias - norm.running_mean * scale
        if linear.bias is not None:
            bias = bias + linear.bias * scale
        return linear.weight * scale.unsqueeze(1), bias

    def _forward_inference(
        self, h: torch.Tensor, x: torch.Tensor, scalars: torch.Tensor, edge_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode forward: the map of :meth:`_forward_pairs` in fewer passes.

        The pair tensors are flattened to (B N N, H) matrices so that each linear layer and
        its ReLU are one ``addmm`` (one fused Gemm in ONNX Runtime), and the sums over the
        neighbours are batched matrix products.
        """
        b, n, hidden = h.shape
        metric = x.new_tensor(_METRIC)
        dots = (x * metric) @ x.transpose(1, 2)  # (B, N, N)
        squares = (x * x * metric).sum(-1)  # (B, N)
        norms = squares.unsqueeze(2) + squares.unsqueeze(1) - 2.0 * dots  # |x_i - x_j|^2
        invariants = _psi(torch.stack([norms, dots], dim=-1)).reshape(-1, 2)
        weight, bias = self._folded(self.phi_e[0], self.phi_e[1])
        w_i, w_j, w_pair = (
            weight[:, :hidden],
            weight[:, hidden : 2 * hidden],
            weight[:, 2 * hidden :],
        )
        per_particle = (h @ w_i.t()).unsqueeze(2) + (h @ w_j.t() + bias).unsqueeze(1)
        pre = torch.addmm(per_particle.reshape(-1, hidden), invariants, w_pair.t())
        second = self.phi_e[3]
        m = torch.relu(torch.addmm(second.bias, torch.relu(pre), second.weight.t()))
        mask = edge_mask.reshape(b, n, n)
        gate_layer = self.phi_m[0]
        gate = torch.sigmoid(torch.addmm(gate_layer.bias, m, gate_layer.weight.t()))
        gate = gate.reshape(b, n, 1, n) * mask.unsqueeze(2)  # (B, N, 1, N)
        n_neighbours = mask.sum(2, keepdim=True).clamp(min=1.0)  # (B, N, 1)
        messages = m.reshape(b, n, n, hidden)
        aggregated = (gate @ messages).squeeze(2) / n_neighbours  # (B, N, H)
        if self.phi_x is not None:
            first, last = self.phi_x[0], self.phi_x[2]
            hidden_x = torch.relu(torch.addmm(first.bias, m, first.weight.t()))
            weights = (hidden_x @ last.weight.t()).reshape(b, n, n) * mask
            x = x + self.c_weight * (weights @ x)
        weight, bias = self._folded(self.phi_h[0], self.phi_h[1])
        update = torch.relu(torch.cat([h, aggregated, scalars], dim=-1) @ weight.t() + bias)
        return h + self.phi_h[3](update), x

    def _forward_pairs(
        self, h: torch.Tensor, x: torch.Tensor, scalars: torch.Tensor, edge_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The block as defined, on the concatenated pair features (training mode)."""
        n = h.shape[1]
        invariants = self._invariants(x)  # (B, N, N, 2)
        h_i = h.unsqueeze(2).expand(-1, -1, n, -1)
        h_j = h.unsqueeze(1).expand(-1, n, -1, -1)
        m = self.phi_e(torch.cat([h_i, h_j, invariants], dim=-1))  # (B, N, N, H)
        if self.phi_x is not None:
            weights = self.phi_x(m) * edge_mask  # (B, N, N, 1)
            x = x + self.c_weight * (weights * x.unsqueeze(1)).sum(2)
        # mean over the real neighbours: the scale of h does not grow with the multiplicity
        n_neighbours = edge_mask.sum(2).clamp(min=1.0)  # (B, N, 1)
        aggregated = (self.phi_m(m) * m * edge_mask).sum(2) / n_neighbours  # (B, N, H)
        h = h + self.phi_h(torch.cat([h, aggregated, scalars], dim=-1))
        return h, x


@register("tagger", "lorentznet")
class LorentzNet(nn.Module):
    """LorentzNet: message passing that is equivariant under Lorentz transformations.

    The 4-vectors (divided by ``scale``) are the coordinates, the charge and PF-type one-hots
    (plus a beam label) the scalars. Messages only depend on Minkowski products, so the output
    is invariant under every Lorentz transformation of the particles when ``beams=False``.
    With the two beam particles of the paper appended (E = 1, pz = +-1 in scaled units, fixed
    in the lab), the model can use the beam axis and the invariance is reduced to rotations
    about z (a z-boost rescales the light-cone components E -+ pz that the beams measure).
    Scalars are averaged over the real particles and beams and an MLP gives the logit.
    Paper: hidden 72, 6 blocks, c = 1e-3, dropout 0.2 (2.2e5 parameters); defaults hidden 32,
    4 blocks (about 3.1e4 parameters).

    Args:
        hidden: width of the scalar embeddings and messages.
        num_blocks: Lorentz group equivariant blocks (the last updates no coordinates).
        c_weight: step of the coordinate update.
        scale: GeV per coordinate unit.
        beams: append the two beam particles.
        dropout: dropout probability in the output MLP.
    """

    inputs = PARTICLE_INPUTS
    description = "LorentzNet, Lorentz-group equivariant message passing (arXiv:2201.08187)"

    def __init__(
        self,
        hidden: int = 32,
        num_blocks: int = 4,
        c_weight: float = 1e-3,
        scale: float = 100.0,
        beams: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.beams = beams
        n_scalars = len(_SCALAR_COLUMNS) + 1  # + beam label
        self.embed = nn.Linear(n_scalars, hidden)
        self.blocks = nn.ModuleList(
            _LGEB(hidden, n_scalars, c_weight, update_coordinates=i < num_blocks - 1)
            for i in range(num_blocks)
        )
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(
        self, features: torch.Tensor, vectors: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """features (B, N, 13), vectors (B, N, 4) in GeV, mask (B, N) -> logits (B,)."""
        _check_particle_inputs(self, features, vectors, mask)
        x = vectors / self.scale
        scalars = features[..., list(_SCALAR_COLUMNS)]
        scalars = torch.cat([scalars, torch.zeros_like(scalars[..., :1])], dim=-1)  # (B, N, S)
        if self.beams:
            b = x.shape[0]
            beam_x = x.new_tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, -1.0, 1.0]])
            beam_s = torch.zeros_like(scalars[:, :2])
            beam_s[..., -1] = 1.0
            x = torch.cat([beam_x.expand(b, -1, -1), x], dim=1)
            scalars = torch.cat([beam_s, scalars], dim=1)
            mask = torch.cat([torch.ones_like(mask[:, :2]), mask], dim=1)
        n = x.shape[1]
        not_self = 1.0 - torch.eye(n, dtype=x.dtype, device=x.device)
        edge_mask = (mask.unsqueeze(2) * mask.unsqueeze(1) * not_self).unsqueeze(-1)
        h = self.embed(scalars)
        for block in self.blocks:
            h, x = block(h, x, scalars, edge_mask)
        return self.head(_masked_mean(h, mask)).squeeze(-1)


# --------------------------------------------------------------------------------------------
# Jet images
# --------------------------------------------------------------------------------------------


def jet_images(
    deta: np.ndarray,
    dphi: np.ndarray,
    pt: np.ndarray,
    mask: np.ndarray,
    npix: int = DEFAULT_NPIX,
    radius: float = 0.8,
) -> np.ndarray:
    """Preprocessed, pT-normalised jet images (arXiv:1511.05190), shape (B, 1, npix, npix).

    Inputs are padded (B, N) arrays of the particles' (deta, dphi) relative to the jet axis,
    pT and mask. Per jet:

    1. translate so that the pT-weighted centroid is at the origin;
    2. rotate so that the principal axis of the pT-weighted (deta, dphi) distribution is
       vertical;
    3. flip the vertical axis so that the upper half (v > 0) has the larger pT sum and the
       horizontal axis so that the right half (u > 0) has;
    4. pixelate the pT over [-radius, radius]^2 (image[b, 0, row, col], row = vertical v
       increasing with the row index, col = horizontal u) and divide by the image's sum.

    Particles outside the window are dropped; an image is all zero only if every particle of
    its jet falls outside. The result does not depend on the orientation of the jet in the
    (deta, dphi) plane.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (deta, dphi, pt, mask)]
    shape = arrays[0].shape
    for name, a in zip(("deta", "dphi", "pt", "mask"), arrays, strict=True):
        if a.ndim != 2 or a.shape != shape:
            raise ValueError(
                f"jet_images: deta, dphi, pt and mask must all have the same shape (B, N), "
                f"got {name} with shape {a.shape} (deta has {shape})"
            )
    deta, dphi, pt, mask = arrays
    w = np.where(mask > 0, pt, 0.0)
    total = w.sum(1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("jet_images: every jet needs at least one real particle with pT > 0")
    u = deta - (w * deta).sum(1, keepdims=True) / total
    v = dphi - (w * dphi).sum(1, keepdims=True) / total
    suu, svv, suv = (w * u * u).sum(1), (w * v * v).sum(1), (w * u * v).sum(1)
    major = 0.5 * np.arctan2(2 * suv, suu - svv)  # angle of the principal axis
    angle = (np.pi / 2 - major)[:, None]
    u, v = np.cos(angle) * u - np.sin(angle) * v, np.sin(angle) * u + np.cos(angle) * v
    v = np.where(((w * (v < 0)).sum(1) > (w * (v > 0)).sum(1))[:, None], -v, v)
    u = np.where(((w * (u < 0)).sum(1) > (w * (u > 0)).sum(1))[:, None], -u, u)

    pixels_per_unit = npix / (2 * radius)
    col = np.floor((u + radius) * pixels_per_unit).astype(np.int64)
    row = np.floor((v + radius) * pixels_per_unit).astype(np.int64)
    inside = (w > 0) & (col >= 0) & (col < npix) & (row >= 0) & (row < npix)
    batch = shape[0]
    flat = (np.arange(batch)[:, None] * npix + row) * npix + col
    images = np.bincount(flat[inside], weights=w[inside], minlength=batch * npix * npix)
    images = images.reshape(batch, 1, npix, npix)
    norm = images.sum((2, 3), keepdims=True)
    images = np.divide(images, norm, out=np.zeros_like(images), where=norm > 0)
    return images.astype(np.float32)


@register("tagger", "cnn")
class JetImageCNN(nn.Module):
    """Convolutional network on jet images (DeepTop, arXiv:1701.08784).

    Convolutions ``channels`` (batch norm, ReLU, 'same' padding) with a 2x2 max-pool after
    every second one, then dense ReLU layers ``dense`` and a linear output. DeepTop uses 40x40
    images, four 4x4 convolutions with 8 filters (max-pool after the second) and three dense
    layers of 64; the default here takes the 33x33 images of :func:`jet_images` through four
    3x3 convolutions (8, 8, 16, 16) with two max-pools and dense (64, 64), about 7.4e4
    parameters.

    Args:
        npix: image side in pixels.
        channels: filters of each convolution.
        kernel_size: odd side of the convolution kernels.
        dense: widths of the hidden dense layers.
    """

    inputs = IMAGE_INPUTS
    description = "Jet-image CNN (DeepTop, arXiv:1701.08784; preprocessing arXiv:1511.05190)"

    def __init__(
        self,
        npix: int = DEFAULT_NPIX,
        channels: Sequence[int] = (8, 8, 16, 16),
        kernel_size: int = 3,
        dense: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the image size, got {kernel_size}")
        self.npix = npix
        layers: list[nn.Module] = []
        width, side = 1, npix
        for i, out in enumerate(channels):
            # batch norm after each convolution: pT-normalised pixels are ~1e-3, and a plain
            # ReLU stack on them can stay stuck at its starting point
            layers += [
                nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            width = out
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
                side //= 2
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Sequential(
            nn.Flatten(), _mlp([width * side * side, *dense]), nn.Linear(dense[-1], 1)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 1, npix, npix) -> logits (B,)."""
        if image.dim() != 4 or tuple(image.shape[1:]) != (1, self.npix, self.npix):
            raise ValueError(
                f"JetImageCNN: image must have shape (B, 1, {self.npix}, {self.npix}), got "
                f"{tuple(image.shape)}; make it with jet_images(..., npix={self.npix}) or build "
                "the model with npix matching the images"
            )
        return self.dense(self.conv(image)).squeeze(-1)


# --------------------------------------------------------------------------------------------
# Utilities
# --------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: Masses (GeV) of the PF candidate types of ``PF_CODES`` used for random example particles.
_PF_MASSES = {211: 0.13957, 130: 0.49761, 22: 0.0, 11: 0.000511, 13: 0.10566}


def _random_jets(
    rng: np.random.Generator, batch: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random but physical jets -> (features, vectors, mask) as float32 numpy arrays.

    Jets of pT 300-650 GeV with 1 to ``n`` particles (0.5-300 GeV, ordered by decreasing pT,
    within dR < 0.8 of the jet axis), massive 4-vectors so that E >= |p|.
    """
    n_real = rng.integers(1, n + 1, size=batch)
    mask = np.arange(n)[None, :] < n_real[:, None]
    jet_pt = rng.uniform(300.0, 650.0, size=(batch, 1))
    weights = np.where(mask, rng.exponential(size=(batch, n)) ** 2, 0.0)
    pt = np.clip(jet_pt * weights / weights.sum(1, keepdims=True), 0.5, 300.0)
    pt = -np.sort(-np.where(mask, pt, 0.0), axis=1)
    radius = rng.uniform(0.0, 0.8, size=(batch, n)) ** 2 / 0.8
    direction = rng.uniform(-np.pi, np.pi, size=(batch, n))
    eta = rng.uniform(-2.0, 2.0, size=(batch, 1)) + radius * np.cos(direction)
    phi = rng.uniform(-np.pi, np.pi, size=(batch, 1)) + radius * np.sin(direction)
    pid = rng.choice(np.array(PF_CODES), size=(batch, n))
    sign = rng.choice(np.array([-1, 1]), size=(batch, n))
    charge = np.where((pid == 130) | (pid == 22), 0, sign)
    mass = np.vectorize(_PF_MASSES.get)(pid)
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    jet = [np.where(mask, c, 0.0).sum(1) for c in (px, py, pz, energy)]
    jet_pt_sum = np.hypot(jet[0], jet[1])
    return particle_inputs(
        pt,
        eta,
        phi,
        energy,
        charge,
        pid,
        mask.astype(np.float32),
        jet_pt_sum,
        np.arcsinh(jet[2] / jet_pt_sum),
        np.arctan2(jet[1], jet[0]),
        jet[3],
    )


def example_inputs(
    model_cls_or_model: type[nn.Module] | nn.Module, batch: int = 2, n: int = 30, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random valid inputs of a tagger, in the order of its ``inputs``.

    Particle taggers get (features (B, N, 13), vectors (B, N, 4), mask (B, N)) of random jets
    with 1 to ``n`` real particles each; the image tagger gets (image (B, 1, npix, npix),) made
    from such jets by :func:`jet_images` (``npix`` of the model, or 33 for a class). Tensors
    are float32 on the CPU, or on the device of the model's parameters for an instance.
    """
    rng = np.random.default_rng(seed)
    features, vectors, mask = _random_jets(rng, batch, n)
    model_inputs = model_cls_or_model.inputs
    if model_inputs == IMAGE_INPUTS:
        npix = getattr(model_cls_or_model, "npix", DEFAULT_NPIX)
        arrays = (
            jet_images(
                features[..., F["deta"]],
                features[..., F["dphi"]],
                np.exp(features[..., F["log_pt"]]),
                mask,
                npix=npix,
            ),
        )
    elif model_inputs == PARTICLE_INPUTS:
        arrays = (features, vectors, mask)
    else:
        raise ValueError(
            f"example_inputs: unknown inputs {model_inputs!r} of {model_cls_or_model!r}; "
            f"expected {PARTICLE_INPUTS} or {IMAGE_INPUTS}"
        )
    device = torch.device("cpu")
    if isinstance(model_cls_or_model, nn.Module):
        device = next(model_cls_or_model.parameters()).device
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def export_onnx(model: nn.Module, path: str | Path, n_particles: int) -> None:
    """Write ``model`` in eval mode to the single ONNX file ``path`` (opset 18).

    Inputs are named after ``model.inputs`` (all of them, also those a model does not use, so
    every particle tagger has the same interface) and the output ``"logit"``, shape (batch,).
    The batch axis is dynamic, the particle axis fixed to ``n_particles`` (ignored by the image
    tagger, whose size is its ``npix``). The training mode of ``model`` is restored afterwards.

    The ``torch.export``-based exporter (``dynamo=True``) is used: the TorchScript exporter
    (deprecated since torch 2.9) drops unused inputs such as ``vectors`` of the PFN and writes
    a boolean ``EyeLike`` that ONNX Runtime cannot run. Its progress messages and warnings
    are silenced.

    Raises:
        RuntimeError: if the export fails (the message names the model and the cause).
    """
    inputs = example_inputs(model, batch=2, n=n_particles)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    was_training = model.training
    loggers = [logging.getLogger(name) for name in ("torch", "onnxscript")]
    log_levels = [logger.level for logger in loggers]
    model.eval()
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                inputs,
                str(path),
                input_names=list(model.inputs),
                output_names=["logit"],
                dynamic_shapes=tuple({0: batch} for _ in inputs),
                opset_version=ONNX_OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise RuntimeError(
            f"ONNX export of {type(model).__name__} to {path} failed: {exc}"
        ) from exc
    finally:
        for logger, level in zip(loggers, log_levels, strict=True):
            logger.setLevel(level)
        model.train(was_training)
