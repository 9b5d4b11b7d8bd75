"""``steerdiff evaluate``: diversity and quality of samples, per batch and aggregated, as one JSON.

Schema (``"schema": "steerdiff-evaluate/1"``)::

    {"schema": ..., "config": {...the command's settings...},
     "batches": [{"index", "seed", "n", "distinct_classes", "mean_confidence", "vendi",
                  "in_batch_similarity", "pairwise_mean"}, ...],
     "aggregate": {METRIC: {"mean", "ci95": [lo, hi], "n_batches"}},   # over batches, Student-t interval
     "overall": {"n", "frechet", "kid": {"mean", "std"}, "prdc": {...}, "vendi", "near_copy_rate",
                 "class_fractions", "reference_distance": {"global", "location", "style"}}}

Class metrics (``distinct_classes``, ``mean_confidence``, ``class_fractions``) need a classifier (the
shipped MNIST evaluator for 28x28 digits); the rest use the feature network.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..core.errors import check
from .metrics import frechet_distance, in_batch_similarity, kid, near_copy_rate, prdc, vendi_score

PER_BATCH = ("distinct_classes", "mean_confidence", "vendi", "in_batch_similarity", "pairwise_mean")


def interval(values) -> dict:
    """Mean and 95% Student-t interval of per-batch values."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "ci95": None, "n_batches": 0}
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "ci95": [mean, mean], "n_batches": 1}
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n_batches": int(len(v))}


def read_images(path: str | Path) -> torch.Tensor:
    """Samples from ``.npy``/``.pt``/``.npz`` (``(N, C, H, W)`` in ``[-1, 1]``) or a folder of PNG/JPG images."""
    from ..io import load_array

    path = Path(path)
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        check(files, f"{path} holds no .png/.jpg images")
        arrays = []
        for f in files:
            im = np.asarray(Image.open(f))
            im = im[None] if im.ndim == 2 else im.transpose(2, 0, 1)[:3]
            arrays.append(im.astype(np.float32) / 127.5 - 1)
        check(len({a.shape for a in arrays}) == 1, f"images in {path} differ in size: resize them to one size")
        return torch.from_numpy(np.stack(arrays))
    x = load_array(path).float()
    check(x.ndim == 4, f"{path} holds shape {tuple(x.shape)}: expected (N, C, H, W) images")
    check(x.numel() > 0, f"{path} holds no samples (shape {tuple(x.shape)})")
    check(bool(torch.isfinite(x).all()), f"{path} holds non-finite values (NaN or inf): regenerate the samples")
    check(
        float(x.min()) >= -1.01 and float(x.max()) <= 1.01,
        f"{path} is not in [-1, 1] (range {float(x.min()):.3g}..{float(x.max()):.3g})",
    )
    return x


def evaluate_batches(
    batches: list[torch.Tensor],
    features,
    real_feats: torch.Tensor | None = None,
    classifier=None,
    seeds: list[int] | None = None,
    train_images: torch.Tensor | None = None,
    heldout_images: torch.Tensor | None = None,
    k: int = 5,
    reference: torch.Tensor | None = None,
) -> dict:
    """Metrics of a list of batches ``(n_b, C, H, W)``; see the module docstring for the result."""
    from .metrics import pairwise_distances

    rows, all_feats, all_probs = [], [], []
    for b, x in enumerate(batches):
        f = features(x)
        all_feats.append(f)
        row = {"index": b, "seed": None if seeds is None else seeds[b], "n": len(x)}
        if classifier is not None:
            with torch.no_grad():
                p = classifier(x.float()).softmax(1)
            all_probs.append(p)
            row["distinct_classes"] = len(set(p.argmax(1).tolist()))
            row["mean_confidence"] = float(p.max(1).values.mean())
        if len(x) >= 2:
            row["vendi"] = vendi_score(f)
            row["in_batch_similarity"] = in_batch_similarity(f)
            row["pairwise_mean"] = pairwise_distances(f)["mean"]
        rows.append(row)
    feats = torch.cat(all_feats)
    overall = {"n": len(feats), "vendi": vendi_score(feats)}
    if real_feats is not None and len(feats) >= 2:
        overall["frechet"] = frechet_distance(feats, real_feats)
        overall["kid"] = kid(feats, real_feats, subsets=50, subset_size=min(1000, len(feats), len(real_feats)))
        if len(feats) > k and len(real_feats) > k:
            overall["prdc"] = prdc(real_feats, feats, k=k)
    if all_probs:
        probs = torch.cat(all_probs)
        overall["class_fractions"] = (
            (np.bincount(probs.argmax(1).numpy(), minlength=probs.shape[1]) / len(probs)).round(4).tolist()
        )
        overall["mean_confidence"] = float(probs.max(1).values.mean())
    if reference is not None:
        from .metrics import reference_distances

        overall["reference_distance"] = reference_distances(torch.cat(batches), reference, features)
    if train_images is not None and heldout_images is not None:
        overall.update(near_copy_rate(torch.cat(batches), train_images, heldout_images))
    return {"batches": rows, "aggregate": {m: interval(r.get(m) for r in rows) for m in PER_BATCH}, "overall": overall}
