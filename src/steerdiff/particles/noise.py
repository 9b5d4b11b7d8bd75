"""Simplex initial noise: a batch spread out at the coarse scale, each sample still exactly N(0, I).

The coarse component of a sample's initial noise, its means over ``block x block`` pixel blocks
rescaled to unit variance (``k = C (H / block) (W / block)`` coordinates), decides much of what a
deterministic sampler draws from it. For a group of ``m <= k + 1`` particles, :func:`simplex_noise`
puts the directions of these coordinates at the ``m`` vertices of a regular simplex (pairwise cosine
``-1 / (m - 1)``) turned by a Haar-random rotation, and their lengths at stratified ``chi_k``
quantiles in a random order. The rotation makes each direction uniform on the sphere and independent
of its length, and a stratified quantile in a random slot is uniform on (0, 1): each particle's
coarse coordinates are exactly ``N(0, I_k)`` and its fine detail is its own draw, untouched. Taken
alone, every sample is an exact draw of the sampler (no guidance, no change of its distribution);
taken together, no two particles of a group start near each other at the coarse scale.

Larger batches are cut into consecutive groups of at most ``k + 1`` particles, each with its own
rotation; a group of one is left as drawn.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import check

__all__ = ["SimplexNoise", "default_block", "initial_noise", "simplex_coordinates", "simplex_noise"]


def default_block(shape) -> int:
    """The block size :class:`SimplexNoise` uses for samples of ``shape``: for images ``(C, H, W)``
    the largest common divisor of ``H`` and ``W`` that is at most ``min(H, W) / 7`` (4 for 28 x 28,
    8 for 64 x 64 latents), so the coarse grid is about 7 x 7; 1 for vectors."""
    if len(shape) != 3:
        return 1
    h, w = int(shape[1]), int(shape[2])
    return max(b for b in range(1, min(h, w) // 7 + 1) if h % b == 0 and w % b == 0) if min(h, w) >= 7 else 1


def _haar(k: int, generator: torch.Generator) -> torch.Tensor:
    """A ``(k, k)`` Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _simplex(m: int, k: int) -> torch.Tensor:
    """``(m, k)`` unit vectors at the vertices of a regular simplex centred at 0 (``m <= k + 1``)."""
    centred = torch.eye(m, dtype=torch.float64) - 1.0 / m  # rows: the vertices, in an (m - 1)-dim subspace
    basis = torch.linalg.svd(centred)[2][: m - 1]  # (m - 1, m): that subspace
    v = torch.zeros(m, k, dtype=torch.float64)
    v[:, : m - 1] = centred @ basis.T
    return v / v.norm(dim=1, keepdim=True)


def simplex_coordinates(m: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``(m, k)`` float64 coordinates, each row exactly ``N(0, I_k)``: the vertices of a regular simplex
    turned by a Haar-random rotation, at stratified ``chi_k`` radii in a random order.

    Args:
        m: number of particles, ``2 <= m <= k + 1``.
        k: number of coordinates per particle.
        generator: the CPU generator of the rotation and the radii's slots.
    """
    from scipy.stats import chi

    directions = _simplex(m, k) @ _haar(k, generator).T
    slots = (
        torch.randperm(m, generator=generator).double() + torch.rand(m, generator=generator, dtype=torch.float64)
    ) / m
    radii = torch.from_numpy(np.asarray(chi.ppf(slots.numpy(), k), dtype=np.float64))
    return directions * radii[:, None]


def simplex_noise(z: torch.Tensor, block: int, generator: torch.Generator) -> torch.Tensor:
    """Move the coarse components of ``z`` to a randomly turned simplex (see the module docstring).

    Args:
        z: ``(n, *shape)`` standard-normal initial noise (unit variance, not yet scaled by sigma_max);
            images ``(n, C, H, W)``, or any other shape (the coarse component is then the whole sample).
        block: block size in pixels for images (``H`` and ``W`` must be multiples); 1 for other shapes.
        generator: the CPU generator of the rotations and the radii's slots (one per draw).

    Returns:
        ``(n, *shape)`` noise like ``z``: its block means changed, everything else kept.
    """
    n = len(z)
    check(
        isinstance(block, numbers.Integral) and not isinstance(block, bool) and block >= 1,
        f"block must be a positive integer, got {block!r}",
    )
    if z.ndim == 4:
        h, w = z.shape[2:]
        check(h % block == 0 and w % block == 0, f"block {block} must divide the image size {h} x {w}")
        pooled = F.avg_pool2d(z, block)  # (n, C, h / b, w / b); unit-variance coordinates: pooled * b
        coarse = pooled.flatten(1).double() * block
    else:
        check(
            block == 1, f"block must be 1 for samples that are not images, got {block} for shape {tuple(z.shape[1:])}"
        )
        pooled, coarse = z, z.flatten(1).double()
    k = coarse.shape[1]
    out = coarse.clone()
    for lo in range(0, n, k + 1):
        m = min(k + 1, n - lo)
        if m > 1:
            out[lo : lo + m] = simplex_coordinates(m, k, generator)
    if z.ndim != 4:
        return out.to(z.dtype).view_as(z)
    new = (out / block).to(z.dtype).view_as(pooled)
    return z + F.interpolate(new - pooled, scale_factor=block, mode="nearest")


class SimplexNoise:
    """The ``initial_noise`` of :func:`steerdiff.sample`: :func:`simplex_noise` with a fixed block.

    Args:
        block: block size in pixels; None: :func:`default_block` of the samples' shape.
    """

    def __init__(self, block: int | None = None) -> None:
        check(
            block is None or (isinstance(block, numbers.Integral) and not isinstance(block, bool) and block >= 1),
            f"block must be a positive integer, got {block!r}",
        )
        self.block = block

    def __call__(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return simplex_noise(z, self.block or default_block(tuple(z.shape[1:])), generator)

    def __repr__(self) -> str:
        return f"SimplexNoise(block={self.block})"


def initial_noise(text: str | None, shape=None) -> SimplexNoise | None:
    """The ``initial_noise`` of the option ``--init-noise``: ``iid`` (or None) -> None, ``simplex`` ->
    :class:`SimplexNoise` with the default block, ``simplex:B`` -> block ``B`` pixels.

    Args:
        text: the option's value.
        shape: the samples' shape, to check the block against (None: not checked).
    """
    if text in (None, "iid"):
        return None
    name, colon, block = str(text).partition(":")
    check(
        name == "simplex" and (not colon or (block.isdigit() and int(block) >= 1)),
        f"--init-noise {text!r}: use iid, simplex, or simplex:B with B a block size in pixels (e.g. simplex:4)",
    )
    if block and shape is not None:
        b, shape = int(block), tuple(shape)
        if len(shape) != 3:
            check(b == 1, f"--init-noise {text}: samples of shape {shape} are not images; use simplex (block 1)")
        size = "x".join(map(str, shape))
        check(all(d % b == 0 for d in shape[1:]), f"--init-noise {text}: block {b} must divide the sample size {size}")
    return SimplexNoise(int(block) if block else None)
