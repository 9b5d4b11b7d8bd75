"""``steerdiff.sample``: the one-call entry point over denoisers, samplers and guidance."""

from __future__ import annotations

import inspect
import math
import numbers
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import distributed
from .denoisers import DenoiserLike, DenoiserWrapper, slice_cond
from .errors import check
from .guidance import Term, guided
from .sampling import get_sampler, get_sigmas_karras
from .seeding import PerSampleNoise, randn_per_sample, sample_generators, stream_seed


def model_device(model: object) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()) if isinstance(model, torch.nn.Module) else []:
        return t.device
    return torch.device("cpu")


class Chunked(DenoiserWrapper):
    """``denoiser`` evaluated ``size`` samples at a time (same result; bounds activation memory)."""

    def __init__(self, denoiser: DenoiserLike, size: int):
        check(size >= 1, f"batch_size must be positive, got {size}")
        super().__init__(denoiser)
        self.denoiser, self.size = denoiser, size

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        n, k = x.shape[0], self.size
        return torch.cat(
            [
                self.denoiser(x[lo : lo + k], sigma[lo : lo + k], **slice_cond(cond, lo, lo + k, n))
                for lo in range(0, n, k)
            ]
        )


def sample(
    denoiser: DenoiserLike,
    n: int,
    *,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: Sequence[Term] = (),
    seed: int | None = None,
    cond: dict | None = None,
    progress: bool = False,
    sigmas: torch.Tensor | None = None,
    batch_size: int | None = None,
    start_index: int = 0,
    clip: bool | None = None,
    initial_noise: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    **sampler_kwargs: Any,
) -> torch.Tensor:
    """Draw ``n`` samples from a denoiser, optionally steered by guidance terms.

    Sample ``i`` draws its initial and sampler noise from its own stream seeded by
    ``(seed, start_index + i)``: without guidance it does not depend on ``n`` or ``batch_size`` (up to
    the float32 round-off of batched network calls; exact for the analytic mixtures). Guidance terms
    couple the batch, so guided sampling runs all ``n`` particles together. Under ``torchrun`` (an
    initialised process group) each rank draws its share of the particles, particle terms couple the
    global set, and every rank returns all ``n`` samples (:mod:`steerdiff.distributed`).

    Args:
        denoiser: ``D(x, sigma, **cond) -> x0_hat`` with ``sigma_min``, ``sigma_max``, ``sample_shape``
            (a :class:`~steerdiff.core.denoisers.DenoiserLike`, e.g. ``steerdiff.load("mnist")``).
        n: number of samples (particles), a positive integer.
        sampler: a name of :data:`steerdiff.core.sampling.SAMPLERS` (default: ``denoiser.preset["sampler"]``,
            else ``"heun"``).
        steps: number of noise levels of the Karras schedule over ``[sigma_min, sigma_max]`` (default:
            ``denoiser.preset["steps"]``, else 18).
        guidance: guidance terms added to the score (:func:`steerdiff.guided`): ``ParticleGuidance``,
            ``Repulsion``, any callable ``g(x, sigma, **cond)`` returning a tensor like ``x``.
        seed: the random seed (an integer; ``None`` draws one).
        cond: condition keywords passed to the denoiser, e.g. ``{"class_labels": (n,) int tensor}`` or
            ``{"frames": (1, K, H, W) array in [-1, 1]}``; tensors with leading dim ``n`` are per sample.
        progress: show a progress bar.
        sigmas: the noise levels to visit, a non-increasing 1-D tensor ending in 0 (VE scale, the
            units of ``x``); replaces ``steps``.
        batch_size: samples per network call (default: all ``n``). With guidance it only chunks the
            network calls; the particle terms still see all ``n`` particles.
        start_index: index of the first sample's noise stream (draw a large set in parts).
        clip: clamp the result to ``[-1, 1]`` (default: for image-shaped samples, ``(C, H, W)``).
        initial_noise: couples the batch's starting points: ``f(z, generator) -> z`` maps the ``(n, *shape)``
            standard-normal initial noise of all ``n`` samples (before scaling by ``sigma_max``) to the
            noise to start from, drawing from ``generator`` (seeded by ``seed`` and ``start_index``), e.g.
            :class:`steerdiff.particles.noise.SimplexNoise`. None: each sample's own draw.
        **sampler_kwargs: the sampler's own options (``s_churn``, ``eta``, ``snr``, ``plan``, ...);
            the preset's values are the defaults.

    Returns:
        ``(n, *denoiser.sample_shape)`` samples (images in ``[-1, 1]``), on the denoiser's device.
    """
    check(
        callable(denoiser) and all(hasattr(denoiser, k) for k in ("sigma_min", "sigma_max", "sample_shape")),
        f"denoiser must be a denoiser (e.g. steerdiff.load('mnist')), got {type(denoiser).__name__}",
    )
    check(
        cond is None or isinstance(cond, dict), f"cond must be a dict of condition keywords, got {type(cond).__name__}"
    )
    check(
        batch_size is None
        or (isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool) and batch_size >= 1),
        f"batch_size must be a positive integer (or None), got {batch_size!r}",
    )
    check(
        isinstance(start_index, numbers.Integral) and start_index >= 0,
        f"start_index must be an integer >= 0, got {start_index!r}",
    )
    check(
        isinstance(n, (numbers.Integral, float))
        and not isinstance(n, bool)
        and math.isfinite(n)
        and int(n) == n
        and n >= 1,
        f"n must be a positive integer, got {n!r}",
    )
    n = int(n)
    preset = dict(getattr(denoiser, "preset", {}) or {})
    sampler = sampler or preset.get("sampler", "heun")
    steps = preset.get("steps", 18) if steps is None else steps
    check(
        sigmas is not None or (isinstance(steps, numbers.Integral) and not isinstance(steps, bool) and int(steps) >= 1),
        f"steps must be a positive integer, got {steps!r}",
    )
    fn = get_sampler(sampler)
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(k for k in sampler_kwargs if k not in params)
        check(
            not unknown,
            f"sampler {sampler} takes no {', '.join(unknown)}: its options are "
            f"{', '.join(k for k in params if k not in ('model', 'x', 'sigmas', 'extra_args', 'callback', 'disable', 'noise_sampler'))}",
        )
    for key, value in preset.items():
        if key not in ("sampler", "steps") and key in inspect.signature(fn).parameters:
            sampler_kwargs.setdefault(key, value)
    check(
        seed is None
        or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool))
        or (isinstance(seed, torch.Tensor) and seed.numel() == 1 and not seed.is_floating_point()),
        f"seed must be an integer (or None for a random one), got {seed!r}",
    )
    seed = secrets.randbits(62) if seed is None else int(seed)
    device = model_device(denoiser)
    if sigmas is None:
        sigmas = get_sigmas_karras(steps, denoiser.sigma_min, denoiser.sigma_max, device=device)
    else:
        sigmas = torch.as_tensor(sigmas)
        check(
            sigmas.ndim == 1 and len(sigmas) >= 2 and bool(torch.isfinite(sigmas).all()) and bool((sigmas >= 0).all()),
            f"sigmas must be a 1-D tensor of at least 2 finite noise levels >= 0 (ending in 0), got shape {tuple(sigmas.shape)}",
        )
        check(
            bool((sigmas[1:] <= sigmas[:-1]).all()),
            "sigmas must be non-increasing (from the largest noise level down to 0)",
        )
    # guided sampling couples all particles; batch_size then only chunks the network calls
    base = Chunked(denoiser, int(batch_size)) if (guidance and batch_size) else denoiser
    model = guided(base, *guidance) if guidance else denoiser
    cond = dict(cond or {})
    # under torchrun each rank draws its own slice of the particles (their streams as in one process)
    first, last = distributed.share(n) if distributed.active() else (0, n)
    chunk = (last - first) if (guidance or batch_size is None) else int(batch_size)
    check(chunk >= 1, f"batch_size must be positive, got {batch_size}")
    takes_noise = "noise_sampler" in inspect.signature(fn).parameters
    shape = tuple(denoiser.sample_shape)
    coupled = None  # (generators of all n samples, past their initial draw; the coupled initial noise)
    if initial_noise is not None:  # every rank couples all n draws the same way, then takes its share
        check(callable(initial_noise), f"initial_noise must be a callable f(z, generator), got {initial_noise!r}")
        every = sample_generators(seed, range(start_index, start_index + n))
        z = randn_per_sample(every, shape)
        z = initial_noise(z, torch.Generator().manual_seed(stream_seed("initial-noise", seed, start_index)))
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        check(got == (n, *shape), f"initial_noise returned {got}, expected a tensor of shape {(n, *shape)}")
        coupled = (every, z)
    outs = []
    for lo in range(first, last, chunk):
        hi = min(last, lo + chunk)
        if coupled is None:
            gens = sample_generators(seed, range(start_index + lo, start_index + hi))
            x = randn_per_sample(gens, shape, device=device) * sigmas[0]
        else:
            gens, x = coupled[0][lo:hi], coupled[1][lo:hi].to(device) * sigmas[0]
        kwargs = dict(sampler_kwargs)
        if takes_noise:
            kwargs.setdefault("noise_sampler", PerSampleNoise(gens, shape, device=device))
        outs.append(
            fn(
                model,
                x,
                sigmas,
                extra_args=slice_cond(cond, lo, hi, n),
                disable=not progress or distributed.world()[0] != 0,
                **kwargs,
            )
        )
    x = distributed.all_gather(torch.cat(outs))
    if clip if clip is not None else len(shape) == 3:
        x = x.clamp(-1, 1)
    return x
