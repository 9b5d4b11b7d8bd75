"""Frame-conditional models: moving-digit sequences and the metrics of predicted frames.

Modules:

- ``moving``: was ``steerdiff.sequences``
- ``evaluate``: next-frame prediction judged by the dataset's rule (condition frames and metrics per batch)
"""

from .evaluate import horizontal_directions, next_frame_condition, next_frame_dataset, next_frame_metrics

# steerdiff.sequences was one module: every name it defined (private ones too) stays importable from here
from .moving import (
    CENTRE,
    DIGIT,
    FRAME,
    LIMIT,
    allowed_directions,
    arriving_at_centre,
    centroid,
    circle_positions,
    detect_direction,
    direction_metrics,
    direction_shifts,
    frame_quality,
    free_positions,
    horizontal_positions,
    moving_digits,
    p_right,
    render,
    shift_frames,
    small_digits,
)

__all__ = [
    "FRAME",
    "DIGIT",
    "CENTRE",
    "LIMIT",
    "direction_shifts",
    "small_digits",
    "render",
    "circle_positions",
    "horizontal_positions",
    "free_positions",
    "arriving_at_centre",
    "moving_digits",
    "centroid",
    "detect_direction",
    "shift_frames",
    "frame_quality",
    "allowed_directions",
    "direction_metrics",
    "p_right",
    "next_frame_dataset",
    "next_frame_condition",
    "horizontal_directions",
    "next_frame_metrics",
]
