"""Semantic editing in h-space.

Modules:

- ``hspace``: was ``steerdiff.edit``
- ``evaluate``: was ``steerdiff.edit_eval``
- ``workflow``: train, calibrate and save an edit (``steerdiff train-edit``); edit images (``steerdiff edit``);
  find training-free directions (``steerdiff edit --discover K``)
- ``discover``: training-free directions, the principal components of h over many images
"""

from .evaluate import evaluate_edit_file

# steerdiff.edit was one module: every name it defined (private ones too) stays importable from here
from .hspace import (  # noqa: F401
    _EVALUATOR,
    DELTA_KINDS,
    HEADED_KINDS,
    KEEP_RATE,
    OBJECTIVES,
    RECON_SPACE,
    REVERSE_TARGETS,
    DeltaH,
    HSpace,
    _cond_rows,
    apply_edit,
    asymmetric_sample,
    attribute_data,
    blur_pyramid,
    calibrate_strength,
    choose_intervals,
    conf_sigmas,
    digit_kl,
    dilate,
    directional_loss,
    edit_features,
    edit_sigmas,
    fade_edges,
    find_unet,
    global_direction,
    ink_shape,
    interval_curves,
    invert,
    load_edit,
    noise_embedding,
    noisy_digit_logits,
    perceptual_features,
    prototype_direction,
    save_edit,
    shear,
    to_green,
    train_edit,
)
from .workflow import TRAINABLE_ATTRIBUTES, edit_images, refuse_green, train_calibrated_edit

__all__ = [
    "DELTA_KINDS",
    "HEADED_KINDS",
    "KEEP_RATE",
    "OBJECTIVES",
    "REVERSE_TARGETS",
    "find_unet",
    "HSpace",
    "noise_embedding",
    "DeltaH",
    "edit_sigmas",
    "conf_sigmas",
    "invert",
    "asymmetric_sample",
    "edit_features",
    "perceptual_features",
    "interval_curves",
    "choose_intervals",
    "prototype_direction",
    "directional_loss",
    "digit_kl",
    "noisy_digit_logits",
    "train_edit",
    "calibrate_strength",
    "apply_edit",
    "global_direction",
    "save_edit",
    "load_edit",
    "dilate",
    "fade_edges",
    "ink_shape",
    "RECON_SPACE",
    "to_green",
    "shear",
    "attribute_data",
    "blur_pyramid",
    "TRAINABLE_ATTRIBUTES",
    "refuse_green",
    "train_calibrated_edit",
    "edit_images",
    "evaluate_edit_file",
]
