"""DDP set-up and the few collective decisions every rank must take together."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

# Every rank validates its share, but rank 0 alone scores, logs and saves while the others wait in the next
# collective; NCCL's default 10-minute timeout can be short for that on a large set. YOLOv5 uses 3 hours.
PROCESS_GROUP_TIMEOUT = timedelta(hours=3)


def init_distributed(device_name: str | None) -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; gloo whenever the device is the CPU."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 0, 1
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    on_cpu = (device_name or "").lower() == "cpu" or not torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("gloo" if on_cpu else "nccl", timeout=PROCESS_GROUP_TIMEOUT)
    return rank, local, world


def any_rank(flags: list[bool], world: int, device) -> list[bool]:
    """For each flag: is it set on any rank? One all-reduce for all of them."""
    if world == 1:
        return list(flags)
    t = torch.tensor([int(f) for f in flags], device=device)
    dist.all_reduce(t)
    return [bool(v) for v in t.tolist()]


def mean_over_ranks(values: dict[str, torch.Tensor], world: int, device) -> dict[str, float]:
    """Each value averaged over the ranks (every rank gets the same dict, in the same key order): the logged
    loss is the whole batch's, not rank 0's share of it. One all-reduce."""
    if not values:
        return {}
    t = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device) for v in values.values()])
    if world > 1:
        dist.all_reduce(t)
        t /= world
    return dict(zip(values, t.tolist()))


def from_rank0(flag: bool, world: int, device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
