"""Judging compositions: the (digit, colour) class of ColorMNIST samples, and the exact class
histogram a composition of class-defined sets should produce.

The (digit, colour) classifier is rule + evaluator: the colour is the channel (red or green) with
more ink, the digit is the shipped MNIST evaluator's call on that channel. Neither was trained on
ColorMNIST or on any composition, so it is an independent judge.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.errors import check
from ..data import COLOR_SETS, SHORT_NAMES, SUBDIGIT_SETS
from ..train.classifier import classify, load_classifier


def ink(x: torch.Tensor) -> torch.Tensor:
    """Ink per channel ``(N, C)`` of images in ``[-1, 1]`` (sum of ``(x + 1) / 2`` clipped at 0)."""
    return ((x.float() + 1) / 2).clamp(min=0).flatten(2).sum(2)


@torch.no_grad()
def color_digit_classes(x: torch.Tensor, evaluator=None) -> torch.Tensor:
    """``(N,)`` class ids ``digit + 10 * colour`` (colour 0 red, 1 green) of ``(N, 3, 28, 28)`` images;
    ``(N, 1, 28, 28)`` MNIST images get their digit."""
    evaluator = evaluator or load_classifier("mnist-evaluator")
    if x.shape[1] == 1:
        return classify(evaluator, x)[0].argmax(1)
    check(x.shape[1] == 3, f"expected (N, 3, 28, 28) ColorMNIST images, got {tuple(x.shape)}")
    colour = ink(x)[:, :2].argmax(1)
    gray = x[torch.arange(len(x)), colour].unsqueeze(1)
    return classify(evaluator, gray)[0].argmax(1) + 10 * colour


def class_weights(name: str) -> torch.Tensor:
    """The 20 (digit, colour) class weights ``(20,)`` of a ColorMNIST set, or the 10 digit weights of
    a sub-digit set: each allowed class equally likely."""
    name = SHORT_NAMES.get(name, name)
    if name in SUBDIGIT_SETS:
        w = torch.zeros(10, dtype=torch.float64)
        w[list(SUBDIGIT_SETS[name])] = 1
    else:
        check(name in COLOR_SETS, f"{name!r} is not a class-defined set: no exact composition target")
        w = torch.zeros(20, dtype=torch.float64)
        for d, c in COLOR_SETS[name]:
            w[d + 10 * c] = 1
    return w / w.sum()


def exact_target(bases: Sequence[str], y: Sequence[int]) -> torch.Tensor:
    """The class distribution of the composition ``p_mix(x) prod_j p(y_j | x)`` at guidance scale 1
    for class-defined sets: ``p~(c) ∝ p_mix(c) prod_j q_c(y_j)``, ``q_c(i) = p_i(c) / sum_l p_l(c)``."""
    a = torch.stack([class_weights(b) for b in bases])  # (m, C)
    mix = a.mean(0)
    q = a / a.sum(0, keepdim=True).clamp(min=1e-300)
    w = mix * torch.stack([q[v - 1] for v in y]).prod(0)
    check(float(w.sum()) > 0, f"the composition y={tuple(y)} of {list(bases)} is empty")
    return w / w.sum()


def class_histogram(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(classes, minlength=num_classes).double() / max(1, len(classes))


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())
