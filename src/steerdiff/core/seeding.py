"""Per-sample random streams.

Every random draw for sample ``i`` under seed ``s`` comes from its own ``torch.Generator`` seeded by
a hash of ``(s, i)``. A sample therefore depends on its seed and index only: not on the batch size,
on chunking, or on how many processes share the batch. Seeds 0 and 1 share no sample because the
hash of ``(0, i)`` and ``(1, j)`` never coincide in practice (64-bit BLAKE2 digests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def stream_seed(*keys: int | str) -> int:
    """A 63-bit integer derived from ``keys`` by BLAKE2b (stable across runs, machines, versions)."""
    digest = hashlib.blake2b(repr(tuple(keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def sample_generators(seed: int, indices: Sequence[int], device="cpu") -> list[torch.Generator]:
    """One generator per sample index, seeded from ``(seed, index)``."""
    return [torch.Generator(device).manual_seed(stream_seed("sample", int(seed), int(i))) for i in indices]


def randn_per_sample(
    generators: Sequence[torch.Generator], shape: Sequence[int], dtype=torch.float32, device="cpu"
) -> torch.Tensor:
    """Stack one standard-normal draw of ``shape`` from each generator: returns ``(len(generators), *shape)``."""
    return torch.stack([torch.randn(tuple(shape), generator=g, dtype=dtype, device=g.device) for g in generators]).to(
        device
    )


class PerSampleNoise:
    """A ``noise_sampler(sigma, sigma_next) -> noise`` drawing each sample's noise from its own stream.

    Successive calls continue each sample's stream, so the noise at step ``k`` of sample ``i`` is the
    ``k+1``-th draw of generator ``(seed, i)`` whatever the batch around it.
    """

    def __init__(self, generators: Sequence[torch.Generator], shape: Sequence[int], dtype=torch.float32, device="cpu"):
        self.generators, self.shape, self.dtype, self.device = list(generators), tuple(shape), dtype, device

    def __call__(self, sigma=None, sigma_next=None) -> torch.Tensor:
        return randn_per_sample(self.generators, self.shape, self.dtype, self.device)
