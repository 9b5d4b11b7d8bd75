"""Semantic editing in h-space (Asyrp, Kwon et al. 2023) for any steerdiff denoiser around a diffusers UNet.

**h-space** is the output of the UNet's mid block (the bottleneck). An edit adds
``delta_h = c * f(h, sigma)`` there during the *editing interval* ``sigma >= sigma_edit``, leaving
the skip connections untouched. The **asymmetric reverse process** steps (in VE form, DDIM with eta 0)

    x_next = D~(x, sigma) + sigma_next * (x - D(x, sigma)) / sigma

the predicted clean sample ``D~`` from the edited network, the direction term from the original
one, so the edit moves the content without disturbing the noise path. Below ``sigma_boost`` the
*quality-boosting interval* steps stochastically (ancestral, eta 1). Both samplers work in sigma,
so DDPM (``DiscreteDenoiser``: ``sigma_to_t`` gives the paper's timesteps) and EDM models share them.

Real images enter through DDIM inversion (:func:`invert`). Intervals come from measured curves
(:func:`interval_curves`): the editing strength ``xi(sigma) = d(x0, P_sigma)`` (how far the
prediction at sigma is from the image) and the quality deficiency ``gamma(sigma) = d(x0, x_sigma)``,
with a pluggable distance ``d`` (here the L2 of :func:`perceptual_features`; LPIPS when a user has it).

Directions are learned (:func:`train_edit`) from a pluggable feature space: the loss pushes
``phi(D~) - phi(D)`` along a direction ``v`` (class-prototype difference ``mean phi(target) - mean
phi(source)``; a CLIP text direction when CLIP weights are present) plus an L1 reconstruction term.
Delta networks: ``conv`` (the paper's 1x1-conv block with a noise-level embedding), ``pixel`` /
``channel`` / ``pixel-channel`` (the reproduction's transformer variants: attention over positions,
over channels, or both) and ``free`` (a learned tensor per noise level). :func:`global_direction`
averages an edit's per-image ``delta_h`` into one ``free`` direction per level (homogeneity).
"""

from __future__ import annotations

import functools
import math
import os
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import checkpoint as ckpt
from ..core.denoisers import slice_cond
from ..core.errors import SteerdiffError, check
from ..core.sampling import get_ancestral_step, get_sigmas_karras
from ..core.seeding import stream_seed
from ..hub import EDITS as SHIPPED

DELTA_KINDS = ("conv", "pixel", "channel", "pixel-channel", "transformer", "free")
HEADED_KINDS = ("pixel", "pixel-channel", "transformer")  # the delta networks with pixel attention (``heads``)
OBJECTIVES = ("level", "final")  # where the training loss is taken: every level of the interval, or the final image
# the default strength must keep the digit on this share of the training pairs (by ``mnist-noisy``):
# the held-out goal (90%) plus a margin for the step from training pairs to new digits. Set after
# mnist-noisy's rates on thick's pairs had been seen (never the judges'); how narrowly it separates
# two strengths there is in docs/benchmarks.md ("The shipped thick", calibration table)
KEEP_RATE = 0.95


# ---------------------------------------------------------------------------------------- h-space
def find_unet(denoiser) -> nn.Module:
    """The diffusers UNet (a module with ``mid_block``) inside a steerdiff denoiser."""
    seen, todo = set(), [denoiser]
    while todo:
        m = todo.pop(0)
        if id(m) in seen or m is None:
            continue
        seen.add(id(m))
        if getattr(m, "mid_block", None) is not None:
            return m
        todo += [getattr(m, k, None) for k in ("net", "unet", "model", "denoiser", "module", "base")]
    raise SteerdiffError(
        f"{type(denoiser).__name__} has no diffusers UNet with a mid block: h-space editing needs "
        "a UNet2DModel / UNet2DConditionModel denoiser"
    )


class HSpace:
    """Read and replace the UNet bottleneck of ``denoiser``. Inside ``with hs.capture(delta)`` every
    network call records ``hs.h`` (the mid-block output) and, if ``delta`` is given, returns
    ``h + delta(h)`` in its place; the hook is removed on exit (the UNet is left unchanged)."""

    def __init__(self, denoiser):
        self.denoiser, self.unet, self.h = denoiser, find_unet(denoiser), None

    @contextmanager
    def capture(self, delta=None):
        def hook(_module, _inputs, out):
            self.h = out
            return out if delta is None else out + delta(out)

        handle = self.unet.mid_block.register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()

    def shape(self, x: torch.Tensor, sigma: float = 1.0, **cond) -> tuple[int, ...]:
        """The h-space shape ``(C, H, W)`` for inputs like ``x``."""
        with torch.no_grad(), self.capture():
            self.denoiser(x[:1], sigma, **slice_cond(cond, 0, 1))
        return tuple(self.h.shape[1:])


_cond_rows = slice_cond  # its old name (steerdiff.edit re-exports it)


# ---------------------------------------------------------------------------------- delta networks
def noise_embedding(sigma: torch.Tensor, dim: int = 32) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of ``log sigma``."""
    freqs = torch.exp(torch.arange(dim // 2, device=sigma.device) * (-math.log(1000.0) / (dim // 2)))
    a = sigma.float().clamp(min=1e-8).log()[:, None] * 4 * freqs[None]
    return torch.cat([a.sin(), a.cos()], 1)


class DeltaH(nn.Module):
    """``delta_h = f(h, sigma)``; the output layer starts at zero, so an untrained edit is no edit.

    Args:
        kind: one of :data:`DELTA_KINDS`: ``conv`` (1x1 conv, group norm, the noise embedding added,
            1x1 conv), ``pixel`` / ``channel`` / ``pixel-channel`` (self-attention over the ``H*W``
            pixel tokens, over the ``C`` channel tokens, or both), ``transformer`` (a pre-norm block:
            pixel self-attention with ``heads`` heads, then a ``ffn_dim``-wide feed-forward layer; the
            reproduction's ``nheads`` and ``d`` ablations), ``free`` (a table of one delta per level).
        channels, height, width: the shape of h, ``(C, H, W)``.
        sigmas: the noise levels a ``free`` delta is defined at.
        heads: attention heads of the :data:`HEADED_KINDS`; must divide ``channels``.
        ffn_dim: hidden width of the ``transformer``'s feed-forward layer.
    """

    def __init__(
        self,
        kind: str,
        channels: int,
        height: int,
        width: int,
        sigmas=None,
        heads: int = 4,
        ffn_dim: int = 256,
    ):
        super().__init__()
        check(kind in DELTA_KINDS, f"delta network {kind!r}: use one of {', '.join(DELTA_KINDS)}")
        self.kind, c, hw = kind, channels, height * width
        self.arch = {"kind": kind, "channels": channels, "height": height, "width": width, "heads": heads}
        if kind == "free":
            check(sigmas is not None, "a free delta needs the noise levels it is defined at")
            self.register_buffer("log_sigmas", torch.as_tensor(sigmas, dtype=torch.float32).clamp(min=1e-8).log())
            self.table = nn.Parameter(torch.zeros(len(self.log_sigmas), c, height, width))
            return
        self.temb = nn.Sequential(nn.Linear(32, c), nn.SiLU(), nn.Linear(c, c))
        if kind == "conv":
            self.inp, self.norm = nn.Conv2d(c, c, 1), nn.GroupNorm(min(8, c), c)
            self.out = nn.Conv2d(c, c, 1)
        else:
            if kind in HEADED_KINDS:
                check(
                    heads >= 1 and c % heads == 0,
                    f"--heads {heads} must divide h's {c} channels: use one of "
                    f"{', '.join(str(k) for k in range(1, c + 1) if c % k == 0)}",
                )
                self.pix_norm, self.pix = nn.LayerNorm(c), nn.MultiheadAttention(c, heads, batch_first=True)
            if "channel" in kind:
                self.ch_norm, self.ch = nn.LayerNorm(hw), nn.MultiheadAttention(hw, 1, batch_first=True)
            if kind == "transformer":
                check(ffn_dim >= 1, f"--ffn-dim must be at least 1, got {ffn_dim}")
                self.arch["ffn_dim"] = ffn_dim
                self.ffn = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, c))
            self.out = nn.Linear(c, c)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        b = h.shape[0]
        sigma = sigma.reshape(-1).expand(b) if sigma.numel() == 1 else sigma.reshape(-1)
        if self.kind == "free":
            idx = (sigma.float().clamp(min=1e-8).log()[:, None] - self.log_sigmas[None]).abs().argmin(1)
            return self.table[idx].to(h.dtype)
        e = self.temb(noise_embedding(sigma))  # (B, C)
        if self.kind == "conv":
            return self.out(F.silu(self.norm(self.inp(h)) + e[:, :, None, None]))
        z = h.flatten(2).transpose(1, 2) + e[:, None, :]  # (B, HW, C) tokens
        if hasattr(self, "pix"):
            q = self.pix_norm(z)
            z = z + self.pix(q, q, q, need_weights=False)[0]
        if hasattr(self, "ch"):
            t = z.transpose(1, 2)  # (B, C, HW)
            q = self.ch_norm(t)
            z = (t + self.ch(q, q, q, need_weights=False)[0]).transpose(1, 2)
        if hasattr(self, "ffn"):
            z = z + self.ffn(z)
        return self.out(z).transpose(1, 2).reshape(h.shape)


# --------------------------------------------------------------------------- the reverse process
def edit_sigmas(denoiser, steps: int = 60, sigma_top: float | None = 10.0) -> torch.Tensor:
    """The editing schedule: Karras levels from ``sigma_top`` (default 10, capped by the model's
    range) down to the model's ``sigma_min``, then 0. Inverting only to ``sigma_top`` instead of the
    model's ``sigma_max`` (80 for EDM) keeps first-order inversion more accurate, while the prediction
    at ``sigma_top`` is still far from the image, so edits keep their room."""
    top = denoiser.sigma_max if sigma_top is None else min(float(sigma_top), denoiser.sigma_max)
    return get_sigmas_karras(steps, denoiser.sigma_min, top)


def conf_sigmas(denoiser, conf: dict) -> torch.Tensor:
    """The editing schedule an edit was trained on (its config's ``edit_steps`` and ``sigma_top``)."""
    return edit_sigmas(denoiser, conf.get("edit_steps", 60), conf.get("sigma_top", 10.0))


@torch.no_grad()
def invert(
    denoiser,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    cond: dict | None = None,
    return_path: bool = False,
    refine: int = 2,
):
    """DDIM inversion of clean images ``x0`` ``(B, ...)`` in ``[-1, 1]`` up the (descending) ``sigmas``:
    returns ``x`` at ``sigmas[0]`` (and, with ``return_path``, the states at every level, highest
    first, ``(len(sigmas) - 1, B, ...)``). Each step reuses the noise estimate of the lower level,
    the usual first-order inversion, then ``refine`` fixed-point iterations make the DDIM step down
    from the new state land on the old one: ``x_hi <- (hi/lo) x_lo - (hi/lo - 1) D(x_hi, hi)``
    (a contraction when consecutive levels are close), so regeneration retraces the path. The last
    nonzero sigma should be small (it stands for 0)."""
    cond = cond or {}
    levels = sigmas[:-1].flip(0).tolist()  # ascending, without the final 0
    # at the lowest level (sigma_min, e.g. 0.002) the image itself stands in for the noisy state
    x = x0.clone()
    path = [x]
    for lo, hi in zip(levels[:-1], levels[1:], strict=False):
        x_lo = x
        d = denoiser(x_lo, lo, **cond)
        x = d + hi * (x_lo - d) / lo
        for _ in range(refine):
            x = (hi / lo) * x_lo - (hi / lo - 1) * denoiser(x, hi, **cond)
        path.append(x)
    return (x, torch.stack(path[::-1])) if return_path else x


def asymmetric_sample(
    denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    delta: DeltaH | None = None,
    *,
    strength: float = 1.0,
    sigma_edit: float = 0.0,
    sigma_boost: float = 0.0,
    cond: dict | None = None,
    seed: int = 0,
    global_delta: DeltaH | None = None,
    grad: bool = False,
) -> torch.Tensor:
    """Run the asymmetric reverse process from ``x`` at ``sigmas[0]`` (see module docstring).

    ``delta`` acts (times ``strength``) where ``sigma >= sigma_edit``; ancestral steps where
    ``sigma <= sigma_boost`` (noise from a generator seeded by ``seed``); plain DDIM elsewhere.
    ``delta=None`` (or ``strength=0``) is plain DDIM: the same output as without any hook.
    ``grad`` keeps the autograd graph through every step (to train ``delta`` on the final image)."""
    cond = cond or {}
    hs = HSpace(denoiser)
    gen = torch.Generator(device="cpu").manual_seed(stream_seed("boost", seed))
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=False):
        s, s_next = float(s), float(s_next)
        with torch.set_grad_enabled(grad):
            d = denoiser(x, s, **cond)
            edit = (delta is not None or global_delta is not None) and strength != 0 and s >= sigma_edit
            if edit:
                net = global_delta if global_delta is not None else delta
                sig = torch.full((x.shape[0],), s, device=x.device)
                with hs.capture(lambda h: strength * net(h, sig).to(h.dtype)):  # noqa: B023 (called inside this iteration)
                    d_edit = denoiser(x, s, **cond)
            else:
                d_edit = d
        eps = (x - d) / s
        if s_next > 0 and s <= sigma_boost:
            down, up = get_ancestral_step(s, s_next)  # the sampler's step (euler_ancestral, eta 1)
            x = d_edit + down * eps + up * torch.randn(x.shape, generator=gen).to(x)
        else:
            x = d_edit + s_next * eps
    return x


# ----------------------------------------------------------------------------- features, curves
def edit_features(x: torch.Tensor) -> torch.Tensor:
    """The direction space of the shipped edits, ``(B, C)``: mean ink per channel (x10), i.e. colour
    and amount of ink. Shape is left to the L1 reconstruction term: a direction that also carried
    shape features would reward any shape change that happens to correlate with it."""
    return ((x + 1) / 2).flatten(2).mean(-1) * 10


_EVALUATOR = {}


def perceptual_features(x: torch.Tensor) -> torch.Tensor:
    """The distance space of the interval curves, ``(B, C + 128)``: ink per channel (x10) and the MNIST
    evaluator's features of the inked channel (shape); LPIPS's stand-in for digits."""
    from ..train.classifier import load_classifier

    if "ev" not in _EVALUATOR:  # loaded once (setdefault would read the file at every call)
        _EVALUATOR["ev"] = load_classifier("mnist-evaluator")
    ev = _EVALUATOR["ev"]
    ink = (x + 1) / 2
    return torch.cat([ink.flatten(2).mean(-1) * 10, ev.features(ink.amax(1, keepdim=True) * 2 - 1)], 1)


def noisy_digit_logits(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, 10)`` of ``mnist-noisy`` (the noise-conditional digit classifier, not a judge of the
    edits) on the inked channel of ``x`` ``(B, C, H, W)`` in ``[-1, 1]``, at noise level ``sigma`` ``(B,)``."""
    from ..train.classifier import load_classifier

    if "noisy" not in _EVALUATOR:  # loaded once: this runs at every training step
        _EVALUATOR["noisy"] = load_classifier("mnist-noisy").requires_grad_(False)
    clf = _EVALUATOR["noisy"]
    return clf(x.amax(1, keepdim=True), sigma)


def digit_kl(logits_fn, d: torch.Tensor, d_edit: torch.Tensor) -> torch.Tensor:
    """``KL(p(.|d) || p(.|d_edit))`` averaged over the batch: how far the edit moved the predicted digit.
    ``d``, ``d_edit`` ``(B, C, H, W)``: the plain and edited denoised predictions, which the classifier
    sees as clean images (sigma 0); the gradient flows through ``d_edit`` only."""
    logits_fn = logits_fn or noisy_digit_logits
    zero = torch.zeros(len(d))
    with torch.no_grad():
        p = torch.log_softmax(logits_fn(d, zero), -1)
    q = torch.log_softmax(logits_fn(d_edit, zero), -1)
    return (p.exp() * (p - q)).sum(-1).mean()


@torch.no_grad()
def interval_curves(
    denoiser,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    features=perceptual_features,
    cond: dict | None = None,
    path: torch.Tensor | None = None,
) -> dict:
    """Editing strength ``xi(sigma) = |phi(x0) - phi(P_sigma)|`` and quality deficiency
    ``gamma(sigma) = |phi(x0) - phi(x_sigma)|`` along the inversion path of ``x0`` (means over the
    batch), each also normalised by its value at the top level. ``path`` is that inversion path
    (:func:`invert` with ``return_path``) when the caller already has it."""
    cond = cond or {}
    if path is None:
        _, path = invert(denoiser, x0, sigmas, cond, return_path=True)
    f0 = features(x0)
    levels = sigmas[:-1]
    xi = torch.stack(
        [
            (features(denoiser(xs, float(s), **cond)) - f0).norm(dim=1).mean()
            for xs, s in zip(path, levels, strict=False)
        ]
    )
    gamma = torch.stack([(features(xs.clamp(-1, 1)) - f0).norm(dim=1).mean() for xs in path])
    return {
        "sigmas": levels.tolist(),
        "xi": xi.tolist(),
        "gamma": gamma.tolist(),
        "xi_norm": (xi / xi[0]).tolist(),
        "gamma_norm": (gamma / gamma[0]).tolist(),
    }


def choose_intervals(curves: dict, xi_fraction: float = 0.33, gamma_fraction: float = 0.5) -> dict:
    """``sigma_edit``: the lowest level whose normalised editing strength is still at least
    ``xi_fraction`` (the paper's LPIPS 0.33 rule, relative); ``sigma_boost``: the highest level whose
    normalised quality deficiency is at most ``gamma_fraction`` (the paper's 1.2 rule, relative)."""
    s, xi, gamma = curves["sigmas"], curves["xi_norm"], curves["gamma_norm"]
    edit = min((si for si, v in zip(s, xi, strict=False) if v >= xi_fraction), default=s[0])
    boost = max((si for si, v in zip(s, gamma, strict=False) if v <= gamma_fraction), default=0.0)
    return {
        "sigma_edit": float(edit),
        "sigma_boost": float(min(boost, edit)),
        "xi_fraction": xi_fraction,
        "gamma_fraction": gamma_fraction,
    }


# ------------------------------------------------------------------------------------- training
def prototype_direction(features, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean phi(target) - mean phi(source)`` ``(m,)``: a class-prototype direction."""
    with torch.no_grad():
        return features(target).mean(0) - features(source).mean(0)


def directional_loss(features, edited: torch.Tensor, original: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``1 - cos(phi(edited) - phi(original), direction)``, mean over the batch (the CLIP directional
    loss in any feature space)."""
    delta = features(edited) - features(original).detach()
    return (1 - F.cosine_similarity(delta, direction[None].to(delta), dim=1)).mean()


def train_edit(
    denoiser,
    source: torch.Tensor,
    direction: torch.Tensor,
    *,
    features=edit_features,
    kind: str = "conv",
    steps: int = 300,
    batch_size: int = 8,
    lr: float = 2e-3,
    recon_weight: float = 1.0,
    keep_weight: float = 0.0,
    keep_logits=None,
    edit_steps: int = 60,
    sigma_edit: float | None = None,
    cond: dict | None = None,
    seed: int = 0,
    progress: bool = True,
    curve_features=perceptual_features,
    recon_space=None,
    target=None,
    sigma_top: float | None = 10.0,
    heads: int = 4,
    ffn_dim: int = 256,
    objective: str = "level",
    reverse_target=None,
    loss_space=None,
) -> tuple[DeltaH, dict]:
    """Learn a delta-h network for ``source`` images, trained along the edit's own trajectories
    (from the inverted top level down through the editing interval, one optimizer step per level)
    with one of two losses:

    * **direction** (``direction`` given, the Asyrp loss): the edited prediction's ``features`` must
      move along ``direction`` (:func:`directional_loss`) while staying close to the unedited one in
      ``recon_space(x)`` (default the pixels; L1, ``recon_weight``): for a colour edit the channel
      maximum, so the L1 term guards the shape without fighting the colour change it asks for.
    * **paired** (``target`` given, target ``i`` is source ``i`` edited): L1 between the edited
      prediction and the target, at every level. It distils a known image edit (dilation, a colour
      swap, an editing tool's output) into h-space, where it then works on any image, per image or as
      a global direction. With ``objective="final"`` the L1 is taken once per trajectory, on the
      *final* edited image (the whole asymmetric process run with the edit, gradients through every
      step): the loss then sees how the edit accumulates over the interval, which the per-level loss
      does not.

    The editing interval and the quality-boosting interval are chosen from the interval curves
    (:func:`interval_curves`, :func:`choose_intervals`) of the first 16 sources.

    Args:
        denoiser: a steerdiff denoiser around a diffusers UNet with a mid block (:func:`find_unet`);
            only the delta network is trained.
        source: the training images ``(N, C, H, W)`` in ``[-1, 1]``, of the denoiser's sample shape.
        direction: the target direction ``(m,)`` in ``features`` space (e.g.
            :func:`prototype_direction`), or ``None`` with ``target``.
        features: the direction space, ``(B, C, H, W) -> (B, m)``; default :func:`edit_features`.
        kind: the delta network, one of :data:`DELTA_KINDS`.
        steps: optimizer steps (one per noise level of a trajectory; a new trajectory starts at the
            top level when the interval is used up).
        batch_size: images per trajectory, drawn with replacement from ``source``.
        lr: Adam learning rate.
        recon_weight: weight of the L1 reconstruction term (direction loss only).
        keep_weight: weight of the identity term ``KL(p(.|D(x)) || p(.|D_edit(x)))`` between a
            digit classifier's class probabilities of the plain and the edited prediction (0: off). The
            classifier should be neither judge of the edit (the default is ``mnist-noisy``).
        keep_logits: ``(images (B, C, H, W) in [-1, 1], sigma (B,)) -> logits (B, 10)`` of that classifier
            (``None``: ``mnist-noisy`` on the inked channel, :func:`noisy_digit_logits`).
        edit_steps: number of noise levels of the editing schedule (:func:`edit_sigmas`).
        sigma_edit: lower end of the editing interval, in the denoiser's sigma units (default: from
            the curves).
        cond: conditioning keyword arguments of the denoiser; tensors with a batch dimension are cut
            to ``batch_size`` rows.
        seed: random seed of the network's initialisation and of the trajectory batches.
        progress: show a progress bar.
        curve_features: the distance space of the interval curves, ``(B, C, H, W) -> (B, k)``.
        recon_space: the map ``(B, C, H, W) -> (B, ...)`` the reconstruction L1 is taken in (default
            the identity: pixels).
        target: the paired targets ``(N, C, H, W)`` in ``[-1, 1]``, like ``source``, or ``None``
            with ``direction``.
        sigma_top: the noise level (sigma units) the sources are inverted to (:func:`edit_sigmas`;
            ``None``: the denoiser's ``sigma_max``).
        heads: attention heads of a delta in :data:`HEADED_KINDS` (:class:`DeltaH`).
        ffn_dim: feed-forward width of a ``transformer`` delta.
        objective: ``level`` (a loss at every level of the interval) or ``final`` (paired targets
            only: one loss on the final edited image, backpropagated through the trajectory; one
            optimizer step per trajectory, each costing up to twice ``edit_steps`` network calls and their backward pass).
        reverse_target: paired targets of the edit run backwards (strength -1), like ``target``, or
            ``None``; ``final`` objective only: each trajectory is then also run at strength -1 and its
            L1 to these added (twice the cost per step), so that the negative strength is trained too.
        loss_space: the map ``(B, C, H, W) -> (B, ...)`` the paired L1 is taken in, applied to the edited
            image and its target alike (``None``: pixels; paired targets only); e.g. :func:`blur_pyramid`
            for edits that move strokes (a shear), whose pixel L1 hardly changes under a small move.

    Returns:
        ``(delta, info)``: the trained :class:`DeltaH` (eval mode, frozen) and ``info`` with the
        per-step ``losses``, the chosen ``intervals`` (``sigma_edit``, ``sigma_boost``), the
        ``curves``, and the schedule's ``edit_steps`` and ``sigma_top``.
    """
    check(
        (direction is None) != (target is None),
        "train_edit needs a direction (directional loss) or paired targets (paired loss), not both",
    )
    check(
        target is None or target.shape == source.shape,
        f"paired targets {tuple(target.shape) if target is not None else ''} must match the sources {tuple(source.shape)}",
    )
    check(objective in OBJECTIVES, f"edit objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    check(objective == "level" or target is not None, "the final-image objective needs paired targets")
    check(
        loss_space is None or target is not None,
        "loss_space applies to paired targets: drop it for the directional loss",
    )
    check(
        reverse_target is None or (objective == "final" and reverse_target.shape == source.shape),
        "reverse targets need the final-image objective and the sources' shape",
    )
    cond = cond or {}
    sigmas = edit_sigmas(denoiser, edit_steps, sigma_top)
    levels = sigmas[:-1]
    hs = HSpace(denoiser)
    c, h, w = hs.shape(source[:1], float(levels[0]), **cond)
    torch.manual_seed(stream_seed("delta-init", seed))
    delta = DeltaH(kind, c, h, w, sigmas=levels, heads=heads, ffn_dim=ffn_dim)  # bad sizes fail before the work
    curves = interval_curves(denoiser, source[: min(16, len(source))], sigmas, curve_features, cond)
    intervals = choose_intervals(curves)
    if sigma_edit is not None:
        intervals["sigma_edit"] = float(sigma_edit)
    _, path = invert(denoiser, source, sigmas, cond, return_path=True)  # (L, N, ...)
    train_idx = [k for k, s in enumerate(levels.tolist()) if s >= intervals["sigma_edit"]]
    check(len(train_idx) > 0, "the editing interval is empty: lower sigma_edit")
    opt = torch.optim.Adam(delta.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(stream_seed("edit-train", seed))
    space = loss_space or (lambda t: t)
    losses = []
    bar = tqdm(total=steps, disable=not progress, desc=f"train-edit {kind}", unit="step")

    def step(loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(round(float(loss.detach()), 5))
        bar.update(1)

    while len(losses) < steps:
        # one edited trajectory: from the inverted top level down through the editing interval, an
        # optimizer step at every level, the next state from the asymmetric step with the current edit
        # (as Asyrp trains: the losses see the states the edit itself produces)
        idx = torch.randint(len(source), (batch_size,), generator=gen)
        c = slice_cond(cond, 0, batch_size)
        if objective == "final":
            # the whole edited trajectory of this batch, at a given strength, with its graph
            final_image = functools.partial(
                asymmetric_sample,
                denoiser,
                path[0][idx],
                sigmas,
                delta,
                sigma_edit=intervals["sigma_edit"],
                cond=c,
                grad=True,
            )
            end = final_image(strength=1.0)
            loss = (space(end) - space(target[idx])).abs().mean()
            if reverse_target is not None:
                loss = loss + (space(final_image(strength=-1.0)) - space(reverse_target[idx])).abs().mean()
            if keep_weight:
                loss = loss + keep_weight * digit_kl(keep_logits, source[idx], end)
            step(loss)
            continue
        x = path[train_idx[0]][idx]
        goal = None if target is None else space(target[idx])  # the same at every level of this trajectory
        for k in train_idx:
            if len(losses) >= steps:
                break
            s = float(levels[k])
            s_next = float(sigmas[k + 1])
            sig = torch.full((batch_size,), s)
            with torch.no_grad():
                d = denoiser(x, s, **c)
            with torch.enable_grad(), hs.capture(lambda hh: delta(hh, sig).to(hh.dtype)):  # noqa: B023 (called inside this iteration)
                d_edit = denoiser(x, s, **c)
                if target is not None:
                    loss = (space(d_edit) - goal).abs().mean()
                else:
                    r = recon_space or (lambda t: t)
                    loss = (
                        directional_loss(features, d_edit, d, direction)
                        + recon_weight * (r(d_edit) - r(d)).abs().mean()
                    )
                if keep_weight:
                    loss = loss + keep_weight * digit_kl(keep_logits, d, d_edit)
            step(loss)
            x = d_edit.detach() + s_next * (x - d) / s
    bar.close()
    delta.eval().requires_grad_(False)
    return delta, {
        "losses": losses,
        "intervals": intervals,
        "curves": curves,
        "edit_steps": edit_steps,
        "sigma_top": sigma_top,
        "objective": objective,
    }


@torch.no_grad()
def calibrate_strength(
    denoiser,
    delta: DeltaH,
    source: torch.Tensor,
    target: torch.Tensor,
    intervals: dict,
    edit_steps: int = 60,
    strengths=(0.25, 0.5, 0.75, 1.0, 1.25),
    seed: int = 0,
    sigma_top: float | None = 10.0,
    keep: float | None = KEEP_RATE,
    progress: bool = False,
) -> dict:
    """The default strength of an edit, chosen on its training pairs: the strength whose edits of
    ``source`` land closest (pixel L1) to the paired ``target`` among those that keep the digit.

    The per-level loss does not see how the edit accumulates over the interval (strength 1 can
    overshoot), and the pixel-closest strength is not the one that keeps the digit, so the digit is
    read on every edit by ``mnist-noisy`` (at sigma 0): a third classifier, neither evaluator that
    judges edits. A strength qualifies when it keeps the source's predicted digit on at least
    ``keep`` of the pairs; when none does, the smallest strength is taken.

    Args:
        denoiser: the edited model.
        delta: the trained delta-h network.
        source: training images ``(B, 3, 28, 28)`` in ``[-1, 1]`` (ColorMNIST-shaped when ``keep`` is set).
        target: their paired edited images, the same shape.
        intervals: the edit's intervals (``sigma_edit``, ``sigma_boost``).
        edit_steps: noise levels of the editing schedule.
        strengths: the strengths tried.
        seed: the boosting noise's seed.
        sigma_top: the noise level the sources are inverted to.
        keep: the fraction of pairs whose digit must be kept, in ``[0, 1]``; ``None``: the L1-closest
            strength, whatever it does to the digit.
        progress: show a progress bar over the strengths.

    Returns:
        ``{"strength": chosen, "l1": {strength: L1}, "kept": {strength: fraction}}`` (``kept`` empty
        when ``keep`` is ``None``).
    """
    check(keep is None or 0 <= keep <= 1, f"keep must be a fraction in [0, 1], got {keep}")
    sigmas = edit_sigmas(denoiser, edit_steps, sigma_top)
    x = invert(denoiser, source, sigmas)
    zero = torch.zeros(len(source))
    digit = noisy_digit_logits(source, zero).argmax(-1) if keep is not None else None
    l1, kept = {}, {}
    for c in tqdm(strengths, desc="calibrate strength", disable=not progress, leave=False):
        e = apply_edit(denoiser, x, sigmas, delta, {"intervals": intervals}, strength=c, seed=seed)
        l1[float(c)] = float((e - target).abs().mean())
        if digit is not None:
            kept[float(c)] = float((noisy_digit_logits(e, zero).argmax(-1) == digit).float().mean())
    allowed = [c for c in l1 if keep is None or kept[c] >= keep] or [min(l1)]
    return {"strength": min(allowed, key=l1.get), "l1": l1, "kept": kept}


def apply_edit(
    denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    delta: DeltaH,
    conf: dict,
    *,
    strength: float | None = None,
    seed: int = 0,
    boost: bool = True,
) -> torch.Tensor:
    """Regenerate inverted states ``x`` (at ``sigmas[0]``) with an edit and its config (from
    :func:`load_edit`): its intervals, its calibrated strength unless ``strength`` is given (1 when it
    has none), quality boosting unless ``boost`` is off. Returns images in ``[-1, 1]``."""
    iv = conf["intervals"]
    c = conf.get("strength", 1.0) if strength is None else strength
    check(isinstance(c, (int, float)) and math.isfinite(c), f"edit strength must be a finite number, got {c}")
    out = asymmetric_sample(
        denoiser,
        x,
        sigmas,
        delta,
        strength=c,
        sigma_edit=iv["sigma_edit"],
        sigma_boost=iv["sigma_boost"] if boost else 0.0,
        seed=seed,
    )
    check(
        bool(torch.isfinite(out).all()),
        f"the edit at strength {c:g} produced non-finite values (NaN or inf): "
        "lower --strength (the edit's calibrated strength is "
        f"{conf.get('strength', 1.0):g})",
    )
    return out.clamp(-1, 1)


@torch.no_grad()
def global_direction(
    denoiser, delta: DeltaH, source: torch.Tensor, sigmas: torch.Tensor, cond: dict | None = None
) -> DeltaH:
    """Average an edit's per-image ``delta_h`` over ``source`` images at every level of ``sigmas``
    (along their inversion paths): one ``free`` direction shared by all images."""
    cond = cond or {}
    _, path = invert(denoiser, source, sigmas, cond, return_path=True)
    hs = HSpace(denoiser)
    levels = sigmas[:-1]
    out = DeltaH("free", delta.arch["channels"], delta.arch["height"], delta.arch["width"], sigmas=levels)
    for k, s in enumerate(levels.tolist()):
        with hs.capture():
            denoiser(path[k], s, **cond)
        out.table[k] = delta(hs.h, torch.full((len(source),), s)).mean(0)
    return out.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------- checkpoints
def save_edit(out: str | os.PathLike, delta: DeltaH, config: dict) -> Path:
    """Write an edit: ``delta.safetensors`` + ``config.json`` (atomic, verified)."""
    conf = {"format": "steerdiff-edit", "version": 1, "arch": delta.arch, **config}
    bad = [k for k, v in delta.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    check(
        not bad,
        f"the edit's weights are not finite ({', '.join(bad[:3])}): training diverged; lower --lr "
        f"(nothing was written to {out})",
    )
    if delta.kind == "free":
        conf["sigmas"] = delta.log_sigmas.exp().tolist()
    with ckpt.atomic_directory(out, verify=lambda d: load_edit(d)) as tmp:
        ckpt.save_tensors(tmp / "delta.safetensors", {k: v for k, v in delta.state_dict().items() if k != "log_sigmas"})
        ckpt.write_json_atomic(tmp / "config.json", conf)
    return Path(out)


def load_edit(path: str | os.PathLike, averaged: bool = False) -> tuple[DeltaH, dict]:
    """``(delta network, config)`` from an edit directory or a shipped attribute name; ``averaged``
    loads the edit's global (averaged) direction from its ``global/`` subdirectory."""
    if str(path) in SHIPPED:
        from ..hub import weights_dir

        name, path = str(path), weights_dir() / SHIPPED[str(path)]
        check(
            path.is_dir(),
            f"the {name!r} edit does not ship in this version (its training has not reached the quality "
            f"goals yet): train one with `steerdiff train-edit --attribute {name} --out DIR` and pass --edit DIR",
        )
    if (Path(path) / "directions.json").is_file():  # a --discover output: name one of its members
        members = sorted(p.parent.name for p in Path(path).glob("*/config.json"))
        raise SteerdiffError(
            f"{path} holds discovered directions (steerdiff edit --discover): use one of them, "
            f"e.g. --edit {Path(path) / (members[0] if members else 'pc1')}"
        )
    path = Path(path) / "global" if averaged else Path(path)
    check(
        path.is_dir(),
        f"edit {path} does not exist: use a shipped attribute ({', '.join(SHIPPED)}) or a directory "
        "written by `steerdiff train-edit`",
    )
    conf = ckpt.read_json(path / "config.json")
    check(conf.get("format") == "steerdiff-edit", f"{path}/config.json is not a steerdiff edit")
    a = conf["arch"]
    delta = DeltaH(
        a["kind"],
        a["channels"],
        a["height"],
        a["width"],
        sigmas=conf.get("sigmas"),
        heads=a.get("heads", 4),
        ffn_dim=a.get("ffn_dim", 256),
    )
    try:
        state = ckpt.read_safetensors(path / "delta.safetensors")
        if "log_sigmas" in dict(delta.named_buffers()):  # rebuilt from config.json's sigmas, not stored
            state = {**state, "log_sigmas": delta.log_sigmas}
        missing, unexpected = sorted(set(delta.state_dict()) - set(state)), sorted(set(state) - set(delta.state_dict()))
        check(
            not missing and not unexpected,  # wrong keys are a wrong file, not a random edit
            f"{path}/delta.safetensors does not hold the weights config.json describes (missing: "
            f"{', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(unexpected[:3]) or 'none'}): restore the edit "
            "or retrain it with `steerdiff train-edit`",
        )
        delta.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split()).replace("Error(s) in loading state_dict for DeltaH: ", "")
        raise SteerdiffError(
            f"{path}: weights do not match config.json ({detail[:160]}): restore the edit or retrain it"
        ) from None
    return delta.eval().requires_grad_(False), conf


# ------------------------------------------------------------------------------------ attributes
def dilate(x: torch.Tensor, footprint: str = "square") -> torch.Tensor:
    """Strokes thickened by one pixel: a max filter of every channel (background -1 stays).

    Args:
        x: images ``(B, C, H, W)`` in ``[-1, 1]``.
        footprint: ``square`` (3x3: also fills diagonal gaps, so loops close more often) or ``plus``
            (the 4-neighbour cross, the ``thick`` attribute's target: fewer loops close).
    """
    check(footprint in ("square", "plus"), f"dilate footprint {footprint!r}: use square or plus")
    if footprint == "square":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    p = x.clone()
    p[..., 1:, :] = torch.maximum(p[..., 1:, :], x[..., :-1, :])
    p[..., :-1, :] = torch.maximum(p[..., :-1, :], x[..., 1:, :])
    p[..., :, 1:] = torch.maximum(p[..., :, 1:], x[..., :, :-1])
    p[..., :, :-1] = torch.maximum(p[..., :, :-1], x[..., :, 1:])
    return p


def fade_edges(x: torch.Tensor) -> torch.Tensor:
    """Strokes thinned by half a pixel ``(B, C, H, W)`` in ``[-1, 1]``: half-way between the image and its
    plus-footprint erosion, so every edge pixel fades to half its ink (the backward target of a
    two-sided ``thick``; a full erosion removes most of a two-pixel stroke)."""
    return (x - dilate(-x, "plus")) / 2


# what each attribute's edit run backwards (strength -1) should give, for two-sided training
REVERSE_TARGETS = {"thick": fade_edges}


def ink_shape(x: torch.Tensor) -> torch.Tensor:
    """The colour-blind image ``(B, 1, H, W)``: the maximum over channels (the ``green`` edit's
    reconstruction space)."""
    return x.amax(1, keepdim=True)


def blur_pyramid(x: torch.Tensor, widths=(1.0, 2.0)) -> torch.Tensor:
    """``x`` and its Gaussian blurs, flattened side by side ``(B, C*H*W * (1 + len(widths)))``: a space for
    the L1 of an edit that moves strokes, where a blurred stroke still overlaps its moved copy. Each
    channel is blurred alone, zero-padded: the map is linear, so the blurred difference of two images,
    all an L1 between them sees, is the blur of their difference.

    Args:
        x: images ``(B, C, H, W)``.
        widths: standard deviations of the blurs, in pixels, each > 0 (a kernel spans 3 of them each side).
    """
    check(all(w > 0 for w in widths), f"blur widths must be > 0 pixels, got {tuple(widths)}")
    out, ch = [x.flatten(1)], x.shape[1]
    for w in widths:
        r = max(1, int(math.ceil(3 * w)))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / w) ** 2)
        k = k / k.sum()
        y = F.conv2d(x, k.view(1, 1, 1, -1).expand(ch, 1, 1, -1), padding=(0, r), groups=ch)
        y = F.conv2d(y, k.view(1, 1, -1, 1).expand(ch, 1, -1, 1), padding=(r, 0), groups=ch)
        out.append(y.flatten(1))
    return torch.cat(out, 1)


def shear(x: torch.Tensor, k: float = 0.3) -> torch.Tensor:
    """Italic digits ``(B, C, H, W)`` in ``[-1, 1]``: each row shifted right by ``k`` pixels per row above
    the centre (a horizontal shear, bilinear; background -1 where nothing was)."""
    theta = torch.tensor([[1.0, k, 0.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample((x + 1) / 2, grid, align_corners=False, padding_mode="zeros") * 2 - 1


RECON_SPACE = {"green": ink_shape, "thick": None, "slant": None}


def to_green(x: torch.Tensor) -> torch.Tensor:
    """ColorMNIST images with the ink moved to the green channel (the ``green`` edit's ground truth)."""
    out = torch.full_like(x, -1.0)
    out[:, 1] = x[:, :2].amax(1)
    return out


def attribute_data(attribute: str, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(source images, target prototype images, source labels)`` of a built-in attribute:
    ``green`` (red ColorMNIST digits -> the same digits in green), ``thick`` (digits -> digits
    dilated by the plus footprint) or ``slant`` (digits -> the same digits sheared italic, :func:`shear`); target ``i`` is
    source ``i`` edited."""
    from ..data import load_dataset

    d = load_dataset("colormnist", split)
    if attribute == "green":
        # paired prototypes (each red digit and itself in green): only the colour differs, so the
        # direction has no component from which digits happened to be drawn
        red = d.labels // 10 == 0
        return d.images[red], to_green(d.images[red]), d.labels[red] % 10
    if attribute == "thick":
        return d.images, dilate(d.images, "plus"), d.labels % 10
    if attribute == "slant":
        return d.images, shear(d.images), d.labels % 10
    raise SteerdiffError(
        f"unknown attribute {attribute!r}: use green, thick or slant (or train_edit with your own direction)"
    )
