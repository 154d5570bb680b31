"""Data-parallel training under torchrun: the process group, each process's device, and the
few points where the processes must agree.

Every process runs the same loop; process 0 prepares the caches first, validates and writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from csrdmri.core.errors import InputError

T = TypeVar("T")


def process_group() -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group) under torchrun.

    Reads ``WORLD_SIZE`` (1 when unset: no process group) and starts the group (NCCL when CUDA
    is available, else gloo) from torchrun's environment when it is not started yet.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, started


def process_device(device: str | None, world: int) -> torch.device:
    """``device`` if given, else this process's GPU (``LOCAL_RANK``) when CUDA is available.

    Under torchrun a GPU becomes the process's current device, where NCCL's collectives of
    Python objects (:func:`in_turn`) take place.
    """
    if device is not None:
        chosen = torch.device(device)
    elif torch.cuda.is_available():
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        chosen = torch.device("cpu")
    if world > 1 and chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    return chosen


def in_turn(work: Callable[[], T], rank: int, world: int, task: str) -> T:
    """``work()`` on process 0 first, then on the others (e.g. 0 writes caches, they read them).

    After each turn every process learns whether one failed, so a failure ends all of them at
    once instead of leaving the others waiting until the process group times out.

    Raises
    ------
    InputError
        On the processes that did not fail: "process <rank> failed to <task>: <its error>"; the
        failing process raises its own error.
    """
    if world == 1:
        return work()
    result = None
    for lead_turn in (True, False):
        error: Exception | None = None
        if (rank == 0) == lead_turn:
            try:
                result = work()
            except Exception as exc:  # any failure: every process must hear of it
                error = exc
        messages: list[str | None] = [None] * world
        dist.all_gather_object(messages, None if error is None else _describe(error))
        if error is not None:
            raise error
        failed = next(((r, m) for r, m in enumerate(messages) if m is not None), None)
        if failed is not None:
            raise InputError(f"process {failed[0]} failed to {task}: {failed[1]}")
    return result


def _describe(error: Exception) -> str:
    return str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"


def data_parallel(objective: nn.Module, device: torch.device, world: int) -> nn.Module:
    """``objective`` wrapped in DistributedDataParallel under torchrun (itself otherwise)."""
    if world == 1:
        return objective
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(objective, device_ids=ids)


def mean_over_processes(value: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of a scalar tensor over the processes (``value`` itself in one process)."""
    if world > 1:
        dist.all_reduce(value)
        value /= world
    return value
