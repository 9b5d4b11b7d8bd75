"""Image classifiers: the MNIST evaluator (quality / diversity judge) and, later, noise-conditional ones.

The evaluator is a small CNN trained on the 4,000 training digits with random shifts; its 128-d
penultimate activations are the feature space of steerdiff's MNIST metrics (Fréchet distance,
near-copy rate). A classifier checkpoint is a directory: ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import checkpoint as ckpt
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
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
        s = sigma.view(-1, 1, 1, 1)
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
) -> dict:
    """Train a classifier and write it to directory ``out``; returns its config (with held-out accuracy).
    ``arch`` (kind ``label``): ``cnn`` (:class:`DigitCNN`, the evaluator's) or ``lenet`` (:class:`DigitLeNet`)."""
    check(kind in KINDS, f"classifier kind {kind!r}: use one of {', '.join(KINDS)}")
    check(arch in NETS, f"classifier arch {arch!r}: use one of {', '.join(NETS)}")
    check(arch == "cnn" or kind == "label", f"arch {arch!r} is for kind label; noisy-label uses the cnn")
    width = width or (
        24 if kind == "noisy-label" else 20 if arch == "lenet" else 32
    )  # a different architecture from the evaluator
    train, held = load_dataset(dataset, "train"), load_dataset(dataset, "heldout")
    check(train.labels is not None, f"dataset {dataset} has no labels")
    num_classes = int(train.labels.max()) + 1
    torch.manual_seed(stream_seed("classifier-init", seed))
    cls = NoisyDigitCNN if kind == "noisy-label" else NETS[arch]
    model = cls(train.images.shape[1], num_classes, width, image_size=train.images.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * (len(train) // batch_size))
    bar = tqdm(range(epochs), disable=not progress, desc=f"train-classifier {kind}/{dataset}", unit="epoch")
    for epoch in bar:
        model.train()
        gen = torch.Generator().manual_seed(stream_seed("classifier-epoch", seed, epoch))
        torch.manual_seed(stream_seed("classifier-dropout", seed, epoch))
        perm = torch.randperm(len(train), generator=gen)
        for k in range(len(train) // batch_size):
            idx = perm[k * batch_size : (k + 1) * batch_size]
            x = random_shift(train.images[idx], 2, gen)
            if kind == "noisy-label":
                # EDM's training noise distribution, plus 10% clean images
                sigma = (-1.2 + 1.2 * torch.randn(len(idx), generator=gen)).exp()
                sigma = torch.where(torch.rand(len(idx), generator=gen) < 0.1, torch.zeros_like(sigma), sigma)
                logits = model(x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen), sigma)
            else:
                logits = model(x)
            loss = F.cross_entropy(logits, train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", heldout_acc=f"{accuracy(model, held.images, held.labels):.4f}")
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
