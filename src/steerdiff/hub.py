"""The registry of everything steerdiff ships, by name, and the weights directory that holds it.

``MODELS`` (denoisers, read by :func:`steerdiff.models.load`), ``CLASSIFIERS``
(:func:`steerdiff.train.classifier.load_classifier`), ``JOINT_CLASSIFIERS``
(:func:`steerdiff.compose.joint.shipped_joint_classifier`) and ``EDITS``
(:func:`steerdiff.edit.load_edit`); each maps a name to its folder in :func:`weights_dir`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .data import SET_ORDER, SUBDIGIT_SETS


def weights_dir() -> Path:
    """The directory of the shipped weights (``steerdiff/weights``)."""
    return Path(str(resources.files("steerdiff") / "weights"))


# name -> (weights folder in steerdiff/weights, options)
MODELS = {
    "mnist": ("mnist", {}),
    "mnist-cond": ("mnist", {"require_labels": True}),
    # one set-conditional network (class label = set index in data.SET_ORDER) serves every ColorMNIST set
    "colormnist-sets": ("colormnist", {"require_labels": True}),
    **{name: ("colormnist", {"set": name}) for name in SET_ORDER},
    # frame-conditional moving-digit models (condition: cond={"frames": (1, K, 32, 32)})
    "circle": ("circle", {}),
    "horizontal": ("horizontal", {}),
    # MNIST sub-digit sets: mixtures of mnist-cond's class conditionals, weighted by the noisy classifier
    **{name: ("mnist", {"digits": digits}) for name, digits in SUBDIGIT_SETS.items()},
}


CLASSIFIERS = {
    "mnist-evaluator": "mnist-evaluator",
    "mnist-noisy": "mnist-noisy",
    "mnist-evaluator2": "mnist-evaluator2",
}  # a second judge: another architecture and seed


# the shipped classifiers, by their bases in order (folder in steerdiff/weights)
JOINT_CLASSIFIERS = {
    ("colormnist-m1", "colormnist-m2"): "joint-m1-m2",
    ("colormnist-mn1", "colormnist-mn2", "colormnist-mn3"): "joint3-mn",
    ("mnist-0to5", "mnist-4to9"): "joint-subdigits",
}


EDITS = {"thick": "edits/thick"}  # green cannot be an h-space edit of colormnist (see README)
EDIT_MODEL = "colormnist"  # the model the shipped edits were trained on (and edit by default)


def shipped() -> dict[str, list]:
    """Every shipped name, by kind."""
    return {
        "models": list(MODELS),
        "classifiers": list(CLASSIFIERS),
        "joint_classifiers": list(JOINT_CLASSIFIERS),
        "edits": list(EDITS),
    }
