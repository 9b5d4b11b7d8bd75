"""Next-frame prediction of moving digits, judged by the dataset's rule: the condition frames of one
evaluation batch and the metrics of the frames predicted from them.

:func:`steerdiff.evaluation.evaluate.evaluate_next_frame` (``steerdiff evaluate --task conditional``)
runs these per batch and aggregates them over batches.
"""

from __future__ import annotations

import torch

from ..core.errors import check
from .moving import arriving_at_centre, centroid, direction_metrics, frame_quality, moving_digits

# the datasets a frame-conditional model can be evaluated on, and the names they are also known by
NEXT_FRAME_DATASETS = ("circle", "horizontal", "free")
ALIASES = {"circle_jumping": "circle"}


def next_frame_dataset(name: str) -> str:
    """The dataset ``name`` (``circle``, alias ``circle_jumping``, ``horizontal`` or ``free``) with its alias resolved.

    Args:
        name: a dataset name or alias.
    """
    kind = ALIASES.get(name, name)
    check(kind in NEXT_FRAME_DATASETS, f"--dataset {name!r}: use circle (circle_jumping), horizontal or free")
    return kind


def next_frame_condition(
    dataset: str, digit: torch.Tensor, k: int, seed: int, *, anywhere: bool = False, p_right: float = 0.7
) -> torch.Tensor:
    """The ``k`` condition frames of one batch: where the dataset's rule decides the next move.

    ``circle``: the digit centred (the frame a circle move starts from; ``k`` is 1 for circle models);
    ``horizontal``: the digit arriving at the centre column, from the left when ``seed`` is even (the
    frame where the next direction is drawn with ``p_right``); ``free``, or ``horizontal`` with
    ``anywhere``: the last ``k`` frames of a sequence drawn with ``seed``.

    Args:
        dataset: ``circle``, ``horizontal`` or ``free`` (see :func:`next_frame_dataset`).
        digit: one MNIST digit ``(1, 1, 28, 28)`` in ``[-1, 1]``.
        k: the model's number of condition frames.
        seed: the batch's random seed (the side a horizontal digit comes from, the drawn sequence).
        anywhere: horizontal: random positions of a sequence instead of the arrival at the centre.
        p_right: horizontal with ``anywhere``: probability of moving right (the model's training value).

    Returns:
        ``(1, k, 32, 32)`` frames in ``[-1, 1]``.
    """
    if dataset == "circle":
        seq = moving_digits("circle", digit, length=1, seed=seed)["frames"]  # the centred frame
    elif dataset == "horizontal" and not anywhere:
        seq = arriving_at_centre(digit, k, from_left=seed % 2 == 0)  # the decision point
    else:
        opts = {"p_right": p_right} if dataset == "horizontal" else {}
        seq = moving_digits(dataset, digit, length=k, seed=seed, **opts)["frames"]
    return seq[:, -k:]


def horizontal_directions(pred: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Left or right: the sign of each prediction's ink-centroid column shift from the last condition frame.

    Args:
        pred: predicted frames ``(N, 1, 32, 32)`` in ``[-1, 1]``.
        last: the last condition frame ``(1, 1, 32, 32)`` or one per prediction ``(N, 1, 32, 32)``.

    Returns:
        ``(N,)`` integers: +1 right (or no column shift), -1 left.
    """
    dcol = centroid(pred)[:, 1] - centroid(last.expand_as(pred))[:, 1]
    return torch.where(dcol >= 0, 1, -1)


def next_frame_metrics(pred: torch.Tensor, last: torch.Tensor, dataset: str, n_directions: int = 8) -> dict:
    """Directions, distinct directions, accuracy under the dataset's rule, L2 and IoU of predicted frames.

    ``circle``: :func:`steerdiff.sequences.direction_metrics` with the dataset's ``n_directions``.
    ``horizontal`` / ``free``: the left/right direction (:func:`horizontal_directions`) and the L2 / IoU
    against the last frame moved two pixels that way; ``horizontal`` adds ``accuracy``, the share
    moving exactly one step left or right (its rule: not up, down, diagonally or staying).

    Args:
        pred: predicted frames ``(N, 1, 32, 32)`` in ``[-1, 1]``.
        last: the last condition frame ``(1, 1, 32, 32)``.
        dataset: ``circle``, ``horizontal`` or ``free``.
        n_directions: circle: the number of directions the dataset allows (the model's training value).

    Returns:
        ``{"directions": [N ints], "distinct", "l2", "iou"}`` plus ``"accuracy"`` (circle, horizontal).
    """
    if dataset == "circle":
        return direction_metrics(pred, last, n_directions)
    dirs = horizontal_directions(pred, last)
    motion = torch.stack([torch.zeros_like(dirs), 2 * dirs], 1)
    row = {
        "directions": dirs.tolist(),
        "distinct": len(set(dirs.tolist())),
        **frame_quality(pred, last.expand_as(pred), motion),
    }
    if dataset == "horizontal":  # the rule: one step left or right (not up, down, diagonal or staying)
        row["accuracy"] = direction_metrics(pred, last, 2, step=2)["accuracy"]
    return row
