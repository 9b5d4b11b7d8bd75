"""Guidance as a denoiser wrapper, with sigma windows and weight schedules.

``guided(denoiser, *terms)`` is a denoiser whose score is the base score plus each term's:

    D'(x, sigma) = D(x, sigma) + sigma^2 * sum_k w_k(sigma) * g_k(x, sigma)

A term ``g_k`` is the gradient, with respect to ``x``, of a log-potential: a score, in units of
1 / x. ``w_k`` is the term's weight schedule, zero outside its sigma window. A term sees the whole
batch, so terms may couple the samples (the batch is the particle set). Gradients are enabled
inside, so the wrapper works under ``@torch.no_grad`` samplers (steerdiff's and k-diffusion's).

A term is a :class:`GuidanceTerm` (the protocol: ``bind``, ``weight_at``, ``guide`` and the flags
``needs_x0``, ``needs_base``, ``swaps_base`` with ``base_cond``; see the class) or a plain callable
``g(x, sigma, **cond) -> tensor like x`` (always on, weight 1; :class:`FunctionTerm` wraps it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .denoisers import DenoiserLike, DenoiserWrapper, append_dims, as_sigma
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
    """What a guidance term sees at one denoiser call.

    Args:
        x: the noisy batch ``(N, *sample_shape)`` (images: ``(N, C, H, W)``) in data units; a leaf that
            requires grad when an active term ``needs_x0``.
        sigma: the EDM noise level of each sample ``(N,)`` (the standard deviation of the noise added
            to the data, in data units).
        denoised: the base estimate ``D(x, sigma, **cond)`` ``(N, *sample_shape)``, with its graph to
            ``x`` when a term ``needs_x0``; ``None`` when no active term ``needs_base``.
        cond: the condition keywords of the call (e.g. ``class_labels``).
        base: the base denoiser, for terms that call it under another condition.
    """

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


class GuidanceTerm(ABC):
    """Base class of guidance terms: a score ``g(x, sigma)`` added to the base denoiser's score
    (see the module docstring). Subclasses implement :meth:`guide`; every other hook has a default.

    The life of a term: ``guided(denoiser, term)`` calls :meth:`bind` once (the term's one step of
    resolving everything that depends on the model); then, at every denoiser call, :class:`Guided`
    asks each bound term for :meth:`weight_at` the call's largest noise level, skips terms of weight
    0, runs the base denoiser if an active term (or the caller) needs it, and adds
    ``sigma^2 * weight * guide(ctx)`` to the estimate.

    Flags (class attributes, or set on the bound copy by :meth:`bind`):

    - ``needs_x0``: :meth:`guide` differentiates through the base estimate: ``ctx.x`` is a leaf that
      requires grad and ``ctx.denoised`` keeps its graph to it (implies ``needs_base``).
    - ``needs_base``: :meth:`guide` reads ``ctx.denoised`` (or ``ctx.score``); otherwise the base
      denoiser may be skipped (``Guided.split(..., need_base=False)``) and ``ctx.denoised`` may be ``None``.
    - ``swaps_base``: at weight exactly 1 the guided estimate is the base denoiser under another
      condition, :meth:`base_cond`; that one call then replaces the base call and :meth:`guide` is
      not called (one network call instead of two).
    """

    needs_x0: bool = False
    needs_base: bool = False
    swaps_base: bool = False

    def bind(self, denoiser: DenoiserLike) -> GuidanceTerm:
        """The term ready for ``denoiser``: the one step where its unset arguments are resolved (from
        the model's recorded ``preset``, then the library defaults), its window defaults to the model's
        sigma range, its arguments are checked and its embeddings built. Returns a bound copy (possibly
        of another :class:`GuidanceTerm` class); the term itself is left unchanged, so one term may be
        bound to several models. Default: the term itself, unchanged.

        Args:
            denoiser: the base denoiser (it carries ``sigma_min``, ``sigma_max``, ``sigma_data``,
                ``sample_shape`` and optionally ``preset``, ``num_classes``).
        """
        return self

    def weight_at(self, sigma: float) -> float:
        """``w(sigma)``, the term's weight at noise level ``sigma`` (a float, the EDM noise level):
        its strength times its schedule, 0 outside its sigma window (see :func:`schedule_weight`).
        Default: 1 (always on)."""
        return 1.0

    @abstractmethod
    def guide(self, ctx: GuideContext) -> torch.Tensor:
        """``g(x, sigma)``: a score (the gradient of a log-potential with respect to ``ctx.x``, in
        units of 1 / x), shaped like ``ctx.x`` ``(N, *sample_shape)``, before the weight ``w(sigma)``.
        Guided detaches it.

        Args:
            ctx: the batch, its noise levels, the base estimate and the condition (:class:`GuideContext`).
        """

    def base_cond(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> dict:
        """The condition under which the base denoiser *is* the guided estimate at weight 1 (for
        ``swaps_base`` terms; the others never get this call).

        Args:
            x: the noisy batch ``(N, *sample_shape)``, detached.
            sigma: the noise levels ``(N,)``.
            cond: the call's condition keywords; return a new dict, leave this one unchanged.
        """
        raise SteerdiffError(f"{type(self).__name__} sets swaps_base = True but defines no base_cond(x, sigma, cond)")


class FunctionTerm(GuidanceTerm):
    """A plain callable ``fn(x, sigma, **cond) -> tensor like x`` as a term (weight 1, always on):
    ``x`` ``(N, *sample_shape)`` detached, ``sigma`` ``(N,)``, the call's condition keywords."""

    def __init__(self, fn: Callable[..., torch.Tensor]):
        self.fn = fn

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        return self.fn(ctx.x.detach(), ctx.sigma, **ctx.cond)

    def __repr__(self) -> str:
        return f"FunctionTerm({self.fn!r})"


class _DuckTerm(GuidanceTerm):
    """An object written against the duck-typed protocol of earlier versions (``guide`` and any of the
    optional hooks, without subclassing :class:`GuidanceTerm`): its hooks, where it has them, else the
    base class's defaults. New terms subclass :class:`GuidanceTerm`."""

    def __init__(self, obj: Any):
        self.obj = obj

    def bind(self, denoiser: DenoiserLike) -> GuidanceTerm:
        return _DuckTerm(self.obj.bind(denoiser)) if hasattr(self.obj, "bind") else self

    def weight_at(self, sigma: float) -> float:
        return self.obj.weight_at(sigma) if hasattr(self.obj, "weight_at") else 1.0

    def guide(self, ctx: GuideContext) -> torch.Tensor:
        return self.obj.guide(ctx)

    def base_cond(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> dict:
        return self.obj.base_cond(x, sigma, cond)

    @property
    def needs_x0(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.obj, "needs_x0", False))

    @property
    def needs_base(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.obj, "needs_base", False))

    @property
    def swaps_base(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.obj, "swaps_base", False))


# A term is a GuidanceTerm or a plain callable ``g(x, sigma, **cond) -> tensor like x`` (weight 1).
Term = GuidanceTerm | Callable[..., torch.Tensor]


def as_term(term: Any) -> GuidanceTerm:
    """``term`` as a :class:`GuidanceTerm`: itself, a plain callable wrapped in :class:`FunctionTerm`,
    or an object of the earlier duck-typed protocol (one with ``guide``) wrapped as such."""
    if isinstance(term, GuidanceTerm):
        return term
    if hasattr(term, "guide"):
        return _DuckTerm(term)
    check(callable(term), f"a guidance term must be callable g(x, sigma, **cond), got {type(term).__name__}")
    return FunctionTerm(term)


def bind_term(term: Any, denoiser: DenoiserLike) -> GuidanceTerm:
    """``as_term(term).bind(denoiser)``, checked: the bound term is a :class:`GuidanceTerm`, and a
    ``swaps_base`` term defines :meth:`GuidanceTerm.base_cond`."""
    bound = as_term(term).bind(denoiser)
    check(
        isinstance(bound, GuidanceTerm),
        f"{type(term).__name__}.bind(denoiser) returned a {type(bound).__name__}: return a GuidanceTerm",
    )
    check(
        not bound.swaps_base or isinstance(bound, _DuckTerm) or type(bound).base_cond is not GuidanceTerm.base_cond,
        f"{type(bound).__name__} sets swaps_base = True but defines no base_cond(x, sigma, cond)",
    )
    return bound


class Guided(DenoiserWrapper):
    """A denoiser plus guidance terms (see module docstring); ``terms`` holds them bound to ``base``."""

    def __init__(self, base: DenoiserLike, terms: tuple[Term, ...] | list[Term]):
        super().__init__(base)
        self.base, self.terms = base, [bind_term(t, base) for t in terms]

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
        sigma = as_sigma(sigma, x)
        s = float(sigma.max())
        active = [(t, w) for t in self.terms if (w := t.weight_at(s)) != 0]
        if not active:
            return (self.base(x, sigma, **cond) if need_base else None), None
        needs_x0 = any(t.needs_x0 for t, _ in active)
        run_base = need_base or needs_x0 or any(t.needs_base for t, _ in active)
        # a term whose full-weight estimate is the base under another condition (LabelGuidance:
        # D + (D(x | c) - D) = D(x | c)) supplies that condition: one network call instead of two
        swap = next((t for t, w in active if w == 1.0 and t.swaps_base), None)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(needs_x0)
            base_cond = cond if swap is None else swap.base_cond(x.detach(), sigma, cond)
            d = self.base(xg, sigma, **base_cond) if run_base or swap is not None else None
            ctx = GuideContext(xg, sigma, d, cond, self.base)
            g = torch.zeros_like(x)
            for t, w in active:
                if t is swap:
                    continue
                gk = t.guide(ctx)
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
    """``denoiser`` with guidance ``terms`` added to its score (see module docstring).

    Args:
        denoiser: the base denoiser ``D(x, sigma, **cond)``.
        *terms: :class:`GuidanceTerm` objects or plain callables ``g(x, sigma, **cond)``; each is bound
            to ``denoiser`` (:meth:`GuidanceTerm.bind`) here, once.
    """
    check(
        callable(denoiser) and all(hasattr(denoiser, k) for k in ("sigma_min", "sigma_max", "sample_shape")),
        f"guided() needs a denoiser (e.g. steerdiff.load('mnist')), got {type(denoiser).__name__}",
    )
    return Guided(denoiser, terms)
