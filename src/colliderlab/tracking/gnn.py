"""The GNN track finder in the Exa.TrkX style: graph -> edge classifier -> track building.

The pipeline (Ju et al., "Performance of a geometric deep learning pipeline for HL-LHC particle
tracking", arXiv:2103.06995; Exa.TrkX, arXiv:2007.00149):

1. **Graph construction** (:mod:`colliderlab.tracking.graph`): a :class:`ModuleMap` learned
   from the training events links hits on detector elements that particles connect, inside
   geometric cut ranges learned per layer pair. Edges point outwards.
2. **Edge classification**: an :class:`InteractionNetwork` (Battaglia et al.,
   arXiv:1612.00222; for tracking DeZoort et al., arXiv:2103.16701) on node features
   (r, phi, z, optionally the cell count and charge of the hit) and edge features (dr, dphi,
   dz, deta, phi slope, z0) gives one logit per edge. It is trained with binary cross-entropy,
   ``pos_weight`` on the true edges; true edges of particles with pT below ``loss_pt_min``
   are "don't care" (weight 0), so the network is not asked to decide on low-pT particles
   (their fake edges still count as fakes).
3. **Track building** (:func:`build_tracks`): edges with score > ``threshold``; the connected
   components without branching are tracks; a component where a hit has two outgoing or two
   incoming edges is split by a walk: from its innermost unassigned hit, follow the
   highest-score outgoing edge to an unassigned hit (passing through an assigned hit when that
   is the only way on), repeat until every hit is assigned.

:func:`train` is resumable: a checkpoint (model, optimiser, data order, random state, module
map, history) is written atomically after every epoch to ``OUT/checkpoint.pt``; the same call
after an interruption continues to the same weights as an uninterrupted run, and raising
``epochs`` continues a finished run. :class:`GNNFinder` (registered as ``"gnn"``) reads such
a checkpoint. Edge metrics (:func:`edge_metrics`) follow the Exa.TrkX convention: efficiency
= fraction of the true edges of particles with pT > ``pt_min`` that score above the
threshold; purity = those edges over all edges above the threshold that are not true edges of
particles below ``pt_min``.

Units: mm, rad, GeV.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.utils.checkpoint
from torch import nn

from colliderlab import __version__
from colliderlab.core.errors import ConfigError, DatasetError, did_you_mean
from colliderlab.core.files import atomic_path, write_json
from colliderlab.core.registry import register
from colliderlab.tracking.event import TrackingEvent
from colliderlab.tracking.finders import KIND, TrackFinder
from colliderlab.tracking.graph import (
    LEVELS,
    ModuleMap,
    edge_geometry,
    hit_cylindrical,
    label_edges,
)

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
MODEL_NAME = "interaction_network"
_KIND = "colliderlab-gnn-tracker"
_FORMAT = 2
#: Checkpoint formats this version reads: 1 (no edge filter; still usable by
#: :class:`GNNFinder`, not resumable) and 2 (edge filter + GNN).
_READABLE = (1, 2)

#: Node features: r/1000 mm, phi/pi, z/1000 mm; with cells also log(1 + n_cells), charge.
NODE_FEATURES = ("r", "phi", "z")
CELL_FEATURES = ("log_ncells", "charge")
#: Edge features, each scaled to O(1): dr/100 mm, 10*dphi, dz/100 mm, 10*deta,
#: 1000*phi_slope (rad/mm), z0/100 mm (clipped to +-10; 0 when dr = 0).
EDGE_FEATURES = ("dr", "dphi", "dz", "deta", "phi_slope", "z0")
AGGREGATIONS = ("sum", "mean", "max")


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What determines a GNN training (graph construction, network and optimisation).

    Attributes:
        epochs: passes over the training events (one optimiser step per event).
        lr: Adam learning rate, multiplied by ``lr_decay`` every ``lr_step`` epochs.
        lr_decay, lr_step: the step schedule of the learning rate.
        hidden: width of every hidden layer of the interaction network.
        iterations: message-passing iterations.
        mlp_layers: hidden layers per MLP.
        aggregation: how a hit combines the messages of its edges: ``"sum"``, ``"mean"`` or
            ``"max"`` (max does not grow with the number of fake edges per hit; trained at
            MU=50 and run at MU=200 it gave higher edge efficiency and purity than sum).
        pos_weight: weight of the true edges in the loss (the graphs hold more fakes).
        loss_pt_min: true edges of particles below this pT (GeV) do not enter the loss.
        map_level: ``"module"`` or ``"layer"`` (:class:`~colliderlab.tracking.graph.ModuleMap`).
        map_pt_min: the module map learns from particles above this pT (GeV).
        map_margin: relative widening of the learned cut ranges.
        volumes: TrackML volume ids in the graph (None: all).
        cells: add the cell features of the hits (events without cells get zeros).
        filter_epochs: epochs of the edge-filter MLP trained before the GNN (0: no filter,
            the GNN sees the whole graph).
        filter_hidden, filter_layers: width and hidden layers of the filter MLP.
        filter_batch: edges per optimiser step of the filter.
        filter_efficiency: the filter cut keeps this fraction of the true edges of particles
            with pT > ``filter_pt_min`` (GeV) of the training events.
        seed: initial weights and event order.
    """

    epochs: int = 24
    lr: float = 3e-3
    lr_decay: float = 0.5
    lr_step: int = 8
    hidden: int = 32
    iterations: int = 6
    mlp_layers: int = 2
    aggregation: str = "max"
    pos_weight: float = 2.0
    loss_pt_min: float = 0.5
    map_level: str = "layer"
    map_pt_min: float = 1.0
    map_margin: float = 0.1
    volumes: tuple[int, ...] | None = None
    cells: bool = False
    filter_epochs: int = 3
    filter_hidden: int = 64
    filter_layers: int = 3
    filter_batch: int = 65536
    filter_efficiency: float = 0.99
    filter_pt_min: float = 1.0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.volumes is not None:
            object.__setattr__(self, "volumes", tuple(int(v) for v in self.volumes))

    def validate(self) -> TrainConfig:
        for key in (
            "epochs",
            "hidden",
            "iterations",
            "mlp_layers",
            "lr_step",
            "filter_hidden",
            "filter_layers",
            "filter_batch",
        ):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"TrainConfig.{key} must be >= 1; got {getattr(self, key)}.")
        for key in ("lr", "pos_weight", "lr_decay"):
            if not float(getattr(self, key)) > 0:
                raise ConfigError(f"TrainConfig.{key} must be > 0; got {getattr(self, key)}.")
        if int(self.filter_epochs) < 0:
            raise ConfigError(f"TrainConfig.filter_epochs must be >= 0; got {self.filter_epochs}.")
        if not 0.0 < float(self.filter_efficiency) <= 1.0:
            raise ConfigError(
                f"TrainConfig.filter_efficiency must be in (0, 1]; got {self.filter_efficiency}."
            )
        for key in ("loss_pt_min", "map_pt_min", "map_margin", "filter_pt_min"):
            if not float(getattr(self, key)) >= 0:
                raise ConfigError(f"TrainConfig.{key} must be >= 0; got {getattr(self, key)}.")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"TrainConfig.aggregation must be one of {AGGREGATIONS}; got "
                f"{self.aggregation!r}.{did_you_mean(str(self.aggregation), AGGREGATIONS)}"
            )
        if self.map_level not in LEVELS:
            raise ConfigError(
                f"TrainConfig.map_level must be one of {LEVELS}; got {self.map_level!r}."
                f"{did_you_mean(str(self.map_level), LEVELS)}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig keys {unknown}.{did_you_mean(unknown[0], fields)} "
                f"Valid keys: {', '.join(sorted(fields))}."
            )
        return cls(**d)

    def module_map(self) -> ModuleMap:
        """The (unfitted) module map of this configuration."""
        return ModuleMap(
            level=self.map_level,
            pt_min=self.map_pt_min,
            margin=self.map_margin,
            volumes=self.volumes,
        )


# ----------------------------------------------------------------------------- features
def node_features(event: TrackingEvent, *, cells: bool = False) -> np.ndarray:
    """(N, 3) float32 node features (:data:`NODE_FEATURES`), (N, 5) with ``cells``."""
    c = hit_cylindrical(event.hits)
    cols = [c["r"] / 1000.0, c["phi"] / np.pi, c["z"] / 1000.0]
    if cells:
        n_cells = np.zeros(len(event.hits))
        charge = np.zeros(len(event.hits))
        if event.cells is not None and len(event.cells):
            agg = event.cells.groupby("hit_id")["value"].agg(["size", "sum"])
            agg = agg.reindex(event.hits["hit_id"].to_numpy()).fillna(0.0)
            n_cells, charge = agg["size"].to_numpy(float), agg["sum"].to_numpy(float)
        cols += [np.log1p(n_cells), charge]
    return np.stack(cols, axis=1).astype(np.float32)


def edge_features(coords: Mapping[str, np.ndarray], edges: np.ndarray) -> np.ndarray:
    """(E, 6) float32 edge features (:data:`EDGE_FEATURES`) of directed edges (2, E)."""
    a, b = edges
    geom = edge_geometry(coords, edges)
    slope = np.nan_to_num(geom[:, 1], nan=0.0)
    z0 = np.clip(np.nan_to_num(geom[:, 2], nan=0.0) / 100.0, -10.0, 10.0)
    feats = np.stack(
        [
            (coords["r"][b] - coords["r"][a]) / 100.0,
            10.0 * geom[:, 0],
            (coords["z"][b] - coords["z"][a]) / 100.0,
            10.0 * geom[:, 3],
            np.clip(1000.0 * slope, -10.0, 10.0),
            z0,
        ],
        axis=1,
    )
    return feats.astype(np.float32)


@dataclasses.dataclass
class GraphSample:
    """One event's graph as tensors: ``x`` (N, F) node features, ``edge_index`` (2, E) int64,
    ``edge_attr`` (E, 6); with truth: ``y`` (E,) 1.0 for true edges, ``pt`` (E,) GeV (NaN for
    fakes)."""

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    y: torch.Tensor | None = None
    pt: torch.Tensor | None = None


def make_graph(
    event: TrackingEvent, module_map: ModuleMap, *, cells: bool = False, truth: bool = False
) -> GraphSample:
    """The graph of ``event`` built by ``module_map`` with its features (and labels if
    ``truth``)."""
    edges = module_map.build(event.hits)
    coords = hit_cylindrical(event.hits)
    sample = GraphSample(
        x=torch.from_numpy(node_features(event, cells=cells)),
        edge_index=torch.from_numpy(edges),
        edge_attr=torch.from_numpy(edge_features(coords, edges)),
    )
    if truth:
        label, pt = label_edges(event, edges)
        sample.y = torch.from_numpy(label.astype(np.float32))
        sample.pt = torch.from_numpy(pt.astype(np.float32))
    return sample


def _graph_task(task: tuple) -> tuple[int, dict[str, np.ndarray]]:
    """Dask task of :func:`make_graphs`: (index, arrays of the event's graph)."""
    index, event, module_map, cells = task
    sample = make_graph(event, module_map, cells=cells, truth=True)
    return index, {k: v.numpy() for k, v in dataclasses.asdict(sample).items() if v is not None}


def make_graphs(
    events: Sequence[TrackingEvent],
    module_map: ModuleMap,
    *,
    cells: bool = False,
    workers: int | None = 1,
    scheduler: str | None = None,
    client: Any = None,
) -> list[GraphSample]:
    """:func:`make_graph` (with truth) of each event, in the order of ``events``.

    The graphs are built on Dask (:func:`colliderlab.io.chunked.map_tasks`, one task per
    event: on ``client``, on the scheduler at ``scheduler``, or on a LocalCluster of
    ``workers`` processes); ``workers=1`` builds them one after the other in this process.
    Either way the graphs are the same (a graph at MU = 200 takes ~3 s on one core)."""
    from colliderlab.io.chunked import map_tasks

    out: list[GraphSample | None] = [None] * len(events)

    def keep(result: tuple[int, dict[str, np.ndarray]]) -> None:
        index, arrays = result
        out[index] = GraphSample(**{k: torch.from_numpy(v) for k, v in arrays.items()})

    map_tasks(
        _graph_task,
        [(i, ev, module_map, cells) for i, ev in enumerate(events)],
        workers=workers,
        scheduler=scheduler,
        client=client,
        on_result=keep,
        key="tracking-graph",
        scatter=True,
    )
    return [s for s in out if s is not None]


def _to_device(sample: GraphSample, device: torch.device) -> GraphSample:
    return GraphSample(
        **{
            k: v.to(device) if v is not None else None
            for k, v in dataclasses.asdict(sample).items()
        }
    )


def _device(device: str | torch.device | None) -> torch.device:
    """The torch device of ``device`` (None: the CPU); a clear error for one that this
    PyTorch cannot use."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"unknown device {device!r} ({err}); use 'cpu', 'cuda' or 'cuda:N'."
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was asked for but this PyTorch sees no CUDA device "
            f"(torch {torch.__version__}); train on 'cpu' or on a machine with a GPU."
        )
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; use 'cpu' or 'cuda'.")
    return dev


@contextlib.contextmanager
def _fast_matmul(device: torch.device):
    """TF32 matrix products on a CUDA device (restored afterwards); nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


# ----------------------------------------------------------------------------- model
def _mlp(n_in: int, hidden: int, n_out: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU()]
        width = hidden
    mods.append(nn.Linear(width, n_out))
    return nn.Sequential(*mods)


def _check_inputs(
    model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
) -> None:
    """A ValueError naming ``model`` and the tensor when the graph's shapes do not fit it."""
    name, nf, ef = type(model).__name__, model.node_features, model.edge_features
    if x.dim() != 2 or x.shape[1] != nf:
        raise ValueError(f"{name}: x must have shape (N, {nf}); got {tuple(x.shape)}.")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(
            f"{name}: edge_index must have shape (2, E); got {tuple(edge_index.shape)}."
        )
    if edge_attr.shape != (edge_index.shape[1], ef):
        raise ValueError(
            f"{name}: edge_attr must have shape (E, {ef}) = ({edge_index.shape[1]}, {ef}); got "
            f"{tuple(edge_attr.shape)}."
        )


class InteractionNetwork(nn.Module):
    """Edge-classifying interaction network (Battaglia et al., arXiv:1612.00222; the Exa.TrkX
    GNN, arXiv:2103.06995) with residual node and edge updates and shared weights across
    iterations.

    ``forward(x, edge_index, edge_attr)``:

    * ``x`` (N, node_features) float32, ``edge_index`` (2, E) int64 (source, target),
      ``edge_attr`` (E, edge_features) float32;
    * returns (E,) float32 logits, one per edge (true edge = 1).

    Each iteration: e <- e + MLP_e([h_src, h_dst, e]); h <- h + MLP_n([h, e aggregated over the
    incoming edges, over the outgoing edges]) (``aggregation``: sum or mean by ``index_add_``,
    element-wise max by ``scatter_reduce``). Relabelling the nodes (with the
    edges renumbered accordingly) leaves the edge logits unchanged; permuting the edges
    permutes them.

    ``recompute`` (attribute, default False; not part of the weights): in training, keep only
    each iteration's h and e and recompute the iteration's intermediate tensors in the
    backward pass (``torch.utils.checkpoint``). The gradients are the same, bit for bit; at 8
    iterations autograd keeps 4.4x fewer bytes, and the peak memory of a step falls ~2x (the
    encoders, the output network and the backward pass's temporaries remain) for ~35% more
    time (:func:`training_memory_estimate`).
    """

    recompute: bool = False

    def __init__(
        self,
        node_features: int = 3,
        edge_features: int = 6,
        hidden: int = 32,
        iterations: int = 6,
        mlp_layers: int = 2,
        aggregation: str = "max",
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}; got {aggregation!r}.")
        self.aggregation = aggregation
        self.node_features = int(node_features)
        self.edge_features = int(edge_features)
        self.hidden = int(hidden)
        self.iterations = int(iterations)
        self.mlp_layers = int(mlp_layers)
        h, k = self.hidden, self.mlp_layers
        self.node_encoder = _mlp(self.node_features, h, h, k)
        self.edge_encoder = _mlp(2 * h + self.edge_features, h, h, k)
        self.edge_network = _mlp(3 * h, h, h, k)
        self.node_network = _mlp(3 * h, h, h, k)
        self.output = _mlp(3 * h, h, 1, k)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(node_features={self.node_features}, "
            f"edge_features={self.edge_features}, hidden={self.hidden}, "
            f"iterations={self.iterations}, mlp_layers={self.mlp_layers}, "
            f"aggregation={self.aggregation!r})"
        )

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        _check_inputs(self, x, edge_index, edge_attr)
        src, dst = edge_index[0], edge_index[1]
        h = self.node_encoder(x)
        e = self.edge_encoder(torch.cat([h[src], h[dst], edge_attr], dim=1))
        recompute = self.recompute and torch.is_grad_enabled()
        for _ in range(self.iterations):
            if recompute:
                h, e = torch.utils.checkpoint.checkpoint(
                    self._iteration, h, e, src, dst, use_reentrant=False
                )
            else:
                h, e = self._iteration(h, e, src, dst)
        return self.output(torch.cat([h[src], h[dst], e], dim=1)).squeeze(-1)

    def _iteration(
        self, h: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        e = e + self.edge_network(torch.cat([h[src], h[dst], e], dim=1))
        incoming = self._aggregate(e, dst, h)
        outgoing = self._aggregate(e, src, h)
        h = h + self.node_network(torch.cat([h, incoming, outgoing], dim=1))
        return h, e

    def _aggregate(self, e: torch.Tensor, index: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """(N, hidden): the messages ``e`` (E, hidden) combined per node ``index`` (E,);
        0 for a node without edges."""
        if self.aggregation == "max":
            idx = index.unsqueeze(1).expand(-1, e.shape[1])
            return torch.zeros_like(h).scatter_reduce(0, idx, e, "amax", include_self=False)
        total = torch.zeros_like(h).index_add_(0, index, e)
        if self.aggregation == "mean":
            count = torch.bincount(index, minlength=h.shape[0]).clamp(min=1)
            total = total / count.unsqueeze(1).to(total.dtype)
        return total


# bytes per edge and hidden unit of a training step's tensors, measured on one CPU thread (peak
# RSS of a step at E = 1e5 - 3e5 edges, hidden 32 - 64, 4 - 8 iterations, N = E / 3 hits): a
# fixed part (the encoders, the output network, the backward pass's temporaries) and a part per
# iteration kept for the backward pass. The H100 training of benchmarks/tracking/gnn_mu200_h100
# (435k edges, hidden 128, 8 iterations) peaked at 39.3 GiB of GPU memory; this gives 32.7 GiB.
_MEMORY_FIXED, _MEMORY_PER_ITERATION = 230, 50
_MEMORY_FIXED_RECOMPUTE, _MEMORY_PER_ITERATION_RECOMPUTE = 280, 6


def training_memory_estimate(edges: int, config: TrainConfig, *, recompute: bool = False) -> int:
    """Approximate peak memory (bytes) of one GNN training step on a graph of ``edges`` edges
    (the filtered graph the network sees), for the network of ``config``; with ``recompute``,
    for :attr:`InteractionNetwork.recompute`. Measured on the CPU to ~30%; the graphs, the
    weights and the optimiser state come on top."""
    if recompute:
        per = _MEMORY_FIXED_RECOMPUTE + _MEMORY_PER_ITERATION_RECOMPUTE * config.iterations
    else:
        per = _MEMORY_FIXED + _MEMORY_PER_ITERATION * config.iterations
    return int(edges) * int(config.hidden) * per


def _available_memory(device: torch.device) -> int:
    """Free memory (bytes) where the network trains: the GPU's, or the machine's available."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def _warn_memory(edges: int, config: TrainConfig, recompute: bool, device: torch.device):
    """A warning, before the first GNN step, when a step will likely not fit in memory (a
    process killed for its memory prints nothing)."""
    need = training_memory_estimate(edges, config, recompute=recompute)
    free = _available_memory(device)
    if need <= free:
        return
    remedies = [] if recompute else ["recompute=True (--recompute: ~2x less, ~35% slower)"]
    remedies += [
        "a lower filter_efficiency (--filter-efficiency) or more filter_epochs (fewer edges)",
        "fewer iterations or a smaller hidden",
        "a GPU with more memory" if device.type == "cuda" else "a GPU (--device cuda)",
    ]
    warnings.warn(
        f"a GNN training step on the largest graph ({edges:,} edges after the filter, hidden "
        f"{config.hidden}, {config.iterations} iterations{', recompute' if recompute else ''}) "
        f"needs about {need / 2**30:.1f} GiB, and {free / 2**30:.1f} GiB are free on "
        f"{device.type}: the training will likely run out of memory. Use "
        + "; or ".join(remedies)
        + ". (The filter stage is checkpointed: with --recompute, rerun in the same directory "
        "to resume after it; the other changes need a new output directory.)",
        RuntimeWarning,
        stacklevel=3,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(config: TrainConfig) -> InteractionNetwork:
    """The untrained network of ``config``."""
    return InteractionNetwork(
        node_features=len(NODE_FEATURES) + (len(CELL_FEATURES) if config.cells else 0),
        edge_features=len(EDGE_FEATURES),
        hidden=config.hidden,
        iterations=config.iterations,
        mlp_layers=config.mlp_layers,
        aggregation=config.aggregation,
    )


class EdgeFilter(nn.Module):
    """Per-edge MLP that prunes the graph before the GNN: the filter stage of Exa.TrkX (Ju et
    al., arXiv:2103.06995, section 3.2), here on the features of the two hits and of the edge.

    ``forward(x, edge_index, edge_attr)``: ``x`` (N, node_features), ``edge_index`` (2, E)
    int64, ``edge_attr`` (E, edge_features); returns (E,) float32 logits (true edge = 1).
    :meth:`scores` gives the sigmoid in chunks of ``chunk`` edges without gradients.
    """

    def __init__(
        self, node_features: int = 3, edge_features: int = 6, hidden: int = 64, layers: int = 3
    ) -> None:
        super().__init__()
        self.node_features = int(node_features)
        self.edge_features = int(edge_features)
        self.hidden = int(hidden)
        self.layers = int(layers)
        self.mlp = _mlp(2 * self.node_features + self.edge_features, self.hidden, 1, self.layers)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(node_features={self.node_features}, "
            f"edge_features={self.edge_features}, hidden={self.hidden}, layers={self.layers})"
        )

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        _check_inputs(self, x, edge_index, edge_attr)
        feats = torch.cat([x[edge_index[0]], x[edge_index[1]], edge_attr], dim=1)
        return self.mlp(feats).squeeze(-1)

    @torch.no_grad()
    def scores(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        chunk: int = 1 << 18,
    ) -> torch.Tensor:
        """(E,) sigmoid scores, computed ``chunk`` edges at a time (eval mode)."""
        was_training = self.training
        self.eval()
        out = [
            torch.sigmoid(self(x, edge_index[:, i : i + chunk], edge_attr[i : i + chunk]))
            for i in range(0, edge_index.shape[1], chunk)
        ]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)


def build_filter(config: TrainConfig) -> EdgeFilter:
    """The untrained edge filter of ``config``."""
    return EdgeFilter(
        node_features=len(NODE_FEATURES) + (len(CELL_FEATURES) if config.cells else 0),
        edge_features=len(EDGE_FEATURES),
        hidden=config.filter_hidden,
        layers=config.filter_layers,
    )


def _subset(sample: GraphSample, keep: torch.Tensor) -> GraphSample:
    """``sample`` with only the edges where ``keep`` (E,) bool is true."""
    return GraphSample(
        x=sample.x,
        edge_index=sample.edge_index[:, keep],
        edge_attr=sample.edge_attr[keep],
        y=sample.y[keep] if sample.y is not None else None,
        pt=sample.pt[keep] if sample.pt is not None else None,
    )


# ----------------------------------------------------------------------------- metrics
def edge_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    pt: np.ndarray | None = None,
    threshold: float = 0.5,
    pt_min: float = 1.0,
) -> dict[str, float]:
    """Edge ``efficiency`` and ``purity`` at ``threshold`` for particles above ``pt_min`` GeV.

    ``y_true`` (E,) bool, ``y_score`` (E,) in [0, 1], ``pt`` (E,) the particle pT (GeV) of the
    true edges (None: no pT selection). Efficiency: true edges with pT > ``pt_min`` that score
    above the threshold, over all such edges. Purity: the same count over the edges above the
    threshold minus the true edges with pT <= ``pt_min`` (neither right nor wrong for this
    selection). Also returns ``n_true`` and ``n_selected``."""
    y_true = np.asarray(y_true, bool)
    sel = np.asarray(y_score) > threshold
    if pt is None:
        high = y_true
    else:
        high = y_true & (np.nan_to_num(np.asarray(pt, float), nan=0.0) > pt_min)
    low = y_true & ~high
    tp = int((sel & high).sum())
    n_true = int(high.sum())
    n_sel = int((sel & ~low).sum())
    return {
        "efficiency": tp / n_true if n_true else float("nan"),
        "purity": tp / n_sel if n_sel else float("nan"),
        "n_true": n_true,
        "n_selected": n_sel,
    }


# ----------------------------------------------------------------------------- data
def _as_events(events_or_dir: Any, what: str = "training events") -> list[TrackingEvent]:
    if isinstance(events_or_dir, str | os.PathLike):
        from colliderlab.tracking.io import list_events, read_event

        prefixes = list_events(events_or_dir)
        if not prefixes:
            raise DatasetError(
                f"{events_or_dir} holds no TrackML events (files eventNNN-hits.csv[.gz]); "
                "generate or copy events there first."
            )
        return [read_event(p) for p in prefixes]
    if isinstance(events_or_dir, TrackingEvent):
        return [events_or_dir]
    events = list(events_or_dir)
    if not events:
        raise DatasetError(f"no {what}: pass a non-empty list of events or a directory.")
    for ev in events:
        if not isinstance(ev, TrackingEvent):
            raise DatasetError(f"{what} must be TrackingEvent objects; got {type(ev).__name__}.")
    return events


def _fingerprint(events: Sequence[TrackingEvent]) -> str:
    h = hashlib.sha256()
    for ev in events:
        h.update(np.ascontiguousarray(ev.hits[["x", "y", "z"]].to_numpy(np.float32)).tobytes())
        h.update(np.ascontiguousarray(ev.hits["hit_id"].to_numpy(np.int64)).tobytes())
        if ev.truth is not None and "particle_id" in ev.truth:
            h.update(np.ascontiguousarray(ev.truth["particle_id"].to_numpy(np.int64)).tobytes())
    return h.hexdigest()


def _loss_weights(sample: GraphSample, config: TrainConfig) -> torch.Tensor:
    if sample.y is None or sample.pt is None:
        raise DatasetError("the loss needs a graph built with truth (make_graph(truth=True)).")
    dont_care = (sample.y > 0) & ~(torch.nan_to_num(sample.pt, nan=0.0) >= config.loss_pt_min)
    return (~dont_care).to(torch.float32)


def _loss(model, sample: GraphSample, weight: torch.Tensor, pos_weight: float) -> torch.Tensor:
    logits = model(sample.x, sample.edge_index, sample.edge_attr)
    losses = nn.functional.binary_cross_entropy_with_logits(
        logits,
        sample.y,
        weight=weight,
        pos_weight=torch.tensor(pos_weight, device=logits.device),
        reduction="sum",
    )
    return losses / weight.sum().clamp(min=1.0)


# ----------------------------------------------------------------------------- checkpoints
def _state_tensors(state: Mapping[str, Any]) -> dict[str, Any]:
    """numpy arrays as tensors (so that ``weights_only=True`` can read them back)."""
    return {
        k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        for k, v in state.items()
    }


def _checkpoint_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint written by :func:`train` (a file, or a training directory); refuses a
    checkpoint of another model or format with a :class:`DatasetError`."""
    path = _checkpoint_path(path)
    if not path.is_file():
        raise DatasetError(
            f"no GNN checkpoint {path}; train one first (colliderlab.tracking.gnn.train or "
            "`colliderlab train tracking`)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DatasetError(f"{path} is not a readable checkpoint ({err}).") from err
    if not isinstance(state, dict) or state.get("kind") != _KIND:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise DatasetError(
            f"{path} is not a colliderlab GNN track-finder checkpoint (it is {found!r}); "
            "pass a checkpoint written by colliderlab.tracking.gnn.train."
        )
    if state.get("format") not in _READABLE or state.get("model_name") != MODEL_NAME:
        raise DatasetError(
            f"{path} holds model {state.get('model_name')!r} in format {state.get('format')} "
            f"(colliderlab {state.get('version')}); this version reads {MODEL_NAME!r} formats "
            f"{_READABLE}. Retrain in a new output directory."
        )
    return state


#: What :func:`finder_checkpoint` keeps of a training checkpoint.
_FINDER_KEYS = (
    "kind",
    "format",
    "model_name",
    "version",
    "config",
    "data",
    "module_map",
    "model",
    "filter",
    "filter_cut",
    "history",
    "filter_history",
)


def finder_checkpoint(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    """Write the part of a training checkpoint that :class:`GNNFinder` reads (weights, edge
    filter and its cut, module map, configuration and history) to ``destination``, without
    the optimiser and random states: a third of the size, to ship a trained finder. The copy
    finds the same tracks; :func:`train` refuses to resume from it. Returns the file written.
    """
    src = _checkpoint_path(source)
    state = load_checkpoint(src)
    dst = Path(destination)
    dst = dst / CHECKPOINT if dst.is_dir() or not dst.suffix else dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        torch.save({k: state[k] for k in _FINDER_KEYS if k in state}, tmp)
    return dst


def _check_resumable(path: Path, saved: Mapping[str, Any], config: TrainConfig, data: str):
    old, new = saved["config"], config.to_dict()
    differ = sorted(k for k in new if k != "epochs" and new[k] != old.get(k))
    if differ:
        raise ConfigError(
            f"{path} was trained with another configuration ({', '.join(differ)} differ: "
            f"{ {k: old.get(k) for k in differ} }); use another output directory. Only epochs "
            "may change, to continue a run."
        )
    if saved["data"] != data:
        raise ConfigError(
            f"{path} was trained on other events (their sha256 differs); resume with the same "
            "training events or use another output directory."
        )


def _load_model(state: Mapping[str, Any], path: Path) -> tuple[InteractionNetwork, TrainConfig]:
    config_dict = dict(state["config"])
    if state.get("format") == 1:  # written before the edge filter existed
        config_dict.setdefault("filter_epochs", 0)
    config = TrainConfig.from_dict(config_dict)
    model = build_model(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise DatasetError(
            f"the weights in {path} do not fit this version's {MODEL_NAME} "
            f"({str(err).splitlines()[0]}); retrain in a new directory."
        ) from err
    return model.eval(), config


def _load_filter(
    state: Mapping[str, Any], path: Path, config: TrainConfig
) -> tuple[EdgeFilter | None, float | None]:
    """The trained edge filter and its cut, or (None, None) when the checkpoint has none (no
    filter stage, format 1, or a run stopped before the filter finished)."""
    cut = state.get("filter_cut")
    if config.filter_epochs == 0 or cut is None or "filter" not in state:
        return None, None
    edge_filter = build_filter(config)
    try:
        edge_filter.load_state_dict(state["filter"])
    except RuntimeError as err:
        raise DatasetError(
            f"the edge-filter weights in {path} do not fit this version's EdgeFilter "
            f"({str(err).splitlines()[0]}); retrain in a new directory."
        ) from err
    return edge_filter.eval(), float(cut)


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------- training
def train(
    events_or_dir: Any,
    out_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    val: Iterable[TrackingEvent] | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    device: str | torch.device | None = None,
    workers: int | None = 1,
    scheduler: str | None = None,
    client: Any = None,
    recompute: bool = False,
) -> dict[str, Any]:
    """Train the GNN edge classifier; checkpoint after every epoch; resume if rerun.

    Args:
        events_or_dir: training events with truth (a list of
            :class:`~colliderlab.tracking.event.TrackingEvent`) or a directory of TrackML files.
        out_dir: directory of ``checkpoint.pt`` and ``result.json`` (created).
        config: :class:`TrainConfig` (None: the defaults).
        val: optional validation events: their loss and edge metrics (pT > 1 GeV, threshold
            0.5) are logged per epoch.
        progress: progress bar on stderr (None: only on a terminal).
        on_epoch: called with each epoch's history entry after its checkpoint is written.
        device: where the filter and the network train: ``"cpu"`` (None) or ``"cuda"``
            (matrix products in TF32 there). The checkpoint is read on any device; a resume on
            the CPU repeats an uninterrupted run exactly, on a GPU to its rounding (the
            scatter operations of CUDA are not deterministic).
        workers, scheduler, client: where the graphs are built (:func:`make_graphs`):
            ``workers=1`` (the default) in this process.
        recompute: recompute each message-passing iteration in the backward pass instead of
            keeping its tensors (:attr:`InteractionNetwork.recompute`): the same gradients,
            ~2x less memory at 8 iterations, ~35% more time. It does not change the result,
            so a run may be resumed with or without it. A :class:`RuntimeWarning` comes before
            the first GNN step when :func:`training_memory_estimate` exceeds the free memory.

    Returns:
        The content of ``result.json``: ``model``, ``config``, ``n_train``, ``n_params``,
        ``graph`` (mean edges per training event, fraction of true edges), ``history`` (per
        epoch: ``epoch``, ``lr``, ``train_loss``, with ``val``: ``val_loss``,
        ``val_efficiency``, ``val_purity``, and ``seconds``), ``map_s`` (module-map and graph
        building time), ``train_s``, ``train_s_per_epoch``, ``recompute``, ``device``, ``version``.

    Raises:
        ConfigError: bad config, a checkpoint in ``out_dir`` of another configuration or other
            events, or a loss that became NaN (lower ``lr``).
        DatasetError: no events, events without truth, an unreadable or foreign checkpoint.
    """
    from tqdm.auto import tqdm

    config = (config or TrainConfig()).validate()
    dev = _device(device)
    events = _as_events(events_or_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    data = _fingerprint(events)
    saved = None
    if ckpt.is_file():
        saved = load_checkpoint(ckpt)
        if saved.get("format") != _FORMAT:
            raise ConfigError(
                f"{ckpt} is a format-{saved.get('format')} checkpoint (before the edge "
                f"filter); it can be used by GNNFinder but not resumed. Train in a new output "
                "directory."
            )
        if "optimizer" not in saved:
            raise ConfigError(
                f"{ckpt} holds a finder without its optimiser state (written by "
                "finder_checkpoint); it can be used by GNNFinder but not resumed. Train in a new "
                "output directory."
            )
        _check_resumable(ckpt, saved, config, data)

    t0 = time.perf_counter()
    if saved is not None:
        module_map = ModuleMap.from_state(saved["module_map"])
    else:
        module_map = config.module_map().fit(events)
    val_events = _as_events(val, "validation events") if val is not None else []
    graphs = make_graphs(
        [*events, *val_events],
        module_map,
        cells=config.cells,
        workers=workers,
        scheduler=scheduler,
        client=client,
    )
    samples = [_to_device(s, dev) for s in graphs[: len(events)]]
    val_samples = [_to_device(s, dev) for s in graphs[len(events) :]]
    del graphs
    weights = [_loss_weights(s, config) for s in samples]
    map_s = time.perf_counter() - t0

    with torch.random.fork_rng(devices=[]), torch.enable_grad(), _fast_matmul(dev):
        torch.manual_seed(config.seed)
        model = build_model(config).to(dev)
        edge_filter = build_filter(config).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        filter_opt = torch.optim.Adam(edge_filter.parameters(), lr=config.lr)
        order = torch.Generator().manual_seed(config.seed)
        history: list[dict[str, Any]] = []
        filter_history: list[dict[str, Any]] = []
        filter_cut: float | None = None
        if saved is not None:
            model, _ = _load_model(saved, ckpt)
            model = model.to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=config.lr)
            opt.load_state_dict(saved["optimizer"])
            edge_filter.load_state_dict(saved["filter"])
            filter_opt.load_state_dict(saved["filter_optimizer"])
            filter_cut = saved["filter_cut"]
            order.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
            history = [dict(h) for h in saved["history"]]
            filter_history = [dict(h) for h in saved["filter_history"]]

        def save() -> None:
            state = {
                "kind": _KIND,
                "format": _FORMAT,
                "model_name": MODEL_NAME,
                "version": __version__,
                "config": config.to_dict(),
                "data": data,
                "module_map": _state_tensors(module_map.state_dict()),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "filter": edge_filter.state_dict(),
                "filter_optimizer": filter_opt.state_dict(),
                "filter_cut": filter_cut,
                "generator": order.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "filter_history": filter_history,
            }
            with atomic_path(ckpt) as tmp:
                torch.save(state, tmp)

        # stage 1: the edge filter
        for epoch in range(len(filter_history), config.filter_epochs):
            start = time.perf_counter()
            entry = {"stage": "filter", "epoch": epoch + 1, "lr": config.lr}
            entry["train_loss"] = _filter_epoch(
                edge_filter, filter_opt, samples, weights, order, config, progress, epoch
            )
            if epoch + 1 == config.filter_epochs:
                filter_cut = _filter_cut(edge_filter, samples, config)
                entry["cut"] = filter_cut
                entry.update(_filter_summary(edge_filter, filter_cut, samples, config, "train"))
                if val_samples:
                    entry.update(
                        _filter_summary(edge_filter, filter_cut, val_samples, config, "val")
                    )
            entry["seconds"] = time.perf_counter() - start
            filter_history.append(entry)
            save()
            if on_epoch is not None:
                on_epoch(entry)

        # stage 2: the GNN on the filtered graphs
        t1 = time.perf_counter()
        graph_edges = [int(s.edge_index.shape[1]) for s in samples]
        graph_true = [float(s.y.sum()) for s in samples if s.y is not None]
        if filter_cut is not None:
            edge_filter.eval()
            samples = [_apply_filter(edge_filter, filter_cut, s) for s in samples]
            weights = [_loss_weights(s, config) for s in samples]
            val_samples = [_apply_filter(edge_filter, filter_cut, s) for s in val_samples]
        filter_apply_s = time.perf_counter() - t1
        model.recompute = bool(recompute)
        if len(history) < config.epochs and samples:
            _warn_memory(max(int(s.edge_index.shape[1]) for s in samples), config, recompute, dev)
        for epoch in range(len(history), config.epochs):
            model.train()
            lr = config.lr * config.lr_decay ** (epoch // config.lr_step)
            for group in opt.param_groups:
                group["lr"] = lr
            start = time.perf_counter()
            perm = torch.randperm(len(samples), generator=order).tolist()
            total, n_edges = 0.0, 0.0
            bar = tqdm(
                perm,
                desc=f"gnn epoch {epoch + 1}/{config.epochs}",
                disable=(not progress) if progress is not None else None,
                leave=False,
            )
            for i in bar:
                sample, w = samples[i], weights[i]
                if sample.edge_index.shape[1] == 0:
                    continue
                opt.zero_grad()
                loss = _loss(model, sample, w, config.pos_weight)
                if not torch.isfinite(loss):
                    raise ConfigError(
                        f"the GNN loss became {float(loss)} in epoch {epoch + 1} (lr = {lr}); "
                        "lower lr and use a new output directory."
                    )
                loss.backward()
                opt.step()
                total += float(loss.detach()) * float(w.sum())
                n_edges += float(w.sum())
            entry = {
                "stage": "gnn",
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": total / max(n_edges, 1.0),
            }
            if val_samples:
                entry.update(_validate(model, val_samples, config))
            entry["seconds"] = time.perf_counter() - start
            history.append(entry)
            save()
            if on_epoch is not None:
                on_epoch(entry)

    n_e = [int(s.edge_index.shape[1]) for s in samples]
    n_t = [float(s.y.sum()) for s in samples if s.y is not None]
    n_graph = graph_edges if graph_edges else n_e
    seconds = [float(h["seconds"]) for h in history]
    filter_seconds = [float(h["seconds"]) for h in filter_history]
    result = {
        "model": MODEL_NAME,
        "config": config.to_dict(),
        "n_train": len(events),
        "n_params": count_parameters(model),
        "graph": {
            "edges_per_event": float(np.mean(n_graph)),
            "true_fraction": float(sum(graph_true) / max(sum(n_graph), 1)),
            "gnn_edges_per_event": float(np.mean(n_e)),
            "gnn_true_fraction": float(sum(n_t) / max(sum(n_e), 1)),
            "map": repr(module_map),
        },
        "history": history,
        "filter": {
            "cut": filter_cut,
            "n_params": count_parameters(edge_filter) if filter_cut is not None else 0,
            "history": filter_history,
            "train_s": float(sum(filter_seconds)),
            "apply_s": filter_apply_s,
        },
        "map_s": map_s,
        "train_s": float(sum(seconds)),
        "train_s_per_epoch": float(np.mean(seconds)) if seconds else 0.0,
        "recompute": bool(recompute),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "peak_gpu_memory_gb": (
            torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
        ),
        "version": __version__,
    }
    write_json(out / RESULT, result)
    return result


def _filter_epoch(
    edge_filter: EdgeFilter,
    opt: torch.optim.Optimizer,
    samples: Sequence[GraphSample],
    weights: Sequence[torch.Tensor],
    order: torch.Generator,
    config: TrainConfig,
    progress: bool | None,
    epoch: int,
) -> float:
    """One pass of the filter over the training graphs in minibatches of edges; the mean
    weighted loss."""
    from tqdm.auto import tqdm

    edge_filter.train()
    perm = torch.randperm(len(samples), generator=order).tolist()
    total, norm = 0.0, 0.0
    bar = tqdm(
        perm,
        desc=f"filter epoch {epoch + 1}/{config.filter_epochs}",
        disable=(not progress) if progress is not None else None,
        leave=False,
    )
    for i in bar:
        s, w = samples[i], weights[i]
        pos_weight = torch.tensor(config.pos_weight, device=w.device)
        n = int(s.edge_index.shape[1])
        edge_perm = torch.randperm(n, generator=order).to(w.device)
        for j in range(0, n, config.filter_batch):
            idx = edge_perm[j : j + config.filter_batch]
            wb = w[idx]
            if float(wb.sum()) == 0:
                continue
            opt.zero_grad()
            logits = edge_filter(s.x, s.edge_index[:, idx], s.edge_attr[idx])
            loss = (
                nn.functional.binary_cross_entropy_with_logits(
                    logits, s.y[idx], weight=wb, pos_weight=pos_weight, reduction="sum"
                )
                / wb.sum()
            )
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"the edge-filter loss became {float(loss)} in epoch {epoch + 1}; lower lr "
                    "and use a new output directory."
                )
            loss.backward()
            opt.step()
            total += float(loss.detach()) * float(wb.sum())
            norm += float(wb.sum())
    return total / max(norm, 1.0)


def _filter_cut(edge_filter: EdgeFilter, samples: Sequence[GraphSample], config: TrainConfig):
    """The score cut that keeps ``filter_efficiency`` of the true edges with pT >
    ``filter_pt_min`` of ``samples``."""
    scores = []
    for s in samples:
        high = (s.y > 0) & (torch.nan_to_num(s.pt, nan=0.0) > config.filter_pt_min)
        if bool(high.any()):
            scores.append(edge_filter.scores(s.x, s.edge_index[:, high], s.edge_attr[high]))
    if not scores:
        return 0.0
    all_scores = torch.cat(scores).double().cpu().numpy()
    return float(np.quantile(all_scores, 1.0 - config.filter_efficiency, method="lower"))


def _apply_filter(edge_filter: EdgeFilter, cut: float, sample: GraphSample) -> GraphSample:
    if sample.edge_index.shape[1] == 0:
        return sample
    keep = edge_filter.scores(sample.x, sample.edge_index, sample.edge_attr) >= cut
    return _subset(sample, keep)


def _filter_summary(
    edge_filter: EdgeFilter,
    cut: float,
    samples: Sequence[GraphSample],
    config: TrainConfig,
    prefix: str,
) -> dict[str, float]:
    """Efficiency (pT > filter_pt_min) and kept fraction of the filter at ``cut``."""
    n_high = n_high_kept = n_edges = n_kept = 0
    for s in samples:
        if s.edge_index.shape[1] == 0:
            continue
        keep = edge_filter.scores(s.x, s.edge_index, s.edge_attr) >= cut
        high = (s.y > 0) & (torch.nan_to_num(s.pt, nan=0.0) > config.filter_pt_min)
        n_high += int(high.sum())
        n_high_kept += int((high & keep).sum())
        n_edges += int(keep.numel())
        n_kept += int(keep.sum())
    return {
        f"{prefix}_filter_efficiency": n_high_kept / n_high if n_high else math.nan,
        f"{prefix}_filter_kept": n_kept / n_edges if n_edges else math.nan,
    }


def _validate(model, samples: Sequence[GraphSample], config: TrainConfig) -> dict[str, float]:
    model.eval()
    total, norm = 0.0, 0.0
    ys, ss, pts = [], [], []
    with torch.no_grad():
        for s in samples:
            if s.edge_index.shape[1] == 0:
                continue
            w = _loss_weights(s, config)
            total += float(_loss(model, s, w, config.pos_weight)) * float(w.sum())
            norm += float(w.sum())
            ys.append(s.y.cpu().numpy())
            pts.append(s.pt.cpu().numpy())
            ss.append(torch.sigmoid(model(s.x, s.edge_index, s.edge_attr)).cpu().numpy())
    model.train()
    if not ys:
        return {}
    m = edge_metrics(np.concatenate(ys) > 0, np.concatenate(ss), pt=np.concatenate(pts))
    return {
        "val_loss": total / max(norm, 1.0),
        "val_efficiency": m["efficiency"],
        "val_purity": m["purity"],
    }


# ----------------------------------------------------------------------------- tracks
def build_tracks(
    n_hits: int,
    edges: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float = 0.5,
    order: np.ndarray | None = None,
    min_hits: int = 3,
) -> np.ndarray:
    """Track labels (N,) int64 from scored edges: 1..K, 0 for hits on no track.

    Args:
        n_hits: number of hits N.
        edges: (2, E) directed edges (source, target), row indices in [0, N).
        scores: (E,) edge scores in [0, 1]; edges with score > ``threshold`` are kept.
        order: (N,) the hits' distance from the origin (mm) or any key that grows along a
            track; the walk starts from the smallest (None: the row index).
        min_hits: tracks with fewer hits are dropped (label 0).

    Connected components of the kept edges where no hit has more than one incoming and one
    outgoing edge are tracks. The others are walked through: from the innermost hit not yet
    on a track, repeatedly follow the highest-score outgoing edge to a hit not yet on a track;
    when all outgoing edges lead to assigned hits, the walk passes through the best one
    without taking it (two tracks crossing at a shared hit stay whole). Each walk is a track.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != edges.shape[1]:
        raise ValueError(f"scores has {len(scores)} entries for {edges.shape[1]} edges.")
    labels = np.zeros(n_hits, np.int64)
    if n_hits == 0:
        return labels
    keep = scores > threshold
    src, dst, sc = edges[0][keep], edges[1][keep], scores[keep]
    if len(src) == 0:
        return labels
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n_hits, n_hits))
    _, comp = connected_components(graph, directed=False)
    branching = (np.bincount(src, minlength=n_hits) > 1) | (np.bincount(dst, minlength=n_hits) > 1)
    bad = np.zeros(comp.max() + 1, bool)
    bad[comp[branching]] = True
    track = np.where(bad[comp], -1, comp + 1)  # -1: to be walked
    walk_nodes = np.flatnonzero(track < 0)
    if len(walk_nodes):
        key = np.arange(n_hits) if order is None else np.asarray(order)
        # outgoing edges of each hit, best score first
        idx = np.lexsort((-sc, src))
        s_sorted, t_sorted = src[idx], dst[idx]
        ptr = np.searchsorted(s_sorted, np.arange(n_hits + 1))
        next_id = comp.max() + 2
        assigned = track >= 0
        for start in walk_nodes[np.argsort(key[walk_nodes], kind="stable")]:
            if assigned[start]:
                continue
            assigned[start] = True
            track[start] = next_id
            cur = start
            while True:
                nxt, through = -1, -1
                for k in range(ptr[cur], ptr[cur + 1]):
                    t = t_sorted[k]
                    if not assigned[t]:
                        nxt = t
                        break
                    if through < 0:
                        through = t
                if nxt >= 0:
                    assigned[nxt] = True
                    track[nxt] = next_id
                    cur = nxt
                elif through >= 0:
                    cur = through
                else:
                    break
            next_id += 1
    track = np.maximum(track, 0)
    # drop short tracks, renumber 1..K
    ids, inverse, counts = np.unique(track, return_inverse=True, return_counts=True)
    good = (counts >= min_hits) & (ids > 0)
    new_ids = np.zeros(len(ids), np.int64)
    new_ids[good] = np.arange(1, good.sum() + 1)
    return new_ids[inverse.reshape(-1)]


# ----------------------------------------------------------------------------- finder
@register(KIND, "gnn")
class GNNFinder(TrackFinder):
    """Exa.TrkX-style GNN track finder: module-map graph, interaction network, track building.

    Args:
        checkpoint: a checkpoint file or training directory written by :func:`train` (None:
            call :meth:`fit` first).
        threshold: edge score above which an edge is kept for track building.
        min_hits: shortest track kept (shorter ones become unassigned hits, track_id 0).
        config: the :class:`TrainConfig` used by :meth:`fit` (None: defaults).
        out_dir: where :meth:`fit` writes its checkpoint (None: a temporary directory).
        threads: torch threads during :meth:`find` (None: torch's setting).
        device: where the filter and the network run (``"cpu"``, the default, or ``"cuda"``);
            the graph and the track building run on the CPU.

    After :meth:`find`, ``last_timing`` holds the seconds spent on the graph, the network and
    the track building for that event.
    """

    name = "gnn"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        threshold: float = 0.5,
        min_hits: int = 3,
        config: TrainConfig | Mapping[str, Any] | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not 0.0 <= float(threshold) < 1.0:
            raise ConfigError(f"threshold must be in [0, 1); got {threshold}.")
        if isinstance(config, Mapping):
            config = TrainConfig.from_dict(config)
        self.threshold = float(threshold)
        self.min_hits = int(min_hits)
        self.config = config
        self.out_dir = out_dir
        self.threads = threads
        self.device = _device(device)
        self.model: InteractionNetwork | None = None
        self.module_map: ModuleMap | None = None
        self.edge_filter: EdgeFilter | None = None
        self.filter_cut: float | None = None
        self.last_timing: dict[str, float] = {}
        self.last_edges: dict[str, int] = {}
        if checkpoint is not None:
            self.load(checkpoint)

    def __repr__(self) -> str:
        return (
            f"GNNFinder(threshold={self.threshold}, min_hits={self.min_hits}, "
            f"model={self.model!r}, edge_filter={self.edge_filter!r}, "
            f"filter_cut={self.filter_cut}, module_map={self.module_map!r})"
        )

    def load(self, checkpoint: str | os.PathLike[str]) -> GNNFinder:
        """Read the model and module map of a checkpoint (file or training directory)."""
        path = _checkpoint_path(checkpoint)
        state = load_checkpoint(path)
        model, self.config = _load_model(state, path)
        self.model = model.to(self.device)
        self.edge_filter, self.filter_cut = _load_filter(state, path, self.config)
        if self.edge_filter is not None:
            self.edge_filter = self.edge_filter.to(self.device)
        self.module_map = ModuleMap.from_state(state["module_map"])
        return self

    def fit(self, events: Sequence[TrackingEvent]) -> GNNFinder:
        """Train the GNN on ``events`` (with truth) with ``config``; returns self."""
        config = self.config if isinstance(self.config, TrainConfig) else TrainConfig()
        if self.out_dir is not None:
            train(events, self.out_dir, config, device=self.device)
            return self.load(self.out_dir)
        with tempfile.TemporaryDirectory(prefix="colliderlab-gnn-") as tmp:
            train(events, tmp, config, device=self.device)
            return self.load(tmp)

    def edge_scores(self, event: TrackingEvent) -> tuple[np.ndarray, np.ndarray]:
        """The event's graph (2, E) and the network's score (E,) of each edge (no truth read).

        Edges that the edge filter removes are returned with score 0, so that edge metrics
        over the graph count the filter's losses. ``last_edges`` holds the number of graph
        edges and of edges passed to the GNN."""
        if self.model is None or self.module_map is None:
            raise ConfigError(
                "the GNN finder has no model: pass checkpoint=... or call fit(events) first."
            )
        assert self.config is not None
        t0 = time.perf_counter()
        edges = self.module_map.build(event.hits)
        coords = hit_cylindrical(event.hits)
        dev = self.device
        x = torch.from_numpy(node_features(event, cells=self.config.cells)).to(dev)
        ea = torch.from_numpy(edge_features(coords, edges)).to(dev)
        t1 = time.perf_counter()
        scores = np.zeros(edges.shape[1], np.float32)
        ei = torch.from_numpy(edges).to(dev)
        keep = torch.ones(edges.shape[1], dtype=torch.bool, device=dev)
        with torch.no_grad(), _threads(self.threads), _fast_matmul(dev):
            if self.edge_filter is not None and edges.shape[1]:
                keep = self.edge_filter.scores(x, ei, ea) >= self.filter_cut
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t2 = time.perf_counter()
            if bool(keep.any()):
                kept = torch.sigmoid(self.model(x, ei[:, keep], ea[keep])).cpu().numpy()
                scores[keep.cpu().numpy()] = kept
        self.last_timing = {
            "graph_s": t1 - t0,
            "filter_s": t2 - t1,
            "inference_s": time.perf_counter() - t2,
        }
        self.last_edges = {"graph": int(edges.shape[1]), "gnn": int(keep.sum())}
        return edges, scores

    def find(self, event: TrackingEvent) -> pd.DataFrame:
        hit_id = event.hits["hit_id"].to_numpy(np.int64)
        if len(hit_id) == 0:
            return self.submission(hit_id, np.zeros(0, np.int64))
        edges, scores = self.edge_scores(event)
        t0 = time.perf_counter()
        rho = hit_cylindrical(event.hits)["rho"]
        labels = build_tracks(
            len(hit_id),
            edges,
            scores,
            threshold=self.threshold,
            order=rho,
            min_hits=self.min_hits,
        )
        self.last_timing["tracks_s"] = time.perf_counter() - t0
        return self.submission(hit_id, labels)


def evaluate_edges(
    finder: GNNFinder, events: Iterable[TrackingEvent], *, pt_min: float = 1.0
) -> dict[str, float]:
    """Edge efficiency and purity (pT > ``pt_min`` GeV, the finder's threshold) over
    ``events`` (with truth), and the mean graph efficiency of the module map."""
    ys, ss, pts = [], [], []
    for ev in events:
        edges, scores = finder.edge_scores(ev)
        label, pt = label_edges(ev, edges)
        ys.append(label)
        ss.append(scores)
        pts.append(pt)
    if not ys:
        return {"efficiency": math.nan, "purity": math.nan, "n_true": 0, "n_selected": 0}
    return edge_metrics(
        np.concatenate(ys),
        np.concatenate(ss),
        pt=np.concatenate(pts),
        threshold=finder.threshold,
        pt_min=pt_min,
    )
