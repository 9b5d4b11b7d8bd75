"""Particle sets across processes with ``torch.distributed``.

Under ``torchrun --nproc_per_node=K`` each rank owns a contiguous slice of the ``n`` particles
(uneven splits allowed), draws them from their own per-sample noise streams (sample ``i`` uses the
stream of ``(seed, i)`` whichever rank owns it), and particle terms see the features of the global
set: features are all-gathered, each rank differentiates the kernel terms of its own particles, and
bandwidths are computed over the global set, so the result equals the one-process run up to float
round-off. Gloo serves CPU, NCCL GPUs. In one process :func:`all_gather`, :func:`offset` and
:func:`all_reduce_sum` are identities, so a particle term has one code path for both cases.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .errors import check


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def active() -> bool:
    """Whether the particle set spans more than one process."""
    return world()[1] > 1


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE > 1``);
    returns whether this is a multi-process run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    return True


def shutdown() -> None:
    """Leave the process group (if one is initialised): a process that exits with it still open can
    abort in gloo's teardown ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(n: int, rank: int | None = None, size: int | None = None) -> tuple[int, int]:
    """The slice ``[lo, hi)`` of ``n`` particles this rank owns (sizes differ by at most one)."""
    r, w = world()
    rank, size = (r if rank is None else rank), (w if size is None else size)
    check(n >= size, f"{size} processes for {n} particles: run at most {n} processes (each needs a particle)")
    return rank * n // size, (rank + 1) * n // size


def all_gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` (leading sizes may differ) in rank order; not differentiable."""
    _, size = world()
    if size == 1:
        return t
    gathered = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(size)]
    dist.all_gather(gathered, torch.tensor([t.shape[0]], device=t.device))
    counts = [int(c) for c in gathered]
    m = max(counts)
    pad = torch.zeros((m - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    parts = [torch.empty((m, *t.shape[1:]), dtype=t.dtype, device=t.device) for _ in range(size)]
    dist.all_gather(parts, torch.cat([t.detach(), pad]).contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)])


def offset(n_local: int) -> int:
    """Index of this rank's first particle in the global set."""
    rank, size = world()
    if size == 1:
        return 0
    sizes = all_gather(torch.tensor([n_local]))
    return int(sizes[:rank].sum())


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of every rank's ``t`` (same shape on every rank); ``t`` itself in one process."""
    if active():
        t = t.clone()
        dist.all_reduce(t)
    return t
