"""Guidance as a denoiser wrapper.

``guided(denoiser, *terms)`` is a denoiser whose score is the base score plus each term's:

    D'(x, sigma) = D(x, sigma) + sigma^2 * sum_k g_k(x, sigma)

so a term ``g_k`` is the gradient, with respect to ``x``, of a log-potential, in the units of a score
(1 / units of x). A term is any callable ``g(x, sigma, **cond) -> tensor like x`` with ``sigma`` a
``(B,)`` tensor; it sees the whole batch, so terms may couple the samples (particle methods).
Gradients are enabled inside, so the wrapper works under ``@torch.no_grad`` samplers.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .denoisers import Denoiser, append_dims
from .errors import check


class Guided(Denoiser):
    """A denoiser plus guidance terms (see module docstring)."""

    def __init__(self, base: Callable, terms):
        super().__init__(sigma_min=base.sigma_min, sigma_max=base.sigma_max, sigma_data=base.sigma_data,
                         sample_shape=base.sample_shape, preset=getattr(base, "preset", None))
        for t in terms:
            check(callable(t), f"a guidance term must be callable g(x, sigma, **cond), got {type(t).__name__}")
        self.base, self.terms = base, list(terms)

    def denoise(self, x, sigma, **cond):
        d = self.base(x, sigma, **cond)
        if not self.terms:
            return d
        with torch.enable_grad():
            g = sum(t(x.detach(), sigma, **cond) for t in self.terms)
        check(g.shape == x.shape, f"a guidance term returned shape {tuple(g.shape)} for x of shape {tuple(x.shape)}")
        return d + append_dims(sigma, x.ndim) ** 2 * g.detach().to(d.dtype)


def guided(denoiser: Callable, *terms: Callable) -> Guided:
    """``denoiser`` with guidance ``terms`` added to its score (see module docstring)."""
    return Guided(denoiser, terms)
