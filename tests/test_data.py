import gzip
import struct

import numpy as np
import pytest
import torch

from steerdiff.data import load_dataset, load_mnist, load_mnist_idx
from steerdiff.errors import SteerdiffError


def test_mnist_split_is_fixed_stratified_and_disjoint():
    tr, he, al = load_mnist("train"), load_mnist("heldout"), load_mnist("all")
    assert tr.images.shape == (4000, 1, 28, 28) and he.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(tr.labels).tolist() == [400] * 10 and torch.bincount(he.labels).tolist() == [100] * 10
    assert float(tr.images.min()) == -1.0 and float(tr.images.max()) == 1.0
    assert float(torch.cdist(he.images.flatten(1), tr.images.flatten(1)).min()) > 0  # no digit in both
    assert len(al) == 5000
    torch.testing.assert_close(load_mnist("heldout").images, he.images)


def _write_idx(path, arr, gz):
    header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", imgs, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", labels, gz)
    d = load_mnist_idx(tmp_path, "heldout")
    assert d.images.shape == (7, 1, 28, 28)
    np.testing.assert_allclose(d.images.numpy()[:, 0], imgs / 127.5 - 1, atol=1e-6)
    assert d.labels.tolist() == labels.tolist()
    with pytest.raises(SteerdiffError, match="train-images-idx3-ubyte"):
        load_mnist_idx(tmp_path, "train")


def test_idx_truncated_file_is_reported(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28)), False)
    data = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:-10])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3), False)
    with pytest.raises(SteerdiffError, match="truncated"):
        load_mnist_idx(tmp_path, "heldout")


def test_digits8_and_unknown_dataset():
    d = load_dataset("digits8", "all")
    assert d.images.shape == (1797, 1, 8, 8) and float(d.images.max()) == 1.0
    with pytest.raises(SteerdiffError, match="unknown dataset"):
        load_dataset("cifar")
