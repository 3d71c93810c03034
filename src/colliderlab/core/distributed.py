"""PyTorch DistributedDataParallel set-up shared by the training loops.

Training commands run as usual in one process; started by ``torchrun`` (which sets
``WORLD_SIZE``, ``RANK`` and the rendezvous variables) they join one process group and train
with :class:`torch.nn.parallel.DistributedDataParallel`: gloo on CPUs, nccl on GPUs.
"""

from __future__ import annotations

import atexit
import os


def init_distributed(device_type: str | None = None) -> tuple[int, int]:
    """(world size, rank); joins the process group under ``torchrun`` (once per process).

    ``device_type`` is where the caller's tensors live: ``"cuda"`` gives the nccl backend,
    ``"cpu"`` gloo (a CPU training on a machine with GPUs must say so: nccl cannot reduce CPU
    tensors); None: nccl when PyTorch sees a GPU, else gloo."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        import torch

        if device_type is None:
            device_type = "cuda" if torch.cuda.is_available() else "cpu"
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        # leave the group before the interpreter exits: a process that exits with the
        # group's threads still running is aborted ("terminate called without an active
        # exception", exit code -6), and torchrun then reports the whole run as failed
        atexit.register(_leave)
    return world, int(os.environ.get("RANK", "0"))


def local_device():
    """The device of this process: ``cuda:LOCAL_RANK`` when PyTorch sees a GPU (one GPU per
    process under ``torchrun``), else the CPU. A ConfigError when torchrun started more
    processes on this node than it has GPUs."""
    import torch

    from colliderlab.core.errors import ConfigError

    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    count = torch.cuda.device_count()
    if local >= count:
        raise ConfigError(
            f"this process has LOCAL_RANK {local} but the node has {count} GPU(s): start "
            f"torchrun with --nproc-per-node {count} (one process per GPU), or hide the GPUs "
            "(CUDA_VISIBLE_DEVICES=) to train on the CPU."
        )
    return torch.device("cuda", local)


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["init_distributed", "local_device"]
