"""Denoisers: ``D(x, sigma, **cond) -> x0_hat`` in the EDM / k-diffusion convention.

``x`` is a batch ``(B, *sample_shape)`` at variance-exploding scale (``x = x0 + sigma * n``), images in
``[-1, 1]``; ``sigma`` is a float or a ``(B,)`` tensor; the result estimates the clean sample and the
score is ``(D(x, sigma) - x) / sigma**2``. Every denoiser carries ``sigma_min``, ``sigma_max``,
``sigma_data``, ``sample_shape`` and a recommended sampling ``preset`` (a dict of
:func:`steerdiff.sample` keyword arguments).

Adapters here turn networks into denoisers:

- :class:`EDMDenoiser`: EDM preconditioning (Karras et al. 2022, Table 1) around a network
  ``F(c_in * x, c_noise, **cond)``; steerdiff's own models.
- :class:`DiscreteDenoiser`: a discrete-time epsilon- or v-prediction network (DDPM, Stable
  Diffusion) with its ``alphas_cumprod``; sigma is mapped to a fractional timestep.
- :class:`ScoreDenoiser`: a Song-style score network ``s(x, sigma)``: ``D = x + sigma**2 * s``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from .errors import check


class DenoiserLike(Protocol):
    """The denoiser protocol: what samplers, guidance and compositions need of a model.

    A callable ``D(x, sigma, **cond) -> x0_hat`` (``x``: ``(B, *sample_shape)``; ``sigma``: a float or
    a ``(B,)`` tensor) that carries its noise range, data scale and sample shape. Every
    :class:`Denoiser` satisfies it; so does any object with these attributes and this call.
    """

    sigma_min: float
    sigma_max: float
    sigma_data: float
    sample_shape: tuple[int, ...]

    def __call__(self, x: torch.Tensor, sigma: Any, **cond: Any) -> torch.Tensor: ...


def as_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` (a float, a one-value tensor or a ``(B,)`` tensor) as a ``(B,)`` tensor on ``x``'s device
    and dtype, ``B = x.shape[0]``: the one conversion of a noise level to a batch of them."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.numel() == 1:
        sigma = sigma.reshape(1).expand(x.shape[0])
    check(
        sigma.shape == (x.shape[0],),
        f"sigma has shape {tuple(sigma.shape)} but x has batch {x.shape[0]}: pass a float or a ({x.shape[0]},) tensor",
    )
    return sigma


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` with ``ndim`` dims in all, for broadcasting against ``x``."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def slice_cond(cond: dict, lo: int, hi: int, n: int | None = None) -> dict:
    """The condition keywords of samples ``lo..hi-1``: tensor entries cut to rows ``[lo, hi)``.

    Args:
        cond: condition keywords (e.g. ``{"class_labels": (n,) tensor, "frames": (1, K, H, W)}``).
        lo, hi: the row range (sample indices).
        n: the batch size. Given, only tensors whose leading dim is ``n`` are per-sample (cut); the
            others are shared by all samples and passed whole. ``None``: every tensor with a leading
            dim is cut.
    """
    return {
        k: (v[lo:hi] if isinstance(v, torch.Tensor) and v.ndim > 0 and (n is None or v.shape[0] == n) else v)
        for k, v in cond.items()
    }


def _output(y):
    """diffusers models return an output object; plain networks return a tensor."""
    return y.sample if hasattr(y, "sample") else y


def label_cond(
    x: torch.Tensor, class_labels, num_classes: int | None, null_label: int | None, require_labels: bool
) -> dict:
    """The ``class_labels`` keyword for a network, checked; ``{}`` for unconditional networks.

    Without labels, a network trained with label dropout gets its ``null_label`` (unconditional)."""
    if num_classes is None:
        check(
            class_labels is None,
            "this model is unconditional: drop class_labels (or load a class-conditional model, e.g. 'mnist-cond')",
        )
        return {}
    if class_labels is None:
        check(
            null_label is not None and not require_labels,
            f"this model is class-conditional: pass cond={{'class_labels': ...}} with values in 0..{num_classes - 1}",
        )
        class_labels = null_label
    raw = torch.as_tensor(class_labels, device=x.device)
    check(
        not (raw.is_floating_point() or raw.is_complex()) or bool((raw == raw.real.round()).all()),
        f"class_labels must be integers, got {raw.tolist() if raw.numel() <= 8 else raw.dtype}: pass integer labels",
    )
    labels = raw.long()
    if labels.ndim == 0:
        labels = labels.expand(x.shape[0])
    check(
        labels.shape == (x.shape[0],),
        f"class_labels has shape {tuple(labels.shape)}: pass an int or a ({x.shape[0]},) tensor",
    )
    allowed = num_classes if null_label is None else max(num_classes, null_label + 1)
    check(bool(((labels >= 0) & (labels < allowed)).all()), f"class_labels must lie in 0..{num_classes - 1}")
    return {"class_labels": labels}


def check_cond_keys(net, cond: dict, known: str) -> None:
    """Reject condition keywords ``net`` cannot take (a typo would otherwise surface as a TypeError)."""
    if not cond:
        return
    import inspect

    try:
        params = inspect.signature(net.forward if isinstance(net, nn.Module) else net).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(k for k in cond if k not in params)
    check(not unknown, f"unknown condition {', '.join(map(repr, unknown))}: this model takes {known}")


def frame_cond(x: torch.Tensor, frames, k: int) -> torch.Tensor:
    """The ``k`` previous frames ``(B or 1, k, H, W)`` in ``[-1, 1]`` for a frame-conditional network,
    checked and broadcast to the batch (all particles share one condition)."""
    check(
        frames is not None,
        f"this model predicts the next frame: give its {k} previous frame(s), a (1, {k}, H, W) array in [-1, 1] "
        "(--cond frames.npy on the command line, cond={'frames': ...} in Python)",
    )
    frames = torch.as_tensor(frames, dtype=x.dtype, device=x.device)
    check(
        frames.ndim == 4 and frames.shape[1] == k and tuple(frames.shape[2:]) == tuple(x.shape[2:]),
        f"frames has shape {tuple(frames.shape)}: expected (1, {k}, {x.shape[2]}, {x.shape[3]}) (K previous frames)",
    )
    check(frames.shape[0] in (1, x.shape[0]), f"frames has batch {frames.shape[0]}: use 1 (shared) or {x.shape[0]}")
    return frames.expand(x.shape[0], -1, -1, -1)


class Denoiser(nn.Module):
    """Base of steerdiff's denoisers: checks the input, then calls :meth:`denoise`.

    Subclasses implement ``denoise(x, sigma, **cond)`` with ``sigma`` already a ``(B,)`` tensor.
    """

    def __init__(
        self,
        *,
        sigma_min: float,
        sigma_max: float,
        sigma_data: float,
        sample_shape: Sequence[int],
        preset: dict | None = None,
    ):
        super().__init__()
        check(0 < sigma_min < sigma_max, f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.preset = dict(preset or {})

    def forward(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        check(isinstance(x, torch.Tensor), f"x must be a torch.Tensor, got {type(x).__name__}")
        check(
            tuple(x.shape[1:]) == self.sample_shape,
            f"x has shape {tuple(x.shape)} but this denoiser takes (B, {', '.join(map(str, self.sample_shape))}): "
            "reshape the batch or use a model trained at this size",
        )
        return self.denoise(x, as_sigma(sigma, x), **cond)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g}, sigma_data={self.sigma_data:g}, "
            f"sample_shape={self.sample_shape}"
        )


class EDMDenoiser(Denoiser):
    """EDM preconditioning: ``D(x, s) = c_skip x + c_out F(c_in x, c_noise)``.

    ``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``, ``c_in = 1 / sqrt(s^2 + sd^2)``,
    ``c_noise = time_scale * ln(s) / 4`` (``time_scale`` spreads the noise level over the range a
    diffusers sinusoidal time embedding expects; 250 maps sigma in [0.002, 80] to about [-390, 275]).

    Class-conditional networks (``num_classes`` set) take ``class_labels`` ``(B,)``; with ``null_label``
    set (a network trained with label dropout) a call without labels is the unconditional denoiser.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        sigma_min=0.002,
        sigma_max=80.0,
        sigma_data=0.5,
        sample_shape,
        time_scale: float = 250.0,
        num_classes: int | None = None,
        null_label: int | None = None,
        require_labels: bool = False,
        cond_frames: int = 0,
        preset: dict | None = None,
    ):
        super().__init__(
            sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data, sample_shape=sample_shape, preset=preset
        )
        self.net, self.time_scale, self.cond_frames = net, float(time_scale), int(cond_frames)
        self.num_classes, self.null_label, self.require_labels = num_classes, null_label, require_labels

    def denoise(self, x, sigma, class_labels=None, frames=None, **cond):
        sd2, s = self.sigma_data**2, append_dims(sigma, x.ndim)
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / (s**2 + sd2).sqrt()
        c_in = 1 / (s**2 + sd2).sqrt()
        c_noise = self.time_scale * sigma.log() / 4
        labels = label_cond(x, class_labels, self.num_classes, self.null_label, self.require_labels)
        inp = torch.cat([c_in * x, frame_cond(x, frames, self.cond_frames)], 1) if self.cond_frames else c_in * x
        check(bool(self.cond_frames) or frames is None, "this model is not frame-conditional: drop frames")
        check_cond_keys(self.net, cond, "class_labels" + (" and frames" if self.cond_frames else ""))
        f = _output(self.net(inp, c_noise, **labels, **cond))
        return c_skip * x + c_out * f.to(x.dtype)


class DenoiserWrapper(Denoiser):
    """Base of the denoisers built on one other denoiser ``inner`` (guidance, classifier-free guidance,
    a fixed condition, chunked calls, ...): it carries ``inner``'s ``sigma_min``, ``sigma_max``,
    ``sigma_data``, ``sample_shape`` and ``preset``, so the wrapper samples like the model it wraps.

    Args:
        inner: the wrapped denoiser (:class:`DenoiserLike`); a subclass keeps it under its own name.
        also: further attributes copied from ``inner`` where it has them (e.g. ``("config", "name")``).
    """

    def __init__(self, inner: DenoiserLike, *, also: Sequence[str] = ()):
        super().__init__(
            sigma_min=inner.sigma_min,
            sigma_max=inner.sigma_max,
            sigma_data=inner.sigma_data,
            sample_shape=inner.sample_shape,
            preset=getattr(inner, "preset", None),
        )
        for k in also:
            if hasattr(inner, k):
                setattr(self, k, getattr(inner, k))


class Conditioned(DenoiserWrapper):
    """A conditional denoiser with its condition fixed: ``D(x, s) = model(x, s, **cond)`` (a call's own
    keyword arguments override). One set-conditional network thereby serves as one denoiser per set."""

    def __init__(self, model, **cond):
        super().__init__(model)
        self.model, self.cond = model, cond

    def denoise(self, x, sigma, **cond):
        return self.model(x, sigma, **{**self.cond, **cond})


def condition(model, **cond) -> Conditioned:
    """``model`` with the keyword condition ``cond`` fixed, e.g. ``condition(load("mnist-cond"), class_labels=3)``."""
    return Conditioned(model, **cond)


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """VE noise levels of a discrete VP schedule: ``sigma_t = sqrt((1 - abar_t) / abar_t)``, increasing in t."""
    ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    return ((1 - ac) / ac).sqrt()


class DiscreteDenoiser(Denoiser):
    """A discrete-time DDPM-style network ``net(x_vp, t, **cond)`` as a denoiser.

    ``x_vp = x / sqrt(1 + sigma^2)`` is the variance-preserving input. The timestep ``t`` is the
    fractional index where ``log sigma`` falls in the schedule's ``log sigma_t`` table (linear
    interpolation; ``quantize=True`` rounds to the nearest integer step instead).
    ``prediction_type``: ``"epsilon"`` (``D = x - sigma * eps``) or ``"v_prediction"``
    (``D = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) * v``).
    """

    log_sigmas: torch.Tensor

    def __init__(
        self,
        net: nn.Module,
        alphas_cumprod,
        *,
        prediction_type: str = "epsilon",
        sample_shape,
        sigma_data: float = 0.5,
        quantize: bool = False,
        num_classes: int | None = None,
        null_label: int | None = None,
        require_labels: bool = False,
        preset: dict | None = None,
    ):
        check(
            prediction_type in ("epsilon", "v_prediction"),
            f"prediction_type {prediction_type!r}: use 'epsilon' or 'v_prediction'",
        )
        sig = sigmas_from_alphas_cumprod(alphas_cumprod)
        check(bool((sig[1:] > sig[:-1]).all()), "alphas_cumprod must decrease strictly with t")
        super().__init__(
            sigma_min=float(sig[0]),
            sigma_max=float(sig[-1]),
            sigma_data=sigma_data,
            sample_shape=sample_shape,
            preset=preset,
        )
        self.net, self.prediction_type, self.quantize = net, prediction_type, quantize
        self.num_classes, self.null_label, self.require_labels = num_classes, null_label, require_labels
        self.register_buffer("log_sigmas", sig.log().float(), persistent=False)

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of each ``sigma`` ``(B,)`` (clamped to the schedule's range)."""
        ls = self.log_sigmas.to(sigma.device)
        log_sigma = sigma.log().clamp(ls[0], ls[-1])
        hi = torch.searchsorted(ls, log_sigma.float().contiguous()).clamp(1, len(ls) - 1)
        lo = hi - 1
        w = (log_sigma.float() - ls[lo]) / (ls[hi] - ls[lo])
        t = lo.float() + w
        return t.round() if self.quantize else t

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`sigma_to_t` (log-linear interpolation of the table)."""
        t = torch.as_tensor(t, dtype=torch.float32).clamp(0, len(self.log_sigmas) - 1)
        lo = t.floor().long().clamp(max=len(self.log_sigmas) - 2)
        w = t - lo
        ls = self.log_sigmas.to(t.device)
        return ((1 - w) * ls[lo] + w * ls[lo + 1]).exp()

    def denoise(self, x, sigma, class_labels=None, **cond):
        s = append_dims(sigma, x.ndim)
        x_vp = x / (1 + s**2).sqrt()
        labels = label_cond(x, class_labels, self.num_classes, self.null_label, self.require_labels)
        check_cond_keys(self.net, cond, "class_labels")
        out = _output(self.net(x_vp, self.sigma_to_t(sigma), **labels, **cond)).to(x.dtype)
        if self.prediction_type == "epsilon":
            return x - s * out
        return x / (1 + s**2) - s / (1 + s**2).sqrt() * out


class ScoreDenoiser(Denoiser):
    """A score network ``score(x, sigma, **cond) ~ grad log p_sigma(x)`` as ``D = x + sigma^2 * score``."""

    def __init__(
        self,
        score: Callable,
        *,
        sigma_min: float,
        sigma_max: float,
        sample_shape,
        sigma_data: float = 0.5,
        preset: dict | None = None,
    ):
        super().__init__(
            sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data, sample_shape=sample_shape, preset=preset
        )
        self.score = score

    def denoise(self, x, sigma, **cond):
        return x + append_dims(sigma, x.ndim) ** 2 * self.score(x, sigma, **cond)


def score_of(denoiser: Callable, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
    """The score ``(D(x, sigma) - x) / sigma^2`` of a denoiser."""
    s = as_sigma(sigma, x)
    return (denoiser(x, s, **cond) - x) / append_dims(s, x.ndim) ** 2
