"""The process group of a torchrun launch, shared by evaluation and training.

`torchrun --nproc-per-node N` sets `WORLD_SIZE`, `RANK` and `LOCAL_RANK`; with more than one process
`distributed(device)` initialises the group from them (nccl on CUDA, gloo on CPU), gives each rank its device
(under several processes a CUDA device means the rank's `LOCAL_RANK` GPU) and destroys the group on exit if it
created it. Launched without torchrun it is a single process: rank 0 of 1, no group.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the launch: rank, world size, local rank and the torch device it runs on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.world_size > 1:
            dist.barrier()

    def main_first(self, fn: Callable[[], T]) -> T:
        """`fn()` on rank 0 first, then on the other ranks (e.g. a load that may download into a shared cache)."""
        if not self.is_main:
            self.barrier()
        out = fn()
        if self.is_main:
            self.barrier()
        return out


def launch_world_size() -> int:
    """The number of processes torchrun launched (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def current() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(device: str | None, world: int, local_rank: int) -> torch.device:
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and (world > 1 or dev.index is None):
        dev = torch.device("cuda", local_rank)
    return dev


@contextmanager
def distributed(device: str | None, timeout: datetime.timedelta | None = None) -> Iterator[DistContext]:
    """The launch's DistContext, with the process group initialised for the block when there are several ranks.

    `device` None or "auto" picks `cuda` when available, else `cpu`; `timeout` bounds every collective (torch's default
    when None). A group initialised elsewhere is joined and left as it was.
    """
    world = launch_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, world, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # nccl's object collectives run on the current device
    if world <= 1:
        yield DistContext(0, 1, 0, dev)
        return
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timeout)
    try:
        yield DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)
    finally:
        if owned:
            dist.destroy_process_group()
