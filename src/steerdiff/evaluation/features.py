"""Feature networks for metrics: the shipped evaluator, any callable, or a local file.

``load_features(spec)`` returns ``f(images) -> (N, D)`` features (images ``(N, C, H, W)`` in
``[-1, 1]``):

- ``"mnist-evaluator"`` (default for 28x28 digits): the shipped classifier's 128-d penultimate layer;
- ``"classifier:PATH"``: a classifier directory written by ``steerdiff train-classifier``;
- a ``.pt2`` file written by ``torch.export.save`` (an Inception / CLIP / DINO image tower exported
  by the user; no weights are downloaded here), or a legacy ``.pt``/``.ts`` TorchScript file; called
  on the images as given unless ``input_range="01"`` asks for ``[0, 1]`` pixels;
- any Python callable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..core.errors import SteerdiffError, check


def _batched(fn: Callable, batch: int = 500) -> Callable:
    @torch.no_grad()
    def run(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(images[i : i + batch].float()).flatten(1) for i in range(0, len(images), batch)])

    return run


def _guarded(net, scale, path) -> Callable:
    """``net(scale(x))``, with a network that does not take these images reported as a SteerdiffError."""

    def call(x):
        try:
            return net(scale(x))
        except Exception as e:  # an exported / scripted network raises many types on a wrong input
            raise SteerdiffError(
                f"feature network {path} does not take images of shape {tuple(x.shape[1:])} "
                f"({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}): "
                "export one for these images"
            ) from None

    return call


def load_features(spec="mnist-evaluator", input_range: str = "-11") -> Callable:
    """A feature extractor from a name, a path or a callable (see module docstring)."""
    check(input_range in ("-11", "01"), f"input_range {input_range!r}: use '-11' or '01'")
    if callable(spec):
        return _batched(spec)
    from ..train.classifier import SHIPPED, load_classifier

    spec = str(spec)
    if spec in SHIPPED or spec.startswith("classifier:"):
        clf = load_classifier(spec.split(":", 1)[1] if spec.startswith("classifier:") else spec)
        return _batched(clf.features)
    path = Path(spec)
    scale = (lambda x: (x + 1) / 2) if input_range == "01" else (lambda x: x)
    if path.suffix == ".pt2" and path.is_file():
        try:
            net = torch.export.load(str(path)).module()
        except Exception as e:  # torch.export raises many types for a bad file
            raise SteerdiffError(
                f"{path} is not a torch.export program ({str(e).splitlines()[0]}): write it with "
                "torch.export.save(torch.export.export(model, (example,)), path)"
            ) from None
        return _batched(_guarded(net, scale, path))
    if path.suffix in (".pt", ".ts") and path.is_file():
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as e:
            raise SteerdiffError(
                f"{path} is not a TorchScript module ({str(e).splitlines()[0]}): export it with "
                "torch.export (.pt2) or torch.jit.script(model).save(path)"
            ) from None
        return _batched(_guarded(net, scale, path))
    raise SteerdiffError(
        f"unknown feature network {spec!r}: use mnist-evaluator, classifier:DIR, a torch.export .pt2 "
        "or TorchScript .pt file, "
        "or pass a callable"
    )
