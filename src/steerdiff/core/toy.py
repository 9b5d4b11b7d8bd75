"""Exact denoisers of Gaussian mixtures: the analytic oracle for samplers, guidance and composition.

For ``p0 = sum_k w_k N(mu_k, s^2 I)`` the noisy marginal is ``p_sigma = sum_k w_k N(mu_k, (s^2 + sigma^2) I)``
and the ideal denoiser (the posterior mean) is

    D(x, sigma) = sum_k r_k(x) (mu_k + s^2 / (s^2 + sigma^2) (x - mu_k)),
    r_k(x) = softmax_k(log w_k - |x - mu_k|^2 / (2 (s^2 + sigma^2))).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .denoisers import Denoiser, append_dims, as_sigma
from .errors import check


class GaussianMixtureDenoiser(Denoiser):
    """Exact denoiser of an isotropic Gaussian mixture.

    ``means``: ``(K, *sample_shape)``; ``std``: the components' common standard deviation ``s``;
    ``weights``: ``(K,)`` (normalised here; uniform by default). Works for flat ``(B, d)`` toy data
    and for image-shaped means alike.
    """

    means: torch.Tensor
    weights: torch.Tensor

    def __init__(
        self,
        means,
        std: float,
        weights=None,
        *,
        sigma_min: float = 0.002,
        sigma_max: float | None = None,
        preset: dict | None = None,
    ):
        means = torch.as_tensor(means, dtype=torch.float64)
        check(means.ndim >= 2, f"means must be (K, *sample_shape), got shape {tuple(means.shape)}")
        check(std > 0, f"std must be positive, got {std}")
        k = means.shape[0]
        weights = (
            torch.full((k,), 1.0 / k, dtype=torch.float64)
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float64)
        )
        check(weights.shape == (k,) and bool((weights > 0).all()), f"weights must be {k} positive numbers")
        flat = means.reshape(k, -1)
        w = weights / weights.sum()
        centred = flat - (w[:, None] * flat).sum(0)
        sigma_data = float(((w[:, None] * centred**2).sum(0).mean() + std**2).sqrt())  # per-coordinate std of p0
        if sigma_max is None:
            sigma_max = 20.0 * max(1.0, float(flat.abs().max()))
        super().__init__(
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            sigma_data=sigma_data,
            sample_shape=means.shape[1:],
            preset=preset or {"sampler": "heun", "steps": 32},
        )
        self.std = float(std)
        self.register_buffer("means", means)
        self.register_buffer("weights", weights / weights.sum())

    def log_responsibilities(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``log r_k(x)``: ``(B, K)`` posterior log-probabilities of the components given noisy ``x``."""
        var = (self.std**2 + sigma.double() ** 2)[:, None]
        d2 = torch.cdist(x.double().flatten(1), self.means.flatten(1)) ** 2
        return torch.log_softmax(self.weights.log()[None] - d2 / (2 * var), dim=1)

    def denoise(self, x, sigma, **cond):
        r = self.log_responsibilities(x, sigma).exp()  # (B, K)
        shrink = append_dims(self.std**2 / (self.std**2 + sigma.double() ** 2), x.ndim)
        mean_mu = (r @ self.means.flatten(1)).reshape(x.shape)  # sum_k r_k mu_k
        return (mean_mu + shrink * (x.double() - mean_mu)).to(x.dtype)

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """``log p_sigma(x)``: ``(B,)``, the exact log-density of the noisy marginal."""
        x = x.double()
        sigma = as_sigma(sigma, x)
        var = (self.std**2 + sigma**2)[:, None]
        d = self.means[0].numel()
        d2 = torch.cdist(x.flatten(1), self.means.flatten(1)) ** 2
        return torch.logsumexp(self.weights.log()[None] - d2 / (2 * var) - d / 2 * torch.log(2 * math.pi * var), dim=1)

    def sample_exact(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws from the clean mixture ``p0``: ``(n, *sample_shape)`` float64."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.means[k] + self.std * torch.randn((n, *self.sample_shape), generator=generator, dtype=torch.float64)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Index ``(B,)`` of the nearest mean of each (clean) sample: its mode."""
        return torch.cdist(x.double().flatten(1), self.means.flatten(1)).argmin(1)


# Particle presets for the ring, found by the sweep in benchmarks/bench_ring.py: PG on the denoised
# estimate with a narrow RBF (0.3 x the median heuristic) and the force projected off the score.
RING_PRESET = {
    "sampler": "heun",
    "steps": 32,
    "particles": {
        "pg": dict(
            embedding="identity",
            kernel="rbf",
            on="x0",
            strength=4.0,
            window=(0.1, 20.0),
            bandwidth="median",
            bandwidth_scale=0.3,
            project=True,
        ),
        "repulsive": dict(
            embedding="identity",
            kernel="rbf",
            on="x0",
            strength=40.0,
            window=(0.1, 20.0),
            bandwidth="median",
            bandwidth_scale=0.3,
            project=True,
        ),
    },
}


def ring(
    n_modes: int = 10, radius: float = 1.0, std: float = 0.005**0.5, weights: Sequence[float] | None = None, **kwargs
) -> GaussianMixtureDenoiser:
    """``n_modes`` Gaussians evenly spaced on a circle of ``radius`` in 2-D; the defaults (10 modes,
    radius 1, variance 0.005) are the Particle Guidance paper's synthetic experiment."""
    check(n_modes >= 1, "n_modes must be at least 1")
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    kwargs.setdefault("preset", RING_PRESET)
    return GaussianMixtureDenoiser(means, std, weights, **kwargs)
