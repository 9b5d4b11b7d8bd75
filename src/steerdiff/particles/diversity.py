"""Diverse batches at a fixed condition: sparse repellency (SPELL) and determinant / entropy potentials.

Four guidance terms for :func:`steerdiff.guided` / :func:`steerdiff.sample` (``guidance=[...]``). All
four couple the batch (the particle set) through the denoised estimates ``x0_i = D(x_i, sigma)``.

Public API (every argument has a default; ``term(method, **options)`` builds one by name)::

    SPELL(radius=None, radius_scale=0.7, strength=1.0, embedding="identity", window=None,
          weight="constant", archive=None, protected=None, protected_radius=None)
    DPPGuidance(strength=1.0, embedding="identity", on="x0", window=None, weight="constant",
                bandwidth="median", bandwidth_scale=1.0, project=False, eps=1e-3, jacobian="exact")
    EntropyGuidance(strength=1.0, embedding="identity", on="x0", window=None, weight="constant",
                    bandwidth="median", bandwidth_scale=1.0, project=False, features=None, seed=0,
                    jacobian="exact")
    HerdingGuidance(strength=1.0, reference=None, reference_features=None, embedding="identity",
                    window=None, weight="constant", bandwidth_scale=1.0, project=False, jacobian="exact")
    herding_reference(model, n=256, *, seed, embedding="classifier-probs", **sample_kwargs)
    term("spell" | "dpp" | "entropy" | "herding", **options)

**SPELL** (sparse repellency, Kirchhof et al. 2025) corrects each denoised estimate out of the balls of
radius ``r`` around the other particles' estimates (and around an ``archive`` of earlier samples and a
``protected`` set, e.g. training images as a near-copy shield):

    delta x0_i = strength * sum_{j != i} max(0, r - d_ij) (x0_i - x0_j) / d_ij,   d_ij = |x0_i - x0_j|

Each overlapping particle is pushed radially to the boundary of the ball around the other, taken as
fixed (so a pair at distance ``d < r`` ends ``2 r - d`` apart after one correction; ``strength > 1``
overshoots, the paper's overcompensation). The correction is exactly zero when no ball overlaps: the
sampler then sees the base denoiser bit for bit. It is returned as a score ``g = delta x0 / sigma^2``,
so ``D' = D + sigma^2 g = D + delta x0``. The default radius, for ``embedding="identity"``, is relative
to the data scale: ``r = radius_scale * sqrt(2 d) * sigma_data`` (``d`` values per sample), where
``sqrt(2 d) * sigma_data`` is the expected distance between two independent samples of data with
per-value standard deviation ``sigma_data`` (for MNIST in ``[-1, 1]``, ``sigma_data = 0.5``,
``d = 784``: 19.8; the default ``radius_scale = 0.7`` makes ``r = 13.9`` there). With another
embedding give ``radius`` in its units; the correction ``delta f`` is then pulled back to the sample by
the embedding's vector-Jacobian product (a gradient step on ``1/2 sum_j max(0, r - d_ij)^2``, which
is the correction itself for the identity).

**DPPGuidance** (determinantal point process potential, as in DiverseFlow, Morshed & Boddeti 2025)
adds the gradient of ``V = strength * log det(K + eps I)``, ``K_ij = exp(-|f_i - f_j|^2 / h)`` an RBF
kernel on features ``f_i = phi(y_i)`` of ``y = x0`` (``on="x0"``, gradient through the denoiser by a
vector-Jacobian product) or ``y = x`` (``on="x"``); ``h`` is a detached bandwidth
(:func:`steerdiff.kernels.rbf_bandwidth`). The log-determinant is the log-volume spanned by the
particles in the kernel's feature space: it is ``-inf`` for duplicates and grows as they spread.

**EntropyGuidance** adds the gradient of the order-2 kernel entropy ``V = -strength * log mean_ij K_ij``
(an order-2 Rényi kernel entropy; for an RBF kernel ``K = K'^2`` with ``K'`` the RBF of bandwidth
``2 h``, so ``1 / mean_ij K_ij`` is the order-2 Vendi score of ``K'``). ``features=None``
computes all ``n^2`` kernel values; ``features=D`` uses ``D`` random Fourier features ``z_i``
(``K_ij ~ z_i . z_j``) and the identity ``sum_ij K_ij = |sum_i z_i|^2``, with the exact diagonal
(``K_ii = 1``), so cost and memory are ``O(n D)`` for large batches (SPARKE-style); its ``"median"``
bandwidth is then the ``O(n)`` estimate ``2 med_i |f_i - mean f|^2 / log(n + 1)``.

**HerdingGuidance** adds the gradient of ``V = -strength * n * MMD^2`` between the batch's features and a
reference set's (kernel herding): the batch-mates repel, the references attract with the same kernel,
so the batch spreads over the reference distribution instead of outward. The reference can be the
model's own earlier draws (:func:`herding_reference`): no data, no labels.

**Without a backward pass** (``jacobian="gaussian"``, ``on="x0"`` only): the force on ``x`` is
``J^T grad_{x0} V`` with ``J = d x0 / d x`` the denoiser's Jacobian, which costs a backward pass through
the network at every call. ``jacobian="gaussian"`` replaces ``J`` by ``c_skip(sigma) I``,
``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``: the exact Jacobian of the ideal denoiser of
``N(0, sigma_data^2 I)`` data (where both forms agree). The base call then needs no graph, and the term
costs the kernel alone. The exact form keeps the push along the directions the denoiser responds to
(the data's tangent directions), the Gaussian form pushes along all pixels; compare them in
``docs/benchmarks.md``.

``strength = 0`` (or a ``window`` that excludes the noise level) switches a term off: the guided
denoiser then makes the base call alone and samples are bit-identical to plain sampling. Every term
is permutation-equivariant in the particles. Not supported (yet): a particle set spread over
``torch.distributed`` ranks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from ..core import distributed
from ..core.denoisers import append_dims
from ..core.errors import check
from ..core.guidance import GuidanceTerm, GuideContext, schedule_weight
from .embeddings import get_embedding
from .kernels import pairwise_sq_dists, rbf_bandwidth
from .pg import project_off_score

_T = TypeVar("_T", bound="_DiversityTerm")


class _DiversityTerm(GuidanceTerm):
    """Shared set-up: window, weight schedule, strength, embedding (see the module docstring). These
    terms read no preset: :meth:`bind` only defaults the window to the model's sigma range and checks."""

    strength: float = 1.0
    embedding: object = "identity"
    window: Any = None
    weight: object = "constant"
    on: str = "x0"
    needs_x0: bool = False
    needs_base: bool = True
    _phi: Callable[..., torch.Tensor]

    def bind(self: _T, denoiser) -> _T:
        t = copy.copy(self)
        t.window = (
            tuple(float(w) for w in t.window) if t.window is not None else (denoiser.sigma_min, denoiser.sigma_max)
        )
        check(len(t.window) == 2 and 0 <= t.window[0] <= t.window[1], f"window must be (lo, hi) sigmas, got {t.window}")
        check(
            math.isfinite(float(t.strength)) and float(t.strength) >= 0,
            f"strength must be a number >= 0, got {t.strength}",
        )
        check(
            t.on in ("x", "x0"),
            f"on={t.on!r}: use 'x' (features of the noisy sample) or 'x0' (of the denoised estimate)",
        )
        schedule_weight(t.weight, t.window[1], t.window)  # validates the schedule name now, not mid-sampling
        t._phi = get_embedding(t.embedding)
        return t

    def weight_at(self, sigma: float) -> float:
        return float(self.strength) * schedule_weight(self.weight, sigma, self.window)

    def __repr__(self) -> str:
        def short(v):
            return f"<{type(v).__name__} {tuple(v.shape)}>" if isinstance(v, torch.Tensor) else repr(v)

        args = ", ".join(f"{k}={short(v)}" for k, v in vars(self).items() if not k.startswith("_") and v is not None)
        return f"{type(self).__name__}({args})"

    def _check_local(self) -> None:
        check(
            not distributed.active(),
            f"{type(self).__name__} does not support a particle set spread over "
            "torch.distributed ranks (yet): run it in one process",
        )


def _ref_samples(refs) -> torch.Tensor | None:
    """An archive (:class:`~steerdiff.particles.Archive` or a tensor ``(m, *sample_shape)``) as a tensor."""
    if refs is None:
        return None
    from .pg import Archive

    a = refs.samples if isinstance(refs, Archive) else torch.as_tensor(refs)
    return a if len(a) else None


class SPELL(_DiversityTerm):
    """Sparse repellency of the denoised estimates (see the module docstring).

    Shapes: the batch ``x`` ``(n, *sample_shape)``; ``archive`` and ``protected`` hold clean samples
    ``(m, *sample_shape)`` (or an :class:`~steerdiff.particles.Archive`). The term returns the score
    ``delta x0 / sigma^2`` shaped like ``x``; it is zero where no ball overlaps.

    Args:
        radius: the repellency radius ``r`` in embedding units (``None``: ``radius_scale * sqrt(2 d) *
            sigma_data``, identity embedding only; 0: no repellency within the batch, only from
            ``archive`` / ``protected``).
        radius_scale: ``r`` as a fraction of the expected distance between two independent samples.
        strength: the correction's multiplier (1: to the ball's boundary; above 1: overcompensation).
        embedding: where distances are measured (a name of :mod:`steerdiff.embeddings` or a callable).
        window: ``(lo, hi)`` sigmas where the term acts (default: the model's whole range).
        weight: the weight schedule inside the window (``"constant"``, ``"sigma"``, ``"cosine"``, callable).
        archive: earlier samples that the batch is also pushed away from (they do not move).
        protected: a protected set (e.g. training images: a near-copy shield), pushed away from with
            ``protected_radius`` (default ``r``).
    """

    needs_base = True
    needs_x0 = False
    _identity: bool = True

    def __init__(
        self,
        radius: float | None = None,
        radius_scale: float = 0.7,
        strength: float = 1.0,
        embedding="identity",
        window=None,
        weight="constant",
        archive=None,
        protected=None,
        protected_radius: float | None = None,
    ):
        check(radius is None or (math.isfinite(radius) and radius >= 0), f"radius must be a number >= 0, got {radius}")
        check(math.isfinite(radius_scale) and radius_scale > 0, f"radius_scale must be positive, got {radius_scale}")
        check(
            protected_radius is None or protected_radius > 0,
            f"protected_radius must be positive, got {protected_radius}",
        )
        self.radius, self.radius_scale, self.strength = radius, radius_scale, strength
        self.embedding, self.window, self.weight = embedding, window, weight
        self.archive, self.protected, self.protected_radius = archive, protected, protected_radius

    def bind(self, denoiser) -> SPELL:
        t = super().bind(denoiser)
        if t.radius is None:
            check(
                t.embedding in ("identity", "latent"),
                f"SPELL with embedding={t.embedding!r} needs radius= in that embedding's units (the default radius "
                "is relative to the data scale, for the identity embedding)",
            )
            d = math.prod(denoiser.sample_shape)
            t.radius = float(t.radius_scale * math.sqrt(2 * d) * float(denoiser.sigma_data))
        t._identity = t.embedding in ("identity", "latent")
        return t

    def _feats(self, y: torch.Tensor) -> torch.Tensor:
        return self._phi(y, torch.zeros(len(y), device=y.device, dtype=y.dtype)).flatten(1)

    def correction(self, x0: torch.Tensor) -> torch.Tensor:
        """``delta x0`` ``(n, *sample_shape)`` at strength 1 for denoised estimates ``x0`` (see the class)."""
        x0 = x0.detach()
        leaf = x0 if self._identity else x0.clone().requires_grad_(True)
        with torch.enable_grad():
            f = self._feats(leaf)
        fd = f.detach().double()
        n = len(fd)
        groups: list[tuple[torch.Tensor, float, bool]] = [(fd, float(self.radius or 0.0), True)]
        for refs, radius in ((self.archive, self.radius), (self.protected, self.protected_radius or self.radius)):
            a = _ref_samples(refs)
            if a is not None:
                with torch.no_grad():
                    groups.append((self._feats(a.to(x0.device, x0.dtype)).double(), float(radius or 0.0), False))
        delta = torch.zeros_like(fd)
        for ref, radius, own in groups:
            # direct differences (not the |a|^2 + |b|^2 - 2 a.b shortcut, which loses close pairs), memory O(n m)
            dist = torch.cdist(fd, ref, compute_mode="donot_use_mm_for_euclid_dist")  # (n, m)
            push = (radius - dist).clamp(min=0)
            if own:
                push = push * (1 - torch.eye(n, dtype=push.dtype, device=push.device))
            # coincident points have no direction to push along: they are left alone
            c = torch.where(dist > 0, push / dist.clamp(min=1e-300), torch.zeros_like(push))
            # sum_j c_ij (f_i - f_j), only where some ball overlaps
            if bool(c.any()):
                delta = delta + c.sum(1, keepdim=True) * fd - c @ ref
        if not bool(delta.any()):
            return torch.zeros_like(x0)
        if self._identity:
            return delta.to(x0.dtype).reshape(x0.shape)
        return torch.autograd.grad(f, leaf, grad_outputs=delta.to(f.dtype))[0]

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        self._check_local()
        assert ctx.denoised is not None  # needs_base
        delta = self.correction(ctx.denoised)
        return delta / append_dims(ctx.sigma, delta.ndim) ** 2


class _KernelPotential(_DiversityTerm):
    """A potential ``V(f_1..f_n)`` on RBF kernel features, differentiated to ``x`` (through the denoiser
    for ``on="x0"``). Subclasses define :meth:`potential`."""

    min_particles = 2  # a batch smaller than this feels no force

    def __init__(
        self,
        strength: float = 1.0,
        embedding="identity",
        on: str = "x0",
        window=None,
        weight="constant",
        bandwidth="median",
        bandwidth_scale: float = 1.0,
        project: bool = False,
        jacobian: str = "exact",
    ):
        self.strength, self.embedding, self.on, self.window, self.weight = strength, embedding, on, window, weight
        self.bandwidth, self.bandwidth_scale, self.project = bandwidth, bandwidth_scale, project
        self.jacobian = jacobian

    def bind(self, denoiser) -> _KernelPotential:
        t = super().bind(denoiser)
        check(
            t.jacobian in ("exact", "gaussian"),
            f"jacobian={t.jacobian!r}: use 'exact' (through the denoiser) or 'gaussian' (c_skip(sigma) I, no backward pass)",
        )
        check(
            t.jacobian == "exact" or t.on == "x0",
            "jacobian='gaussian' replaces the denoiser's Jacobian: it needs on='x0'",
        )
        t._sigma_data = float(getattr(denoiser, "sigma_data", 0.5))
        t.needs_x0 = t.on == "x0" and t.jacobian == "exact"
        t.needs_base = t.on == "x0" or bool(t.project)
        return t

    def _kernel(self, f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``K`` ``(n, n)`` in float64 with a detached bandwidth."""
        d2 = pairwise_sq_dists(f.double())
        return torch.exp(-d2 / rbf_bandwidth(d2, self.bandwidth, sigma, self.bandwidth_scale))

    def potential(self, f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        self._check_local()
        scale: torch.Tensor | float = 1.0
        if self.on == "x0" and self.jacobian == "gaussian":
            assert ctx.denoised is not None  # needs_base
            leaf = ctx.denoised.detach().requires_grad_(True)
            y, sy = leaf, torch.zeros_like(ctx.sigma)
            s2, d2 = append_dims(ctx.sigma, ctx.x.ndim) ** 2, self._sigma_data**2
            scale = d2 / (s2 + d2)  # c_skip: the denoiser Jacobian of N(0, sigma_data^2 I) data
        elif self.on == "x0":
            leaf, y, sy = ctx.x, ctx.denoised, torch.zeros_like(ctx.sigma)
        else:
            leaf = ctx.x.detach().requires_grad_(True)
            y, sy = leaf, ctx.sigma
        with torch.enable_grad():
            f = self._phi(y, sy).flatten(1)
            if len(f) < self.min_particles:
                return torch.zeros_like(ctx.x)
            v = self.potential(f, ctx.sigma)
            (grad,) = torch.autograd.grad(v, leaf, retain_graph=self.needs_x0)
        grad = grad * scale
        if self.project:
            grad = project_off_score(grad, ctx.score)
        return grad


class DPPGuidance(_KernelPotential):
    """The DPP log-determinant potential (see the module docstring).

    Shapes: the batch ``x`` ``(n, *sample_shape)``; the term returns ``grad_x log det(K + eps I)``
    shaped like ``x``, ``K`` ``(n, n)``.

    Args:
        strength: the potential's multiplier (nats of log-potential per nat of log-volume).
        embedding: the features ``phi`` the kernel compares (a name of :mod:`steerdiff.embeddings` or a callable).
        on: ``"x0"`` (the denoised estimate, gradient through the denoiser) or ``"x"`` (the noisy sample).
        window, weight: the sigma window and weight schedule, as for Particle Guidance.
        bandwidth, bandwidth_scale: the RBF bandwidth (:func:`steerdiff.kernels.rbf_bandwidth`).
        project: remove from each particle's force its component along the base score (as Particle
            Guidance's ``project``): the particles move along the level sets of ``log p_sigma``.
        eps: the ridge added to ``K``; it bounds the force between near-duplicates by about ``1 / eps``.
        jacobian: with ``on="x0"``: ``"exact"`` (differentiate through the denoiser) or ``"gaussian"``
            (its Jacobian taken as ``c_skip(sigma) I``: no backward pass; see the module docstring).
    """

    def __init__(
        self,
        strength: float = 1.0,
        embedding="identity",
        on: str = "x0",
        window=None,
        weight="constant",
        bandwidth="median",
        bandwidth_scale: float = 1.0,
        project: bool = False,
        eps: float = 1e-3,
        jacobian: str = "exact",
    ):
        super().__init__(strength, embedding, on, window, weight, bandwidth, bandwidth_scale, project, jacobian)
        check(eps > 0, f"eps must be positive, got {eps}")
        self.eps = float(eps)

    def potential(self, f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        k = self._kernel(f, sigma)
        return torch.logdet(k + self.eps * torch.eye(len(k), dtype=k.dtype, device=k.device))


class EntropyGuidance(_KernelPotential):
    """The order-2 kernel entropy potential ``-log mean_ij K_ij`` (see the module docstring).

    Shapes: the batch ``x`` ``(n, *sample_shape)``; the term returns the potential's gradient shaped
    like ``x``.

    Args:
        strength, embedding, on, window, weight, bandwidth, bandwidth_scale, project: as for :class:`DPPGuidance`.
        features: ``None`` for the exact ``O(n^2)`` kernel sum, or a number ``D`` of random Fourier
            features (``O(n D)``).
        seed: seeds the random Fourier frequencies (drawn once per feature dimension).
        jacobian: ``"exact"`` or ``"gaussian"``, as for :class:`DPPGuidance`.
    """

    def __init__(
        self,
        strength: float = 1.0,
        embedding="identity",
        on: str = "x0",
        window=None,
        weight="constant",
        bandwidth="median",
        bandwidth_scale: float = 1.0,
        project: bool = False,
        features: int | None = None,
        seed: int = 0,
        jacobian: str = "exact",
    ):
        super().__init__(strength, embedding, on, window, weight, bandwidth, bandwidth_scale, project, jacobian)
        check(
            features is None or (int(features) == features and features >= 1),
            f"features must be None (exact) or a positive number of random Fourier features, got {features}",
        )
        self.features, self.seed = features, seed
        self._omega: dict = {}

    def _rff_bandwidth(self, f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.bandwidth == "median":  # O(n): pairs are about twice as far apart as points from their mean
            d2 = (f - f.mean(0)).pow(2).sum(1)
            h = 2 * d2.median() / math.log(len(f) + 1)
            return (self.bandwidth_scale * h).clamp(min=1e-12)
        check(
            self.bandwidth != "per-particle", "EntropyGuidance(features=...) takes bandwidth median, sigma or a number"
        )
        return rbf_bandwidth(f.new_zeros(2, 2), self.bandwidth, sigma, self.bandwidth_scale)

    def _frequencies(self, dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard normal frequencies ``(D, dim)`` and phases ``(D,)``, fixed per feature dimension."""
        if dim not in self._omega:
            from ..core.seeding import stream_seed

            assert self.features is not None
            g = torch.Generator().manual_seed(stream_seed("rff", self.seed, dim))
            self._omega[dim] = (
                torch.randn(int(self.features), dim, generator=g, dtype=torch.float64),
                torch.rand(int(self.features), generator=g, dtype=torch.float64) * 2 * math.pi,
            )
        w, b = self._omega[dim]
        return w.to(device), b.to(device)

    def potential(self, f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        n = len(f)
        if self.features is None:
            return -torch.log(self._kernel(f, sigma).mean())
        f = f.double()
        h = self._rff_bandwidth(f.detach(), sigma)
        w, b = self._frequencies(f.shape[1], f.device)
        # exp(-|a - b|^2 / h) = E cos(w.(a - b)) for w ~ N(0, 2 / h I); z = sqrt(2 / D) cos(w.f + b)
        z = math.sqrt(2.0 / len(w)) * torch.cos(f @ (w * (2.0 / h).sqrt()).T + b)
        off_diag = z.sum(0).pow(2).sum() - z.pow(2).sum()  # sum_{i != j} z_i . z_j
        return -torch.log(((off_diag + n) / n**2).clamp(min=1.0 / n**2))


class HerdingGuidance(_KernelPotential):
    """Kernel herding toward a reference set: the potential ``-strength * n * MMD^2`` between the
    batch's denoised estimates and ``reference`` in the features of ``embedding``.

    Up to a constant, ``n * MMD^2 = sum_ij K(f_i, f_j) / n - 2 sum_i mean_m K(f_i, r_m)``: its gradient
    repels each particle from its batch-mates and attracts it to the reference features ``r_m`` with
    the same kernel. A repulsion alone (DPP, entropy) pushes the batch outward, off the data; here the
    attraction holds it to where the references are, so the batch spreads the way the reference set
    is spread (a batch of ``n`` herded points covers the reference distribution better than ``n``
    independent draws). The reference can be the model's own earlier draws (no data and no labels
    needed) or real images. The kernel is an RBF whose bandwidth, fixed once, is ``bandwidth_scale``
    times the median squared distance between reference features.

    Shapes: the batch ``x`` ``(n, *sample_shape)``; ``reference`` ``(m, *sample_shape)`` in the data's
    range (or ``reference_features`` ``(m, d)``, features already taken); the term returns a score
    shaped like ``x``.

    Args:
        strength: the potential's multiplier.
        reference: the reference images, compared in ``embedding`` at sigma 0 (clean), or ``None``
            with ``reference_features``.
        reference_features: the reference set's features ``(m, d)`` (``embedding`` of clean images).
        embedding: the features ``phi`` (a name of :mod:`steerdiff.embeddings` or a callable).
        window, weight: the sigma window and weight schedule.
        bandwidth_scale: the RBF bandwidth over the references' median squared distance.
        project: as for :class:`DPPGuidance`.
        jacobian: ``"exact"`` (through the denoiser) or ``"gaussian"`` (``c_skip(sigma) I``, no backward
            pass), as for :class:`DPPGuidance`.
    """

    min_particles = 1  # the pull toward the references acts on a lone particle too

    def __init__(
        self,
        strength: float = 1.0,
        reference=None,
        reference_features=None,
        embedding="identity",
        window=None,
        weight="constant",
        bandwidth_scale: float = 1.0,
        project: bool = False,
        jacobian: str = "exact",
    ):
        super().__init__(strength, embedding, "x0", window, weight, "median", bandwidth_scale, project, jacobian)
        check(
            (reference is None) != (reference_features is None),
            "herding needs a reference set: give reference (images) or reference_features, not both",
        )
        self.reference, self.reference_features = reference, reference_features

    def bind(self, denoiser) -> HerdingGuidance:
        t = super().bind(denoiser)
        check(
            math.isfinite(float(t.bandwidth_scale)) and float(t.bandwidth_scale) > 0,
            f"bandwidth_scale must be a positive number, got {t.bandwidth_scale}",
        )
        if t.reference_features is not None:
            r = torch.as_tensor(t.reference_features).double()
        else:
            ref = torch.as_tensor(t.reference).float()
            with torch.no_grad():
                r = t._phi(ref, ref.new_zeros(len(ref))).flatten(1).double()
        check(r.ndim == 2 and len(r) >= 2, f"the reference set needs at least 2 items, got shape {tuple(r.shape)}")
        check(bool(torch.isfinite(r).all()), "the reference features must be finite")
        d2 = pairwise_sq_dists(r)
        off = d2[~torch.eye(len(r), dtype=torch.bool, device=r.device)]
        t._ref, t._h = r, (float(t.bandwidth_scale) * off.median()).clamp(min=1e-12)
        return t

    def potential(self, f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        f, r = f.double(), self._ref.to(f.device)
        kbb = torch.exp(-pairwise_sq_dists(f) / self._h)
        kbr = torch.exp(-pairwise_sq_dists(f, r) / self._h)
        return -(kbb.sum() / len(f) - 2 * kbr.mean(1).sum())


def herding_reference(model, n: int = 256, *, seed: int, embedding="classifier-probs", **sample_kwargs) -> torch.Tensor:
    """A reference set for :class:`HerdingGuidance` from ``model``'s own iid draws, as features
    ``(n, d)`` float64 of ``embedding`` at sigma 0: no data and no labels. Draw ``i`` comes from noise
    stream ``(seed, i)`` (:func:`steerdiff.sample`), so the first rows do not depend on ``n``.

    Args:
        model: the denoiser (unconditional, or with ``cond`` in ``sample_kwargs``).
        n: reference draws, at least 2.
        seed: the draws' seed (use one the batches to be herded do not use).
        embedding: the features the term will compare (a name of :mod:`steerdiff.embeddings` or a callable).
        sample_kwargs: passed to :func:`steerdiff.sample` (sampler, steps, cond, ...).
    """
    from ..core.api import sample

    check(int(n) == n and n >= 2, f"the reference set needs at least 2 draws, got {n}")
    x = sample(model, int(n), seed=seed, **sample_kwargs)
    with torch.no_grad():
        return get_embedding(embedding)(x, x.new_zeros(len(x))).flatten(1).double()


TERMS = {"spell": SPELL, "dpp": DPPGuidance, "entropy": EntropyGuidance, "herding": HerdingGuidance}


def term(method: str, **options) -> _DiversityTerm:
    """A diversity term by name: ``"spell"`` (:class:`SPELL`), ``"dpp"`` (:class:`DPPGuidance`),
    ``"entropy"`` (:class:`EntropyGuidance`) or ``"herding"`` (:class:`HerdingGuidance`), with its
    constructor's keyword ``options``."""
    check(method in TERMS, f"unknown diversity term {method!r}: use one of {', '.join(TERMS)}")
    return TERMS[method](**options)
