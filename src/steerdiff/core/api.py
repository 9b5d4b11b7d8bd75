"""``steerdiff.sample``: the one-call entry point over denoisers, samplers and guidance."""

from __future__ import annotations

import inspect
import math
import numbers
import secrets
from collections.abc import Sequence
from typing import Any

import torch

from . import distributed
from .denoisers import DenoiserLike
from .errors import check
from .guidance import Term, guided
from .sampling import get_sampler, get_sigmas_karras
from .seeding import PerSampleNoise, randn_per_sample, sample_generators


def model_device(model: object) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()) if isinstance(model, torch.nn.Module) else []:
        return t.device
    return torch.device("cpu")


def _slice_cond(cond: dict, n: int, lo: int, hi: int) -> dict:
    """Per-sample entries of ``cond`` (tensors with a leading dim ``n``) cut to ``[lo, hi)``; others shared."""
    return {
        k: (v[lo:hi] if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == n else v) for k, v in cond.items()
    }


class Chunked(torch.nn.Module):
    """``denoiser`` evaluated ``size`` samples at a time (same result; bounds activation memory)."""

    sigma_min: float
    sigma_max: float
    sigma_data: float
    sample_shape: tuple[int, ...]

    def __init__(self, denoiser: DenoiserLike, size: int):
        super().__init__()
        check(size >= 1, f"batch_size must be positive, got {size}")
        self.denoiser, self.size = denoiser, size
        for k in ("sigma_min", "sigma_max", "sigma_data", "sample_shape", "preset"):
            setattr(self, k, getattr(denoiser, k, None))

    def forward(self, x: torch.Tensor, sigma: Any, **cond: Any) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        n = x.shape[0]
        return torch.cat(
            [
                self.denoiser(
                    x[lo : lo + self.size], sigma[lo : lo + self.size], **_slice_cond(cond, n, lo, lo + self.size)
                )
                for lo in range(0, n, self.size)
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
    **sampler_kwargs: Any,
) -> torch.Tensor:
    """Draw ``n`` samples: returns ``(n, *denoiser.sample_shape)`` (images in ``[-1, 1]``).

    ``sampler``/``steps`` default to the model's recorded preset (``denoiser.preset``), else Heun
    with 18 steps on a Karras schedule over ``[sigma_min, sigma_max]``; ``sigmas`` overrides the
    schedule. ``guidance`` terms are added to the score (:func:`steerdiff.guided`); they couple the
    batch, so guided sampling runs all ``n`` particles together. Sample ``i`` draws its initial and
    sampler noise from its own stream seeded by ``(seed, start_index + i)``: without guidance it does
    not depend on ``n`` or ``batch_size``, up to the float32 round-off of batched network calls
    (measured below 1e-4 on ``[-1, 1]`` images; exact for the analytic mixtures).
    With guidance, ``batch_size`` chunks the network calls while the particle terms still see all
    ``n`` particles (for sets in the thousands, with ``ParticleGuidance(subset=k)``).
    ``cond`` is passed to the denoiser (e.g. ``{"class_labels": labels}`` with ``(n,)`` labels).
    ``clip`` clamps to ``[-1, 1]`` (default: for image-shaped samples). Extra keyword arguments go to
    the sampler (``s_churn``, ``eta``, ``snr``, ...). Under ``torchrun`` (an initialised process
    group) each rank draws its share of the ``n`` particles, particle terms couple the global set,
    and every rank returns all ``n`` samples (:mod:`steerdiff.distributed`).
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
    outs = []
    for lo in range(first, last, chunk):
        hi = min(last, lo + chunk)
        gens = sample_generators(seed, range(start_index + lo, start_index + hi))
        x = randn_per_sample(gens, shape, device=device) * sigmas[0]
        kwargs = dict(sampler_kwargs)
        if takes_noise:
            kwargs.setdefault("noise_sampler", PerSampleNoise(gens, shape, device=device))
        outs.append(
            fn(
                model,
                x,
                sigmas,
                extra_args=_slice_cond(cond, n, lo, hi),
                disable=not progress or distributed.world()[0] != 0,
                **kwargs,
            )
        )
    x = distributed.all_gather(torch.cat(outs))
    if clip if clip is not None else len(shape) == 3:
        x = x.clamp(-1, 1)
    return x
