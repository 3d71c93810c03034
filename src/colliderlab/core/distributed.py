"""PyTorch DistributedDataParallel set-up shared by the training loops.

Training commands run as usual in one process; started by ``torchrun`` (which sets
``WORLD_SIZE``, ``RANK`` and the rendezvous variables) they join one process group and train
with :class:`torch.nn.parallel.DistributedDataParallel`: gloo on CPUs, nccl on GPUs.
"""

from __future__ import annotations

import atexit
import os


def init_distributed() -> tuple[int, int]:
    """(world size, rank); joins the process group under ``torchrun`` (once per process)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # leave the group before the interpreter exits: a process that exits with the
        # group's threads still running is aborted ("terminate called without an active
        # exception", exit code -6), and torchrun then reports the whole run as failed
        atexit.register(_leave)
    return world, int(os.environ.get("RANK", "0"))


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["init_distributed"]
