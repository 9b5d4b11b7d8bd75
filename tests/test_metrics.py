import numpy as np
import pytest
import torch
from scipy import linalg

from steerdiff.errors import SteerdiffError
from steerdiff.metrics import frechet_distance, mode_count, near_copy_rate


def scipy_fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    b = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 1.0
    assert abs(frechet_distance(a, b) - scipy_fid(a, b)) < 1e-6 * max(1, scipy_fid(a, b))
    assert frechet_distance(a, a) < 1e-8


def test_frechet_distance_of_known_gaussians():
    # N(0, I) vs N(m, 4 I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200000, 3))
    b = rng.normal(size=(200000, 3)) * 2 + np.array([1.0, 0.0, 2.0])
    assert abs(frechet_distance(a, b) - 8.0) < 0.1


def test_frechet_rejects_bad_shapes():
    with pytest.raises(SteerdiffError, match="feature dims"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_mode_count_and_near_copy():
    assert mode_count([0, 1, 1, 3]) == 3 and mode_count([0, 1, 1, 3], min_count=2) == 1
    train = torch.randn(200, 1, 4, 4)
    held = torch.randn(100, 1, 4, 4)
    copies = train[:50] + 1e-3
    assert near_copy_rate(copies, train, held)["near_copy_rate"] == 1.0
    assert near_copy_rate(held, train, held)["near_copy_rate"] == pytest.approx(0.05, abs=0.011)
