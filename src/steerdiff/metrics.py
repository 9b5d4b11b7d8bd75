"""Metrics as plain functions on arrays / tensors, returning floats (or dicts of floats).

Features are ``(N, D)``; images ``(N, C, H, W)`` in ``[-1, 1]``.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import check


def _features(x) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    check(a.ndim == 2, f"features must be (N, D), got shape {a.shape}: flatten images or pass extracted features")
    check(np.isfinite(a).all(), "features contain inf or nan")
    return a


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feats_a, feats_b) -> float:
    """Squared Fréchet distance between Gaussians fitted to two feature sets (the FID formula):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``."""
    a, b = _features(feats_a), _features(feats_b)
    check(a.shape[1] == b.shape[1], f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    check(len(a) >= 2 and len(b) >= 2, "need at least 2 samples in each set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False).reshape(a.shape[1], -1), np.cov(b, rowvar=False).reshape(b.shape[1], -1)
    root_a = _sqrtm_psd(s_a)
    cross = _sqrtm_psd(root_a @ s_b @ root_a)
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(cross)
    return float(max(fd, 0.0))  # round-off can leave -1e-7 for identical sets


def mode_count(labels, num_classes: int | None = None, min_count: int = 1) -> int:
    """Number of distinct labels seen at least ``min_count`` times."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=num_classes or 0)
    return int((counts >= min_count).sum())


def nearest_distances(queries: torch.Tensor, refs: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """L2 distance ``(N,)`` from each flattened query to its nearest reference (chunked)."""
    q, r = queries.flatten(1).double(), refs.flatten(1).double()
    return torch.cat([torch.cdist(q[i:i + chunk], r).min(1).values for i in range(0, len(q), chunk)])


def near_copy_rate(samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor, quantile: float = 0.05) -> dict:
    """Memorisation check: the share of samples closer (pixel L2) to their nearest training image than
    ``1 - quantile`` of held-out images are to theirs. Held-out data scores ``quantile`` by
    construction; a model that copies its training set scores near 1."""
    threshold = float(torch.quantile(nearest_distances(heldout, train), quantile))
    d = nearest_distances(samples, train)
    return {"near_copy_rate": float((d < threshold).double().mean()), "threshold": threshold}
