"""``steerdiff evaluate --task edit``: does an h-space edit change the attribute and keep the digit?

Given source images and their edits (``(N, C, 28, 28)`` in ``[-1, 1]``, 1-channel MNIST or 3-channel
ColorMNIST), the judges are things the edit never optimised (the shipped ``thick`` edit is trained
on pixel L1 to dilated targets):

- ``slant`` (for ``slant`` / ``upright`` edits): ``-mu11 / mu02`` of the ink's second moments, the
  horizontal shift per row of the best-fitting shear (positive: italic); ``success`` is the share
  whose slant grew (shrank, for ``upright``) by more than ``SLANT_GAIN`` = 0.1, and the prototype
  direction below uses sheared instead of dilated digits.
- ``stroke_width``: the mean stroke width of the ink mask (``ink > 0.5`` on the channel maximum in
  ``[0, 1]``): ``2 * area / perimeter`` (4-neighbour ink/background edges), in pixels. For a stroke of
  width ``w`` and length ``L >> w`` this is ``w``. ``success`` is the share of edits whose width grew
  by more than ``min_gain`` (relative; default 5%) for ``thick`` (shrank, for ``thin``).
- ``digit_kept``: per classifier (the shipped evaluator ``mnist-evaluator`` and the independently
  trained ``mnist-evaluator2``, another architecture and seed), the share of edits classified as the
  same digit as the source (``vs_source``) and as the true label (``vs_label``, when labels are given);
  ``kept_by_all``: the share kept (vs source) by every classifier at once.
- ``directional``: the S_dir analogue: cosine between the evaluator-feature change ``f(edited) -
  f(source)`` and the attribute's prototype direction ``mean f(dilate(real, "square")) - mean f(real)``
  (``shear`` for slant) over 1,000 training digits (mean and per-image share above 0). The judge keeps
  the square dilation, whatever target an edit was trained on.
- ``frechet``: Fréchet distance (evaluator features) of the edits, and of the sources, to the 1,000
  held-out real digits.
- ``l1_outside``: mean absolute pixel change (all channels) farther than 2 pixels from the source's
  ink, where a stroke-width edit has no business; ``colour_kept``: share of edits whose dominant ink
  channel is the source's.

Classifiers see the ink map (channel maximum), so ColorMNIST digits are judged like MNIST ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import SteerdiffError, check

# the sign of the change of the attribute's measure (stroke width, or slant) that counts as success
ATTRIBUTES = {"thick": 1, "thin": -1, "slant": 1, "upright": -1}
OPPOSITE = {"thick": "thin", "thin": "thick", "slant": "upright", "upright": "slant"}
SLANT_GAIN = 0.1  # the slant change (pixels of shift per row) that counts as success for slant / upright
JUDGES = ("mnist-evaluator", "mnist-evaluator2")


def ink_map(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` in ``[-1, 1]``: the maximum over channels (colour-blind ink)."""
    return x.amax(1, keepdim=True)


def stroke_width(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Mean stroke width ``(B,)`` in pixels: ``2 * area / perimeter`` of the ink mask (see module
    docstring). An image without ink has width 0."""
    m = (((ink_map(x) + 1) / 2) > threshold).float()[:, 0]
    area = m.flatten(1).sum(1)
    p = F.pad(m, (1, 1, 1, 1))
    perim = (p[:, 1:, :] - p[:, :-1, :]).abs().flatten(1).sum(1) + (p[:, :, 1:] - p[:, :, :-1]).abs().flatten(1).sum(1)
    return torch.where(perim > 0, 2 * area / perim.clamp(min=1), torch.zeros_like(area))


def slant(x: torch.Tensor) -> torch.Tensor:
    """Slant ``(B,)`` of the ink: ``-mu11 / mu02`` of the ink map's second moments (``[0, 1]``
    weights), the horizontal shift per row of the best-fitting shear; positive for italic digits
    (the top leans right), 0 for an image without ink."""
    w = ((ink_map(x) + 1) / 2).clamp(0, 1)[:, 0]
    h, wd = w.shape[-2:]
    ys = torch.arange(h, dtype=w.dtype, device=w.device)[:, None].expand(h, wd)
    xs = torch.arange(wd, dtype=w.dtype, device=w.device)[None, :].expand(h, wd)
    m = w.sum((1, 2)).clamp(min=1e-6)
    cx, cy = (w * xs).sum((1, 2)) / m, (w * ys).sum((1, 2)) / m
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    mu11, mu02 = (w * dx * dy).sum((1, 2)) / m, (w * dy * dy).sum((1, 2)) / m
    return torch.where(mu02 > 1e-6, -mu11 / mu02.clamp(min=1e-6), torch.zeros_like(m))


def outside_region(source: torch.Tensor, radius: int = 2, threshold: float = 0.0) -> torch.Tensor:
    """``(B, 1, H, W)`` bool: pixels farther than ``radius`` (chessboard) from the source's ink."""
    ink = (ink_map(source) > threshold).float()
    return F.max_pool2d(ink, 2 * radius + 1, stride=1, padding=radius) == 0


def _predict(clf, x: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        feats = torch.cat([clf.features(ink_map(x[i : i + batch]).float()) for i in range(0, len(x), batch)])
        return clf.head(feats).argmax(1), feats


_REAL = {}


def _real_digits():
    if "r" not in _REAL:
        from ..data import load_mnist

        _REAL["r"] = (load_mnist("train").images[:1000], load_mnist("heldout").images)
    return _REAL["r"]


@torch.no_grad()
def evaluate_edit(
    source: torch.Tensor,
    edited: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    attribute: str = "thick",
    classifiers=JUDGES,
    min_gain: float = 0.05,
) -> dict:
    """The edit metrics of the module docstring for ``source`` and ``edited`` ``(N, C, 28, 28)``."""
    from ..evaluation.metrics import frechet_distance
    from ..train.classifier import load_classifier
    from .hspace import dilate, shear

    check(attribute in ATTRIBUTES, f"edit attribute {attribute!r}: use one of {', '.join(ATTRIBUTES)}")
    check(
        source.shape == edited.shape, f"source {tuple(source.shape)} and edited {tuple(edited.shape)} differ in shape"
    )
    check(
        source.ndim == 4 and tuple(source.shape[2:]) == (28, 28),
        f"edit evaluation judges 28x28 digits (N, C, 28, 28), got {tuple(source.shape)}",
    )
    check(len(source) >= 2, f"edit evaluation needs at least 2 edited images, got {len(source)}")
    for name, t in (("source", source), ("edited", edited)):
        check(bool(torch.isfinite(t).all()), f"{name} holds non-finite values (NaN or inf)")
    check(
        labels is None or len(labels) == len(source),
        f"{len(labels) if labels is not None else 0} labels for {len(source)} images",
    )
    source, edited = source.float(), edited.float()
    sign = ATTRIBUTES[attribute]
    w0, w1 = stroke_width(source), stroke_width(edited)
    s0, s1 = slant(source), slant(edited)
    by_slant = attribute in ("slant", "upright")
    gained = sign * (s1 - s0) > SLANT_GAIN if by_slant else sign * (w1 - w0) > min_gain * w0
    out = {
        "n": len(source),
        "attribute": attribute,
        "stroke_width": {
            "source_mean": float(w0.mean()),
            "edited_mean": float(w1.mean()),
            "ratio_mean": float((w1 / w0.clamp(min=1e-6)).mean()),
        },
        "slant": {
            "source_mean": float(s0.mean()),
            "edited_mean": float(s1.mean()),
            "change_mean": float((s1 - s0).mean()),
        },
        "success": float(gained.float().mean()),
        "min_gain": SLANT_GAIN if by_slant else min_gain,
    }
    kept_all = torch.ones(len(source), dtype=torch.bool)
    out["digit_kept"] = {}
    feats = None
    for name in classifiers:
        clf = load_classifier(name)
        p0, f0 = _predict(clf, source)
        p1, f1 = _predict(clf, edited)
        kept_all &= p0 == p1
        row = {"vs_source": float((p0 == p1).float().mean())}
        if labels is not None:
            row["vs_label"] = float((p1 == labels.long()).float().mean())
            row["source_vs_label"] = float((p0 == labels.long()).float().mean())
        out["digit_kept"][name] = row
        if feats is None:  # the first judge's features: directions, Fréchet
            feats = (clf, f0, f1)
    out["kept_by_all"] = float(kept_all.float().mean())
    out["success_and_kept"] = float((gained & kept_all).float().mean())
    clf, f0, f1 = feats
    train, held = _real_digits()
    edited_train = shear(train) if by_slant else dilate(train, "square")  # a fixed judge
    proto = _predict(clf, edited_train)[1].mean(0) - _predict(clf, train)[1].mean(0)
    cos = F.cosine_similarity(f1 - f0, (sign * proto)[None], dim=1)
    out["directional"] = {
        "mean_cosine": float(cos.mean()),
        "share_positive": float((cos > 0).float().mean()),
        "feature_space": classifiers[0],
    }
    real = _predict(clf, held)[1]
    out["frechet"] = {"edited_to_real": frechet_distance(f1, real), "source_to_real": frechet_distance(f0, real)}
    region = outside_region(source).expand_as(source)
    diff = (edited - source).abs()
    out["l1_outside"] = float(diff[region].mean()) if bool(region.any()) else 0.0
    out["l1_inside"] = float(diff[~region].mean()) if bool((~region).any()) else 0.0
    if source.shape[1] > 1:
        dom = lambda t: ((t + 1) / 2).flatten(2).sum(-1).argmax(1)  # noqa: E731
        out["colour_kept"] = float((dom(source) == dom(edited)).float().mean())
    return out


def evaluate_edit_file(samples: str | os.PathLike, *, classifiers=JUDGES, min_gain: float = 0.05) -> dict:
    """:func:`evaluate_edit` of the ``source`` / ``edited`` arrays of an ``.npz`` written by ``steerdiff edit``
    (or :func:`steerdiff.edit.workflow.edit_images` with ``out``), as ``steerdiff evaluate --task edit`` records it.

    A negative recorded ``strength`` ran the edit backwards, so it is judged as the opposite attribute
    (``thick`` at strength -1 should thin). Labels of your own images (``-1``) are ignored.

    Args:
        samples: the ``.npz`` file: ``source`` and ``edited`` ``(N, C, 28, 28)`` in ``[-1, 1]``; optional
            ``labels`` ``(N,)``, ``attribute`` (default ``thick``) and ``strength`` (default 1).
        classifiers: the judges' shipped names (see :func:`evaluate_edit`).
        min_gain: the relative stroke-width change that counts as success.

    Returns:
        The record ``steerdiff evaluate --task edit`` writes: ``schema``, ``config`` (``samples``,
        ``edit_attribute``, ``strength``) and the metrics of :func:`evaluate_edit`.
    """
    check(Path(samples).is_file(), f"--samples {samples} does not exist")
    try:
        with np.load(samples, allow_pickle=False) as z:
            missing = [k for k in ("source", "edited") if k not in z.files]
            check(
                not missing,
                f"--samples {samples} has no {' / '.join(missing)} array: write it with `steerdiff edit --out FILE.npz`",
            )
            src, edited = torch.from_numpy(z["source"]), torch.from_numpy(z["edited"])
            labels = torch.from_numpy(z["labels"]) if "labels" in z.files and z["labels"].size == len(src) else None
            attribute = str(z["attribute"]) if "attribute" in z.files else "thick"
            strength = float(z["strength"]) if "strength" in z.files else 1.0
    except (ValueError, OSError) as e:
        raise SteerdiffError(f"cannot read {samples}: {e}") from None
    if labels is not None and bool((labels < 0).any()):
        labels = None  # --input images have no labels
    # a negative strength runs the edit backwards: thick at strength -1 should thin
    judged = OPPOSITE.get(attribute, attribute) if strength < 0 else attribute
    return {
        "schema": "steerdiff-evaluate-edit/1",
        "config": {"samples": str(samples), "edit_attribute": attribute, "strength": strength},
        **evaluate_edit(src, edited, labels, attribute=judged, classifiers=classifiers, min_gain=min_gain),
    }
