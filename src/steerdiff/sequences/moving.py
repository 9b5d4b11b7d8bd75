"""Moving digits: frame sequences built from MNIST digits, and the metrics of predicted frames.

Frames are ``32x32`` in ``[-1, 1]`` with a ``16x16`` digit (the 28x28 digit area-resized) placed with
its top-left corner at integer ``(row, col)``; the centred position is ``(8, 8)``. Datasets:

- ``circle``: from the centre the digit jumps ``step`` (4) pixels in one of ``n_directions``
  (8, 4 or 2) directions, then back to the centre, and again; direction ``d`` points at angle
  ``2 pi d / n`` (0 = right, counter-clockwise, rows grow downwards); ``p_first`` optionally sets the
  probability of direction 0 (the rest share the remainder evenly).
- ``horizontal``: the digit moves 2 pixels a frame along the middle row (even columns 0..16); when
  it is at the centre column its direction is re-drawn (right with probability ``p_right``); on
  reaching a wall it turns around.
- ``free``: a random integer velocity (each component in -3..3, not both 0), bouncing at the walls.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import check

FRAME, DIGIT, CENTRE = 32, 16, 8
LIMIT = FRAME - DIGIT  # largest top-left coordinate


def direction_shifts(n_directions: int, step: int = 4) -> torch.Tensor:
    """Integer ``(d_row, d_col)`` shifts ``(n, 2)`` of the ``n`` directions (rounded ``step`` vectors)."""
    check(n_directions in (2, 4, 8), f"n_directions must be 2, 4 or 8, got {n_directions}")
    ang = torch.arange(n_directions, dtype=torch.float64) * (2 * math.pi / n_directions)
    return torch.stack([(-step * ang.sin()).round(), (step * ang.cos()).round()], 1).long()


def small_digits(images: torch.Tensor) -> torch.Tensor:
    """``(N, 1, 28, 28)`` -> ``(N, 1, 16, 16)`` in ``[-1, 1]`` (area resize of the ink)."""
    return F.interpolate((images + 1) / 2, size=(DIGIT, DIGIT), mode="area") * 2 - 1


def render(digits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Place each ``(1, 16, 16)`` digit at ``positions`` ``(N, T, 2)``: frames ``(N, T, 32, 32)``."""
    n, t = positions.shape[:2]
    frames = torch.full((n, t, FRAME, FRAME), -1.0)
    for i in range(n):
        for k in range(t):
            r, c = int(positions[i, k, 0]), int(positions[i, k, 1])
            frames[i, k, r : r + DIGIT, c : c + DIGIT] = digits[i, 0]
    return frames


def circle_positions(
    n: int,
    length: int,
    n_directions: int = 8,
    step: int = 4,
    p_first: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``(n, length, 2)`` and chosen directions ``(n, length)`` (-1 on centred frames)."""
    shifts = direction_shifts(n_directions, step)
    probs = torch.full((n_directions,), 1.0 / n_directions, dtype=torch.float64)
    if p_first is not None:
        check(0 <= p_first <= 1, f"p_first must be a probability, got {p_first}")
        probs = torch.full((n_directions,), (1 - p_first) / (n_directions - 1), dtype=torch.float64)
        probs[0] = p_first
    pos = torch.full((n, length, 2), CENTRE, dtype=torch.long)
    dirs = torch.full((n, length), -1, dtype=torch.long)
    for k in range(1, length, 2):
        d = torch.multinomial(probs, n, replacement=True, generator=generator)
        dirs[:, k] = d
        pos[:, k] = CENTRE + shifts[d]
    return pos, dirs


def horizontal_positions(
    n: int, length: int, p_right: float = 0.7, step: int = 2, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``(n, length, 2)`` and directions ``(n, length)`` (+1 right, -1 left) of the motion
    *into* each frame's successor."""
    check(0 <= p_right <= 1, f"p_right must be a probability, got {p_right}")
    col = torch.randint(0, LIMIT // step + 1, (n,), generator=generator) * step
    d = torch.where(torch.rand(n, generator=generator) < p_right, 1, -1)
    d = torch.where(col == 0, 1, torch.where(col == LIMIT, -1, d))
    pos = torch.full((n, length, 2), CENTRE, dtype=torch.long)
    dirs = torch.zeros((n, length), dtype=torch.long)
    for k in range(length):
        redraw = col == CENTRE
        fresh = torch.where(torch.rand(n, generator=generator) < p_right, 1, -1)
        d = torch.where(redraw, fresh, d)
        pos[:, k, 1] = col
        dirs[:, k] = d
        col = (col + step * d).clamp(0, LIMIT)
        d = torch.where(col == 0, 1, torch.where(col == LIMIT, -1, d))  # a wall turns the digit around
    return pos, dirs


def free_positions(n: int, length: int, max_speed: int = 3, generator: torch.Generator | None = None):
    """Positions ``(n, length, 2)`` and velocities ``(n, length, 2)`` with reflection at the walls."""
    p = torch.randint(0, LIMIT + 1, (n, 2), generator=generator)
    v = torch.randint(-max_speed, max_speed + 1, (n, 2), generator=generator)
    still = (v == 0).all(1)
    v[still, 1] = 1
    pos = torch.zeros((n, length, 2), dtype=torch.long)
    vel = torch.zeros((n, length, 2), dtype=torch.long)
    for k in range(length):
        pos[:, k], vel[:, k] = p, v
        p = p + v
        low, high = p < 0, p > LIMIT
        p = torch.where(low, -p, torch.where(high, 2 * LIMIT - p, p))
        v = torch.where(low | high, -v, v)
    return pos, vel


def arriving_at_centre(digits: torch.Tensor, k: int, from_left: bool = True, step: int = 2) -> torch.Tensor:
    """``horizontal`` frames ``(N, k, 32, 32)`` of digits arriving at the centre column (the frame where
    the next direction is drawn with ``p_right``), moving right (``from_left``) or left."""
    cols = [CENTRE - step * (k - 1 - t) * (1 if from_left else -1) for t in range(k)]
    pos = torch.tensor([[CENTRE, c] for c in cols]).expand(len(digits), k, 2)
    return render(small_digits(digits), pos)


def moving_digits(kind: str, digits: torch.Tensor, length: int = 6, seed: int = 0, **options) -> dict:
    """Sequences of ``len(digits)`` digits: ``{"frames": (N, T, 32, 32), "positions", "motion"}``."""
    g = torch.Generator().manual_seed(seed)
    makers = {"circle": circle_positions, "horizontal": horizontal_positions, "free": free_positions}
    check(kind in makers, f"unknown moving-digit dataset {kind!r}: use one of {', '.join(makers)}")
    pos, motion = makers[kind](len(digits), length, generator=g, **options)
    return {"frames": render(small_digits(digits), pos), "positions": pos, "motion": motion}


# ------------------------------------------------------------------------------------------ metrics
def centroid(frames: torch.Tensor) -> torch.Tensor:
    """Ink centroid ``(N, 2)`` (row, col) of frames ``(N, H, W)`` or ``(N, 1, H, W)`` in ``[-1, 1]``."""
    f = ((frames.reshape(len(frames), *frames.shape[-2:]) + 1) / 2).clamp(min=0).double()
    mass = f.sum((1, 2)).clamp(min=1e-9)
    rows = torch.arange(f.shape[1], dtype=torch.float64)
    cols = torch.arange(f.shape[2], dtype=torch.float64)
    return torch.stack([(f.sum(2) * rows).sum(1) / mass, (f.sum(1) * cols).sum(1) / mass], 1)


def detect_direction(pred: torch.Tensor, cond: torch.Tensor, shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The direction index ``(N,)`` whose shift has the largest cosine with the centroid shift from
    ``cond`` to ``pred``, and the shift ``(N, 2)`` itself."""
    shift = centroid(pred) - centroid(cond)
    ref = shifts.double()
    cos = (shift @ ref.T) / (shift.norm(dim=1, keepdim=True).clamp(min=1e-9) * ref.norm(dim=1)[None])
    return cos.argmax(1), shift


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate frames ``(N, H, W)`` by integer ``(d_row, d_col)`` shifts ``(N, 2)``, filling with -1."""
    out = torch.full_like(frames, -1.0)
    h, w = frames.shape[-2:]
    for i, (dr, dc) in enumerate(shifts.tolist()):
        src = frames[i, max(0, -dr) : h - max(0, dr), max(0, -dc) : w - max(0, dc)]
        out[i, max(0, dr) : max(0, dr) + src.shape[0], max(0, dc) : max(0, dc) + src.shape[1]] = src
    return out


def frame_quality(pred: torch.Tensor, cond: torch.Tensor, motion: torch.Tensor) -> dict:
    """L2 (per-pixel RMS) and IoU (ink > 0) between each prediction and the condition frame moved by
    the detected integer ``motion`` ``(N, 2)``; means over the batch."""
    p = pred.reshape(len(pred), *pred.shape[-2:])
    target = shift_frames(cond.reshape(len(cond), *cond.shape[-2:]), motion)
    l2 = (p - target).pow(2).mean((1, 2)).sqrt()
    a, b = p > 0, target > 0
    iou = (a & b).sum((1, 2)).double() / (a | b).sum((1, 2)).clamp(min=1).double()
    return {"l2": float(l2.mean()), "iou": float(iou.mean())}


def allowed_directions(n_directions: int) -> set[int]:
    """The directions of an ``n_directions`` circle dataset as indices among the 8 (0 = right,
    counter-clockwise): 8 -> all, 4 -> {0, 2, 4, 6}, 2 -> {0, 4} (right and left, the horizontal rule)."""
    direction_shifts(n_directions)  # checks n_directions
    return {d * 8 // n_directions for d in range(n_directions)}


def direction_metrics(pred: torch.Tensor, cond: torch.Tensor, n_directions: int, allowed=None, step: int = 4) -> dict:
    """Distinct directions, direction accuracy, and quality of predicted frames.

    Each prediction's move is detected among all 8 directions (indices as in :func:`allowed_directions`),
    or -1 ("stayed") when its ink centroid moved less than ``step / 2`` pixels. ``accuracy`` is the share
    of moves in ``allowed`` (default: the ``n_directions`` directions of the dataset's rule); a
    prediction that stays, or moves in a direction the rule forbids, counts as wrong.
    """
    shifts = direction_shifts(8, step)
    cond = cond.expand_as(pred) if len(cond) == 1 else cond
    d, shift = detect_direction(pred, cond, shifts)
    q = frame_quality(pred, cond, shifts[d])
    d = torch.where(shift.norm(dim=1) < step / 2, -1, d)
    allowed = allowed_directions(n_directions) if allowed is None else set(allowed)
    return {
        "directions": d.tolist(),
        "distinct": len(set(d.tolist())),
        "accuracy": float(np.mean([int(v) in allowed for v in d.tolist()])),
        **q,
    }


def p_right(directions, p0: float = 0.5) -> dict:
    """Estimated p(right) from +1/-1 directions, with an exact two-sided binomial test against ``p0``."""
    from scipy.stats import binomtest

    d = np.asarray(directions)
    k, n = int((d > 0).sum()), int(len(d))
    check(n > 0, "no directions to count")
    test = binomtest(k, n, p0)
    ci = test.proportion_ci(0.95)
    return {"p_right": k / n, "n": n, "p_value": float(test.pvalue), "ci95": [float(ci.low), float(ci.high)]}
