"""Kernels between particle features ``(n, m)`` -> ``(n, n)`` similarity matrices.

Gradients flow through the features only: every bandwidth is computed from detached distances, so
the kernel's gradient (not the bandwidth's) does the repulsion. (A bandwidth that is not detached
adds the gradient of the median heuristic itself, a bug of earlier particle codebases.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..core.errors import SteerdiffError, check

BANDWIDTHS = ("median", "per-particle", "sigma")


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``|a_i - b_j|^2`` ``(n_a, n_b)`` by ``|a|^2 + |b|^2 - 2 a.b`` (memory ``n_a n_b``, not
    ``n_a n_b m``: thousands of particles with image-sized features fit), clamped at 0, with exact
    zeros on the diagonal when ``b`` is ``a``."""
    same = b is None or b is a
    b = a if b is None else b
    d2 = (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp(min=0)
    if same:
        d2 = d2 * (1 - torch.eye(len(a), dtype=d2.dtype, device=d2.device))
    return d2


def rbf_bandwidth(
    d2_ref: torch.Tensor, mode="median", sigma=None, scale: float = 1.0, d2_cross: torch.Tensor | None = None
) -> torch.Tensor:
    """The RBF bandwidth ``h`` (detached) so that ``k_ij = exp(-d2_ij / h)``.

    ``d2_ref`` are the squared distances within the reference set (the particles, plus any archive).
    ``"median"``: SVGD's heuristic ``h = med(d2) / log(n + 1)`` over pairs ``i != j``;
    ``"per-particle"``: ``h_ij = (h_i + h_j) / 2`` with ``h_i = med_j(d2_ij) / log(n + 1)`` (rows
    from ``d2_cross`` when the query set differs from the reference set);
    ``"sigma"``: ``h = sigma^2`` (distances shrink with the noise level); a number: a fixed ``h``.
    ``scale`` multiplies every mode.
    """
    d2 = d2_ref.detach()
    n = d2.shape[0]
    log_n = math.log(n + 1)
    off = ~torch.eye(n, dtype=torch.bool, device=d2.device)
    if isinstance(mode, (int, float)) and not isinstance(mode, bool):
        check(mode > 0, f"a fixed bandwidth must be positive, got {mode}")
        h = torch.as_tensor(float(mode), dtype=d2.dtype, device=d2.device)
    elif mode == "median":
        h = d2[off].median() / log_n if n > 1 else d2.new_ones(())
    elif mode == "per-particle":

        def row_medians(m):
            return m.masked_fill(m == 0, float("nan")).nanmedian(dim=1).values.nan_to_num(1.0) / log_n

        h_col = row_medians(d2.masked_fill(~off, 0)) if n > 1 else d2.new_ones(n)
        h_row = h_col if d2_cross is None else row_medians(d2_cross.detach())
        h = (h_row[:, None] + h_col[None, :]) / 2
    elif mode == "sigma":
        check(sigma is not None, "bandwidth='sigma' needs the noise level")
        h = torch.as_tensor(sigma, dtype=d2.dtype, device=d2.device).reshape(-1)[0] ** 2
    else:
        raise SteerdiffError(f"unknown bandwidth {mode!r}: use one of {', '.join(BANDWIDTHS)} or a positive number")
    return (scale * h).clamp(min=1e-12)


def rbf(
    a: torch.Tensor, b: torch.Tensor | None = None, bandwidth="median", sigma=None, scale: float = 1.0
) -> torch.Tensor:
    """RBF kernel ``exp(-|a_i - b_j|^2 / h)`` ``(n_a, n_b)`` with a detached bandwidth computed on the
    reference set ``b`` (see :func:`rbf_bandwidth`); ``b`` defaults to ``a``."""
    b = a if b is None else b
    d2 = pairwise_sq_dists(a, b)
    d2_ref = d2 if b is a else pairwise_sq_dists(b.detach())
    return torch.exp(-d2 / rbf_bandwidth(d2_ref, bandwidth, sigma, scale, d2_cross=None if b is a else d2))


def cosine(a: torch.Tensor, b: torch.Tensor | None = None, **_) -> torch.Tensor:
    """Cosine similarity ``<a_i, b_j> / (|a_i| |b_j|)`` in ``[-1, 1]``."""
    b = a if b is None else b

    def unit(f):
        return f / f.norm(dim=1, keepdim=True).clamp(min=1e-12)

    return unit(a) @ unit(b).T


def _ink(f: torch.Tensor) -> torch.Tensor:
    """Features mapped to ``[0, 1]`` by ``(f + 1) / 2``: ``[-1, 1]`` images become ink masks."""
    return ((f + 1) / 2).clamp(0, 1)


def iou(a: torch.Tensor, b: torch.Tensor | None = None, **_) -> torch.Tensor:
    """Soft intersection-over-union (Jaccard) of features mapped to ``[0, 1]`` (``(f + 1) / 2``, so
    ``[-1, 1]`` images become ink masks): ``sum p q / (sum p + sum q - sum p q)``."""
    b = a if b is None else b
    p, q = _ink(a), _ink(b)
    inter = p @ q.T
    return inter / (p.sum(1)[:, None] + q.sum(1)[None, :] - inter).clamp(min=1e-12)


def dot(a: torch.Tensor, b: torch.Tensor | None = None, **_) -> torch.Tensor:
    """Linear kernel ``<a_i, b_j>``. On class probabilities, ``sum_{i<j} <p_i, p_j>`` is the expected
    number of particle pairs that land in the same class, and its gradient does not vanish when two
    particles agree (unlike RBF or cosine, whose gradients are zero between identical features)."""
    b = a if b is None else b
    return a @ b.T


def label(a: torch.Tensor, b: torch.Tensor | None = None, **_) -> torch.Tensor:
    """The Potts similarity on class labels: ``1`` where the most probable classes of ``a_i`` and ``b_j``
    (class probabilities ``(n, K)``) agree, else ``0``; ``sum_{i<j}`` counts same-class pairs. Not one of
    :data:`KERNELS`: it has no gradient. :class:`~steerdiff.particles.LabelGuidance` (what
    ``ParticleGuidance(kernel="label")`` binds to) samples its potential in label space, through the
    model's class conditionals, instead of differentiating it."""
    b = a if b is None else b
    return (a.argmax(1)[:, None] == b.argmax(1)[None, :]).to(a.dtype)


def assign_labels(probs: torch.Tensor) -> torch.Tensor:
    """Class labels ``(n,)`` for particles with class probabilities ``probs`` ``(n, K)``: the
    assignment that maximises ``sum_i log p_i(c_i)`` with every class used at most ``ceil(n / K)``
    times (so ``n <= K`` particles get distinct classes): the most likely labels under PG's Potts
    potential at infinite strength. A linear assignment problem (scipy), permutation-equivariant."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    n, k = probs.shape
    cols = np.repeat(np.arange(k), -(-n // k))  # each class ceil(n/K) times
    cost = -torch.log(probs.detach().double().clamp(min=1e-300)).cpu().numpy()[:, cols]
    rows, picked = linear_sum_assignment(cost)
    labels = torch.empty(n, dtype=torch.long)
    labels[torch.as_tensor(rows)] = torch.as_tensor(cols[picked])
    return labels.to(probs.device)


# the differentiable kernels by name (the label method is LabelGuidance, not a kernel)
KERNELS: dict[str, Callable] = {"rbf": rbf, "cosine": cosine, "iou": iou, "dot": dot}


def paired(
    kernel, a: torch.Tensor, b: torch.Tensor, bandwidth="median", sigma=None, scale: float = 1.0
) -> torch.Tensor:
    """``k(a_p, b_p)`` for pairs ``p`` (``a``, ``b``: ``(P, m)``) -> ``(P,)``: the kernels above row by
    row, in memory ``P m`` (the random-subset estimator for thousands of particles). The RBF
    bandwidth is the detached median heuristic over the sampled pairs (``"median"``; other
    modes as in :func:`rbf_bandwidth` with a fixed number or ``"sigma"``).

    Each branch is the matrix kernel's formula written row by row, on purpose: the matrix forms use
    matrix products (memory ``n_a n_b``), which a list of pairs cannot; tests/test_particles.py
    (``test_paired_kernels_equal_the_matrix_diagonal``) checks each against the matrix diagonal."""
    if kernel is rbf:
        d2 = (a - b).pow(2).sum(1)
        if bandwidth == "median":
            h = d2.detach().median() / math.log(len(a) + 1)
        elif bandwidth == "sigma" or isinstance(bandwidth, (int, float)):
            h = rbf_bandwidth(d2.new_zeros(2, 2), bandwidth, sigma)
        else:
            raise SteerdiffError(f"bandwidth {bandwidth!r} with a particle subset: use median, sigma or a number")
        return torch.exp(-d2 / (scale * h).clamp(min=1e-12))  # Same as rbf, row by row
    if kernel is dot:
        return (a * b).sum(1)  # Same as dot, row by row
    if kernel is cosine:
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)  # Same as cosine, row by row
    if kernel is iou:
        # Same as iou, row by row
        p, q = _ink(a), _ink(b)
        inter = (p * q).sum(1)
        return inter / (p.sum(1) + q.sum(1) - inter).clamp(min=1e-12)
    return torch.stack([kernel(a[i : i + 1], b[i : i + 1])[0, 0] for i in range(len(a))])


def get_kernel(name_or_fn) -> Callable:
    """A kernel by name (``rbf``, ``cosine``, ``iou``, ``dot``) or a callable ``k(a, b, **kw) -> (n_a, n_b)``."""
    if callable(name_or_fn):
        return name_or_fn
    check(
        name_or_fn != "label",
        "'label' is not a kernel (it has no gradient): the label method is ParticleGuidance(kernel='label') "
        "or LabelGuidance; Repulsion and the kernel potentials need rbf, cosine, iou or dot",
    )
    if name_or_fn not in KERNELS:
        raise SteerdiffError(f"unknown kernel {name_or_fn!r}: use one of {', '.join(KERNELS)} or a callable")
    return KERNELS[name_or_fn]
