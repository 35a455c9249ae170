"""Data-parallel plumbing: one process per device, started by ``torchrun``.

``torchrun --nproc_per_node=N -m dvc_ext train ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; without them training runs in one process. CPU runs
use the gloo backend, GPU runs nccl (one GPU per process, ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from dvc_common import DvcExtError, InputError, ModelMismatchError

T = TypeVar("T")


@dataclass
class DistInfo:
    """Where this process stands: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` as a device of this process.

    Raises:
        InputError: CUDA asked for but not available.
    """
    name = str(name or "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device={name} but CUDA is not available (use device=cpu)"
            )
        if name == "cuda":
            return torch.device("cuda", local_rank)
        return torch.device(name)
    if name != "cpu":
        raise InputError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group ``torchrun`` set up (if any) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, local_world, dev)


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(info: DistInfo, t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (in place; returned for convenience)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(info: DistInfo, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def check_in_sync(info: DistInfo, module: torch.nn.Module) -> None:
    """Raise if the replicas' parameters differ (they must after every step)."""
    if not info.distributed:
        return
    with torch.no_grad():
        s = torch.zeros(2, dtype=torch.float64, device=info.device)
        for p in module.parameters():
            s[0] += p.double().sum()
            s[1] += p.double().abs().sum()
        lo, hi = s.clone(), s.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(
            f"data-parallel replicas diverged: {lo.tolist()} vs {hi.tolist()}"
        )


def on_main(info: DistInfo, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 and share its result; an error there is raised on
    every rank (so no rank waits forever on a collective)."""
    if not info.distributed:
        return fn()
    result, error = None, None
    if info.main:
        try:
            result = fn()
        except DvcExtError as e:
            error = (type(e).__name__, str(e))
    result, error = broadcast_object(info, (result, error))
    if error is not None:
        raise {"InputError": InputError, "ModelMismatchError": ModelMismatchError}.get(
            error[0], DvcExtError
        )(error[1])
    return result


def main_first(info: DistInfo, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0, then on the others (rank 0 fills shared caches)."""
    if not info.distributed:
        return fn()
    box: list[T] = []
    on_main(info, lambda: box.append(fn()))
    return box[0] if info.main else fn()
