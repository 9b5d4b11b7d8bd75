"""Samplers and noise schedules with k-diffusion's signatures and semantics.

Every sampler is ``sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None, ...)``:
``model`` is a denoiser ``D(x, sigma, **extra_args)``, ``x`` the initial noise already scaled by
``sigmas[0]``, ``sigmas`` a decreasing 1-D tensor ending in 0. ``callback`` receives a dict with keys
``x, i, sigma, sigma_hat, denoised`` once per step. Stochastic samplers take
``noise_sampler(sigma, sigma_next) -> noise like x`` (default: ``torch.randn_like``).

The update rules follow the papers: Euler / Heun with churn (Karras et al. 2022, Algorithm 2),
Euler-ancestral (k-diffusion's ancestral step), DDIM (Song et al. 2021, Eq. 12, written in sigma),
DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), predictor-corrector with Langevin correctors
(Song et al. 2021, score SDE, Algorithms 4-5 for VE).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
from tqdm.auto import trange

from .denoisers import DenoiserLike, append_dims
from .errors import SteerdiffError, check

SAMPLERS = ("euler", "heun", "euler_ancestral", "ddim", "dpmpp_2m", "pc")

# What a sampler calls: ``model(x, sigma * ones(B), **extra_args) -> denoised`` (any denoiser, or k-diffusion's wrappers)
Model = Callable[..., torch.Tensor]
# ``callback({"x", "i", "sigma", "sigma_hat", "denoised"})`` once per step
Callback = Callable[[dict], Any]
# ``noise_sampler(sigma, sigma_next) -> standard normal noise like x``
NoiseSampler = Callable[..., torch.Tensor]


# ---------------------------------------------------------------------------------------- schedules
def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def _check_range(n: int, sigma_min: float, sigma_max: float) -> None:
    check(int(n) == n and n >= 1, f"number of steps must be a positive integer, got {n}")
    check(
        0 < sigma_min < sigma_max and math.isfinite(sigma_max),
        f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}",
    )


def get_sigmas_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Karras et al. (2022) Eq. 5: ``n`` levels from ``sigma_max`` to ``sigma_min`` evenly spaced in
    ``sigma**(1/rho)``, then a final 0 (``n + 1`` values, float32)."""
    _check_range(n, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return append_zero((hi + ramp * (lo - hi)) ** rho).float().to(device)


def get_sigmas_ve(n: int, sigma_min: float, sigma_max: float, device: str | torch.device = "cpu") -> torch.Tensor:
    """The VE-SDE's geometric schedule (Song et al. 2021): ``n`` levels evenly spaced in ``log sigma``, then 0."""
    _check_range(n, sigma_min, sigma_max)
    return (
        append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp())
        .float()
        .to(device)
    )


def sigmas_from_scheduler(
    scheduler: Any, num_inference_steps: int | None = None, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The noise levels a diffusers scheduler visits, as VE sigmas followed by 0.

    For EDM-style schedulers (``scheduler.sigmas`` already VE) the scheduler's sigmas are used; for
    discrete ones (DDPM/DDIM/...) each timestep ``t`` becomes ``sqrt((1 - abar_t) / abar_t)``.
    """
    if num_inference_steps is not None:
        scheduler.set_timesteps(num_inference_steps)
    check(
        getattr(scheduler, "timesteps", None) is not None,
        "the scheduler has no timesteps: pass num_inference_steps or call scheduler.set_timesteps first",
    )
    if hasattr(scheduler, "alphas_cumprod") and not hasattr(scheduler, "precondition_inputs"):
        ac = scheduler.alphas_cumprod.double()
        t = scheduler.timesteps.long()
        return append_zero(((1 - ac[t]) / ac[t]).sqrt()).float().to(device)
    sig = torch.as_tensor(scheduler.sigmas, dtype=torch.float64).flatten()
    sig = sig[:-1] if sig[-1] == 0 else sig
    return append_zero(sig).float().to(device)


def check_sigmas(sigmas) -> torch.Tensor:
    """``sigmas`` as a 1-D tensor, checked: finite, non-negative, non-increasing, at least 2 values."""
    check(isinstance(sigmas, torch.Tensor), f"sigmas must be a 1-D torch.Tensor, got {type(sigmas).__name__}")
    check(
        sigmas.ndim == 1 and len(sigmas) >= 2,
        f"sigmas must be 1-D with at least 2 values, got shape {tuple(sigmas.shape)}",
    )
    check(bool(torch.isfinite(sigmas).all()), "sigmas contain inf or nan: build them with get_sigmas_karras")
    check(
        bool((sigmas >= 0).all()),
        f"sigmas must be non-negative (min {float(sigmas.min()):g}): noise levels are standard deviations",
    )
    check(
        bool((sigmas[1:] <= sigmas[:-1]).all()),
        "sigmas must decrease from the highest noise level to the lowest (e.g. get_sigmas_karras(...)); sort them descending",
    )
    return sigmas


def _check_finite(x: torch.Tensor, i: int, sigma) -> None:
    if not bool(torch.isfinite(x).all()):
        raise SteerdiffError(
            f"the sampler produced non-finite values at step {i} (sigma={float(sigma):.4g}): "
            "lower the guidance strength, use more steps, or check the model's input range"
        )


def default_noise_sampler(x: torch.Tensor):
    return lambda sigma=None, sigma_next=None: torch.randn_like(x)


def _prepare(x, sigmas, extra_args, noise_sampler):
    check(isinstance(x, torch.Tensor), f"x must be a torch.Tensor, got {type(x).__name__}")
    check_sigmas(sigmas)
    check(bool(torch.isfinite(x).all()), "the initial x contains inf or nan")
    return (extra_args or {}), x.new_ones([x.shape[0]]), (noise_sampler or default_noise_sampler(x))


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's derivative ``dx/dsigma = (x - D(x)) / sigma``."""
    return (x - denoised) / sigma


def get_ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """Split a step ``sigma_from -> sigma_to`` into a deterministic step to ``sigma_down`` and fresh
    noise of scale ``sigma_up`` (``sigma_down^2 + sigma_up^2 = sigma_to^2``); ``eta`` scales the noise.
    Tensors give tensors; plain floats give floats (the h-space edit's stochastic steps use it so)."""
    if not eta:
        return sigma_to, 0.0 * sigma_to
    sigma_up = eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
    if isinstance(sigma_to, torch.Tensor):
        sigma_up = torch.minimum(sigma_to, sigma_up)
    else:  # plain floats stay floats (float64 arithmetic)
        sigma_up = min(sigma_to, sigma_up)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


# ---------------------------------------------------------------------------------------- samplers
def _churn(x, sigma, n, s_churn, s_tmin, s_tmax, s_noise, noise_sampler, sigma_next):
    """EDM's stochastic churn: raise the noise level to ``sigma_hat = sigma (1 + gamma)`` by adding noise."""
    gamma = min(s_churn / n, 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0:
        x = x + noise_sampler(sigma, sigma_next) * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
    return x, sigma_hat


def _ode_with_churn(
    model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise, noise_sampler, heun: bool
):
    """Euler (``heun=False``) or Heun steps on the probability-flow ODE after EDM's churn."""
    extra_args, s_in, noise_sampler = _prepare(x, sigmas, extra_args, noise_sampler)
    n = len(sigmas) - 1
    for i in trange(n, disable=disable, desc="heun" if heun else "euler"):
        x, sigma_hat = _churn(x, sigmas[i], n, s_churn, s_tmin, s_tmax, s_noise, noise_sampler, sigmas[i + 1])
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        dt = sigmas[i + 1] - sigma_hat
        if not heun or sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
        _check_finite(x, i, sigmas[i])
    return x


@torch.no_grad()
def sample_euler(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """Euler steps on the probability-flow ODE, with optional EDM churn."""
    return _ode_with_churn(
        model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise, noise_sampler, heun=False
    )


@torch.no_grad()
def sample_heun(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """EDM's Algorithm 2: Heun's second-order method with churn; Euler on the last step (to sigma 0)."""
    return _ode_with_churn(
        model, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise, noise_sampler, heun=True
    )


@torch.no_grad()
def sample_euler_ancestral(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """Ancestral sampling with Euler steps: a deterministic step to ``sigma_down``, then fresh noise ``sigma_up``."""
    extra_args, s_in, noise_sampler = _prepare(x, sigmas, extra_args, noise_sampler)
    for i in trange(len(sigmas) - 1, disable=disable, desc="euler_ancestral"):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        _check_finite(x, i, sigmas[i])
    return x


@torch.no_grad()
def sample_ddim(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    eta: float = 0.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, Eq. 12) written for VE sigmas.

    With ``abar = 1 / (1 + sigma^2)``, DDIM's noise ``sigma_eta^2 = eta^2 (1 - abar') / (1 - abar) (1 - abar / abar')``
    becomes ``sigma_up = sigma_eta / sqrt(abar')`` at VE scale, and the update is
    ``x' = x0 + sqrt(sigma'^2 - sigma_up^2) eps + sigma_up z`` with ``eps = (x - x0) / sigma``.
    ``eta=0`` is deterministic DDIM (the same as Euler on the probability-flow ODE).
    """
    extra_args, s_in, noise_sampler = _prepare(x, sigmas, extra_args, noise_sampler)
    for i in trange(len(sigmas) - 1, disable=disable, desc="ddim"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        eps = (x - denoised) / sigma
        a, a_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        var_eta = eta**2 * (1 - a_next) / (1 - a) * (1 - a / a_next)
        sigma_up = torch.minimum((var_eta / a_next).sqrt(), sigma_next)
        x = denoised + (sigma_next**2 - sigma_up**2).clamp(min=0).sqrt() * eps
        if sigma_next > 0 and eta:
            x = x + noise_sampler(sigma, sigma_next) * s_noise * sigma_up
        _check_finite(x, i, sigma)
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M): multistep second order in ``t = -log sigma``, first order on the first and last step."""
    extra_args, s_in, _ = _prepare(x, sigmas, extra_args, None)
    old_denoised: torch.Tensor | None = None
    h_last: torch.Tensor | None = None
    for i in trange(len(sigmas) - 1, disable=disable, desc="dpmpp_2m"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        if sigma_next == 0:
            x = denoised
        else:
            h = sigma.log() - sigma_next.log()
            d = denoised
            if old_denoised is not None and h_last is not None:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old_denoised
            x = (sigma_next / sigma) * x - torch.expm1(-h) * d
            h_last = h
        old_denoised = denoised
        _check_finite(x, i, sigma)
    return x


PC_STEP_SIZES = ("sigma", "batch", "sample")


def langevin_step_size(
    score: torch.Tensor, z: torch.Tensor, sigma: torch.Tensor, snr: float, rule: str
) -> torch.Tensor:
    """Langevin step size ``2 (snr ||z|| / ||score||)^2`` (score SDE), broadcastable against ``x``.

    ``rule="batch"``: norms averaged over the batch, as in the score-SDE and compositional-sculpting
    code (couples the samples through one step size). ``"sample"``: per-sample norms (unstable in
    low dimensions, where a score can vanish). ``"sigma"``: ``2 (snr sigma)^2``, the high-dimensional
    limit of the rule (``||score|| ~ ||z|| / sigma``), per sample and robust: the default.
    """
    check(rule in PC_STEP_SIZES, f"step_size {rule!r}: use one of {', '.join(PC_STEP_SIZES)}")
    if rule == "sigma":
        return append_dims((2 * (snr * sigma) ** 2).expand(score.shape[0]), score.ndim)
    norm_z, norm_s = z.flatten(1).norm(dim=1), score.flatten(1).norm(dim=1)
    if rule == "batch":
        norm_z, norm_s = norm_z.mean().expand(score.shape[0]), norm_s.mean().expand(score.shape[0])
    return append_dims(2 * (snr * norm_z / norm_s.clamp(min=1e-12)) ** 2, score.ndim)


PLAN_KINDS = ("langevin", "repulsive", "repulsive_no_noise", "random")

# The term of a "repulsive" plan step whose entry names none: a zero-argument factory, registered
# by steerdiff.particles (Repulsion) when it is imported, since core imports nothing above it.
DEFAULT_CORRECTOR_TERM: Callable[[], Any] | None = None


def _default_corrector_term() -> Any:
    factory = DEFAULT_CORRECTOR_TERM
    if factory is None:
        raise SteerdiffError(
            "a repulsive corrector step needs a guidance term: give its plan entry a 'term' "
            "(e.g. steerdiff.Repulsion()) or import steerdiff.particles"
        )
    return factory()


def parse_plan(text: str) -> list[dict]:
    """A corrector plan from its command-line form ``KIND:LO-HI[:COUNT],...``, e.g.
    ``"repulsive:1-20:2,langevin:0.05-1"`` (``COUNT`` defaults to 1)."""
    plan = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        parts = item.split(":")
        try:
            kind, (lo, hi), count = parts[0], map(float, parts[1].split("-")), int(parts[2]) if len(parts) > 2 else 1
        except (IndexError, ValueError):
            raise SteerdiffError(
                f"corrector plan entry {item!r}: use KIND:LO-HI[:COUNT], e.g. repulsive:1-20:2"
            ) from None
        plan.append({"kind": kind, "window": (lo, hi), "steps": count})
    return plan


def _plan_steps(plan, sigma: float):
    for entry in plan or ():
        lo, hi = entry["window"]
        if lo <= sigma <= hi:
            yield entry["kind"], int(entry.get("steps", 1)), entry.get("term")


@torch.no_grad()
def sample_pc(
    model: Model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback | None = None,
    disable: bool | None = None,
    snr: float = 0.16,
    n_corrector: int = 1,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
    step_size: str = "sigma",
    plan: list[dict] | None = None,
) -> torch.Tensor:
    """Predictor-corrector (score SDE, VE): ``n_corrector`` Langevin steps at each level, then a
    reverse-diffusion predictor step ``x + (sigma^2 - sigma'^2) score + sqrt(sigma^2 - sigma'^2) z``.
    The Langevin step size follows ``step_size`` (see :func:`langevin_step_size`). The last step
    to sigma 0 returns the denoised mean (no noise), as score SDE's final denoising does.

    ``plan`` (the repulsion project's steps API) adds corrector steps at chosen noise levels: a list of
    ``{"kind", "window": (lo, hi), "steps": k, "term": optional guidance term}``; at each level inside
    a window, ``k`` extra steps of ``kind``: ``langevin`` (a Langevin step on the model's score),
    ``repulsive`` (Langevin on the score plus the repulsion term, default :class:`~steerdiff.Repulsion` through ``DEFAULT_CORRECTOR_TERM``),
    ``repulsive_no_noise`` (the repulsion force alone, no noise), ``random`` (noise alone,
    ``sqrt(2 eps) z``). :func:`parse_plan` reads the command-line form."""
    extra_args, s_in, noise_sampler = _prepare(x, sigmas, extra_args, noise_sampler)
    check(
        int(n_corrector) == n_corrector and n_corrector >= 0,
        f"n_corrector must be a non-negative integer, got {n_corrector}",
    )
    for entry in plan or ():
        check(
            entry.get("kind") in PLAN_KINDS,
            f"corrector plan kind {entry.get('kind')!r}: use one of {', '.join(PLAN_KINDS)}",
        )
    repulsed = {}

    def corrector(kind, sigma, term):
        nonlocal x
        z = noise_sampler(sigma, sigma)
        base = (model(x, sigma * s_in, **extra_args) - x) / sigma**2
        if kind in ("repulsive", "repulsive_no_noise"):
            from .guidance import guided

            key = id(term)
            if key not in repulsed:
                repulsed[key] = guided(
                    cast("DenoiserLike", model), term if term is not None else _default_corrector_term()
                )
            full = (repulsed[key](x, sigma * s_in, **extra_args) - x) / sigma**2
            drift = full if kind == "repulsive" else full - base
        else:
            drift = base if kind == "langevin" else torch.zeros_like(x)
        step = langevin_step_size(base, z, sigma, snr, step_size)
        x = x + step * drift
        if kind != "repulsive_no_noise":
            x = x + (2 * step).sqrt() * z * s_noise

    for i in trange(len(sigmas) - 1, disable=disable, desc="pc"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        for _ in range(int(n_corrector)):
            corrector("langevin", sigma, None)
        for kind, count, term in _plan_steps(plan, float(sigma)):
            for _ in range(count):
                corrector(kind, sigma, term)
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        if sigma_next == 0:
            x = denoised
        else:
            x = x + (sigma**2 - sigma_next**2) * (denoised - x) / sigma**2
            x = x + noise_sampler(sigma, sigma_next) * s_noise * (sigma**2 - sigma_next**2).sqrt()
        _check_finite(x, i, sigma)
    return x


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function for a name in :data:`SAMPLERS`."""
    check(name in SAMPLERS, f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    return globals()[f"sample_{name}"]
