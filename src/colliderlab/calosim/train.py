"""Training of the shower generators: one resumable loop for every registered model.

:func:`train` fits the preprocessing of the model on the training showers, then runs
``config.epochs`` epochs of ``model.training_step`` over shuffled batches (constant learning
rate, no scheduler). After every epoch a checkpoint (model, optimisers, data-order generator
and random state, history) is written atomically to ``OUT/checkpoint.pt``; rerunning the same
call after an interruption resumes from it and ends with the same weights as an uninterrupted
run. Raising ``epochs`` in the config continues a finished run. A checkpoint of another model,
voxel count, configuration or training set is refused. ``OUT/result.json`` holds the losses
and the time of each epoch and the parameter count. Checkpoints hold tensors and plain Python
values only and are read with ``torch.load(..., weights_only=True)``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same loop runs with PyTorch
DistributedDataParallel (gloo on CPUs, nccl on GPUs): every process draws the same order of
the training showers and takes its share of each batch (``batch_size`` is the batch of all the
processes together, so the optimisation is that of one process with the same batch), the
gradients are averaged in the backward pass, and process 0 writes the checkpoint and the
results. The random numbers inside the loss (latent noise, flow-matching times) come from a
stream per (seed, epoch, process), so a resumed run with the same number of processes ends
with the same weights as an uninterrupted one. The WGAN trains in one process only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab import __version__
from colliderlab.calosim.features import check_showers
from colliderlab.core.distributed import init_distributed
from colliderlab.core.errors import ConfigError, DatasetError, UnknownNameError, did_you_mean
from colliderlab.core.files import atomic_path, write_json
from colliderlab.core.registry import lookup, names

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
_KIND = "colliderlab-calo-model"
_FORMAT = 1
#: Learning rate of each model when the config gives none (WGAN-GP paper: 1e-4).
DEFAULT_LR = {"vae": 1e-3, "wgan": 1e-4, "flow": 1e-3, "flow_matching": 1e-3}


def model_names() -> list[str]:
    """Names of the registered shower generators."""
    import colliderlab.calosim.models  # noqa: F401 - registers the models

    return names("calo model")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What determines a training.

    Attributes:
        model: registered name (:func:`model_names`).
        epochs: passes over the training showers.
        batch_size: showers per step.
        lr: Adam learning rate; None for the model's default (:data:`DEFAULT_LR`).
        seed: initial weights, batch order and every random draw of the training.
        model_kwargs: hyperparameters of the model constructor (besides ``n_voxels``), as
            ``(("name", value), ...)`` or a dict; sequences are stored as tuples.
    """

    model: str
    epochs: int = 50
    batch_size: int = 128
    lr: float | None = None
    seed: int = 1
    model_kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        kwargs = self.model_kwargs
        items = kwargs.items() if isinstance(kwargs, Mapping) else kwargs
        try:
            pairs = tuple(sorted((str(k), _frozen(v)) for k, v in items))
        except (TypeError, ValueError):
            raise ConfigError(
                f"model_kwargs must be a dict or pairs (name, value); got {kwargs!r}."
            ) from None
        object.__setattr__(self, "model_kwargs", pairs)

    def validate(self) -> TrainConfig:
        valid = model_names()
        if self.model not in valid:
            raise UnknownNameError(
                f"unknown calo model {self.model!r}.{did_you_mean(self.model, valid)} "
                f"Valid calo models: {', '.join(valid)}."
            )
        for key in ("epochs", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be >= 1; got {getattr(self, key)}.")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be > 0; got {self.lr}.")
        return self

    @property
    def learning_rate(self) -> float:
        """``lr``, or the model's default."""
        return float(self.lr) if self.lr is not None else DEFAULT_LR.get(self.model, 1e-3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig keys {unknown}.{did_you_mean(unknown[0], fields)}"
            )
        return cls(**d)


def _frozen(v: Any) -> Any:
    if isinstance(v, list | tuple | np.ndarray):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def build_model(config: TrainConfig, n_voxels: int):
    """The (untrained) model of ``config`` for showers of ``n_voxels`` voxels."""
    import colliderlab.calosim.models  # noqa: F401 - registers the models

    cls = lookup("calo model", config.model)
    kwargs = dict(config.model_kwargs)
    params = inspect.signature(cls).parameters
    unknown = [k for k in kwargs if k not in params or k == "n_voxels"]
    if unknown:
        valid = [p for p in params if p != "n_voxels"]
        raise ConfigError(
            f"model_kwargs {unknown} are not hyperparameters of {config.model!r}."
            f"{did_you_mean(unknown[0], valid)} Valid: {', '.join(valid)}."
        )
    return cls(n_voxels=int(n_voxels), **kwargs)


def _fingerprint(energies: np.ndarray, showers: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (energies, showers):
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint written by :func:`train` (read with ``weights_only=True``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no checkpoint {path}; train a model there first.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DatasetError(f"{path} is not a readable checkpoint ({err}).") from err
    if not isinstance(state, dict) or state.get("kind") != _KIND:
        raise DatasetError(f"{path} is not a colliderlab calorimeter-model checkpoint.")
    if state.get("format") != _FORMAT:
        raise DatasetError(
            f"{path} was written by colliderlab {state.get('version')} in an incompatible "
            "format; retrain in a new output directory."
        )
    return state


def _load_weights(model, state: Mapping[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise DatasetError(
            f"the weights in {path} do not fit the {state['config']['model']!r} model of this "
            f"colliderlab version ({str(err).splitlines()[0]}); retrain in a new directory."
        ) from err


def _check_resumable(
    path: Path, saved: Mapping[str, Any], config: TrainConfig, n_voxels: int, data: str
) -> None:
    old = saved["config"]
    if old["model"] != config.model:
        raise ConfigError(
            f"{path} is a checkpoint of model {old['model']!r}, not {config.model!r}; use "
            "another output directory (or the same model to resume)."
        )
    if int(saved["n_voxels"]) != n_voxels:
        raise ConfigError(
            f"{path} is a checkpoint for showers of {saved['n_voxels']} voxels, but these "
            f"showers have {n_voxels} (another geometry); use another output directory."
        )
    new = config.to_dict()
    differ = sorted(k for k in new if k != "epochs" and new[k] != old.get(k))
    if differ:
        raise ConfigError(
            f"{path} was trained with another configuration ({', '.join(differ)} differ: "
            f"{ {k: old.get(k) for k in differ} }); use another output directory to train "
            "this one. Only epochs may change, to continue a run."
        )
    if saved["data"] != data:
        raise ConfigError(
            f"{path} was trained on other showers (sha256 of energies and showers differ); "
            "resume with the same training set or use another output directory."
        )


def mean_loss(model, energies, showers, seed: int = 0, batch: int = 1024) -> float:
    """``model.loss`` averaged over a whole sample (tensors: energies (N,) MeV, showers
    (N, n_voxels) MeV), in eval mode, with the random stream seeded by ``seed`` (restored)."""
    import torch

    from colliderlab.calosim.models import _seeded

    was_training = model.training
    model.eval()
    total = 0.0
    try:
        with torch.no_grad(), _seeded(seed):
            for i in range(0, len(energies), batch):
                b = slice(i, i + batch)
                total += float(model.loss(energies[b], showers[b])) * len(energies[b])
    finally:
        model.train(was_training)
    return total / len(energies)


def train(
    config: TrainConfig,
    energies: Any,
    showers: Any,
    out_dir: str | os.PathLike[str],
    *,
    val: tuple[Any, Any] | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config.model`` on showers; checkpoint after every epoch; resume if rerun.

    Args:
        config: model, epochs, batch size, learning rate, seed, hyperparameters.
        energies: (N,) incident energies in MeV.
        showers: (N, n_voxels) deposited energies in MeV.
        out_dir: directory of ``checkpoint.pt`` and ``result.json`` (created).
        val: optional (energies, showers) validation sample: its loss is logged per epoch.
        progress: progress bar on stderr (None: only on a terminal).
        on_epoch: called with each epoch's history entry after its checkpoint is written.

    Returns:
        The content of ``result.json``: ``model``, ``config`` (with the resolved ``lr``),
        ``n_voxels``, ``n_train``, ``n_params``, ``history`` (per epoch: ``epoch``,
        ``train_loss``, the model's other logged losses, ``val_loss`` with ``val``,
        ``seconds``), ``train_loss`` and ``seconds_per_epoch`` (lists), ``train_s``,
        ``train_s_per_epoch``, ``version``.

    Raises:
        ConfigError: bad config or data, a checkpoint in ``out_dir`` that does not belong to
            this training, or a loss that became NaN/inf (lower ``lr``).
    """
    import torch
    from tqdm.auto import tqdm

    from colliderlab.calosim.models import count_parameters

    config.validate()
    world, rank = init_distributed("cpu")  # the calosim models train on the CPU
    if world > 1 and config.model == "wgan":
        raise ConfigError(
            "the WGAN trains in one process only (its critic and generator steps are not set "
            "up for DistributedDataParallel); run it without torchrun."
        )
    x_np, e_np = check_showers(showers, energies, what="training showers")
    n, n_voxels = x_np.shape
    if n < 2:
        raise ConfigError(f"need at least 2 training showers; got {n}.")
    if val is not None:
        vx_np, ve_np = check_showers(val[1], val[0], n_voxels, what="validation showers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    data = _fingerprint(e_np, x_np)
    saved = None
    if ckpt.is_file():
        saved = load_checkpoint(ckpt)
        _check_resumable(ckpt, saved, config, n_voxels, data)

    lr = config.learning_rate
    bs = int(config.batch_size)
    n_batches = math.ceil(n / bs)
    if world > 1 and n_batches > 1 and n - (n_batches - 1) * bs < world:
        n_batches -= 1  # a last batch smaller than the processes joins the one before it
    if world > n:
        raise ConfigError(f"{world} processes need at least {world} training showers; got {n}.")
    # the caller's random stream is left alone; training works inside torch.no_grad too
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(config.seed)
        model = build_model(config, n_voxels)
        energies_t = torch.as_tensor(e_np, dtype=torch.float32)
        showers_t = torch.as_tensor(x_np, dtype=torch.float32)
        model.prepare(energies_t, showers_t)
        optimizers = model.configure_optimizers(lr)
        ddp = {}  # the loss through DistributedDataParallel under torchrun
        if world > 1:
            ddp["loss_fn"] = torch.nn.parallel.DistributedDataParallel(
                _loss_module(model),
                device_ids=None,
                find_unused_parameters=True,  # e.g. networks that only sampling uses
            )
        order = torch.Generator().manual_seed(config.seed)
        history: list[dict[str, Any]] = []
        if saved is not None:
            _load_weights(model, saved, ckpt)
            for name, opt in optimizers.items():
                opt.load_state_dict(saved["optimizers"][name])
            order.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
            history = [dict(h) for h in saved["history"]]
        if val is not None:
            val_t = (
                torch.as_tensor(ve_np, dtype=torch.float32),
                torch.as_tensor(vx_np, dtype=torch.float32),
            )
        for epoch in range(len(history), config.epochs):
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=order)
            if world > 1:
                torch.manual_seed(_process_seed(config.seed, epoch, rank))
            sums: dict[str, float] = {}
            counts: dict[str, int] = {}
            bar = tqdm(
                range(n_batches),
                desc=f"{config.model} epoch {epoch + 1}/{config.epochs}",
                disable=(not progress) if progress is not None else None,
                leave=False,
            )
            for i in bar:
                b = perm[i * bs : (i + 1) * bs if i + 1 < n_batches else n]
                if world > 1:
                    b = b[rank::world]  # this process's share of the batch
                logs = model.training_step(
                    energies_t[b], showers_t[b], optimizers, epoch * n_batches + i, **ddp
                )
                if not math.isfinite(logs["loss"]):
                    raise ConfigError(
                        f"the loss of {config.model} became {logs['loss']} in epoch {epoch + 1} "
                        f"(lr = {lr}); lower lr or change the hyperparameters, and use a new "
                        "output directory."
                    )
                for key, value in logs.items():
                    if math.isfinite(value):
                        sums[key] = sums.get(key, 0.0) + value * len(b)
                        counts[key] = counts.get(key, 0) + len(b)
            if world > 1:
                sums, counts = _all_processes(sums, counts)
            seconds = time.perf_counter() - t0
            entry: dict[str, Any] = {"epoch": epoch + 1}
            entry.update({f"train_{k}" if k == "loss" else k: sums[k] / counts[k] for k in sums})
            if val is not None and rank == 0:
                entry["val_loss"] = mean_loss(model, *val_t, seed=config.seed + 1)
            entry["seconds"] = seconds
            history.append(entry)
            if rank > 0:
                torch.distributed.barrier()  # process 0 writes the checkpoint
                continue
            state = {
                "kind": _KIND,
                "format": _FORMAT,
                "version": __version__,
                "config": config.to_dict(),
                "n_voxels": n_voxels,
                "data": data,
                "model": model.state_dict(),
                "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
                "generator": order.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
            }
            with atomic_path(ckpt) as tmp:
                torch.save(state, tmp)
            if world > 1:
                torch.distributed.barrier()
            if on_epoch is not None:
                on_epoch(entry)

    seconds = [float(h["seconds"]) for h in history]
    result = {
        "model": config.model,
        "config": {**config.to_dict(), "lr": lr},
        "n_voxels": n_voxels,
        "n_train": n,
        "n_params": count_parameters(model),
        "history": history,
        "train_loss": [h["train_loss"] for h in history],
        "seconds_per_epoch": seconds,
        "train_s": float(sum(seconds)),
        "train_s_per_epoch": float(np.mean(seconds)) if seconds else 0.0,
        "processes": world,
        "version": __version__,
    }
    if world > 1:  # DDP keeps the processes' weights equal: checked, and reported
        result["max_weight_difference_between_processes"] = _weight_spread(model)
    if rank == 0:
        write_json(out / RESULT, result)
    return result


def _loss_module(model):
    """A module whose forward pass is ``model.loss``: what DistributedDataParallel wraps."""
    import torch

    class _Loss(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, energies, showers):
            return self.model.loss(energies, showers)

    return _Loss(model)


def _process_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of the loss's random numbers in ``epoch`` on process ``rank`` (DDP)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0] >> 1)


def _weight_spread(model) -> float:
    """The largest difference of a weight between any process and process 0 (DDP)."""
    import torch

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    ref = flat.clone()
    torch.distributed.broadcast(ref, 0)
    spread = (flat - ref).abs().max()
    torch.distributed.all_reduce(spread, op=torch.distributed.ReduceOp.MAX)
    return float(spread)


def _all_processes(
    sums: dict[str, float], counts: dict[str, int]
) -> tuple[dict[str, float], dict[str, int]]:
    """The logged loss sums and counts added over the processes (DDP)."""
    import torch

    keys = sorted(sums)
    t = torch.tensor([[sums[k], float(counts[k])] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return (
        {k: float(t[i, 0]) for i, k in enumerate(keys)},
        {k: int(t[i, 1]) for i, k in enumerate(keys)},
    )


def load_model(out_dir: str | os.PathLike[str]):
    """The model of a training directory (its last epoch), in eval mode on the CPU."""
    state = load_checkpoint(Path(out_dir) / CHECKPOINT)
    config = TrainConfig.from_dict(state["config"])
    model = build_model(config, int(state["n_voxels"]))
    _load_weights(model, state, Path(out_dir) / CHECKPOINT)
    return model.eval()
