"""``steerdiff evaluate``: diversity and quality of samples, per batch and aggregated, as one JSON
(:func:`evaluate_samples`), and next-frame prediction of frame-conditional models (:func:`evaluate_next_frame`).

Schema (``"schema": "steerdiff-evaluate/1"``)::

    {"schema": ..., "config": {...the command's settings...},
     "batches": [{"index", "seed", "n", "distinct_classes", "mean_confidence", "vendi",
                  "in_batch_similarity", "pairwise_mean"}, ...],
     "aggregate": {METRIC: {"mean", "ci95": [lo, hi], "n_batches"}},   # over batches, Student-t interval
     "overall": {"n", "frechet", "kid": {"mean", "std"}, "prdc": {...}, "vendi", "near_copy_rate",
                 "class_fractions", "reference_distance": {"global", "location", "style"}}}

Class metrics (``distinct_classes``, ``mean_confidence``, ``class_fractions``) need a classifier (the
shipped MNIST evaluator for 28x28 digits); the rest use the feature network.

Next-frame schema (``"schema": "steerdiff-evaluate-conditional/1"``)::

    {"schema": ..., "config": {...},
     "batches": [{"index", "seed", "directions", "distinct", "accuracy", "l2", "iou"}, ...],
     "aggregate": {METRIC: {"mean", "ci95", "n_batches"}},
     "p_right": {"p_right", "n", "p_value", "ci95"}}                    # horizontal only
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.errors import check
from .metrics import frechet_distance, in_batch_similarity, kid, near_copy_rate, prdc, vendi_score

SCHEMA = "steerdiff-evaluate/1"
CONDITIONAL_SCHEMA = "steerdiff-evaluate-conditional/1"
PER_BATCH = ("distinct_classes", "mean_confidence", "vendi", "in_batch_similarity", "pairwise_mean")
NEXT_FRAME_METRICS = ("distinct", "accuracy", "l2", "iou")


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


def evaluate_samples(
    samples: Sequence[torch.Tensor] | torch.Tensor | Callable[[int], torch.Tensor],
    seeds: Sequence[int] | None = None,
    *,
    batch_size: int | None = None,
    features=None,
    feature_input: str = "-11",
    classifier=None,
    real: torch.Tensor | str | os.PathLike | None = None,
    reference: torch.Tensor | str | os.PathLike | None = None,
    k: int = 5,
    config: dict | None = None,
    progress: bool = False,
) -> dict:
    """Diversity and quality of batches of samples as ``steerdiff evaluate`` writes them (see the module docstring).

    The defaults follow the samples' shape: 28x28 digits are judged with the shipped MNIST evaluator's
    features and classes, against the held-out digits, with the near-copy rate against the training
    digits; other images need ``features``.

    Args:
        samples: the batches, each ``(n_b, C, H, W)`` in ``[-1, 1]``; or one tensor ``(N, C, H, W)`` cut
            into batches of ``batch_size``; or ``draw(seed) -> (n, C, H, W)``, called once per ``seeds``.
        seeds: the random seed of each batch (recorded per batch; required with ``draw``).
        batch_size: with one tensor: the batch size (default: one batch).
        features: the feature network: a name, path or callable for
            :func:`steerdiff.features.load_features` (default ``mnist-evaluator`` for 28x28 digits).
        feature_input: the pixel range a feature file expects, ``"-11"`` or ``"01"``.
        classifier: for the class metrics: a classifier, a name or directory for
            :func:`steerdiff.classifier.load_classifier`, or ``"none"`` (default: the shipped MNIST
            evaluator for 28x28 digits, none otherwise).
        real: real images ``(M, C, H, W)`` (or their file) for the Fréchet distance, KID and PRDC
            (default: the held-out MNIST digits for 28x28 digits; giving them drops the near-copy rate).
        reference: a reference set ``(R, C, H, W)`` (or its file, see :func:`steerdiff.evaluation.reference.reference_set`)
            for the reference distances.
        k: the number of neighbours of PRDC (used when there are more than ``k`` samples and real images).
        config: recorded as the result's ``"config"`` (the command line passes its options).
        progress: show a progress bar while drawing.

    Returns:
        ``{"schema", "config", "batches", "aggregate", "overall"}``.
    """
    from tqdm.auto import tqdm

    from ..data import load_mnist
    from ..train.classifier import load_classifier
    from .features import load_features

    if callable(samples) and not isinstance(samples, torch.Tensor):
        check(seeds is not None, "draw(seed) needs seeds: one per batch")
        batches = [samples(s) for s in tqdm(seeds, desc="evaluate: sampling", disable=not progress, unit="batch")]
    elif isinstance(samples, torch.Tensor):
        size = batch_size or len(samples)
        check(size >= 1, f"batch_size must be at least 1, got {batch_size}")
        batches = [samples[i : i + size] for i in range(0, len(samples), size)]
    else:
        batches = list(samples)
    check(len(batches) > 0 and all(len(x) > 0 for x in batches), "no samples to evaluate: give non-empty batches")
    check(seeds is None or len(seeds) == len(batches), f"{len(seeds or [])} seeds for {len(batches)} batches")
    # an empty name is no name (as an empty command-line flag)
    features, classifier, real, reference = (
        None if isinstance(v, str) and not v else v for v in (features, classifier, real, reference)
    )
    digits = tuple(batches[0].shape[1:]) == (1, 28, 28)
    check(features is not None or digits, "these samples are not 28x28 digits: pass --features")
    features = load_features("mnist-evaluator" if features is None else features, feature_input)
    if classifier is None:
        classifier = "mnist-evaluator" if digits else "none"
    if isinstance(classifier, (str, os.PathLike)):
        classifier = None if str(classifier) == "none" else load_classifier(classifier)
    near_copy = real is None and digits  # against the training digits, with the held-out ones for scale
    if real is not None:
        real = real if isinstance(real, torch.Tensor) else read_images(real)
    elif digits:
        real = load_mnist("heldout").images
    result = evaluate_batches(
        batches,
        features,
        None if real is None else features(real),
        classifier,
        None if seeds is None else list(seeds),
        train_images=load_mnist("train").images if near_copy else None,
        heldout_images=real if near_copy else None,
        k=k,
        reference=None if reference is None or isinstance(reference, torch.Tensor) else read_images(reference),
    )
    return {"schema": SCHEMA, "config": config or {}, **result}


def evaluate_next_frame(
    model,
    dataset: str,
    *,
    n: int = 8,
    batches: int = 20,
    seed: int = 0,
    anywhere: bool = False,
    draw: Callable | None = None,
    sample_kwargs: dict | None = None,
    device: str = "cpu",
    config: dict | None = None,
    progress: bool = False,
) -> dict:
    """Next-frame prediction of a frame-conditional model, judged by the dataset's rule (``steerdiff
    evaluate --task conditional``; the schema is in the module docstring).

    Batch ``b`` conditions every particle on one held-out digit ``(seed + b) mod 1000`` at the point
    where the rule decides the next move (:func:`steerdiff.sequences.evaluate.next_frame_condition`)
    and scores the predictions with :func:`steerdiff.sequences.evaluate.next_frame_metrics`: ``accuracy``
    is the share moving as the rule allows (circle: one of the dataset's ``n_directions``; horizontal:
    one step left or right). Horizontal adds ``p_right`` over all predictions, against the model's
    training ``p_right``.

    Args:
        model: a frame-conditional denoiser, or a shipped name / checkpoint directory to load.
        dataset: ``circle`` (alias ``circle_jumping``), ``horizontal`` or ``free``.
        n: particles per batch (with the default ``draw``).
        batches: the number of batches; batch ``b`` uses the random seed ``seed + b``.
        seed: the first batch's random seed.
        anywhere: horizontal: condition on random positions of a sequence instead of the arrival at the centre.
        draw: ``draw(model, seed, frames) -> (n, 1, 32, 32)`` predictions for condition frames (a ``check(model,
            frames)`` method, if it has one, runs once before the first batch)
            ``(1, K, 32, 32)`` (default: :func:`steerdiff.sample` of ``n`` particles with ``sample_kwargs``).
        sample_kwargs: keyword arguments of the default draw's :func:`steerdiff.sample` (``steps``, ``guidance``, ...).
        device: where a model given by name is loaded.
        config: recorded as the result's ``"config"`` (default: this call's settings).
        progress: show a progress bar over batches.

    Returns:
        ``{"schema", "config", "batches", "aggregate"}`` plus ``"p_right"`` for horizontal.
    """
    from tqdm.auto import tqdm

    from ..data import load_mnist
    from ..sequences.evaluate import next_frame_condition, next_frame_dataset, next_frame_metrics
    from ..sequences.moving import p_right

    kind = next_frame_dataset(dataset)
    name = model
    if isinstance(model, (str, os.PathLike)):
        from ..models import load

        model = load(model, device=device)
    else:
        name = getattr(model, "name", type(model).__name__)
    k = getattr(model, "cond_frames", 0)
    check(
        k > 0,
        f"--model {name} is not frame-conditional: train one with steerdiff train --dataset {kind} --cond-frames K",
    )
    check(batches >= 1, f"batches must be at least 1, got {batches}")
    if draw is None:
        from ..core.api import sample

        def draw(model, seed, frames):
            return sample(model, n, seed=seed, cond={"frames": frames}, **(sample_kwargs or {}))

    if config is None:
        config = {
            "model": str(name),
            "dataset": dataset,
            "n": n,
            "batches": batches,
            "seed": seed,
            "anywhere": anywhere,
        }
    train = (getattr(model, "config", None) or {}).get("train", {})
    held = load_mnist("heldout").images
    rows, horizontal = [], []

    def condition(s: int) -> torch.Tensor:
        return next_frame_condition(
            kind, held[s % len(held)][None], k, s, anywhere=anywhere, p_right=train.get("p_right", 0.7)
        )

    if hasattr(draw, "check"):  # every option's check before the first batch (e.g. FrameDraw)
        draw.check(model, condition(seed))
    for b in tqdm(range(batches), desc="evaluate: conditional", disable=not progress, unit="batch"):
        s = seed + b
        cond = condition(s)
        row = next_frame_metrics(draw(model, s, cond), cond[:, -1:], kind, train.get("n_directions", 8))
        if kind != "circle":
            horizontal.extend(row["directions"])
        rows.append({"index": b, "seed": s, **row})
    result = {
        "schema": CONDITIONAL_SCHEMA,
        "config": config,
        "batches": rows,
        "aggregate": {m: interval(r.get(m) for r in rows) for m in NEXT_FRAME_METRICS if m in rows[0]},
    }
    if kind == "horizontal":
        result["p_right"] = p_right(horizontal, p0=train.get("p_right", 0.7))
    return result
