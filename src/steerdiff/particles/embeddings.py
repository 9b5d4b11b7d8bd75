"""Embeddings: maps ``phi(x, sigma) -> (n, m)`` features in which particles repel.

Names follow the repulsion project: ``identity``/``latent`` (the raw sample), ``averagedim`` (channel
averages), ``cnn16``/``cnn64`` (a fixed random CNN; ``cnn16-redraw``/``cnn64-redraw`` draw new
weights at every call, from a seeded stream), ``ro3`` (rule of
thirds: mean of each channel over a 3x3 grid), ``centroid`` (ink centroid per channel), ``edges`` (Sobel edge energy on a 7x7 grid),
``style`` (upper triangle of the Gram matrix of random-CNN feature maps), ``classifier`` (features
of the shipped noise-conditional MNIST classifier ``mnist-noisy``; ``classifier:PATH`` for another),
``noisy-digit-cnn`` (the same MNIST noise-conditional digit CNN by a name that says what it is) and
``noisy-digit-cnn-ro3`` (with rule-of-thirds features appended), ``classifier-probs`` (its class
probabilities). The repulsion project's names ``vgg_noise``/``vgg_noisero3`` are deprecated aliases of
the two: they were never a VGG network, only fit 1x28x28 digits, and warn (DeprecationWarning). Any callable ``f(x)`` or
``f(x, sigma)`` returning ``(n, m)`` works too.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import SteerdiffError, check


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


def identity(x: torch.Tensor, sigma=None) -> torch.Tensor:
    """The sample itself, flattened: ``(n, prod(sample_shape))``."""
    return _flat(x)


def averagedim(x: torch.Tensor, sigma=None) -> torch.Tensor:
    """Channel averages ``(n, C)`` (for 1-channel images a single number: choose another embedding)."""
    check(x.ndim >= 3, "averagedim needs (n, C, ...) samples")
    return x.flatten(2).mean(-1)


def ro3(x: torch.Tensor, sigma=None) -> torch.Tensor:
    """Rule of thirds: the mean of each channel over a 3x3 grid, ``(n, 9 C)``: where the mass is."""
    check(x.ndim == 4, "ro3 needs images (n, C, H, W)")
    return F.adaptive_avg_pool2d(x, 3).flatten(1)


def centroid(x: torch.Tensor, sigma=None) -> torch.Tensor:
    """Ink centroid per channel, ``(n, 2 C)`` (row, column in ``[-1, 1]``): where the mass is, at
    pixel resolution (``ro3``'s 3x3 grid cannot tell a few-pixel shift). Ink is ``relu((x + 1) / 2)``."""
    check(x.ndim == 4, "centroid needs images (n, C, H, W)")
    w = F.relu((x + 1) / 2) + 1e-6
    h, wd = x.shape[-2:]
    rows = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    cols = torch.linspace(-1, 1, wd, device=x.device, dtype=x.dtype)
    mass = w.sum((2, 3))
    return torch.cat([(w.sum(3) * rows).sum(2) / mass, (w.sum(2) * cols).sum(2) / mass], 1)


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edges(x: torch.Tensor, sigma=None) -> torch.Tensor:
    """Sobel edge energy (mean over channels) pooled on a 7x7 grid, ``(n, 49)``."""
    check(x.ndim == 4, "edges needs images (n, C, H, W)")
    k = torch.stack([_SOBEL, _SOBEL.T])[:, None].to(x)
    g = F.conv2d(x.mean(1, keepdim=True), k, padding=1)
    return F.adaptive_avg_pool2d((g**2).sum(1, keepdim=True), 7).flatten(1)


class RandomCNN(nn.Module):
    """A fixed random CNN (seeded) mapping images to ``out_dim`` features; ``redraw=True`` draws new
    weights each call from a stream seeded by ``(seed, call count)``, so runs stay reproducible."""

    def __init__(self, out_dim: int = 16, width: int = 16, seed: int = 0, redraw: bool = False):
        super().__init__()
        self.out_dim, self.width, self.seed, self.redraw, self.calls = out_dim, width, seed, redraw, 0
        self.layers: nn.Module | None = None

    def _build(self, in_channels: int, seed: int) -> nn.Module:
        g = torch.Generator().manual_seed(seed)
        w = self.width

        def conv(i, o):
            c = nn.Conv2d(i, o, 3, padding=1)
            with torch.no_grad():
                c.weight.copy_(torch.randn(c.weight.shape, generator=g) * (2 / (i * 9)) ** 0.5)
                c.bias.zero_()
            return c

        lin = nn.Linear(w * 16, self.out_dim)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) / (w * 16) ** 0.5)
            lin.bias.zero_()
        return nn.Sequential(
            conv(in_channels, w),
            nn.SiLU(),
            nn.AvgPool2d(2),
            conv(w, w),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            lin,
        ).requires_grad_(False)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self._net(x)[:3](x)

    def _net(self, x: torch.Tensor) -> nn.Module:
        if self.layers is None or self.redraw:
            from ..core.seeding import stream_seed

            self.layers = self._build(x.shape[1], stream_seed("cnn", self.seed, self.calls if self.redraw else 0)).to(x)
        self.calls += 1
        return self.layers

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        check(x.ndim == 4, "a CNN embedding needs images (n, C, H, W)")
        return self._net(x)(x)


class Style(nn.Module):
    """Style features: the upper triangle of the Gram matrix of a random CNN's first feature maps."""

    def __init__(self, width: int = 16, seed: int = 0):
        super().__init__()
        self.cnn = RandomCNN(width=width, seed=seed)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        fm = self.cnn.feature_maps(x).flatten(2)  # (n, w, hw)
        gram = fm @ fm.transpose(1, 2) / fm.shape[-1]
        i, j = torch.triu_indices(gram.shape[1], gram.shape[2])
        return gram[:, i, j]


class ClassifierEmbedding(nn.Module):
    """Features of a noise-conditional classifier trained by steerdiff (``train-classifier --kind
    noisy-label``), fed the real noise level: ``output="features"`` (penultimate layer, default),
    ``"probs"`` (class probabilities) or ``"logits"``. ``with_ro3`` appends rule-of-thirds features
    (the repulsion project's ``vgg_noisero3``)."""

    def __init__(self, classifier="mnist-noisy", output: str = "features", with_ro3: bool = False):
        super().__init__()
        from ..train.classifier import load_classifier

        check(output in ("features", "probs", "logits"), f"output {output!r}: use features, probs or logits")
        self.classifier = (
            load_classifier(classifier)
            if isinstance(classifier, (str, bytes)) or hasattr(classifier, "__fspath__")
            else classifier
        )
        check(
            hasattr(self.classifier, "sigma_data"),
            "the classifier is not noise-conditional: train one with `steerdiff train-classifier --kind noisy-label`",
        )
        self.output, self.with_ro3 = output, with_ro3

    def check_fits(self, sample_shape, name: str = "classifier") -> None:
        """Refuse (one line) a model whose samples are not the images the classifier was trained on."""
        arch = getattr(self.classifier, "arch", {})
        want = (arch.get("in_channels"), arch.get("image_size"), arch.get("image_size"))
        if None in want or sample_shape is None:
            return
        check(
            tuple(sample_shape) == want,
            f"embedding {name!r} is a digit classifier for {'x'.join(map(str, want))} images and does not fit this "
            f"model's samples of shape {'x'.join(map(str, sample_shape))}: pick an embedding made for this model "
            "(identity, ro3, cnn16, edges, style, or classifier:DIR of a classifier trained on its data)",
        )

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        sigma = torch.zeros(x.shape[0], device=x.device) if sigma is None else sigma
        try:
            f = self.classifier.features(x, sigma)
        except RuntimeError as e:  # a shape mismatch: the classifier was trained on other images
            raise SteerdiffError(
                f"the classifier embedding does not fit samples of shape {tuple(x.shape[1:])} "
                f"({str(e).splitlines()[0][:120]}): pick an embedding made for this model "
                "(identity, ro3, cnn16, ... or classifier:DIR of a classifier trained on its data)"
            ) from None
        if self.output != "features":
            f = self.classifier.head(f)
            f = f.softmax(1) if self.output == "probs" else f
        return torch.cat([f, ro3(x)], 1) if self.with_ro3 else f


def _factories() -> dict[str, Callable[[], Callable]]:
    return {
        "identity": lambda: identity,
        "latent": lambda: identity,
        "averagedim": lambda: averagedim,
        "ro3": lambda: ro3,
        "centroid": lambda: centroid,
        "edges": lambda: edges,
        "cnn16": lambda: RandomCNN(16),
        "cnn64": lambda: RandomCNN(64),
        "cnn16-redraw": lambda: RandomCNN(16, redraw=True),
        "cnn64-redraw": lambda: RandomCNN(64, redraw=True),
        "style": lambda: Style(),
        "classifier": lambda: ClassifierEmbedding(),
        "classifier-probs": lambda: ClassifierEmbedding(output="probs"),
        "noisy-digit-cnn": lambda: ClassifierEmbedding(),
        "noisy-digit-cnn-ro3": lambda: ClassifierEmbedding(with_ro3=True),
    }


# the repulsion project's names, kept for its users: never a VGG network, but the MNIST noise-conditional digit CNN
DEPRECATED = {"vgg_noise": "noisy-digit-cnn", "vgg_noisero3": "noisy-digit-cnn-ro3"}
EMBEDDINGS = tuple(_factories())


def get_embedding(name_or_fn) -> Callable:
    """An embedding ``phi(x, sigma) -> (n, m)`` by name (see :data:`EMBEDDINGS`) or from a callable
    taking ``(x)`` or ``(x, sigma)``."""
    if callable(name_or_fn):
        try:
            n_args = len(inspect.signature(name_or_fn).parameters)
        except (TypeError, ValueError):
            n_args = 2
        return name_or_fn if n_args >= 2 else (lambda x, sigma=None: name_or_fn(x))
    factories = _factories()
    if isinstance(name_or_fn, str) and name_or_fn.startswith("classifier:"):
        return ClassifierEmbedding(name_or_fn.split(":", 1)[1])
    if isinstance(name_or_fn, str) and name_or_fn in DEPRECATED:
        new = DEPRECATED[name_or_fn]
        warnings.warn(
            f"embedding {name_or_fn!r} is a deprecated alias of {new!r}: it is the MNIST noise-conditional "
            "digit CNN (mnist-noisy), not a VGG network, and fits only 1x28x28 digits; use "
            f"{new!r}",
            DeprecationWarning,
            stacklevel=2,
        )
        name_or_fn = new
    if name_or_fn not in factories:
        raise SteerdiffError(
            f"unknown embedding {name_or_fn!r}: use one of {', '.join(EMBEDDINGS)}, 'classifier:PATH' or a callable"
        )
    return factories[name_or_fn]()
