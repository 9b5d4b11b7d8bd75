"""Compositions of denoisers: mixtures and compositional sculpting (Garipov et al. 2023).

Let ``p_1..p_m`` be base models and ``p_mix = (1/m) sum_i p_i``; a label ``y`` says which base drew
``x``. Compositional sculpting samples

    p~(x | y_1..y_k) ∝ p_mix(x) * prod_j p(y_j | x)

through a classifier ``p_sigma(y_1..y_k | x)`` on noisy samples: the composed score at noise level
sigma is ``grad log p_mix,sigma(x) + scale * grad log p_sigma(y_1..y_k | x)``, and the mixture score
is ``sum_i p_sigma(y = i | x) * score_i(x)``. With two bases, ``y = (1, 2)`` is the harmonic mean
``p_1 p_2 / (p_1 + p_2)`` and ``y = (1, 1)`` / ``(2, 2)`` the contrasts ``p_1^2 / (p_1 + p_2)`` /
``p_2^2 / (p_1 + p_2)``; with three bases ``y = (1, 2, 3)`` the 3-way composition.

A classifier is a callable ``classifier(x, sigma) -> log p(y_1..y_k | x)`` of shape
``(B, m, ..., m)`` (``k`` label axes, labels 1-indexed as in the paper: axis entry ``i - 1``), and
carries ``num_bases`` (``m``) and ``num_labels`` (``k``). Every composition is a denoiser, so every
sampler and every particle term works on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..core.denoisers import Denoiser, DenoiserLike, DenoiserWrapper, append_dims, as_sigma
from ..core.errors import check
from ..core.toy import GaussianMixtureDenoiser


def _common_base(bases: Sequence) -> dict:
    check(len(bases) >= 2, f"a composition needs at least 2 bases, got {len(bases)}")
    shapes = {tuple(b.sample_shape) for b in bases}
    check(
        len(shapes) == 1, f"bases have different sample shapes {sorted(shapes)}: compose models of the same data size"
    )
    b0 = bases[0]
    return dict(
        sigma_min=max(b.sigma_min for b in bases),
        sigma_max=min(b.sigma_max for b in bases),
        sigma_data=b0.sigma_data,
        sample_shape=b0.sample_shape,
        preset=getattr(b0, "preset", None),
    )


def _marginal(log_joint: torch.Tensor) -> torch.Tensor:
    """``log p(y_1 = i | x)`` ``(B, m)`` from a joint ``(B, m, ..., m)``."""
    return log_joint.flatten(2).logsumexp(-1) if log_joint.ndim > 2 else log_joint


class Mixture(Denoiser):
    """``sum_i w_i p_i`` as a denoiser: ``D = sum_i p_sigma(i | x) D_i``, with the posterior from a
    classifier over bases or, for exact Gaussian-mixture bases, from their exact densities."""

    def __init__(self, bases: Sequence, weights=None, classifier=None):
        super().__init__(**_common_base(bases))
        self.bases = torch.nn.ModuleList(bases) if all(isinstance(b, torch.nn.Module) for b in bases) else list(bases)
        m = len(bases)
        w = (
            torch.full((m,), 1.0 / m, dtype=torch.float64)
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float64)
        )
        check(w.shape == (m,) and bool((w > 0).all()), f"weights must be {m} positive numbers")
        self.log_w = (w / w.sum()).log()
        exact = all(isinstance(b, GaussianMixtureDenoiser) for b in bases)
        check(
            classifier is not None or exact,
            "a mixture of networks needs a classifier over the bases (steerdiff train-classifier --kind joint)",
        )
        self.classifier = classifier

    def log_posterior(self, x, sigma) -> torch.Tensor:
        """``log p_sigma(base = i | x)`` ``(B, m)``."""
        if self.classifier is not None:
            m = len(self.bases)
            log_y = _marginal(self.classifier(x, sigma)).double()
            # the classifier was trained on equal base weights: reweight its posterior
            return torch.log_softmax(log_y + self.log_w.to(x.device) + torch.log(torch.tensor(float(m))), 1)
        lp = torch.stack([b.log_prob(x, sigma) for b in self.bases], 1)
        return torch.log_softmax(lp + self.log_w.to(x.device), 1)

    def denoise(self, x, sigma, **cond):
        post = self.log_posterior(x, sigma).exp().to(x.dtype)  # (B, m)
        d = torch.stack([b(x, sigma, **cond) for b in self.bases], 1)  # (B, m, ...)
        return (append_dims(post, d.ndim) * d).sum(1)


class Composition(Denoiser):
    """Compositional sculpting of ``bases`` through ``classifier`` (see module docstring)."""

    def __init__(self, bases: Sequence, classifier, y: Sequence[int], guidance_scale: float = 1.0):
        super().__init__(**_common_base(bases))
        m = len(bases)
        check(
            getattr(classifier, "num_bases", m) == m,
            f"the classifier was trained for {getattr(classifier, 'num_bases', '?')} bases, not {m}: train one for these bases",
        )
        k = getattr(classifier, "num_labels", len(y))
        check(len(y) == k, f"y={tuple(y)} has {len(y)} labels but the classifier models {k}: pass {k} labels")
        check(all(isinstance(v, int) and 1 <= v <= m for v in y), f"y={tuple(y)}: labels must be integers in 1..{m}")
        check(
            isinstance(guidance_scale, (int, float))
            and not isinstance(guidance_scale, bool)
            and math.isfinite(guidance_scale),
            f"guidance_scale must be a finite number, got {guidance_scale!r}",
        )
        self.y, self.scale, self.classifier = tuple(y), float(guidance_scale), classifier
        self.mixture = Mixture(bases, classifier=None if _exact_classifier(classifier) else classifier)

    def log_label_prob(self, x, sigma) -> torch.Tensor:
        """``log p_sigma(y_1..y_k | x)`` ``(B,)`` for this composition's labels."""
        lj = self.classifier(x, sigma)
        return lj[(slice(None),) + tuple(v - 1 for v in self.y)]

    def denoise(self, x, sigma, **cond):
        d = self.mixture(x, sigma, **cond)
        if self.scale == 0:
            return d
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_label_prob(xg, sigma).sum(), xg)
        return d + append_dims(sigma, x.ndim) ** 2 * self.scale * g.to(d.dtype)


def compose(
    bases: Sequence[DenoiserLike],
    classifier: Callable[..., torch.Tensor],
    y: Sequence[int] = (1, 2),
    guidance_scale: float = 1.0,
) -> Composition:
    """The composition ``p~(x | y) ∝ p_mix(x) prod_j p(y_j | x)`` of ``bases`` as a denoiser
    (compositional sculpting, Garipov et al. 2023; see the module docstring).

    At noise level ``sigma`` the composed denoiser is the mixture's, ``sum_i p_sigma(i | x) D_i(x, sigma)``,
    plus ``sigma^2 * guidance_scale * grad_x log p_sigma(y_1..y_k | x)``: the score of the composition.
    With two bases, ``y=(1, 2)`` is the harmonic mean ``p_1 p_2 / (p_1 + p_2)`` (what both share) and
    ``y=(1, 1)`` / ``(2, 2)`` the contrasts (what only base 1 / only base 2 has). To build one from
    shipped names as ``steerdiff compose`` does, use :func:`steerdiff.models.load_composition`.

    Args:
        bases: ``m >= 2`` denoisers ``D_i(x, sigma, **cond) -> x0_hat`` of one ``sample_shape``
            ``(C, H, W)``; the composition's sigma range is the intersection of theirs (VE scale).
        classifier: ``classifier(x, sigma) -> log p_sigma(y_1..y_k | x)`` of shape ``(B, m, ..., m)``
            (``k`` label axes; ``x`` ``(B, C, H, W)`` noisy at VE scale, ``sigma`` a float or ``(B,)``),
            carrying ``num_bases`` (``m``) and ``num_labels`` (``k``): a
            :class:`~steerdiff.compose.joint.JointClassifier`, or the exact
            :class:`ExactLabelPosterior` for Gaussian-mixture bases.
        y: the ``k`` observed labels, each an integer in ``1..m`` (label ``i`` is ``bases[i - 1]``).
        guidance_scale: multiplies the classifier term (dimensionless): 1 is the exact composition,
            0 the plain mixture, larger values sharpen it.

    Returns:
        A :class:`Composition`, a denoiser ``D(x, sigma, **cond)`` like its bases (``cond`` goes to
        every base), so every sampler and guidance term runs on it.
    """
    return Composition(bases, classifier, y, guidance_scale)


def mixture(
    bases: Sequence[DenoiserLike],
    weights: Sequence[float] | torch.Tensor | None = None,
    classifier: Callable[..., torch.Tensor] | None = None,
) -> Mixture:
    """The mixture ``sum_i w_i p_i`` of ``bases`` as a denoiser (equal weights by default)."""
    return Mixture(bases, weights, classifier)


def _exact_classifier(c) -> bool:
    return isinstance(c, ExactLabelPosterior)


class ExactLabelPosterior(torch.nn.Module):
    """The exact ``log p_sigma(y_1..y_k | x)`` for Gaussian-mixture bases that share their components
    (same means and std, different weights) with components far apart relative to their std.

    Then ``p(y | x0)`` is constant on each component ``c`` (``q_c(i) = a_ic / sum_i a_ic``) and
    ``p_sigma(y_1..y_k | x) = sum_c r_c(x) prod_j q_c(y_j)``, ``r_c`` the posterior of component ``c``
    under the mixture: the oracle for testing compositions (and the exact target
    :meth:`target_weights`)."""

    def __init__(self, bases: Sequence[GaussianMixtureDenoiser], num_labels: int = 2):
        super().__init__()
        check(
            all(isinstance(b, GaussianMixtureDenoiser) for b in bases),
            "ExactLabelPosterior needs GaussianMixtureDenoiser bases",
        )
        b0 = bases[0]
        check(
            all(torch.equal(b.means, b0.means) and b.std == b0.std for b in bases),
            "the bases must share their components (same means and std) for the exact label posterior",
        )
        a = torch.stack([b.weights for b in bases])  # (m, C)
        self.num_bases, self.num_labels = len(bases), num_labels
        self.q = a / a.sum(0, keepdim=True)  # q_c(i): (m, C)
        self.mix = GaussianMixtureDenoiser(b0.means, b0.std, a.mean(0))

    def forward(self, x, sigma) -> torch.Tensor:
        sigma = as_sigma(sigma, x)
        log_r = self.mix.log_responsibilities(x, sigma)  # (B, C)
        log_q = self.q.clamp(min=1e-300).log().to(x.device)  # (m, C)
        # log sum_c r_c prod_j q_c(y_j): one label axis per draw, components summed last
        full = log_r.reshape(x.shape[0], *([1] * self.num_labels), -1)
        for j in range(self.num_labels):
            view = [1] * (self.num_labels + 2)
            view[1 + j], view[-1] = self.num_bases, -1
            full = full + log_q.reshape(view)
        return full.logsumexp(-1).to(x.dtype)

    def target_weights(self, y: Sequence[int]) -> torch.Tensor:
        """Component weights ``(C,)`` of the exact composition ``p_mix prod_j p(y_j | x)``."""
        w = self.mix.weights * torch.stack([self.q[v - 1] for v in y]).prod(0)
        return w / w.sum()


class Conjunction(DenoiserWrapper):
    """Composable Diffusion's AND / NOT (Liu et al. 2022) over one conditional denoiser:
    ``D = D(x | uncond) + sum_i w_i (D(x | c_i) - D(x | uncond))``; a negative weight is NOT ``c_i``.
    Scores are linear in ``D`` at a fixed sigma, so this is the paper's score combination."""

    def __init__(self, model, conds: Sequence[dict], weights: Sequence[float], uncond: dict | None = None):
        super().__init__(model)
        check(len(conds) >= 1 and len(conds) == len(weights), "give one weight per condition")
        check(
            all(isinstance(c, dict) for c in conds),
            "each condition is a dict of keyword arguments, e.g. {'class_labels': 3}",
        )
        self.model, self.conds, self.weights, self.uncond = (
            model,
            list(conds),
            [float(w) for w in weights],
            dict(uncond or {}),
        )

    def denoise(self, x, sigma, **cond):
        base = self.model(x, sigma, **{**cond, **self.uncond})
        return base + sum(
            w * (self.model(x, sigma, **{**cond, **c}) - base) for c, w in zip(self.conds, self.weights, strict=False)
        )


def conjunction(
    model,
    conds: Sequence[dict],
    weights: Sequence[float] | None = None,
    negate: Sequence[dict] = (),
    negative_weight: float = 1.0,
    uncond: dict | None = None,
) -> Conjunction:
    """``c_1 AND c_2 ... AND NOT n_1 ...`` for a conditional denoiser (weights default to 1)."""
    weights = list(weights) if weights is not None else [1.0] * len(conds)
    return Conjunction(model, list(conds) + list(negate), weights + [-negative_weight] * len(negate), uncond)
