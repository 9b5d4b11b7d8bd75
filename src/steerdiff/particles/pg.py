"""Particle terms: Particle Guidance and SVGD-style repulsion, as guidance terms for :func:`guided`.

Both couple the batch (the particle set ``x_1..x_n``) through a kernel ``k`` on features
``f_i = phi(y_i, sigma)`` where ``y = x`` (``on="x"``, cheap) or ``y = D(x)`` (``on="x0"``, the
denoised estimate; its gradient is pulled back to ``x`` through the denoiser by an input-only
vector-Jacobian product).

**ParticleGuidance** (Corso et al. 2023) adds the gradient of the log-potential
``log Phi = -strength * sum_{i<j} k(f_i, f_j)``: particle ``i`` receives
``g_i = -strength * grad_{x_i} sum_{j != i} k(f_i, f_j)``. ``strength`` is dimensionless (nats of
log-potential per unit of kernel similarity); the sampler sees ``D' = D + sigma^2 w(sigma) g``.

**Repulsion** (the repulsion seed's SVGD step, Liu & Wang 2016) adds
``g_i = strength / n * sum_j grad_{x_j} k(f_j, f_i)``, the kernel gradient taken at the *other*
particle through the embedding's Jacobian there; with ``share_score=True`` it also replaces each
particle's score by the kernel-weighted average ``1/n sum_j k_ji score_j`` (full SVGD).

``project=True`` removes from each particle's force its component along the particle's score, so
the force moves particles along the level sets of ``log p_sigma`` instead of off the data: this is
what lets strong repulsion keep quality (ring: 9.95 modes of 10 with 99% of particles on a mode,
against 35% without it; benchmarks/bench_ring.py). ``normalize=True`` makes ``strength`` relative:
each particle's force is rescaled to ``strength`` times its score norm. ``clip`` caps each
particle's force at ``clip`` times its score norm.
``archive`` holds earlier samples (clean, ``(m, *sample_shape)``) to repel from as fixed particles.
``prior`` (a :class:`Pilot`: ``m`` iid trajectories of the model, or ``m`` clean iid samples) makes
the potential ``sum_{i<j} k_ij - (n / m) sum_{i, r} k(f_i, g_r)``, i.e. ``n^2 / 2`` times the squared
MMD between the particles and the pilot's features ``g_r`` at the same noise level (up to a constant):
the repulsion plus an attraction to the model's own draws, whose minimiser holds a mode of mass ``pi``
with about ``n pi`` particles instead of PG's equal split. (It keeps a 70/30 prior at strength 1;
stronger, it drifts toward equal counts: for an exact prior use :mod:`steerdiff.stratified`.)
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
from ..core.denoisers import Denoiser
from ..core.errors import check
from ..core.guidance import GuideContext, schedule_weight
from .embeddings import get_embedding
from .kernels import assign_labels, get_kernel, label, rbf

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
    "repulsive": dict(
        embedding="identity",
        kernel="rbf",
        strength=1.0,
        on="x",
        window=None,
        weight="constant",
        bandwidth="median",
        bandwidth_scale=1.0,
        normalize=False,
        clip=None,
        project=False,
    ),
}


def particle_preset(denoiser, method: str = "pg") -> dict:
    """The settings a particle term of ``method`` (``"pg"`` or ``"repulsive"``) takes on ``denoiser``
    when left unset: the model's recorded preset (``config.json`` -> ``preset.particles``) over
    :data:`DEFAULTS`."""
    preset = dict(DEFAULTS[method])
    preset.update((getattr(denoiser, "preset", {}) or {}).get("particles", {}).get(method, {}))
    return preset


def _kernel_matrix(kernel, a: torch.Tensor, b: torch.Tensor, term, sigma: torch.Tensor) -> torch.Tensor:
    """``k(a_i, b_j)`` ``(n_a, n_b)``; the RBF bandwidth comes from the reference set ``b``."""
    if kernel is rbf:
        return rbf(a, b, term.bandwidth, sigma, term.bandwidth_scale)
    return kernel(a, b)


@dataclass
class _ParticleTerm:
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

    def bind(self, denoiser) -> _ParticleTerm:
        """A copy with every unset argument taken from the model's preset, then the library default."""
        preset = particle_preset(denoiser, self.preset_key)
        t = copy.copy(self)
        for f in fields(_ParticleTerm):
            if getattr(t, f.name) is None and f.name in preset:
                setattr(t, f.name, preset[f.name])
        t.window = tuple(t.window) if t.window is not None else (denoiser.sigma_min, denoiser.sigma_max)
        check(len(t.window) == 2 and 0 <= t.window[0] <= t.window[1], f"window must be (lo, hi) sigmas, got {t.window}")
        check(
            t.on in ("x", "x0"),
            f"on={t.on!r}: use 'x' (features of the noisy sample) or 'x0' (of the denoised estimate)",
        )
        t._phi = get_embedding(t.embedding)
        if hasattr(t._phi, "check_fits"):  # a classifier embedding: only the images it was trained on
            t._phi.check_fits(getattr(denoiser, "sample_shape", None), str(t.embedding))
        t._k = get_kernel(t.kernel)
        if t._k is label:
            if self.on is None:
                t.on = "x"  # the label kernel reads the noisy sample; no x0 default applies to it
            t._check_label_kernel(denoiser)
        t.needs_x0 = t.on == "x0"
        t.swaps_base = t._k is label
        # whether guide() reads the base denoiser's output (the estimate, or the score through it)
        t.needs_base = (
            t.needs_x0 or t._k is label or bool(t.project or t.normalize or t.clip or getattr(t, "share_score", False))
        )
        schedule_weight(t.weight, t.window[1], t.window)  # validates the schedule name now, not mid-sampling
        return t

    def _check_label_kernel(self, denoiser) -> None:
        check(
            getattr(denoiser, "num_classes", None) is not None,
            "kernel='label' samples each particle from the model's class conditional: it needs a class-conditional "
            "model (one trained with label dropout, such as 'mnist'); use kernel='dot' on this one",
        )
        check(
            self.preset_key == "pg", "kernel='label' is for ParticleGuidance: Repulsion needs a differentiable kernel"
        )
        check(self.on == "x", "kernel='label' reads the class probabilities of the noisy sample: use on='x'")
        check(
            not (
                self.project
                or self.normalize
                or self.clip
                or self.archive is not None
                or self.subset
                or self.prior is not None
            ),
            "kernel='label' moves particles through the model's own conditionals, not by a force: drop "
            "project / normalize / clip / archive / subset / prior",
        )
        self._num_classes = denoiser.num_classes

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
        from .kernels import pairwise_sq_dists, rbf_bandwidth

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
        dims = (-1,) + (1,) * (force.ndim - 1)
        score = ctx.score
        s_norm = score.flatten(1).norm(dim=1).reshape(dims)
        if self.project:
            force = project_off_score(force, score)
        f_norm = force.flatten(1).norm(dim=1).reshape(dims).clamp(min=1e-12)
        if self.normalize:
            force = force / f_norm * s_norm
            f_norm = s_norm.clamp(min=1e-12)
        if self.clip:
            force = force * (self.clip * s_norm / f_norm).clamp(max=1.0)
        return force


def project_off_score(force: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Drop from each particle's ``force`` its component along its ``score`` (both ``(n, *shape)``), so
    particles move along (not across) the level sets of ``log p_sigma`` and keep the density."""
    dims = (-1,) + (1,) * (force.ndim - 1)
    s_norm = score.flatten(1).norm(dim=1).reshape(dims)
    along = (force * score).flatten(1).sum(1).reshape(dims) / s_norm.clamp(min=1e-12) ** 2
    return force - along * score


class ParticleGuidance(_ParticleTerm):
    """Particle Guidance (see module docstring). Unset arguments come from the model's preset
    (``config.json`` -> ``preset.particles.pg``), then from :data:`DEFAULTS`. With ``kernel="label"``
    (class-conditional models) the potential is the Potts kernel on class labels, sampled through
    the model's own conditionals (:meth:`_label_guide`) instead of differentiated."""

    preset_key = "pg"

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        if self._k is label:
            return self._label_guide(ctx)
        leaf, y, sigma_y = self._inputs(ctx)
        feats = self._phi(y, sigma_y).flatten(1)
        n = feats.shape[0]
        if distributed.active():
            return self._finish(ctx, -self._distributed_grad(feats, leaf, ctx))
        if self.subset and n > self.subset:
            return self._finish(ctx, -self._subset_grad(feats, leaf, ctx))
        arch = self._archive_feats(ctx.sigma)
        allf = feats if arch is None else torch.cat([feats, arch])
        if self.prior is not None:
            k, kp = self._prior_kernels(feats, allf, ctx.sigma)
        else:
            k = _kernel_matrix(self._k, feats, allf, self, ctx.sigma)  # (n, n + archive)
        # sum_{i<j} over the particles, plus every particle-archive pair (the archive does not move)
        potential = (k[:, :n].sum() - k[:, :n].diagonal().sum()) / 2 + k[:, n:].sum()
        if self.prior is not None:
            # MMD^2(particles, pilot) * n^2 / 2, up to constants: the pilot attracts
            potential = potential - n / kp.shape[1] * kp.sum()
        (grad,) = torch.autograd.grad(potential, leaf, retain_graph=self.on == "x0")
        return self._finish(ctx, -grad)

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

    def _label_guide(self, ctx: GuideContext) -> torch.Tensor:
        """The Potts kernel on class labels, sampled in label space: PG's joint over particles and
        their labels ``prod_i p(x_i, c_i) exp(-strength' sum_{i<j} [c_i = c_j])`` at infinite
        Potts strength gives each particle its own label (:func:`~steerdiff.kernels.assign_labels`
        on the embedding's class probabilities at this noise level), and given its label a particle
        follows ``p(x | c)``: the model's own class-conditional denoiser, which stays on the data
        where a classifier's gradient does not. Returns ``(D(x | c) - D(x)) / sigma^2``, so
        ``strength`` 1 makes the sampler see exactly ``D(x | c)`` (above 1: classifier-free guidance
        toward ``c``)."""
        x = ctx.x.detach()
        with torch.no_grad():
            d_c = ctx.base(x, ctx.sigma, **self.base_cond(x, ctx.sigma, ctx.cond))
        return (d_c - ctx.denoised.detach()) / ctx.sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2

    def _distributed_grad(self, feats: torch.Tensor, leaf: torch.Tensor, ctx: GuideContext) -> torch.Tensor:
        """The potential's gradient for this rank's particles when the set spans processes: the
        kernel against the gathered (detached) global features, self-pairs masked. For a symmetric
        kernel ``d/df_i sum_{a<b} k_ab = sum_{j != i} d_1 k(f_i, f_j)``, which is what the local sum
        ``sum_{i local} sum_{j != i} k(f_i, f_j.detach())`` differentiates to: the one-process gradient."""
        check(not self.subset, "subset= cannot be combined with a distributed particle set (yet): drop subset=")
        n = feats.shape[0]
        glob, off = distributed.all_gather(feats.detach()), distributed.offset(n)
        arch = self._archive_feats(ctx.sigma)
        allf = glob if arch is None else torch.cat([glob, arch])
        big_n = len(glob)
        if self.prior is not None:
            k, kp = self._prior_kernels(feats, allf, ctx.sigma)
        else:
            k = _kernel_matrix(self._k, feats, allf, self, ctx.sigma)  # (n, N + archive)
        own = torch.zeros_like(k, dtype=torch.bool)
        own[torch.arange(n), off + torch.arange(n)] = True
        potential = k[:, :big_n].masked_fill(own[:, :big_n], 0).sum() + k[:, big_n:].sum()
        if self.prior is not None:
            potential = potential - big_n / kp.shape[1] * kp.sum()
        return torch.autograd.grad(potential, leaf, retain_graph=self.on == "x0")[0]

    def _subset_grad(self, feats: torch.Tensor, leaf: torch.Tensor, ctx: GuideContext) -> torch.Tensor:
        """Gradient of the unbiased random-subset estimate of ``sum_{i<j} k_ij``: each particle meets
        ``subset`` others drawn uniformly (with replacement) afresh at every noise level, from a stream
        seeded by sigma and n, weighted by ``(n - 1) / subset``. Kernel cost ``O(n * subset * m)``
        instead of ``O(n^2 m)`` time; the pairs are processed in chunks (gradients accumulated on the
        features, then one VJP to ``x``), so memory stays ``O(n m)`` plus one chunk."""
        from ..core.seeding import stream_seed
        from .kernels import paired

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
    """SVGD-style repulsion (see module docstring); ``share_score`` adds SVGD's kernel-averaged score."""

    preset_key = "repulsive"
    share_score: bool = False

    def __init__(self, *args, share_score: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.share_score = share_score

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        check(not self.subset, "subset= is for ParticleGuidance; Repulsion uses every pair")
        leaf, y, sigma_y = self._inputs(ctx)
        feats = self._phi(y, sigma_y).flatten(1)
        n = feats.shape[0]
        if distributed.active():
            return self._finish(ctx, self._distributed_force(feats, leaf, ctx))
        arch = self._archive_feats(ctx.sigma)
        ref = feats.detach() if arch is None else torch.cat([feats.detach(), arch])
        # a_ji = grad_{f_j} k(f_j, f_i): differentiate k(rows, columns) with the columns held fixed
        fj = feats.detach().requires_grad_(True)
        with torch.enable_grad():
            kmat = _kernel_matrix(self._k, fj, ref, self, ctx.sigma)  # (n_j, n + archive)
            cot = torch.stack(
                [torch.autograd.grad(kmat[:, i].sum(), fj, retain_graph=True)[0] for i in range(n)]
            )  # (n_i, n_j, m)
        # force_i = sum_j J_phi(x_j)^T a_ji: one batched VJP through the embedding, a cotangent per i
        (grads,) = torch.autograd.grad(
            feats, leaf, grad_outputs=cot, is_grads_batched=True, retain_graph=self.on == "x0" or arch is not None
        )  # (n_i, n_j, ...)
        force = grads.sum(1) / n
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

    def _distributed_force(self, feats: torch.Tensor, leaf: torch.Tensor, ctx: GuideContext) -> torch.Tensor:
        """The SVGD force when the set spans processes: each rank pushes its own particles' Jacobians
        (``J_phi(x_j)^T a_ji`` for local ``j``, every global ``i``); a sum over ranks delivers each
        particle its force."""
        check(
            self.archive is None and not self.share_score,
            "a distributed Repulsion supports neither archive= nor share_score= (yet): drop them, or use ParticleGuidance",
        )
        n = feats.shape[0]
        glob, off = distributed.all_gather(feats.detach()), distributed.offset(n)
        fj = feats.detach().requires_grad_(True)
        with torch.enable_grad():
            kmat = _kernel_matrix(self._k, fj, glob, self, ctx.sigma)  # (n_j, N)
            cot = torch.stack(
                [torch.autograd.grad(kmat[:, i].sum(), fj, retain_graph=True)[0] for i in range(len(glob))]
            )  # (N, n_j, m)
        (grads,) = torch.autograd.grad(
            feats, leaf, grad_outputs=cot, is_grads_batched=True, retain_graph=self.on == "x0"
        )  # (N, n_j, ...)
        total = distributed.all_reduce_sum(grads.sum(1))  # (N, ...)
        return total[off : off + n] / len(glob)


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


class _Recording(Denoiser):
    """``denoiser`` unchanged, writing ``(x, D(x))`` of every call into ``records`` by noise level."""

    def __init__(self, denoiser, records: dict):
        super().__init__(
            sigma_min=denoiser.sigma_min,
            sigma_max=denoiser.sigma_max,
            sigma_data=denoiser.sigma_data,
            sample_shape=denoiser.sample_shape,
            preset=getattr(denoiser, "preset", None),
        )
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
