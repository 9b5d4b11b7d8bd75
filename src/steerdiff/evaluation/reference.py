"""A class-balanced MNIST reference set for the reference distances of ``steerdiff evaluate --reference``
(``steerdiff reference``): held-out digits, or samples of a class-conditional model."""

from __future__ import annotations

import os

import torch

from ..core.errors import check

PER_CLASS_HELDOUT = 100  # held-out MNIST digits of each class


def reference_set(
    n: int = 1000,
    source: str = "real",
    model=None,
    seed: int = 0,
    *,
    batch_size: int = 250,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced reference set of ``n`` digits and their labels.

    ``source="real"`` takes ``n // 10`` held-out digits of each class, chosen at random with ``seed``
    (so ``n`` is rounded down to a multiple of 10); ``source="model"`` samples a class-conditional
    ``model`` with labels ``0, 1, ..., 9, 0, ...`` (sample ``i`` from noise stream ``(seed, i)``).

    Args:
        n: the size of the set, at least 10 (one per class); at most 1000 for ``real``.
        source: ``"real"`` (held-out MNIST digits) or ``"model"`` (samples).
        model: ``source="model"``: a class-conditional denoiser, or its shipped name / checkpoint
            directory (default ``mnist-cond``).
        seed: the random seed of the choice of digits, or of the samples.
        batch_size: ``source="model"``: samples per network call.
        progress: ``source="model"``: show a progress bar.

    Returns:
        ``(images (n', 1, 28, 28) in [-1, 1], labels (n',))``.
    """
    from ..data import load_mnist

    check(n >= 10, "--n must be at least 10 (one per class)")
    check(source in ("real", "model"), f"source {source!r}: use 'real' or 'model'")
    check(source == "model" or model is None, "--model is for --source model (--source real takes held-out digits)")
    if source == "real":
        held = load_mnist("heldout")
        per = n // 10
        check(
            per <= PER_CLASS_HELDOUT,
            f"--source real has {PER_CLASS_HELDOUT} held-out digits per class: use --n {10 * PER_CLASS_HELDOUT} or less",
        )
        g = torch.Generator().manual_seed(seed)
        idx = torch.cat(
            [
                torch.nonzero(held.labels == c).flatten()[torch.randperm(PER_CLASS_HELDOUT, generator=g)[:per]]
                for c in range(10)
            ]
        )
        return held.images[idx], held.labels[idx]
    from ..core.api import sample
    from ..models import load

    model = "mnist-cond" if model is None else model
    name = model if isinstance(model, (str, os.PathLike)) else getattr(model, "name", type(model).__name__)
    model = load(model) if isinstance(model, (str, os.PathLike)) else model
    check(getattr(model, "num_classes", None) is not None, f"--model {name} is unconditional: use mnist-cond")
    labels = torch.arange(n) % model.num_classes
    x = sample(model, n, seed=seed, cond={"class_labels": labels}, batch_size=batch_size, progress=progress)
    return x, labels
