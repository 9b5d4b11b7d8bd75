"""The MNIST quality report of a model's samples, judged by the shipped evaluator."""
from __future__ import annotations

import numpy as np
import torch

from .classifier import load_classifier
from .data import load_mnist
from .metrics import frechet_distance, near_copy_rate


@torch.no_grad()
def classify(evaluator, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probs (N, K), features (N, D))`` of images ``(N, 1, 28, 28)`` in ``[-1, 1]``."""
    probs, feats = [], []
    for i in range(0, len(images), batch):
        f = evaluator.features(images[i:i + batch].float())
        feats.append(f)
        probs.append(evaluator.head(f).softmax(1))
    return torch.cat(probs), torch.cat(feats)


def mnist_quality(samples: torch.Tensor, evaluator=None) -> dict:
    """Quality numbers of MNIST samples ``(N, 1, 28, 28)`` in ``[-1, 1]``:

    - ``mean_confidence``: mean top-class probability under the evaluator;
    - ``class_fractions``: share of samples per predicted class;
    - ``frechet_heldout``: Fréchet distance (evaluator features) to the 1,000 held-out digits, and
      ``frechet_train_vs_heldout`` for scale (1,000 training digits against the held-out ones);
    - ``near_copy_rate``: see :func:`steerdiff.metrics.near_copy_rate`.
    """
    evaluator = evaluator or load_classifier("mnist-evaluator")
    train, held = load_mnist("train"), load_mnist("heldout")
    probs, feats = classify(evaluator, samples)
    _, held_feats = classify(evaluator, held.images)
    subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:1000]  # stratified order: shuffle
    _, train_feats = classify(evaluator, train.images[subset])
    pred = probs.argmax(1)
    return {
        "n": len(samples),
        "mean_confidence": float(probs.max(1).values.mean()),
        "class_fractions": (np.bincount(pred.numpy(), minlength=probs.shape[1]) / len(samples)).round(4).tolist(),
        "frechet_heldout": frechet_distance(feats, held_feats),
        "frechet_train_vs_heldout": frechet_distance(train_feats, held_feats),
        **near_copy_rate(samples, train.images, held.images),
    }
