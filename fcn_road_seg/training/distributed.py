"""Training under torchrun (DDP): the process group, each process's place and means over ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import resolve_device


@dataclass
class Dist:
    """This process's place in the (possibly single-process) job."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def launcher_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), before any process group."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: then one process group.

    nccl on CUDA, gloo on CPU.
    """
    want = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, want)
    rank, local = launcher_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if want.type == "cuda":
        torch.cuda.set_device(local)
        want = torch.device("cuda", local)
    dist.init_process_group("nccl" if want.type == "cuda" else "gloo")
    return Dist(rank, world, want)


def mean_over_processes(value: float, run: Dist) -> float:
    """The mean of ``value`` over all ranks (a collective under DDP)."""
    if run.world == 1:
        return value
    total = torch.tensor(value, dtype=torch.float64, device=run.device)
    dist.all_reduce(total)
    return total.item() / run.world
