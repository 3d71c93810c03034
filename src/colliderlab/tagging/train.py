"""Training and evaluation of the taggers: one loop for every registered model.

Classical taggers (``cut``, ``bdt``) are fitted on jet-level observables; deep taggers
(:mod:`colliderlab.tagging.models`) are trained with AdamW and a cosine learning rate on
binary cross-entropy, the best epoch on the validation loss is kept. A checkpoint is written
atomically after every epoch (model, optimiser, scheduler, RNG states, history): a killed run
restarts from its last epoch with the same command. Under ``torchrun`` (``WORLD_SIZE`` > 1) the
loop runs with PyTorch DistributedDataParallel (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from colliderlab import __version__
from colliderlab.core.distributed import init_distributed, local_device
from colliderlab.core.errors import ConfigError, DatasetError, UnknownNameError, did_you_mean
from colliderlab.core.files import write_atomic, write_json
from colliderlab.core.registry import lookup, names
from colliderlab.tagging.jets import JetSet
from colliderlab.tagging.metrics import summarize

CLASSICAL = ("cut", "bdt")
CHECKPOINT = "checkpoint.pt"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What determines a training: the model, its size and the optimisation."""

    model: str
    epochs: int = 40
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_particles: int = 48
    seed: int = 1
    model_kwargs: tuple[tuple[str, Any], ...] = ()

    def validate(self) -> TrainConfig:
        if self.model not in CLASSICAL:
            import colliderlab.tagging.models  # noqa: F401 - registers the models

            if self.model not in names("tagger"):
                raise UnknownNameError(
                    f"unknown tagger {self.model!r}.{did_you_mean(self.model, all_taggers())} "
                    f"Valid taggers: {', '.join(all_taggers())}."
                )
        for key in ("epochs", "batch_size", "max_particles"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be >= 1; got {getattr(self, key)}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0; got {self.lr}.")
        return self


def all_taggers() -> list[str]:
    """Every tagger name: the classical ones, then the registered deep models."""
    import colliderlab.tagging.models  # noqa: F401 - registers the models

    return [*CLASSICAL, *names("tagger")]


# ----------------------------------------------------------------------------- classical
def _substructure(jets: JetSet) -> tuple[list[str], np.ndarray]:
    keys = [k for k in sorted(jets.jet) if k not in ("eta", "phi", "energy")]
    return keys, np.stack([jets.jet[k] for k in keys], axis=1).astype(np.float32)


def cut_score(jets: JetSet, dataset: str) -> np.ndarray:
    """The classical cut-based tagger as a score: inside the soft-drop mass window the score
    is 1 - tau32 (top) or 1 - tau21 (W), outside it is -1; a ROC scans the ratio cut. For
    quark/gluon jets: minus the constituent multiplicity."""
    j = jets.jet
    if dataset == "qg" or "msoftdrop" not in j:
        return -j["n_constituents"].astype(float)
    lo, hi, ratio = (105.0, 210.0, "tau_32") if dataset != "w" else (65.0, 105.0, "tau_21")
    window = (j["msoftdrop"] > lo) & (j["msoftdrop"] < hi)
    return np.where(window, 1.0 - j[ratio], -1.0)


def bdt_params(seed: int, nthread: int | None = None) -> dict:
    """The xgboost parameters of the BDT (``nthread`` None: every core)."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "max_depth": 4,
        "eta": 0.1,
        "subsample": 0.8,
        "seed": seed,
        "nthread": nthread or os.cpu_count() or 1,
    }


def fit_bdt(dtrain, dval, seed: int, nthread: int | None = None):
    """xgboost boosting rounds (up to 400) early-stopped after 30 rounds without a lower
    validation log-loss."""
    import xgboost as xgb

    return xgb.train(
        bdt_params(seed, nthread),
        dtrain,
        num_boost_round=400,
        evals=[(dval, "val")],
        early_stopping_rounds=30,
        verbose_eval=False,
    )


def train_bdt(train: JetSet, val: JetSet, seed: int, out: Path):
    """Gradient-boosted trees (xgboost) on the jet-level observables, early-stopped on the
    validation log-loss; the model is saved as ``OUT/bdt.json``."""
    import xgboost as xgb

    keys, x = _substructure(train)
    _, xv = _substructure(val)
    dtrain = xgb.DMatrix(x, label=train.label, feature_names=keys)
    dval = xgb.DMatrix(xv, label=val.label, feature_names=keys)
    booster = fit_bdt(dtrain, dval, seed)
    booster.save_model(out / "bdt.json")
    write_json(out / "bdt_features.json", keys)
    return booster


def bdt_scores(booster, jets: JetSet) -> np.ndarray:
    import xgboost as xgb

    keys, x = _substructure(jets)
    return booster.predict(
        xgb.DMatrix(x, feature_names=keys), iteration_range=(0, booster.best_iteration + 1)
    )


# ----------------------------------------------------------------------------- deep models
def model_inputs(model, jets: JetSet, max_particles: int) -> list[np.ndarray]:
    """The arrays ``model.forward`` takes, in the order of ``model.inputs``."""
    from colliderlab.tagging.features import F
    from colliderlab.tagging.models import jet_images

    features, vectors, mask = jets.particle_inputs(max_particles)
    if tuple(model.inputs) == ("image",):
        return [
            jet_images(
                features[..., F["deta"]],
                features[..., F["dphi"]],
                np.exp(features[..., F["log_pt"]]) * mask,
                mask,
            )
        ]
    table = {"features": features, "vectors": vectors, "mask": mask}
    return [table[k] for k in model.inputs]


def build_model(config: TrainConfig):
    import torch

    import colliderlab.tagging.models  # noqa: F401

    cls = lookup("tagger", config.model)
    torch.manual_seed(config.seed)
    return cls(**dict(config.model_kwargs))


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    def write(tmp):
        buf = io.BytesIO()
        torch.save(state, buf)
        tmp.write_bytes(buf.getvalue())

    write_atomic(path, write)


def load_checkpoint(path: str | os.PathLike[str], expect_model: str | None = None) -> dict:
    """A checkpoint written by :func:`train`; refuses one of another model or version."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no checkpoint {path}; train first (`colliderlab train tagging`).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise DatasetError(f"{path} is not a readable checkpoint ({err}).") from err
    if not isinstance(state, dict) or state.get("kind") != "colliderlab-tagger":
        raise DatasetError(f"{path} is not a colliderlab tagger checkpoint.")
    if expect_model and state["config"]["model"] != expect_model:
        raise ConfigError(
            f"{path} is a checkpoint of model {state['config']['model']!r}, not "
            f"{expect_model!r}; use another output directory or --model "
            f"{state['config']['model']}."
        )
    if state.get("format") != 1:
        raise DatasetError(
            f"{path} was written by colliderlab {state.get('version')} in an incompatible "
            "format; retrain."
        )
    return state


def train(
    config: TrainConfig,
    data: dict[str, JetSet],
    out: str | os.PathLike[str],
    *,
    dataset: str = "top",
    progress: bool | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Train ``config.model`` on ``data['train']`` (validating on ``data['val']``), write
    ``OUT/result.json`` (test-set metrics, timing) and ``OUT/scores.npz``; return the result.

    ``on_epoch(entry)`` is called after each epoch's checkpoint is written (monitoring)."""
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        if split not in data:
            raise DatasetError(f"the data has no {split!r} split.")
        data[split].check(f"{split} jets")
    test = data["test"]
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if config.model == "cut":
        scores = cut_score(test, dataset)
    elif config.model == "bdt":
        scores = bdt_scores(train_bdt(data["train"], data["val"], config.seed, out), test)
    else:
        scores, extra = _train_deep(config, data, out, progress, on_epoch)
    result = {
        "model": config.model,
        "dataset": dataset,
        "config": dataclasses.asdict(config),
        "metrics": summarize(test.label, scores),
        "train_s": time.perf_counter() - start,
        "version": __version__,
        **extra,
    }
    if int(os.environ.get("RANK", "0")) == 0:  # one writer under torchrun
        np.savez(
            out / "scores.npz",
            label=test.label,
            score=scores,
            mass=test.jet.get("msoftdrop", test.jet["mass"]),
        )
        write_json(out / "result.json", result)
    return result


def _train_deep(
    config: TrainConfig, data, out: Path, progress, on_epoch=None
) -> tuple[np.ndarray, dict]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler
    from tqdm.auto import tqdm

    from colliderlab.tagging.models import count_parameters

    device = local_device()  # one GPU per process (LOCAL_RANK under torchrun), else the CPU
    world, rank = init_distributed(device.type)
    model = build_model(config).to(device)
    arrays = {
        s: model_inputs(model, data[s], config.max_particles) for s in ("train", "val", "test")
    }
    for s, arrs in arrays.items():
        for a in arrs:
            if not np.isfinite(a).all():
                raise DatasetError(f"{s} inputs of {config.model} hold NaN/inf values.")
    train_ds = TensorDataset(
        *(torch.from_numpy(a) for a in arrays["train"]),
        torch.from_numpy(data["train"].label.astype(np.float32)),
    )
    g = torch.Generator().manual_seed(config.seed)
    sampler = DistributedSampler(train_ds, seed=config.seed) if world > 1 else None
    loader = DataLoader(
        train_ds,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=g,
        drop_last=len(train_ds) > config.batch_size,
    )
    net = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        if world > 1
        else model
    )
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * len(loader))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    state = {"epoch": 0, "history": [], "best_loss": float("inf"), "best": None}
    ckpt = out / CHECKPOINT
    if ckpt.is_file():
        saved = load_checkpoint(ckpt, expect_model=config.model)
        if saved["config"] != dataclasses.asdict(config):
            raise ConfigError(
                f"{ckpt} was trained with another configuration ({saved['config']}); use "
                "another output directory to train this one."
            )
        model.load_state_dict(saved["model"])  # (saved on the CPU: map_location)
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        g.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        state = {k: saved[k] for k in ("epoch", "history", "best_loss", "best")}

    def predict(arrs, batch=1024):
        model.eval()
        out_ = []
        with torch.no_grad():
            for i in range(0, len(arrs[0]), batch):
                x = (torch.from_numpy(a[i : i + batch]).to(device) for a in arrs)
                out_.append(model(*x).cpu())
        return torch.cat(out_).numpy()

    val_label = torch.from_numpy(data["val"].label.astype(np.float32))
    epoch_times = [h["seconds"] for h in state["history"]]
    show = progress if progress is not None else None
    for epoch in range(state["epoch"], config.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        total, n = 0.0, 0
        bar = tqdm(
            loader,
            desc=f"{config.model} epoch {epoch + 1}/{config.epochs}",
            disable=(not show) if show is not None else None,
            leave=False,
        )
        for *x, y in bar:
            x, y = [t.to(device, non_blocking=True) for t in x], y.to(device)
            opt.zero_grad()
            loss = loss_fn(net(*x), y)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
            n += len(y)
        seconds = time.perf_counter() - t0
        val_logit = torch.from_numpy(predict(arrays["val"]))
        val_loss = float(loss_fn(val_logit, val_label))
        epoch_times.append(seconds)
        state["history"].append(
            {
                "epoch": epoch + 1,
                "train_loss": total / max(n, 1),
                "val_loss": val_loss,
                "seconds": seconds,
            }
        )
        if val_loss < state["best_loss"]:
            state["best_loss"] = val_loss
            state["best"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state["epoch"] = epoch + 1
        if rank == 0:
            _save_checkpoint(
                ckpt,
                {
                    "kind": "colliderlab-tagger",
                    "format": 1,
                    "version": __version__,
                    "config": dataclasses.asdict(config),
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": g.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    **state,
                },
            )
        if on_epoch is not None:
            on_epoch(state["history"][-1])
    if state["best"] is not None:
        model.load_state_dict(state["best"])
    scores = 1.0 / (1.0 + np.exp(-predict(arrays["test"]).astype(np.float64)))
    if world > 1:
        torch.distributed.destroy_process_group()
    return scores, {
        "n_params": count_parameters(model),
        "train_s_per_epoch": float(np.mean(epoch_times)) if epoch_times else 0.0,
        "history": state["history"],
    }


def trained_model(out: str | os.PathLike[str]):
    """The best model of a finished training directory (eval mode)."""
    state = load_checkpoint(Path(out) / CHECKPOINT)
    cfg = state["config"]
    config = TrainConfig(**{**cfg, "model_kwargs": tuple(map(tuple, cfg["model_kwargs"]))})
    model = build_model(config)
    model.load_state_dict(state["best"] or state["model"])
    return model.eval(), config
