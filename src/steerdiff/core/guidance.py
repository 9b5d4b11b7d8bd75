"""Guidance as a denoiser wrapper, with sigma windows and weight schedules.

``guided(denoiser, *terms)`` is a denoiser whose score is the base score plus each term's:

    D'(x, sigma) = D(x, sigma) + sigma^2 * sum_k w_k(sigma) * g_k(x, sigma)

A term ``g_k`` is the gradient, with respect to ``x``, of a log-potential: a score, in units of
1 / x. ``w_k`` is the term's weight schedule, zero outside its sigma window. A term sees the whole
batch, so terms may couple the samples (the batch is the particle set). Gradients are enabled
inside, so the wrapper works under ``@torch.no_grad`` samplers (steerdiff's and k-diffusion's).

A term is either a plain callable ``g(x, sigma, **cond) -> tensor like x`` (always on, weight 1)
or an object with ``weight_at(sigma) -> float`` and ``guide(ctx) -> tensor like x`` (the particle
terms), which may set ``needs_x0 = True`` to receive the denoised estimate with its graph to ``x``,
and ``swaps_base = True`` with ``base_cond(x, sigma, cond) -> cond'`` when its full-weight estimate
is the base denoiser under another condition (then that one call replaces the base call).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .denoisers import Denoiser, DenoiserLike, append_dims
from .errors import SteerdiffError, check

SCHEDULES = ("constant", "sigma", "cosine")


def schedule_weight(schedule, sigma: float, window: tuple[float, float]) -> float:
    """Weight of a term at noise level ``sigma``: 0 outside ``window = (lo, hi)``; inside it

    ``"constant"``: 1; ``"sigma"``: ``sigma`` (proportional to the noise level); ``"cosine"``: a bump
    ``(1 - cos(2 pi u)) / 2`` in ``u = log(sigma / lo) / log(hi / lo)``, 0 at both ends and 1 in the
    middle (log-sigma); a callable: ``schedule(sigma)``.
    """
    lo, hi = window
    if not (lo <= sigma <= hi):
        return 0.0
    if callable(schedule):
        return float(schedule(sigma))
    if schedule == "constant":
        return 1.0
    if schedule == "sigma":
        return float(sigma)
    if schedule == "cosine":
        u = math.log(sigma / lo) / math.log(hi / lo) if hi > lo else 0.5
        return 0.5 * (1 - math.cos(2 * math.pi * u))
    raise SteerdiffError(f"unknown weight schedule {schedule!r}: use one of {', '.join(SCHEDULES)} or a callable")


@dataclass
class GuideContext:
    """What a guidance term sees: ``x`` (a leaf that requires grad when a term needs x0), ``sigma``
    ``(B,)``, the base ``denoised`` estimate (with its graph to ``x`` when ``needs_x0``), ``cond``."""

    x: torch.Tensor
    sigma: torch.Tensor
    denoised: torch.Tensor | None  # None only when no active term uses the base (``needs_base``)
    cond: dict
    base: DenoiserLike

    @property
    def score(self) -> torch.Tensor:
        """The base score ``(D(x) - x) / sigma^2`` (detached)."""
        assert self.denoised is not None, "a term that reads the base score must set needs_base = True"
        return (self.denoised.detach() - self.x.detach()) / append_dims(self.sigma, self.x.ndim) ** 2


class GuidanceTerm(Protocol):
    """The guidance-term protocol (object form; see the module docstring for the optional flags
    ``needs_x0``, ``needs_base``, ``swaps_base`` and the ``bind(denoiser)`` hook)."""

    def weight_at(self, sigma: float) -> float:
        """``w(sigma)``: 0 outside the term's sigma window."""
        ...

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        """``g(x, sigma)``, a score (gradient of a log-potential) shaped like ``ctx.x``."""
        ...


# A term is a GuidanceTerm or a plain callable ``g(x, sigma, **cond) -> tensor like x`` (weight 1).
Term = GuidanceTerm | Callable[..., torch.Tensor]


class Guided(Denoiser):
    """A denoiser plus guidance terms (see module docstring)."""

    def __init__(self, base: DenoiserLike, terms: tuple[Term, ...] | list[Term]):
        super().__init__(
            sigma_min=base.sigma_min,
            sigma_max=base.sigma_max,
            sigma_data=base.sigma_data,
            sample_shape=base.sample_shape,
            preset=getattr(base, "preset", None),
        )
        bound = []
        for t in terms:
            check(
                callable(t) or hasattr(t, "guide"),
                f"a guidance term must be callable g(x, sigma, **cond), got {type(t).__name__}",
            )
            bound.append(t.bind(base) if hasattr(t, "bind") else t)
        self.base, self.terms = base, bound

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        d, delta = self.split(x, sigma, **cond)
        assert d is not None  # need_base=True
        return d if delta is None else d + delta

    def split(
        self, x: torch.Tensor, sigma: Any, need_base: bool = True, **cond: Any
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(D(x), sigma^2 * sum_k w_k g_k)``: the base estimate and the guidance's shift of it
        (``None`` when no term is active at this sigma). With ``need_base=False`` the base denoiser
        runs only if an active term uses it (``needs_base``), and ``D(x)`` may come back ``None``."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        s = float(sigma.max())
        active = [(t, t.weight_at(s) if hasattr(t, "weight_at") else 1.0) for t in self.terms]
        active = [(t, w) for t, w in active if w != 0]
        if not active:
            return (self.base(x, sigma, **cond) if need_base else None), None
        needs_x0 = any(getattr(t, "needs_x0", False) for t, _ in active)
        run_base = need_base or any(getattr(t, "needs_base", False) for t, _ in active)
        # a term whose full-weight estimate is the base under another condition (PG's label kernel:
        # D + (D(x | c) - D) = D(x | c)) supplies that condition: one network call instead of two
        swap: Any = next((t for t, w in active if w == 1.0 and getattr(t, "swaps_base", False)), None)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(needs_x0)
            base_cond = cond if swap is None else swap.base_cond(x.detach(), sigma, cond)
            d = self.base(xg, sigma, **base_cond) if run_base or swap is not None else None
            ctx = GuideContext(xg, sigma, d, cond, self.base)
            g = torch.zeros_like(x)
            for t, w in active:
                if t is swap:
                    continue
                gk = t.guide(ctx) if hasattr(t, "guide") else t(x.detach(), sigma, **cond)
                check(
                    gk.shape == x.shape,
                    f"a guidance term returned shape {tuple(gk.shape)} for x of shape {tuple(x.shape)}",
                )
                g = g + w * gk.detach().to(x.dtype)
        if not bool(torch.isfinite(g).all()):
            raise SteerdiffError(
                f"guidance produced non-finite values at sigma={s:.4g}: lower the strength or narrow the window"
            )
        return (None if d is None else d.detach()), append_dims(sigma, x.ndim) ** 2 * g


def guided(denoiser: DenoiserLike, *terms: Term) -> Guided:
    """``denoiser`` with guidance ``terms`` added to its score (see module docstring)."""
    check(
        callable(denoiser) and all(hasattr(denoiser, k) for k in ("sigma_min", "sigma_max", "sample_shape")),
        f"guided() needs a denoiser (e.g. steerdiff.load('mnist')), got {type(denoiser).__name__}",
    )
    return Guided(denoiser, terms)
