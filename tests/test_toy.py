import math

import torch

import steerdiff as sd
from steerdiff.toy import GaussianMixtureDenoiser


def test_mixture_denoiser_is_tweedie_of_its_exact_log_density():
    """D(x, s) = x + s^2 grad log p_s(x) (Tweedie), with log p_s from the closed form, by autograd."""
    torch.manual_seed(0)
    m = GaussianMixtureDenoiser(torch.randn(4, 3), std=0.3, weights=[0.1, 0.2, 0.3, 0.4])
    x = torch.randn(16, 3, dtype=torch.float64) * 2
    for sigma in (0.01, 0.5, 3.0):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(m.log_prob(xr, sigma).sum(), xr)
        torch.testing.assert_close(m(x, sigma), x + sigma**2 * grad, rtol=1e-9, atol=1e-9)


def test_mixture_log_prob_matches_scipy():
    from scipy.stats import multivariate_normal

    m = GaussianMixtureDenoiser(torch.tensor([[0.0, 0.0], [2.0, 1.0]]), std=0.5, weights=[0.25, 0.75])
    x = torch.tensor([[0.3, -0.2], [1.5, 1.0]], dtype=torch.float64)
    var = 0.5**2 + 0.7**2
    ref = [
        math.log(0.25 * multivariate_normal([0, 0], var).pdf(p) + 0.75 * multivariate_normal([2, 1], var).pdf(p))
        for p in x.numpy()
    ]
    torch.testing.assert_close(m.log_prob(x, 0.7), torch.tensor(ref, dtype=torch.float64))


def test_ring_preset_geometry_and_sigma_data():
    m = sd.ring(n_modes=8, radius=2.0, std=0.1)
    assert m.means.shape == (8, 2)
    torch.testing.assert_close(m.means.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    # per-coordinate variance of p0: radius^2 / 2 + std^2
    assert abs(m.sigma_data - math.sqrt(2.0 + 0.01)) < 1e-9
    x = m.sample_exact(4000, torch.Generator().manual_seed(0))
    assert abs(float(x.var(0).mean()) - m.sigma_data**2) < 0.1
