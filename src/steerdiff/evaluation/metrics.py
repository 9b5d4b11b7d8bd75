"""Metrics as plain functions on arrays / tensors, returning floats (or dicts of floats).

Features are ``(N, D)``; images ``(N, C, H, W)`` in ``[-1, 1]``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import check


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


def kid(
    feats_a, feats_b, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3, coef0: float = 1.0, seed: int = 0
) -> dict:
    """Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD^2 with the polynomial kernel
    ``(<a, b> / d + coef0)^degree``, averaged over random subsets. Returns ``{"mean", "std"}``."""
    a, b = _features(feats_a), _features(feats_b)
    check(a.shape[1] == b.shape[1], f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    m = min(subset_size, len(a), len(b))
    check(m >= 2, "KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    vals = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (
            ((x @ x.T) / d + coef0) ** degree,
            ((y @ y.T) / d + coef0) ** degree,
            ((x @ y.T) / d + coef0) ** degree,
        )
        vals.append(
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
        )
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals))}


def vendi_score(feats, q: float = 1.0, kernel: str = "cosine") -> float:
    """Vendi score (Friedman & Dieng 2023): the exponential of the order-``q`` Rényi entropy of the
    eigenvalues of ``K / n``; ``n`` identical points score 1, ``n`` orthogonal ones score ``n``.
    ``kernel``: ``"cosine"`` (default) or ``"linear"`` (features assumed unit-normalised)."""
    x = _features(feats)
    check(kernel in ("cosine", "linear"), f"kernel {kernel!r}: use cosine or linear")
    if kernel == "cosine":
        x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    lam = np.clip(np.linalg.eigvalsh(x @ x.T / len(x)), 0, None)
    lam = lam[lam > 1e-15]
    lam = lam / lam.sum()
    if q == 1:
        return float(np.exp(-(lam * np.log(lam)).sum()))
    if np.isinf(q):
        return float(1 / lam.max())
    return float(np.exp(np.log((lam**q).sum()) / (1 - q)))


def prdc(real, fake, k: int = 5) -> dict:
    """Precision, recall, density and coverage (Naeem et al. 2020) with ``k``-nearest-neighbour balls."""
    r, f = _features(real), _features(fake)
    check(len(r) > k and len(f) > k, f"PRDC needs more than k={k} samples in each set")
    d_rr, d_ff = _pairwise(r, r), _pairwise(f, f)
    d_rf = _pairwise(r, f)  # (n_real, n_fake)
    r_real = np.sort(d_rr, axis=1)[:, k]  # k-th neighbour, excluding the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside = d_rf < r_real[:, None]
    return {
        "precision": float(inside.any(axis=0).mean()),
        "recall": float((d_rf < r_fake[None, :]).any(axis=1).mean()),
        "density": float(inside.sum() / (k * len(f))),
        "coverage": float((d_rf.min(axis=1) < r_real).mean()),
    }


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(sq, 0, None))


def in_batch_similarity(feats) -> float:
    """Mean cosine similarity over distinct pairs of a batch (lower means more diverse)."""
    x = _features(feats)
    check(len(x) >= 2, "in-batch similarity needs at least 2 samples")
    u = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    s = u @ u.T
    n = len(x)
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))


def pairwise_distances(feats, top: int = 3) -> dict:
    """Euclidean distances between all pairs: mean, min, max and the ``top`` closest / farthest pairs
    as ``(i, j, distance)`` with ``i < j``."""
    x = _features(feats)
    check(len(x) >= 2, "pairwise distances need at least 2 samples")
    d = _pairwise(x, x)
    i, j = np.triu_indices(len(x), 1)
    v = d[i, j]
    order = np.argsort(v)
    pairs = lambda idx: [(int(i[t]), int(j[t]), float(v[t])) for t in idx]
    return {
        "mean": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
        "closest": pairs(order[:top]),
        "farthest": pairs(order[::-1][:top]),
    }


def mode_count(labels, num_classes: int | None = None, min_count: int = 1) -> int:
    """Number of distinct labels seen at least ``min_count`` times."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=num_classes or 0)
    return int((counts >= min_count).sum())


def nearest_distances(queries: torch.Tensor, refs: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """L2 distance ``(N,)`` from each flattened query to its nearest reference (chunked)."""
    q, r = queries.flatten(1).double(), refs.flatten(1).double()
    return torch.cat([torch.cdist(q[i : i + chunk], r).min(1).values for i in range(0, len(q), chunk)])


def near_copy_rate(samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor, quantile: float = 0.05) -> dict:
    """Memorisation check: the share of samples closer (pixel L2) to their nearest training image than
    ``1 - quantile`` of held-out images are to theirs. Held-out data scores ``quantile`` by
    construction; a model that copies its training set scores near 1."""
    threshold = float(torch.quantile(nearest_distances(heldout, train), quantile))
    d = nearest_distances(samples, train)
    return {"near_copy_rate": float((d < threshold).double().mean()), "threshold": threshold}


def reference_distances(samples: torch.Tensor, reference: torch.Tensor, features=None) -> dict:
    """Fréchet distance of samples to a maximum-diversity reference set (the repulsion project's
    evaluation), in three feature spaces: ``global`` (``features``, e.g. the evaluator's),
    ``location`` (rule-of-thirds mass on a 3x3 grid) and ``style`` (Gram matrix of random-CNN maps).
    Images ``(N, C, H, W)`` in ``[-1, 1]``; lower is closer to the diverse reference."""
    from ..particles.embeddings import Style, ro3

    check(
        samples.shape[1:] == reference.shape[1:],
        f"samples {tuple(samples.shape[1:])} and reference {tuple(reference.shape[1:])} differ in shape",
    )
    style = Style()
    with torch.no_grad():
        out = {
            "location": frechet_distance(ro3(samples.float()), ro3(reference.float())),
            "style": frechet_distance(style(samples.float()), style(reference.float())),
        }
        if features is not None:
            out["global"] = frechet_distance(features(samples), features(reference))
    return out
