"""Several processes through PyTorch's own engine: torchrun + DistributedDataParallel.

``torchrun --nproc_per_node=4 -m LesaNetCore.cli train ...`` starts one process per GPU and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and
joins the process group (NCCL on CUDA, gloo on CPU, so the same code is testable on a laptop). Without those
variables everything here is a no-op and training runs in one process. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import LesaNetError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank, how many there are, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: Any = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, logs and shows progress bars."""
        return self.rank == 0


def resolve_device(preference: str, local_rank: int = 0) -> Any:
    """``auto`` -> the local CUDA device when present, else CPU; explicit choices are checked."""
    import torch

    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LesaNetError(f"device: CUDA must be available for {preference!r}, but got a machine without it")
        if preference == "cuda":
            preference = f"cuda:{local_rank}"
    return torch.device(preference)


def init_distributed(device_preference: str = "auto") -> DistributedContext:
    """Joins the torchrun process group when its environment variables are set.

    Raises:
        LesaNetError: the torchrun variables are inconsistent.
    """
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=resolve_device(device_preference))
    try:
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError) as err:
        raise LesaNetError(f"RANK: torchrun must set RANK and LOCAL_RANK with WORLD_SIZE={world_size}, but got "
                           f"{os.environ.get('RANK')!r}") from err
    device = resolve_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def wrap_model(model: Any, ctx: DistributedContext, static_graph: bool = False) -> Any:
    """The model wrapped in DistributedDataParallel when several processes train, else unchanged.

    ``static_graph`` must be set when a loss ablation leaves layers without gradients (no SPL term:
    ``class_scores2``; no triplet term: ``fc_emb``): their outputs are still computed, so DDP's unused-parameter
    search counts them as used and then fails waiting for their gradients; a static graph is learnt from the
    first step instead.
    """
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if getattr(ctx.device, "type", "cpu") == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, static_graph=static_graph)


def barrier(ctx: DistributedContext) -> None:
    """Waits for every process (e.g. while rank 0 validates and writes the checkpoint)."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_mean(value: float, ctx: DistributedContext) -> float:
    """The mean of ``value`` over processes (e.g. the epoch loss for the log)."""
    if not ctx.enabled:
        return value
    import torch
    import torch.distributed as dist

    device = ctx.device if getattr(ctx.device, "type", "cpu") == "cuda" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size


def broadcast_flag(flag: bool, ctx: DistributedContext) -> bool:
    """Rank 0's ``flag`` on every process (e.g. "stop: rank 0 failed to write")."""
    if not ctx.enabled:
        return flag
    import torch
    import torch.distributed as dist

    device = ctx.device if getattr(ctx.device, "type", "cpu") == "cuda" else "cpu"
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def cleanup(ctx: DistributedContext) -> None:
    """Leaves the process group."""
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
