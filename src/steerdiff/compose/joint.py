"""Classifiers on noisy samples for compositional sculpting (Garipov et al. 2023).

A joint classifier models ``log p_sigma(y_1..y_k | x)`` for ``k`` independent draws of "which base
generated x0" (``m`` bases): a noise-conditional CNN whose ``m**k`` logits are averaged over all
permutations of the label axes before the softmax, so the joint is symmetric by construction.
``k = 2`` is the paper's binary classifier; ``k = 3`` replaces its joint + conditional pair with one
symmetric 3-label joint (``p(y_1, y_2, y_3 | x)`` is what the 3-way composition needs, and one
symmetric network cannot disagree with itself the way two separately trained ones can).

Training uses forward-noised data of each base (cheap) and the paper's bootstrapped labels: ``y_1``
is the base a sample came from; ``y_2..y_k`` are soft labels ``p(y | x0)`` from the classifier's own
marginal on the clean sample (the labels are independent given ``x0``, not given ``x``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoint as ckpt
from ..core.errors import SteerdiffError, check
from ..core.seeding import stream_seed
from ..data import SHORT_NAMES, load_dataset
from ..hub import JOINT_CLASSIFIERS as SHIPPED
from ..train.classifier import (
    NoisyDigitCNN,
    add_noise,
    fit_classifier,
    load_weights,
    random_shift,
    training_sigmas,
)

JOINT_KINDS = {"joint": 2, "joint3": 3}


class JointClassifier(nn.Module):
    """``(x, sigma) -> log p_sigma(y_1..y_k | x)`` of shape ``(B, m, ..., m)`` (``k`` axes); ``x`` noisy
    at VE scale, ``sigma`` a scalar or ``(B,)``. Carries ``num_bases`` (``m``) and ``num_labels`` (``k``)."""

    def __init__(
        self,
        in_channels: int,
        num_bases: int,
        num_labels: int = 2,
        width: int = 24,
        image_size: int = 28,
        sigma_data: float = 0.5,
    ):
        super().__init__()
        check(num_bases >= 2 and num_labels >= 1, "a joint classifier needs at least 2 bases and 1 label")
        self.num_bases, self.num_labels = int(num_bases), int(num_labels)
        self.net = NoisyDigitCNN(
            in_channels, num_bases**num_labels, width, image_size=image_size, sigma_data=sigma_data
        )
        self.arch = dict(
            in_channels=in_channels,
            num_bases=num_bases,
            num_labels=num_labels,
            width=width,
            image_size=image_size,
            sigma_data=sigma_data,
        )
        self._perms = list(itertools.permutations(range(1, num_labels + 1)))

    def forward(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        m, k = self.num_bases, self.num_labels
        logits = self.net(x, sigma).view(-1, *([m] * k))
        sym = sum(logits.permute(0, *p) for p in self._perms) / len(self._perms)
        return torch.log_softmax(sym.flatten(1), 1).view_as(sym)

    def log_marginal(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """``log p_sigma(y_1 | x)`` ``(B, m)``."""
        lj = self(x, sigma)
        return lj.flatten(2).logsumexp(-1) if lj.ndim > 2 else lj

    def recorded_guidance(self, y: Sequence[int]) -> tuple[float, float]:
        """``(guidance_scale, set_guidance)`` recorded in this classifier's ``config.json`` for the
        composition with labels ``y`` (``default_guidance_scale`` by labels, ``default_set_guidance``),
        else ``(1, 0)``: the exact composition of the plain base models."""
        config = getattr(self, "config", {})
        scale = config.get("default_guidance_scale", {}).get(",".join(map(str, y)), 1.0)
        return scale, config.get("default_set_guidance", 0.0)


def _outer(p: torch.Tensor, k: int) -> torch.Tensor:
    """``prod_j p[y_j]`` over ``k`` label axes: ``(B, m)`` -> ``(B, m, ..., m)``."""
    out = p
    for _ in range(k - 1):
        out = out.unsqueeze(-1) * p.view(p.shape[0], *([1] * (out.ndim - 1)), -1)
    return out


def train_joint_classifier(
    out: str | os.PathLike,
    bases: list[str],
    *,
    num_labels: int = 2,
    epochs: int = 20,
    batch_size: int = 96,
    lr: float = 2e-3,
    warmup_epochs: int = 2,
    seed: int = 0,
    width: int = 24,
    progress: bool = True,
    command: str | None = None,
    force: bool = False,
) -> dict:
    """Train a joint classifier over the datasets ``bases`` on forward-noised samples with
    bootstrapped labels; write it to directory ``out`` (what :func:`load_joint_classifier` reads);
    return its config, with the held-out accuracy of ``y_1`` by noise level.

    For ``warmup_epochs`` only the ``y_1`` marginal is trained (the bootstrap targets need a classifier
    that already knows ``p(y | x0)``); then the full joint loss. The same arguments give the same bytes.

    Args:
        out: the classifier directory to write; it must be missing, empty or a classifier (anything
            else only with ``force``).
        bases: ``m >= 2`` dataset names (as for ``steerdiff train``; ``M1``.. short for ``colormnist-m1``..)
            of one image shape, in label order: label ``i`` is ``bases[i - 1]``.
        num_labels: ``k``, the number of independent draws the joint models (2: ``--kind joint``, 3:
            ``--kind joint3``).
        epochs: passes of ``max_i len(bases[i]) // (batch_size // m)`` steps.
        batch_size: images per step, an equal share from each base.
        lr: the peak learning rate of the one-cycle schedule.
        warmup_epochs: epochs that train the ``y_1`` marginal only.
        seed: random seed of initialisation, batches, noise and dropout.
        width: channels of the first convolution.
        progress: show a progress bar.
        command: the command line to record in ``config.json``.
        force: replace whatever ``out`` holds.
    """
    ckpt.check_output_dir(out, ("classifier",), force=force)
    check(len(bases) >= 2, f"a joint classifier needs at least 2 base datasets, got {len(bases)}")
    names = [SHORT_NAMES.get(b, b) for b in bases]
    train = [load_dataset(n, "train") for n in names]
    held = [load_dataset(n, "heldout") for n in names]
    shapes = {tuple(d.images.shape[1:]) for d in train}
    check(len(shapes) == 1, f"base datasets have different image shapes {sorted(shapes)}")
    c, h, _ = next(iter(shapes))
    m, k = len(names), num_labels
    torch.manual_seed(stream_seed("joint-init", seed))
    model = JointClassifier(c, m, k, width, image_size=h)
    per = max(1, batch_size // m)
    steps_per_epoch = max(len(d) for d in train) // per
    y1 = torch.arange(m).repeat_interleave(per)

    def batches(epoch: int, gen: torch.Generator):
        for _ in range(steps_per_epoch):
            # an equal number from each base: the mixture p_mix = (1/m) sum_i p_i
            x0 = torch.cat([d.images[torch.randint(0, len(d), (per,), generator=gen)] for d in train])
            x0 = random_shift(x0, 1, gen)
            sigma = training_sigmas(len(x0), gen, clean=0.002)
            yield x0, add_noise(x0, sigma, gen), sigma

    def loss(batch: tuple, epoch: int) -> torch.Tensor:
        x0, x, sigma = batch
        lj = model(x, sigma)
        if epoch < warmup_epochs or k == 1:
            return F.nll_loss(lj.flatten(2).logsumexp(-1) if k > 1 else lj, y1)
        with torch.no_grad():
            model.eval()
            q = model.log_marginal(x0, 0.002).exp()  # p(y | x0): (B, m)
            model.train()
            target = _outer(q, k - 1)  # soft y_2..y_k
        rows = lj[torch.arange(len(x)), y1]  # log q(y_1 = i, y_2.. | x)
        return -(target * rows).flatten(1).sum(1).mean()

    fit_classifier(
        model,
        batches,
        loss=loss,
        epochs=epochs,
        lr=lr,
        seed=seed,
        stream="joint",
        steps_per_epoch=steps_per_epoch,
        progress=progress,
        desc=f"train-classifier joint{k}/{'+'.join(bases)}",
    )
    model.eval()
    acc = _marginal_accuracy(model, held, seed)
    config = {
        "format": "steerdiff-classifier",
        "version": 1,
        "kind": "joint" if k == 2 else f"joint{k}",
        "bases": names,
        "arch": model.arch,
        "heldout_accuracy_y1": acc,
        "seed": seed,
        "epochs": epochs,
        "command": command,
    }

    with ckpt.atomic_directory(out, verify=lambda d: load_joint_classifier(d)) as tmp:
        ckpt.save_tensors(tmp / "model.safetensors", model.state_dict())
        ckpt.write_json_atomic(tmp / "config.json", config)
    return config


@torch.no_grad()
def _marginal_accuracy(model: JointClassifier, held, seed: int) -> dict:
    """Held-out accuracy of ``argmax p(y_1 | x)`` for the source base, by noise level (for overlapping
    bases the Bayes accuracy is below 1: shared images cannot be told apart)."""
    g = torch.Generator().manual_seed(stream_seed("joint-eval", seed))
    x0 = torch.cat([d.images for d in held])
    y = torch.cat([torch.full((len(d),), i) for i, d in enumerate(held)])
    noise = torch.randn(x0.shape, generator=g)
    return {
        str(s): float((model.log_marginal(x0 + s * noise, s).argmax(1) == y).float().mean())
        for s in (0.0, 0.5, 1.0, 2.0)
    }


def load_joint_classifier(path: str | os.PathLike) -> JointClassifier:
    """A joint classifier from its directory (eval mode, frozen); ``.config`` holds ``config.json``."""
    path = Path(path)
    check(
        path.is_dir(),
        f"classifier directory {path} does not exist: train one with "
        "`steerdiff train-classifier --kind joint --bases A B --out DIR`",
    )
    config = ckpt.read_json(path / "config.json")
    check(
        config.get("format") == "steerdiff-classifier" and config.get("kind") in JOINT_KINDS,
        f"{path} is not a joint classifier (kind {config.get('kind')!r}): use one trained with --kind joint or joint3",
    )
    return load_weights(JointClassifier(**config["arch"]), path, config)


def shipped_joint_classifier(bases) -> JointClassifier:
    """The shipped joint classifier for base models named ``bases`` (in this order)."""
    from ..hub import weights_dir

    key = tuple(SHORT_NAMES.get(str(b), str(b)) for b in bases)
    if key not in SHIPPED:
        known = "; ".join(" ".join(k) for k in SHIPPED)
        if tuple(sorted(key)) in {tuple(sorted(k)) for k in SHIPPED}:
            raise SteerdiffError(
                f"bases {' '.join(key)}: the shipped classifier takes them in the order of its training; "
                f"use one of: {known}"
            )
        raise SteerdiffError(
            f"no shipped classifier for bases {' '.join(key)} (shipped: {known}): train one with "
            "`steerdiff train-classifier --kind joint --bases DATASET1 DATASET2 --out DIR` and pass --classifier DIR"
        )
    return load_joint_classifier(weights_dir() / SHIPPED[key])
