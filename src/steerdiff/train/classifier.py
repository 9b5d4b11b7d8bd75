"""Image classifiers: the MNIST evaluator (quality / diversity judge), a second judge of another
architecture, noise-conditional ones, and the one training loop every steerdiff classifier uses.

The evaluator is a small CNN trained on the MNIST training digits with random shifts; its 128-d
penultimate activations are the feature space of steerdiff's MNIST metrics (Fréchet distance,
near-copy rate). A classifier checkpoint is a directory: ``config.json`` + ``model.safetensors``.
:func:`fit_classifier` is the loop of :func:`train_classifier`, of the joint classifiers of
compositions (:func:`steerdiff.compose.joint.train_joint_classifier`) and of the latent style
classifier (:func:`steerdiff.pipelines.stable_diffusion.train_latent_classifier`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import checkpoint as ckpt
from ..core.denoisers import append_dims, as_sigma
from ..core.errors import SteerdiffError, check
from ..core.seeding import stream_seed
from ..data import load_dataset
from ..hub import CLASSIFIERS as SHIPPED

KINDS = ("label", "noisy-label")


class DigitCNN(nn.Module):
    """``(B, C, 28, 28)`` in ``[-1, 1]`` -> logits ``(B, num_classes)``; ``features`` gives ``(B, feature_dim)``."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 128, image_size: int = 28
    ):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(2 * w * (image_size // 4) ** 2, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, num_classes))
        self.arch = dict(
            in_channels=in_channels,
            num_classes=num_classes,
            width=width,
            feature_dim=feature_dim,
            image_size=image_size,
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class DigitLeNet(nn.Module):
    """A second digit classifier, architecturally unlike :class:`DigitCNN` (the independent judge of
    edits): LeNet-style 5x5 convolutions with batch norm and average pooling, a two-layer head.
    ``(B, C, 28, 28)`` in ``[-1, 1]`` -> logits; ``features`` gives ``(B, feature_dim)``."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 20, feature_dim: int = 96, image_size: int = 28
    ):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 5, padding=2),
            nn.BatchNorm2d(w),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(w, 2 * w, 5),
            nn.BatchNorm2d(2 * w),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * w * ((image_size // 2 - 4) // 2) ** 2, feature_dim),
            nn.Tanh(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))
        self.arch = dict(
            in_channels=in_channels,
            num_classes=num_classes,
            width=width,
            feature_dim=feature_dim,
            image_size=image_size,
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


NETS = {"cnn": DigitCNN, "lenet": DigitLeNet}  # --arch of kind label


class NoisyDigitCNN(DigitCNN):
    """A noise-conditional classifier ``(x, sigma) -> logits``: ``x`` is a noisy sample at VE scale.

    The input is preconditioned like EDM's (``x / sqrt(sigma^2 + sigma_data^2)``) and the noise level
    enters as an extra constant channel ``log(sigma) / 4``, so the real noise level is always seen.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 24,
        feature_dim: int = 128,
        image_size: int = 28,
        sigma_data: float = 0.5,
    ):
        super().__init__(in_channels + 1, num_classes, width, feature_dim, image_size)
        self.sigma_data = sigma_data
        self.arch = dict(
            in_channels=in_channels,
            num_classes=num_classes,
            width=width,
            feature_dim=feature_dim,
            image_size=image_size,
            sigma_data=sigma_data,
        )

    def _input(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = append_dims(as_sigma(sigma, x), x.ndim)
        c_noise = (s.clamp(min=1e-8).log() / 4).expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([x / (s**2 + self.sigma_data**2).sqrt(), c_noise], 1)

    def features(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        return self.body(self._input(x, sigma))

    def forward(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        return self.head(self.features(x, sigma))


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (background -1 fills in)."""
    b, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    return torch.stack([pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    pred = torch.cat([model(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)])
    return float((pred == labels).float().mean())


class _AtSigma(nn.Module):
    def __init__(self, model, sigma):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        return self.model(x, self.sigma)


def training_sigmas(n: int, gen: torch.Generator, *, clean: float = 0.0, p_clean: float = 0.1) -> torch.Tensor:
    """Noise levels ``(n,)`` for training a noise-conditional classifier: EDM's training distribution
    ``ln sigma ~ N(-1.2, 1.2^2)``, with a share ``p_clean`` of them set to ``clean`` (clean images).

    Args:
        n: number of noise levels.
        gen: the generator every draw comes from.
        clean: the noise level of the clean share (VE scale, data in ``[-1, 1]``).
        p_clean: the probability of a clean level, in ``[0, 1]``.
    """
    sigma = (-1.2 + 1.2 * torch.randn(n, generator=gen)).exp()
    return torch.where(torch.rand(n, generator=gen) < p_clean, torch.full_like(sigma, clean), sigma)


def add_noise(x0: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Forward-noised samples ``x0 + sigma * n``, ``n ~ N(0, I)`` drawn from ``gen``.

    Args:
        x0: clean samples ``(B, ...)``.
        sigma: noise levels ``(B,)`` (VE scale).
        gen: the generator the noise comes from.
    """
    return x0 + append_dims(sigma, x0.ndim) * torch.randn(x0.shape, generator=gen)


def _cross_entropy(model: nn.Module) -> Callable[[tuple, int], torch.Tensor]:
    def loss(batch: tuple, epoch: int) -> torch.Tensor:
        x, sigma, labels = batch
        return F.cross_entropy(model(x) if sigma is None else model(x, sigma), labels)

    return loss


def fit_classifier(
    model: nn.Module,
    batches: Callable[[int, torch.Generator], Iterable],
    *,
    epochs: int,
    lr: float,
    seed: int | torch.Generator,
    stream: str = "classifier",
    loss: Callable[[Any, int], torch.Tensor] | None = None,
    steps_per_epoch: int | None = None,
    progress: bool = True,
    desc: str = "train-classifier",
    postfix: Callable[[torch.Tensor], dict] | None = None,
) -> float:
    """The training loop of every classifier steerdiff trains (label, noise-conditional, joint, latent
    style): Adam on ``loss`` over the batches of each epoch, with a one-cycle learning-rate schedule
    when ``steps_per_epoch`` is given. ``model`` is trained in place; returns the last batch's loss.

    Args:
        model: the classifier; put in train mode at the start of each epoch.
        batches: ``batches(epoch, gen)`` yields the batches of one epoch, drawing every random choice
            (order, augmentation, noise levels, noise) from the generator ``gen``.
        epochs: number of passes, at least 1.
        lr: Adam's learning rate; the peak of the one-cycle schedule when ``steps_per_epoch`` is set.
        seed: an ``int``: epoch ``e`` draws from a generator seeded with
            ``stream_seed(f"{stream}-epoch", seed, e)`` and reseeds torch's global generator (dropout)
            with ``stream_seed(f"{stream}-dropout", seed, e)``, so no epoch's randomness depends on the
            epochs before it. A ``torch.Generator``: every epoch draws from it in turn, dropout from
            torch's global generator as it stands.
        stream: the name of the random streams of an ``int`` seed.
        loss: ``loss(batch, epoch) -> scalar tensor``. By default a batch is ``(x, sigma, labels)``:
            inputs ``(B, C, H, W)``, noise levels ``(B,)`` (``None`` for a classifier of clean inputs)
            and class indices ``(B,)``, and the loss the cross-entropy of ``model(x, sigma)`` (or
            ``model(x)``) against ``labels``.
        steps_per_epoch: how many batches ``batches`` yields per epoch; the schedule then spans
            ``epochs * steps_per_epoch`` steps. ``None``: a constant learning rate.
        progress: show a progress bar, one tick per epoch.
        desc: the progress bar's label.
        postfix: ``postfix(loss) -> dict`` shown on the progress bar after each epoch, from the
            epoch's last loss (default: the loss).
    """
    check(epochs >= 1, f"epochs must be at least 1, got {epochs}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if steps_per_epoch is not None:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    loss = loss or _cross_entropy(model)
    value = torch.tensor(float("nan"))
    bar = tqdm(range(epochs), disable=not progress, desc=desc, unit="epoch")
    for epoch in bar:
        model.train()
        if isinstance(seed, torch.Generator):
            gen = seed
        else:
            gen = torch.Generator().manual_seed(stream_seed(f"{stream}-epoch", seed, epoch))
            torch.manual_seed(stream_seed(f"{stream}-dropout", seed, epoch))
        for batch in batches(epoch, gen):
            value = loss(batch, epoch)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            if sched is not None:
                sched.step()
        if progress:
            bar.set_postfix(postfix(value) if postfix else {"loss": f"{value.item():.3f}"})
    return value.item()


def train_classifier(
    out: str | os.PathLike,
    *,
    kind: str = "label",
    dataset: str = "mnist",
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    width: int | None = None,
    progress: bool = True,
    command: str | None = None,
    arch: str = "cnn",
    force: bool = False,
) -> dict:
    """Train a digit classifier on ``dataset`` and write it to directory ``out`` (``config.json`` and
    ``model.safetensors``, what :func:`load_classifier` reads); returns its config, with the held-out
    accuracy (and, for ``noisy-label``, the held-out accuracy at a few noise levels).

    Training images are shifted at random by up to 2 pixels; a ``noisy-label`` classifier sees them
    forward-noised at EDM's training noise levels (:func:`training_sigmas`). The same arguments give
    the same bytes.

    Args:
        out: the classifier directory to write; it must be missing, empty or a classifier (anything
            else only with ``force``).
        kind: ``label`` (clean images ``(B, C, H, W)`` in ``[-1, 1]`` -> logits) or ``noisy-label``
            (``(x, sigma)`` -> logits, :class:`NoisyDigitCNN`).
        dataset: a labelled dataset name (see :func:`steerdiff.data.load_dataset`).
        epochs: passes over the training split.
        batch_size: images per step.
        lr: the peak learning rate of the one-cycle schedule.
        seed: random seed of initialisation, batches, augmentation and dropout.
        width: channels of the first convolution (default 32 for ``cnn``, 20 for ``lenet``, 24 for
            ``noisy-label``).
        progress: show a progress bar.
        command: the command line to record in ``config.json``.
        arch: kind ``label``: ``cnn`` (:class:`DigitCNN`, the evaluator's) or ``lenet``
            (:class:`DigitLeNet`).
        force: replace whatever ``out`` holds.
    """
    check(kind in KINDS, f"classifier kind {kind!r}: use one of {', '.join(KINDS)}")
    check(arch in NETS, f"classifier arch {arch!r}: use one of {', '.join(NETS)}")
    check(arch == "cnn" or kind == "label", f"arch {arch!r} is for kind label; noisy-label uses the cnn")
    ckpt.check_output_dir(out, ("classifier",), force=force)
    width = width or (
        24 if kind == "noisy-label" else 20 if arch == "lenet" else 32
    )  # a different architecture from the evaluator
    train, held = load_dataset(dataset, "train"), load_dataset(dataset, "heldout")
    check(train.labels is not None, f"dataset {dataset} has no labels")
    num_classes = int(train.labels.max()) + 1
    torch.manual_seed(stream_seed("classifier-init", seed))
    cls = NoisyDigitCNN if kind == "noisy-label" else NETS[arch]
    model = cls(train.images.shape[1], num_classes, width, image_size=train.images.shape[-1])
    steps = len(train) // batch_size

    def batches(epoch: int, gen: torch.Generator):
        perm = torch.randperm(len(train), generator=gen)
        for k in range(steps):
            idx = perm[k * batch_size : (k + 1) * batch_size]
            x = random_shift(train.images[idx], 2, gen)
            if kind == "noisy-label":  # EDM's training noise distribution, plus 10% clean images
                sigma = training_sigmas(len(idx), gen)
                yield add_noise(x, sigma, gen), sigma, train.labels[idx]
            else:
                yield x, None, train.labels[idx]

    def postfix(loss: torch.Tensor) -> dict:
        return {"loss": f"{loss.item():.3f}", "heldout_acc": f"{accuracy(model, held.images, held.labels):.4f}"}

    fit_classifier(
        model,
        batches,
        epochs=epochs,
        lr=lr,
        seed=seed,
        stream="classifier",
        steps_per_epoch=steps,
        progress=progress,
        desc=f"train-classifier {kind}/{dataset}",
        postfix=postfix,
    )
    acc = accuracy(model, held.images, held.labels)
    extra = {}
    if kind == "noisy-label":
        g = torch.Generator().manual_seed(stream_seed("classifier-eval", seed))
        noise = torch.randn(held.images.shape, generator=g)
        extra["heldout_accuracy_by_sigma"] = {
            str(s): accuracy(_AtSigma(model, s), held.images + s * noise, held.labels) for s in (0.25, 0.5, 1.0, 2.0)
        }
    config = {
        **extra,
        "format": "steerdiff-classifier",
        "version": 1,
        "kind": kind,
        "dataset": dataset,
        "arch": model.arch,
        **({"net": arch} if arch != "cnn" else {}),
        "heldout_accuracy": acc,
        "seed": seed,
        "epochs": epochs,
        "command": command,
    }

    def verify(d: Path) -> None:
        load_classifier(d)

    with ckpt.atomic_directory(out, verify=verify) as tmp:
        ckpt.save_tensors(tmp / "model.safetensors", model.state_dict())
        ckpt.write_json_atomic(tmp / "config.json", config)
    return config


def load_classifier(path: str | os.PathLike = "mnist-evaluator") -> DigitCNN:
    """A classifier from a shipped name (``mnist-evaluator``) or its directory (eval mode, frozen);
    ``.config`` holds its ``config.json``."""
    if str(path) in SHIPPED:
        from ..hub import weights_dir

        path = weights_dir() / SHIPPED[str(path)]
    path = Path(path)
    check(
        path.is_dir(),
        f"classifier directory {path} does not exist: pass 'mnist-evaluator' or a directory written by "
        "`steerdiff train-classifier`",
    )
    config = ckpt.read_json(path / "config.json")
    check(config.get("format") == "steerdiff-classifier", f"{path}/config.json is not a steerdiff classifier config")
    net = NoisyDigitCNN if config["kind"] == "noisy-label" else NETS.get(config.get("net", "cnn"))
    check(net is not None, f"{path}/config.json names an unknown classifier net {config.get('net')!r}")
    return load_weights(net(**config["arch"]), path, config)


def load_weights(model: nn.Module, path: Path, config: dict) -> nn.Module:
    """``model`` with the weights of ``path/model.safetensors``, frozen in eval mode, ``.config`` set."""
    try:
        model.load_state_dict(ckpt.read_safetensors(path / "model.safetensors"))
    except RuntimeError as e:
        raise SteerdiffError(
            f"{path}: weights do not match config.json ({str(e).splitlines()[0]}): the checkpoint is corrupt"
        ) from None
    model.eval().requires_grad_(False)
    model.config = config
    return model


@torch.no_grad()
def classify(evaluator, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probs (N, K), features (N, D))`` of images ``(N, 1, 28, 28)`` in ``[-1, 1]``."""
    probs, feats = [], []
    for i in range(0, len(images), batch):
        f = evaluator.features(images[i : i + batch].float())
        feats.append(f)
        probs.append(evaluator.head(f).softmax(1))
    return torch.cat(probs), torch.cat(feats)
