"""Particle terms: Particle Guidance, SVGD-style repulsion and label guidance, as guidance terms for :func:`guided`.

Particle Guidance and repulsion couple the batch (the particle set ``x_1..x_n``) through a kernel ``k``
on features ``f_i = phi(y_i, sigma)`` where ``y = x`` (``on="x"``, cheap) or ``y = D(x)`` (``on="x0"``,
the denoised estimate; its gradient is pulled back to ``x`` through the denoiser by an input-only
vector-Jacobian product).

**ParticleGuidance** (Corso et al. 2023) adds the gradient of the log-potential
``log Phi = -strength * sum_{i<j} k(f_i, f_j)``: particle ``i`` receives
``g_i = -strength * grad_{x_i} sum_{j != i} k(f_i, f_j)``. ``strength`` is dimensionless (nats of
log-potential per unit of kernel similarity); the sampler sees ``D' = D + sigma^2 w(sigma) g``.

**Repulsion** (the repulsion project's SVGD step, Liu & Wang 2016) adds
``g_i = strength / n * sum_j grad_{x_j} k(f_j, f_i)``, the kernel gradient taken at the *other*
particle through the embedding's Jacobian there; with ``share_score=True`` it also replaces each
particle's score by the kernel-weighted average ``1/n sum_j k_ji score_j`` (full SVGD).

**LabelGuidance** is Particle Guidance's Potts potential on class labels (``ParticleGuidance(kernel=
"label")`` builds it): it has no gradient, so it is sampled in label space through the model's own
class conditionals instead of differentiated (see the class).

``project=True`` removes from each particle's force its component along the particle's score, so
the force moves particles along the level sets of ``log p_sigma`` instead of off the data: this is
what lets strong repulsion keep quality (measured in docs/benchmarks.md; benchmarks/bench_ring.py).
``normalize=True`` makes ``strength`` relative: each particle's force is rescaled to ``strength``
times its score norm. ``clip`` caps each particle's force at ``clip`` times its score norm.
``archive`` holds earlier samples (clean, ``(m, *sample_shape)``) to repel from as fixed particles.
``prior`` (a :class:`Pilot`: ``m`` iid trajectories of the model, or ``m`` clean iid samples) makes
the potential ``sum_{i<j} k_ij - (n / m) sum_{i, r} k(f_i, g_r)``, i.e. ``n^2 / 2`` times the squared
MMD between the particles and the pilot's features ``g_r`` at the same noise level (up to a constant):
the repulsion plus an attraction to the model's own draws, whose minimiser holds a mode of mass ``pi``
with about ``n pi`` particles instead of PG's equal split. (Strong repulsion drifts toward equal
counts again: for an exact prior use :mod:`steerdiff.stratified`.)
``subset=k`` (Particle Guidance) replaces the ``n^2`` pairs by ``k`` random partners per particle
(an unbiased estimate of the potential), for particle sets in the thousands.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..core import distributed
from ..core.denoisers import DenoiserWrapper, append_dims
from ..core.errors import check
from ..core.guidance import GuidanceTerm, GuideContext, schedule_weight
from ..core.seeding import stream_seed
from .embeddings import get_embedding
from .kernels import assign_labels, get_kernel, label, paired, pairwise_sq_dists, rbf, rbf_bandwidth

DEFAULTS = {
    "pg": dict(
        embedding="identity",
        kernel="rbf",
        strength=1.0,
        on="x0",
        window=None,
        weight="constant",
        bandwidth="median",
        bandwidth_scale=1.0,
        normalize=False,
        clip=None,
        project=False,
    ),
}
DEFAULTS["repulsive"] = {**DEFAULTS["pg"], "on": "x"}  # SVGD repels the noisy samples themselves
# LabelGuidance's settings when left unset and the model's pg preset is not the label method
LABEL_DEFAULTS = dict(embedding="classifier-probs", strength=1.0, window=None, weight="constant")


def particle_preset(denoiser, method: str = "pg") -> dict:
    """The settings a particle term of ``method`` (``"pg"`` or ``"repulsive"``) takes on ``denoiser``
    when left unset: the model's recorded preset (``config.json`` -> ``preset.particles``) over
    :data:`DEFAULTS`. The one place where particle terms read a model's preset."""
    preset = dict(DEFAULTS[method])
    preset.update((getattr(denoiser, "preset", {}) or {}).get("particles", {}).get(method, {}))
    return preset


def _kernel_matrix(kernel, a: torch.Tensor, b: torch.Tensor, term, sigma: torch.Tensor) -> torch.Tensor:
    """``k(a_i, b_j)`` ``(n_a, n_b)``; the RBF bandwidth comes from the reference set ``b``."""
    if kernel is rbf:
        return rbf(a, b, term.bandwidth, sigma, term.bandwidth_scale)
    return kernel(a, b)


def _check_window(window, denoiser) -> tuple:
    """``window`` as a ``(lo, hi)`` tuple of sigmas, the model's whole range when unset."""
    window = tuple(window) if window is not None else (denoiser.sigma_min, denoiser.sigma_max)
    check(len(window) == 2 and 0 <= window[0] <= window[1], f"window must be (lo, hi) sigmas, got {window}")
    return window


def _embedding_for(embedding, denoiser):
    """The embedding ``phi(y, sigma) -> (n, ...)`` named by ``embedding``, checked against the model."""
    phi = get_embedding(embedding)
    if hasattr(phi, "check_fits"):  # a classifier embedding: only the images it was trained on
        phi.check_fits(getattr(denoiser, "sample_shape", None), str(embedding))
    return phi


@dataclass
class _ParticleTerm(GuidanceTerm):
    """Shared fields and set-up of :class:`ParticleGuidance` and :class:`Repulsion` (``None``: unset,
    resolved by :meth:`resolve`)."""

    embedding: object = None
    kernel: object = None
    strength: float | None = None
    on: str | None = None
    window: tuple | None = None
    weight: object = None
    bandwidth: object = None
    bandwidth_scale: float | None = None
    normalize: bool | None = None
    clip: float | None = None
    project: bool | None = None
    archive: object = None
    subset: int | None = None
    prior: object = None
    preset_key = "pg"
    share_score = False

    def resolve(self, denoiser) -> _ParticleTerm:
        """A copy with every unset argument taken from the model's preset, then the library default
        (:func:`particle_preset`): the term's one preset step; nothing else reads the preset."""
        preset = particle_preset(denoiser, self.preset_key)
        t = copy.copy(self)
        for f in fields(_ParticleTerm):
            if getattr(t, f.name) is None and f.name in preset:
                setattr(t, f.name, preset[f.name])
        return t

    def bind(self, denoiser) -> GuidanceTerm:
        """The resolved copy (:meth:`resolve`), checked, with its embedding and kernel built; with
        ``kernel="label"`` (Particle Guidance only) a bound :class:`LabelGuidance` instead."""
        t = self.resolve(denoiser)
        if t.kernel in ("label", label):  # the name, or the Potts similarity itself
            return self._label_term(t, denoiser)
        t.window = _check_window(t.window, denoiser)
        check(
            t.on in ("x", "x0"),
            f"on={t.on!r}: use 'x' (features of the noisy sample) or 'x0' (of the denoised estimate)",
        )
        t._phi = _embedding_for(t.embedding, denoiser)
        t._k = get_kernel(t.kernel)
        t.needs_x0 = t.on == "x0"
        # whether guide() reads the base denoiser's output (the estimate, or the score through it)
        t.needs_base = t.needs_x0 or bool(t.project or t.normalize or t.clip or t.share_score)
        schedule_weight(t.weight, t.window[1], t.window)  # validates the schedule name now, not mid-sampling
        return t

    def _label_term(self, t: _ParticleTerm, denoiser) -> GuidanceTerm:
        """``kernel="label"``: the Potts potential on labels is not a kernel but :class:`LabelGuidance`,
        bound with the resolved settings ``t`` (the arguments it has no use for must be unset)."""
        check(
            self.preset_key == "pg", "kernel='label' is for ParticleGuidance: Repulsion needs a differentiable kernel"
        )
        on = "x" if self.on is None else t.on  # the label method reads the noisy sample; no x0 default applies
        check(on == "x", "kernel='label' reads the class probabilities of the noisy sample: use on='x'")
        check(
            not (t.project or t.normalize or t.clip or t.archive is not None or t.subset or t.prior is not None),
            "kernel='label' moves particles through the model's own conditionals, not by a force: drop "
            "project / normalize / clip / archive / subset / prior",
        )
        return LabelGuidance(embedding=t.embedding, strength=t.strength, window=t.window, weight=t.weight).bind(
            denoiser
        )

    def weight_at(self, sigma: float) -> float:
        return float(self.strength) * schedule_weight(self.weight, sigma, self.window)

    def _inputs(self, ctx: GuideContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(leaf, y, sigma_y)``: the tensor to differentiate with respect to, what the embedding
        sees, and its noise level (0 for the denoised estimate, which estimates a clean sample)."""
        if self.on == "x0":
            return ctx.x, ctx.denoised, torch.zeros_like(ctx.sigma)
        leaf = ctx.x.detach().requires_grad_(True)
        return leaf, leaf, ctx.sigma

    def _archive_feats(self, sigma: torch.Tensor) -> torch.Tensor | None:
        if self.archive is None:
            return None
        a = self.archive.samples if isinstance(self.archive, Archive) else torch.as_tensor(self.archive)
        if len(a) == 0:
            return None
        # archived samples are clean: they are embedded at noise level 0
        return self._phi(a.to(sigma.device), torch.zeros(len(a), device=sigma.device)).flatten(1).detach()

    def _prior_kernels(self, feats: torch.Tensor, others: torch.Tensor, sigma: torch.Tensor):
        """``(k(f, others), k(f, pilot))`` for prior-preserving PG, with one RBF bandwidth for both: the
        median heuristic over the pilot's features at this noise level (the particles' own spread can
        collapse early, the pilot's is the model's)."""
        ref = self._prior_feats(sigma)
        if self._k is not rbf:
            return self._k(feats, others), self._k(feats, ref)
        mode = "median" if self.bandwidth == "per-particle" else self.bandwidth
        h = rbf_bandwidth(pairwise_sq_dists(ref, ref), mode, sigma, self.bandwidth_scale)
        return torch.exp(-pairwise_sq_dists(feats, others) / h), torch.exp(-pairwise_sq_dists(feats, ref) / h)

    def _prior_feats(self, sigma: torch.Tensor) -> torch.Tensor:
        """The pilot's features at noise level ``sigma`` (its noisy samples for ``on="x"``, its
        denoised estimates for ``on="x0"``); clean pilot samples when ``prior`` is a tensor."""
        s = float(sigma.max())
        if isinstance(self.prior, Pilot):
            x, d = self.prior.at(s)
            y, sy = (d, 0.0) if self.on == "x0" else (x, s)
        else:
            y, sy = torch.as_tensor(self.prior), 0.0
            check(
                y.ndim >= 2 and len(y) >= 2,
                "prior= takes a Pilot or the model's own iid samples, (m, *sample_shape) with m >= 2",
            )
        y = y.to(sigma.device)
        return self._phi(y, torch.full((len(y),), sy, device=sigma.device)).flatten(1).detach()

    def _finish(self, ctx: GuideContext, force: torch.Tensor) -> torch.Tensor:
        """Apply normalisation / clipping relative to the score norm (per particle)."""
        if not (self.normalize or self.clip or self.project):
            return force
        score = ctx.score
        s_norm = append_dims(score.flatten(1).norm(dim=1), force.ndim)
        if self.project:
            force = project_off_score(force, score)
        f_norm = append_dims(force.flatten(1).norm(dim=1), force.ndim).clamp(min=1e-12)
        if self.normalize:
            force = force / f_norm * s_norm
            f_norm = s_norm.clamp(min=1e-12)
        if self.clip:
            force = force * (self.clip * s_norm / f_norm).clamp(max=1.0)
        return force


def project_off_score(force: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Drop from each particle's ``force`` its component along its ``score`` (both ``(n, *shape)``), so
    particles move along (not across) the level sets of ``log p_sigma`` and keep the density."""
    s_norm = append_dims(score.flatten(1).norm(dim=1), force.ndim)
    along = append_dims((force * score).flatten(1).sum(1), force.ndim) / s_norm.clamp(min=1e-12) ** 2
    return force - along * score


class ParticleGuidance(_ParticleTerm):
    """Particle Guidance (see the module docstring): the gradient of ``-strength * sum_{i<j} k(f_i, f_j)``
    for each particle.

    Shapes: the batch ``x`` ``(n, *sample_shape)`` (images: ``(n, C, H, W)``, in data units); features
    ``f`` ``(n, m)``; the term returns a score (units 1 / x) shaped like ``x``. Every argument left
    ``None`` comes from the model's preset (``config.json`` -> ``preset.particles.pg``), then from
    :data:`DEFAULTS`, when the term is bound (:meth:`~_ParticleTerm.resolve`).

    Args:
        embedding: the features ``phi(y, sigma) -> (n, ...)`` the kernel compares: a name of
            :mod:`steerdiff.embeddings` (``"identity"``, ``"cnn16"``, ``"classifier-probs"``, ...) or a callable.
        kernel: ``"rbf"``, ``"cosine"``, ``"iou"``, ``"dot"`` or a callable ``k(a, b) -> (n_a, n_b)``
            (:mod:`steerdiff.kernels`); ``"label"`` (class-conditional models): the Potts potential on
            class labels, which binds to a :class:`LabelGuidance` (only ``embedding``, ``strength``,
            ``window`` and ``weight`` apply; ``on`` must be ``"x"``).
        strength: the log-potential's multiplier (dimensionless; relative to the score norm with
            ``normalize``).
        on: ``"x"`` (features of the noisy sample) or ``"x0"`` (of the denoised estimate, the gradient
            pulled back through the denoiser).
        window: ``(lo, hi)``, the EDM noise levels sigma (data units) where the term acts; default: the
            model's whole range.
        weight: the weight schedule inside the window: ``"constant"``, ``"sigma"``, ``"cosine"`` or a
            callable ``w(sigma) -> float`` (:func:`steerdiff.guidance.schedule_weight`).
        bandwidth: the RBF bandwidth ``h`` (squared feature units): ``"median"``, ``"per-particle"``,
            ``"sigma"`` or a positive number (:func:`steerdiff.kernels.rbf_bandwidth`).
        bandwidth_scale: multiplies the bandwidth.
        normalize: rescale each particle's force to ``strength`` times its score norm.
        clip: cap each particle's force at ``clip`` times its score norm (``None``: no cap).
        project: remove from each particle's force its component along its score (:func:`project_off_score`).
        archive: earlier clean samples ``(m, *sample_shape)`` (a tensor or an :class:`Archive`), repelled
            from as fixed particles.
        subset: ``k`` random partners per particle instead of all pairs (an unbiased estimate of the
            potential, for thousands of particles).
        prior: a :class:`Pilot` (the model's own iid trajectories) or clean iid samples
            ``(m, *sample_shape)``: adds an attraction to them that keeps the model's mode weights.
    """

    preset_key = "pg"

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        leaf, y, sigma_y = self._inputs(ctx)
        feats = self._phi(y, sigma_y).flatten(1)
        n = feats.shape[0]
        if distributed.active():
            check(not self.subset, "subset= cannot be combined with a distributed particle set (yet): drop subset=")
        elif self.subset and n > self.subset:
            return self._finish(ctx, -self._subset_grad(feats, leaf, ctx))
        (grad,) = torch.autograd.grad(self._potential(feats, ctx.sigma), leaf, retain_graph=self.on == "x0")
        return self._finish(ctx, -grad)

    def _potential(self, feats: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``sum_{i<j} k(f_i, f_j)`` plus every particle-archive pair (minus the pilot's attraction with
        ``prior``), a scalar whose gradient with respect to this process's particles ``feats`` ``(n, m)``
        is the potential's.

        In one process both ends of each pair are differentiated, each pair counted once. When the set
        spans processes (``torch.distributed``) the kernel is taken against the gathered, detached
        global features, each pair counted from both ends, self-pairs masked: for a symmetric kernel
        ``d/df_i sum_{a<b} k_ab = sum_{j != i} d_1 k(f_i, f_j)``, which is what the local sum
        ``sum_{i local} sum_{j != i} k(f_i, f_j.detach())`` differentiates to: the one-process gradient."""
        n, spread = feats.shape[0], distributed.active()
        particles = distributed.all_gather(feats.detach()) if spread else feats
        big_n = len(particles)
        arch = self._archive_feats(sigma)
        allf = particles if arch is None else torch.cat([particles, arch])
        if self.prior is not None:
            k, kp = self._prior_kernels(feats, allf, sigma)
        else:
            k = _kernel_matrix(self._k, feats, allf, self, sigma)  # (n, N + archive)
        if spread:
            own = torch.zeros_like(k, dtype=torch.bool)
            own[torch.arange(n), distributed.offset(n) + torch.arange(n)] = True
            pairs = k[:, :big_n].masked_fill(own[:, :big_n], 0).sum()
        else:
            pairs = (k[:, :n].sum() - k[:, :n].diagonal().sum()) / 2
        # the archive does not move: each particle-archive pair counts once
        potential = pairs + k[:, big_n:].sum()
        if self.prior is not None:
            # MMD^2(particles, pilot) * n^2 / 2, up to constants: the pilot attracts
            potential = potential - big_n / kp.shape[1] * kp.sum()
        return potential

    def _subset_grad(self, feats: torch.Tensor, leaf: torch.Tensor, ctx: GuideContext) -> torch.Tensor:
        """Gradient of the unbiased random-subset estimate of ``sum_{i<j} k_ij``: each particle meets
        ``subset`` others drawn uniformly (with replacement) afresh at every noise level, from a stream
        seeded by sigma and n, weighted by ``(n - 1) / subset``. Kernel cost ``O(n * subset * m)``
        instead of ``O(n^2 m)`` time; the pairs are processed in chunks (gradients accumulated on the
        features, then one VJP to ``x``), so memory stays ``O(n m)`` plus one chunk."""
        check(self.archive is None, "an archive cannot be combined with subset= (yet): drop one of them")
        n, k = feats.shape[0], int(self.subset)
        g = torch.Generator().manual_seed(stream_seed("subset", round(float(ctx.sigma[0]), 9), n))
        # k partners j != i per particle (with replacement): offsets in 1..n-1, added mod n
        offsets = torch.randint(1, n, (n, k), generator=g).to(feats.device)
        i = torch.arange(n, device=feats.device)[:, None].expand(n, k)
        j = (i + offsets) % n
        pi, pj = i.reshape(-1), j.reshape(-1)
        size = max(1, 2**22 // max(1, feats.shape[1]))  # pairs per chunk (~16 MB of features)
        bandwidth = self.bandwidth
        if self._k is rbf and bandwidth == "median":  # the median over all sampled pairs
            with torch.no_grad():
                d2 = torch.cat(
                    [(feats[pi[a : a + size]] - feats[pj[a : a + size]]).pow(2).sum(1) for a in range(0, len(pi), size)]
                )
            bandwidth = float(d2.median()) / math.log(len(pi) + 1)
        fd = feats.detach().requires_grad_(True)
        grad_f = torch.zeros_like(fd)
        with torch.enable_grad():
            for a in range(0, len(pi), size):
                kv = paired(
                    self._k, fd[pi[a : a + size]], fd[pj[a : a + size]], bandwidth, ctx.sigma, self.bandwidth_scale
                )
                grad_f += torch.autograd.grad(kv.sum() * (n - 1) / k / 2, fd)[0]
        return torch.autograd.grad(feats, leaf, grad_outputs=grad_f, retain_graph=self.on == "x0")[0]


class Repulsion(_ParticleTerm):
    """SVGD-style repulsion (see the module docstring): particle ``i`` is pushed by
    ``strength / n * sum_j grad_{x_j} k(f_j, f_i)``.

    Shapes: the batch ``x`` ``(n, *sample_shape)`` (images: ``(n, C, H, W)``, in data units); features
    ``f`` ``(n, m)``; the term returns a score (units 1 / x) shaped like ``x``. Every argument left
    ``None`` comes from the model's preset (``config.json`` -> ``preset.particles.repulsive``), then from
    :data:`DEFAULTS`, when the term is bound (:meth:`~_ParticleTerm.resolve`).

    Args:
        embedding: the features ``phi(y, sigma) -> (n, ...)`` the kernel compares: a name of
            :mod:`steerdiff.embeddings` or a callable.
        kernel: ``"rbf"``, ``"cosine"``, ``"iou"``, ``"dot"`` or a callable ``k(a, b) -> (n_a, n_b)``
            (:mod:`steerdiff.kernels`); it must be differentiable.
        strength: the force's multiplier (dimensionless; relative to the score norm with ``normalize``).
        on: ``"x"`` (features of the noisy sample) or ``"x0"`` (of the denoised estimate).
        window: ``(lo, hi)``, the EDM noise levels sigma (data units) where the term acts; default: the
            model's whole range.
        weight: the weight schedule inside the window (:func:`steerdiff.guidance.schedule_weight`).
        bandwidth: the RBF bandwidth ``h`` (squared feature units): ``"median"``, ``"per-particle"``,
            ``"sigma"`` or a positive number (:func:`steerdiff.kernels.rbf_bandwidth`).
        bandwidth_scale: multiplies the bandwidth.
        normalize: rescale each particle's force to ``strength`` times its score norm.
        clip: cap each particle's force at ``clip`` times its score norm (``None``: no cap).
        project: remove from each particle's force its component along its score (:func:`project_off_score`).
        archive: earlier clean samples ``(m, *sample_shape)`` (a tensor or an :class:`Archive`), repelled
            from as fixed particles.
        subset: not supported (Repulsion uses every pair): leave it ``None``.
        prior: not used by Repulsion: leave it ``None``.
        share_score: also replace each particle's score by the kernel-weighted average
            ``1/n sum_j k_ji score_j`` (full SVGD).
    """

    preset_key = "repulsive"
    share_score: bool = False

    def __init__(self, *args, share_score: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.share_score = share_score

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        check(not self.subset, "subset= is for ParticleGuidance; Repulsion uses every pair")
        check(
            not distributed.active() or (self.archive is None and not self.share_score),
            "a distributed Repulsion supports neither archive= nor share_score= (yet): drop them, or use ParticleGuidance",
        )
        leaf, y, sigma_y = self._inputs(ctx)
        feats = self._phi(y, sigma_y).flatten(1)
        n = feats.shape[0]
        # the particle set: this process's own in one process, every process's under torchrun
        particles, off = distributed.all_gather(feats.detach()), distributed.offset(n)
        arch = self._archive_feats(ctx.sigma)
        ref = particles if arch is None else torch.cat([particles, arch])
        # a_ji = grad_{f_j} k(f_j, f_i): differentiate k(rows, columns) with the columns held fixed
        fj = feats.detach().requires_grad_(True)
        with torch.enable_grad():
            kmat = _kernel_matrix(self._k, fj, ref, self, ctx.sigma)  # (n_j, N + archive)
            cot = torch.stack(
                [torch.autograd.grad(kmat[:, i].sum(), fj, retain_graph=True)[0] for i in range(len(particles))]
            )  # (N_i, n_j, m)
        # force_i = sum_j J_phi(x_j)^T a_ji: one batched VJP through the embedding, a cotangent per i;
        # each process pushes its own particles' Jacobians and a sum over processes delivers each force
        (grads,) = torch.autograd.grad(
            feats, leaf, grad_outputs=cot, is_grads_batched=True, retain_graph=self.on == "x0" or arch is not None
        )  # (N_i, n_j, ...)
        force = distributed.all_reduce_sum(grads.sum(1))[off : off + n] / len(particles)
        if arch is not None:
            # archive points are fixed: their push on particle i is -grad_{x_i} k(f_i, a)
            ka = _kernel_matrix(self._k, feats, ref, self, ctx.sigma)[:, n:].sum()
            force = force - torch.autograd.grad(ka, leaf, retain_graph=self.on == "x0")[0] / n
        force = self._finish(ctx, force)
        if self.share_score:
            kw = _kernel_matrix(self._k, feats.detach(), feats.detach(), self, ctx.sigma)
            score = ctx.score
            force = force + (kw.T @ score.flatten(1) / n).reshape(score.shape) - score
        return force


@dataclass
class LabelGuidance(GuidanceTerm):
    """Particle Guidance's Potts potential on class labels, sampled in label space (for
    class-conditional models trained with label dropout, such as ``mnist``).

    PG's joint over particles and their labels ``prod_i p(x_i, c_i) exp(-s' sum_{i<j} [c_i = c_j])`` at
    infinite Potts strength ``s'`` gives each particle its own label: :func:`~steerdiff.kernels.assign_labels`
    on the embedding's class probabilities at this noise level. Given its label a particle follows
    ``p(x | c)``: the model's own class-conditional denoiser, which stays on the data where a
    classifier's gradient does not. The term is ``(D(x | c) - D(x)) / sigma^2``, so ``strength`` 1 makes
    the sampler see exactly ``D(x | c)`` (one network call: ``swaps_base``); above 1 it is
    classifier-free guidance toward ``c``. ``ParticleGuidance(kernel="label")`` binds to this term.

    Shapes: the batch ``x`` ``(n, *sample_shape)`` in data units; the embedding gives class
    probabilities ``(n, K)`` with ``K`` the model's ``num_classes``; the term returns a score shaped like ``x``.

    Args:
        embedding: class probabilities ``phi(x, sigma) -> (n, K)`` of the noisy sample: a name of
            :mod:`steerdiff.embeddings` (``"classifier-probs"``) or a callable.
        strength: the weight of ``D(x | c) - D(x)`` (1: the class conditional itself).
        window: ``(lo, hi)``, the EDM noise levels (sigma) where the term acts; default: the model's range.
        weight: the weight schedule inside the window (:func:`steerdiff.guidance.schedule_weight`).

    Arguments left ``None`` come from the model's pg preset when that preset is the label method
    (``config.json`` -> ``preset.particles.pg`` with ``kernel: "label"``), else from :data:`LABEL_DEFAULTS`.
    """

    embedding: object = None
    strength: float | None = None
    window: tuple | None = None
    weight: object = None
    needs_base = True
    swaps_base = True
    # the attributes ParticleGuidance(kernel="label") had, for code that reads them off a bound term
    kernel = "label"
    on = "x"

    def resolve(self, denoiser) -> LabelGuidance:
        """A copy with every unset argument taken from the preset (see the class): its one preset step."""
        pg = particle_preset(denoiser, "pg")
        preset = {k: pg.get(k, v) for k, v in LABEL_DEFAULTS.items()} if pg["kernel"] == "label" else LABEL_DEFAULTS
        t = copy.copy(self)
        for f in fields(LabelGuidance):
            if getattr(t, f.name) is None:
                setattr(t, f.name, preset[f.name])
        return t

    def bind(self, denoiser) -> LabelGuidance:
        t = self.resolve(denoiser)
        t.window = _check_window(t.window, denoiser)
        t._phi = _embedding_for(t.embedding, denoiser)
        check(
            getattr(denoiser, "num_classes", None) is not None,
            "kernel='label' samples each particle from the model's class conditional: it needs a class-conditional "
            "model (one trained with label dropout, such as 'mnist'); use kernel='dot' on this one",
        )
        t._num_classes = denoiser.num_classes
        schedule_weight(t.weight, t.window[1], t.window)  # validates the schedule name now, not mid-sampling
        return t

    def weight_at(self, sigma: float) -> float:
        return float(self.strength) * schedule_weight(self.weight, sigma, self.window)

    def base_cond(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> dict:
        """``cond`` with each particle's assigned class: at strength 1 the guided estimate is the base
        denoiser under it (:class:`~steerdiff.guidance.Guided` then makes one network call)."""
        return {**cond, "class_labels": self._labels(x, sigma, cond)}

    def _labels(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        check(
            cond.get("class_labels") is None, "kernel='label' chooses each particle's class itself: drop class_labels"
        )
        with torch.no_grad():
            probs = self._phi(x, sigma).flatten(1)
        check(
            probs.shape[1] == self._num_classes,
            f"kernel='label': the embedding gives {probs.shape[1]} values per particle but the model has "
            f"{self._num_classes} classes: use a classifier of the model's classes (embedding='classifier-probs')",
        )
        if distributed.active():
            n, off = len(x), distributed.offset(len(x))
            return assign_labels(distributed.all_gather(probs))[off : off + n]
        return assign_labels(probs)

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        """``(D(x | c) - D(x)) / sigma^2`` with the assigned labels ``c`` (see the class)."""
        x = ctx.x.detach()
        assert ctx.denoised is not None  # needs_base
        with torch.no_grad():
            d_c = ctx.base(x, ctx.sigma, **self.base_cond(x, ctx.sigma, ctx.cond))
        return (d_c - ctx.denoised.detach()) / append_dims(ctx.sigma, x.ndim) ** 2


class Archive:
    """Earlier samples to repel from, so batch after batch avoids repeats. ``add`` appends a batch;
    ``save``/``load`` use a ``.npy`` file (no pickle)."""

    def __init__(self, samples: torch.Tensor | None = None, max_size: int | None = None):
        self.samples = samples.detach().clone() if samples is not None else torch.empty(0)
        self.max_size = max_size

    def add(self, batch: torch.Tensor) -> Archive:
        batch = batch.detach().float().cpu()
        self.samples = batch if len(self.samples) == 0 else torch.cat([self.samples, batch])
        if self.max_size is not None:
            self.samples = self.samples[-self.max_size :]
        return self

    def __len__(self) -> int:
        return len(self.samples)

    def save(self, path) -> Path:
        from ..io import save_samples

        check(str(path).endswith(".npy"), f"archive file {path}: use a .npy path")
        return save_samples(self.samples, path)

    @classmethod
    def load(cls, path, max_size: int | None = None) -> Archive:
        from ..io import load_array

        return cls(load_array(path).float(), max_size)


class _Recording(DenoiserWrapper):
    """``denoiser`` unchanged, writing ``(x, D(x))`` of every call into ``records`` by noise level."""

    def __init__(self, denoiser, records: dict):
        super().__init__(denoiser)
        self.inner, self.records = denoiser, records

    def denoise(self, x, sigma, **cond):
        d = self.inner(x, sigma, **cond)
        self.records[float(sigma.reshape(-1)[0])] = (x.detach().cpu(), d.detach().cpu())
        return d


class Pilot:
    """The model's own iid draws *with their trajectories*, for prior-preserving Particle Guidance
    (``ParticleGuidance(prior=Pilot(model, 32, seed=..., cond=...))``): every noisy sample and
    denoised estimate the sampler produced, by noise level, so the particles are compared with the
    model's own distribution at the noise level they are at. Draw it with the particles' sampler and
    steps (the same noise levels) and the same condition. ``at(sigma)`` returns ``(x, denoised)``,
    each ``(m, *sample_shape)``, recorded at the nearest noise level in log sigma; ``samples`` holds
    the final draws ``(m, *sample_shape)``."""

    def __init__(self, denoiser, m: int, **sample_kwargs):
        from ..core.api import sample

        check(int(m) == m and m >= 2, f"a pilot needs at least 2 draws, got {m}")
        check("guidance" not in sample_kwargs, "a pilot is the model's own iid draws: drop guidance=")
        check(sample_kwargs.get("batch_size") is None, "a pilot records whole trajectories: drop batch_size=")
        records: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
        self.samples = sample(_Recording(denoiser, records), int(m), **sample_kwargs)
        self._sigmas = torch.tensor(sorted(records), dtype=torch.float64)
        # under torchrun each rank drew its share: every rank keeps the whole pilot, in rank order
        self._records = [tuple(distributed.all_gather(t) for t in records[s]) for s in sorted(records)]

    def at(self, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        i = int((self._sigmas.log() - math.log(max(float(sigma), 1e-12))).abs().argmin())
        return self._records[i]


# sample_pc's "repulsive" corrector steps use Repulsion when their plan entry names no term
from ..core import sampling as _sampling  # noqa: E402  (core cannot import particles)

_sampling.DEFAULT_CORRECTOR_TERM = Repulsion
