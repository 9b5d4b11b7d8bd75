"""Diverse batches at a fixed condition: classifier-free guidance, guidance in a sigma interval, CADS.

All three are denoiser wrappers around a class-conditional network trained with label dropout (a
``null_label`` that makes the same network the unconditional denoiser, such as ``mnist-cond``):

- :func:`cfg` (Ho & Salimans 2022): ``D_u + s (D_c - D_u)``, ``D_u`` the network under its null
  label. Both halves run in one forward pass on the doubled batch. ``s = 1`` is the conditional
  denoiser exactly (one call).
- ``interval=(lo, hi)`` (Kynkäänniemi et al. 2024): guidance only for ``sigma`` in ``(lo, hi]``;
  elsewhere the plain conditional denoiser (one network call instead of two).
- :func:`cads` (Sadat et al. 2024, condition-annealed sampling): Gaussian noise on the *class
  embedding vector*, strong at high noise and annealed away toward the data:
  ``y' = sqrt(gamma) y + noise_scale sqrt(1 - gamma) n``, rescaled to ``y``'s own mean and std per
  sample and mixed ``psi y'_rescaled + (1 - psi) y'``. ``gamma(t)`` is 1 for ``t <= tau1``, 0 for
  ``t >= tau2`` and linear between, where ``t`` in ``[0, 1]`` is the position of ``log sigma`` in the
  model's ``[log sigma_min, log sigma_max]`` (0 at the data end, 1 at the noise end). The embedding
  is perturbed by a forward hook on the network's ``class_embedding`` module (diffusers
  ``UNet2DModel(num_class_embeds=...)``), only for rows that carry a real label, so the null-label
  (unconditional) half of CFG is untouched. ``noise_scale = 0`` is :func:`cfg` exactly.
  :func:`cads_pipeline` does the same to a Stable Diffusion pipeline's prompt embeddings.

``--method diverse`` is the model's recorded best for a request (``config.json`` ->
``preset.diverse``, :func:`diverse_preset`): a class label under CFG, a class label at scale 1, or
no label. :func:`diverse_sample` draws it; besides the methods above it may name a particle term
(``pg``, ``repulsive``, ``spell``, ``dpp``; SPELL and DPP from :mod:`steerdiff.diversity`) or a
selection from iid draws (:func:`cover_sample`, ``stratified``). An unconditional request never
passes a class label to the network.
"""

from __future__ import annotations

import math

import torch

from ..core.denoisers import DenoiserWrapper, append_dims
from ..core.errors import check
from ..core.seeding import stream_seed


def _null_label(model) -> int:
    null = getattr(model, "null_label", None)
    check(
        getattr(model, "num_classes", None) is not None and null is not None,
        f"classifier-free guidance needs a class-conditional model trained with label dropout (a null label, "
        f"e.g. 'mnist-cond'); {getattr(model, 'name', type(model).__name__)} has none",
    )
    return int(null)


def check_interval(model, interval) -> tuple[float, float] | None:
    """``interval`` as ``(lo, hi)`` floats, checked against the model's sigma range (``None`` passes)."""
    if interval is None:
        return None
    check(len(interval) == 2, f"interval must be (lo, hi) sigmas, got {interval}")
    lo, hi = float(interval[0]), float(interval[1])
    check(0 <= lo < hi, f"interval ({lo:g}, {hi:g}): need 0 <= lo < hi")
    check(
        hi > model.sigma_min and lo < model.sigma_max,
        f"interval ({lo:g}, {hi:g}) lies outside the model's sigma range [{model.sigma_min:g}, {model.sigma_max:g}]: "
        "guidance would never act",
    )
    return lo, hi


class CFG(DenoiserWrapper):
    """Classifier-free guidance, optionally in a sigma interval, optionally with CADS (see module
    docstring). Call it like the model: ``D(x, sigma, class_labels=(B,) or int)``; without labels it is
    the model's unconditional denoiser (nothing to guide)."""

    def __init__(self, model, scale: float = 1.0, interval=None):
        super().__init__(model, also=("config", "name"))
        self.null_label = _null_label(model)
        check(math.isfinite(scale) and scale >= 0, f"cfg scale must be a number >= 0, got {scale}")
        self.model, self.scale, self.interval = model, float(scale), check_interval(model, interval)
        self.num_classes = model.num_classes

    def _guiding(self, sigma: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: where guidance acts (every sample without an interval)."""
        if self.interval is None:
            return torch.ones_like(sigma, dtype=torch.bool)
        lo, hi = self.interval
        return (sigma > lo) & (sigma <= hi)

    def _call(self, x, sigma, labels, **cond):
        return self.model(x, sigma, class_labels=labels, **cond)

    def denoise(self, x, sigma, class_labels=None, **cond):
        if class_labels is None:
            return self._call(x, sigma, None, **cond)
        labels = torch.as_tensor(class_labels, device=x.device, dtype=torch.long)
        labels = labels.expand(x.shape[0]) if labels.ndim == 0 else labels
        on = self._guiding(sigma)
        if self.scale == 1.0 or not bool(on.any()):
            return self._call(x, sigma, labels, **cond)  # the conditional denoiser: one call
        b = x.shape[0]
        both = self._call(
            torch.cat([x, x]),
            torch.cat([sigma, sigma]),
            torch.cat([labels, torch.full_like(labels, self.null_label)]),
            **_doubled(cond, b),
        )
        d_c, d_u = both[:b], both[b:]
        out = d_u + self.scale * (d_c - d_u)
        return out if bool(on.all()) else torch.where(append_dims(on, x.ndim), out, d_c)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}, interval={self.interval}"


def _doubled(cond: dict, b: int) -> dict:
    """Per-sample entries of ``cond`` (leading dim ``b``) repeated for the doubled batch; others shared."""
    return {
        k: (torch.cat([v, v]) if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == b else v)
        for k, v in cond.items()
    }


def cfg(model, scale: float = 1.0, interval=None) -> CFG:
    """Classifier-free guidance ``D_u + scale (D_c - D_u)`` of a model with a null label.

    Args:
        model: class-conditional denoiser with ``num_classes`` and ``null_label`` (e.g. ``load("mnist-cond")``).
        scale: guidance scale ``s``; 1 is the conditional denoiser exactly, 0 the unconditional one.
        interval: ``(lo, hi)`` sigmas; guidance acts for ``lo < sigma <= hi`` only, the plain
            conditional denoiser elsewhere (one network call there). Must overlap the model's range.

    Returns:
        A denoiser ``D(x (B, *sample_shape), sigma, class_labels=(B,)) -> (B, *sample_shape)``.
    """
    return CFG(model, scale, interval)


def cads_gamma(t, tau1: float, tau2: float) -> float:
    """CADS's annealing ``gamma(t)``: 1 for ``t <= tau1``, 0 for ``t >= tau2``, linear between."""
    if t <= tau1:
        return 1.0
    if t >= tau2:
        return 0.0
    return (tau2 - t) / (tau2 - tau1)


def cads_perturb(y: torch.Tensor, gamma: float, noise: torch.Tensor, noise_scale: float, psi: float) -> torch.Tensor:
    """CADS on condition embeddings ``y`` ``(B, ...)``: ``sqrt(gamma) y + noise_scale sqrt(1 - gamma) noise``,
    rescaled to each row's original mean and std over its other dims, mixed with weight ``psi``."""
    y_hat = gamma**0.5 * y + noise_scale * (1 - gamma) ** 0.5 * noise
    dims = tuple(range(1, y.ndim))
    mu, sd = y.mean(dims, keepdim=True), y.std(dims, keepdim=True)
    mu_h, sd_h = y_hat.mean(dims, keepdim=True), y_hat.std(dims, keepdim=True).clamp(min=1e-12)
    rescaled = (y_hat - mu_h) / sd_h * sd + mu
    return psi * rescaled + (1 - psi) * y_hat


def _class_embedding(model) -> torch.nn.Module:
    net = getattr(model, "net", None)
    emb = getattr(net, "class_embedding", None)
    check(
        isinstance(emb, torch.nn.Module),
        f"CADS perturbs the condition embedding, and {getattr(model, 'name', type(model).__name__)} has none: use a "
        "class-conditional diffusers UNet2DModel model (e.g. 'mnist-cond'), or cads_pipeline for Stable Diffusion",
    )
    return emb


class CADS(CFG):
    """Condition-annealed sampling on a class embedding, with (interval) CFG on top (see module docstring)."""

    def __init__(
        self,
        model,
        scale: float = 1.0,
        interval=None,
        *,
        noise_scale: float = 0.25,
        tau: tuple[float, float] = (0.6, 0.9),
        psi: float = 1.0,
        seed: int = 0,
    ):
        super().__init__(model, scale, interval)
        self._emb = _class_embedding(model)
        check(0 <= tau[0] < tau[1] <= 1, f"CADS tau must be 0 <= tau1 < tau2 <= 1, got {tau}")
        check(
            math.isfinite(noise_scale) and noise_scale >= 0 and 0 <= psi <= 1,
            f"CADS needs a finite noise_scale >= 0 and 0 <= psi <= 1, got {noise_scale}, {psi}",
        )
        self.noise_scale, self.tau, self.psi, self.seed = (
            float(noise_scale),
            (float(tau[0]), float(tau[1])),
            float(psi),
            int(seed),
        )

    def t_of(self, sigma: float) -> float:
        """Position of ``sigma`` in the model's log-sigma range: 0 at ``sigma_min``, 1 at ``sigma_max``."""
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return min(1.0, max(0.0, (math.log(max(sigma, 1e-20)) - lo) / (hi - lo)))

    def _call(self, x, sigma, labels, **cond):
        s = float(sigma.max())
        gamma = cads_gamma(self.t_of(s), *self.tau)
        if labels is None or self.noise_scale == 0 or gamma == 1.0:
            return self.model(x, sigma, class_labels=labels, **cond)
        keep = labels != self.null_label  # perturb real labels only, never the null label

        def hook(module, inputs, y):
            g = torch.Generator().manual_seed(stream_seed("cads", self.seed, s))
            n = torch.randn(y.shape, generator=g).to(y)
            return torch.where(append_dims(keep, y.ndim), cads_perturb(y, gamma, n, self.noise_scale, self.psi), y)

        handle = self._emb.register_forward_hook(hook)
        try:
            return self.model(x, sigma, class_labels=labels, **cond)
        finally:
            handle.remove()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, noise_scale={self.noise_scale:g}, tau={self.tau}, psi={self.psi:g}"


def cads(
    model,
    scale: float = 1.0,
    interval=None,
    *,
    noise_scale: float = 0.25,
    tau=(0.6, 0.9),
    psi: float = 1.0,
    seed: int = 0,
) -> CADS:
    """CADS (condition-annealed noise on the class embedding) under classifier-free guidance.

    Args:
        model: class-conditional denoiser whose network has a ``class_embedding`` module and a null label.
        scale, interval: as for :func:`cfg`.
        noise_scale: ``s`` of the embedding noise; 0 is :func:`cfg` exactly.
        tau: ``(tau1, tau2)`` in ``[0, 1]`` along the log-sigma range: the embedding is clean below
            ``tau1``, pure (rescaled) noise above ``tau2``.
        psi: mix of the rescaled (1) and raw (0) perturbed embedding.
        seed: seeds the embedding noise (a stream per noise level).

    Returns:
        A denoiser ``D(x (B, *sample_shape), sigma, class_labels=(B,)) -> (B, *sample_shape)``.
    """
    return CADS(model, scale, interval, noise_scale=noise_scale, tau=tau, psi=psi, seed=seed)


class _CADSPromptNet(torch.nn.Module):
    """A pipeline's CFG network with CADS noise on its prompt embeddings ``(P, L, D)`` at each call."""

    def __init__(self, den, inner, noise_scale: float, tau, psi: float, seed: int):
        super().__init__()
        self.den, self.inner = [den], inner  # a list: keep the denoiser out of the module tree
        self.noise_scale, self.tau, self.psi, self.seed = noise_scale, tau, psi, seed
        self.clean = inner.cond

    def forward(self, x, t):
        den = self.den[0]
        sigma = float(den.t_to_sigma(t.reshape(-1)[:1].float().cpu())[0])
        lo, hi = math.log(den.sigma_min), math.log(den.sigma_max)
        gamma = cads_gamma(min(1.0, max(0.0, (math.log(sigma) - lo) / (hi - lo))), *self.tau)
        y = self.clean
        if gamma < 1.0 and self.noise_scale > 0:
            g = torch.Generator().manual_seed(stream_seed("cads-prompt", self.seed, sigma))
            y = cads_perturb(y, gamma, torch.randn(y.shape, generator=g).to(y), self.noise_scale, self.psi)
        self.inner.cond = y
        try:
            return self.inner(x, t)
        finally:
            self.inner.cond = self.clean


def cads_pipeline(den, *, noise_scale: float = 0.25, tau=(0.6, 0.9), psi: float = 1.0, seed: int = 0):
    """CADS on the prompt embeddings of a :func:`steerdiff.pipelines.from_pipeline` denoiser (changed in
    place and returned): the conditional prompt embeddings ``(P, L, D)`` get the annealed noise; the
    unconditional (negative-prompt) half is untouched. Args as for :func:`cads`."""
    inner = getattr(den, "net", None)
    check(
        inner is not None and hasattr(inner, "cond") and hasattr(den, "t_to_sigma"),
        "cads_pipeline takes a denoiser made by steerdiff.pipelines.from_pipeline",
    )
    check(0 <= tau[0] < tau[1] <= 1, f"CADS tau must be 0 <= tau1 < tau2 <= 1, got {tau}")
    den.net = _CADSPromptNet(den, inner, float(noise_scale), (float(tau[0]), float(tau[1])), float(psi), int(seed))
    return den


# --method diverse ---------------------------------------------------------------------------------

# used where a model records no choice of its own (mnist's measured choices are in its config.json)
DIVERSE_DEFAULT = {
    "class": {"method": "spell"},
    "class-unguided": {"method": "dpp"},
    "unconditional": {"method": "iid"},
}


def diverse_preset(model) -> dict:
    """The model's recorded ``--method diverse`` choices (``config.json`` -> ``preset.diverse``): a dict
    with entries ``"class"`` (a class label under classifier-free guidance, scale > 1),
    ``"class-unguided"`` (a class label at scale <= 1) and ``"unconditional"`` (no label), each
    ``{"method": ..., **options}`` (:func:`fixed_condition`'s methods and options, or ``"cover"`` /
    ``"stratified"`` with ``candidates`` and ``embedding``; ``init_noise``: the batch's initial noise,
    as ``--init-noise`` takes it)."""
    preset = dict(DIVERSE_DEFAULT)
    preset.update((getattr(model, "preset", {}) or {}).get("diverse", {}))
    return preset


def diverse_entry(model, labelled: bool, scale: float | None) -> dict:
    """The :func:`diverse_preset` entry for a request (a copy)."""
    key = "unconditional" if not labelled else ("class" if (scale or 1.0) > 1.0 else "class-unguided")
    return dict(diverse_preset(model)[key])


def diverse_noise(model, labelled: bool, scale: float | None):
    """The ``initial_noise`` :func:`diverse_entry` records for a request (``init_noise``), or None."""
    from .noise import initial_noise

    return initial_noise(diverse_entry(model, labelled, scale).get("init_noise"), model.sample_shape)


def fixed_condition(
    model,
    method: str,
    *,
    scale: float = 1.0,
    interval=None,
    seed: int = 0,
    options: dict | None = None,
    labelled: bool = True,
):
    """``(denoiser, guidance terms)`` of a fixed-condition method on ``model``.

    Args:
        model: the denoiser (class-conditional with a null label for cfg / interval / cads).
        method: ``iid`` (the model, or :func:`cfg` when ``labelled`` and ``scale != 1``), ``cfg``,
            ``interval``, ``cads``, ``pg``, ``repulsive``, ``spell``, ``dpp``, ``entropy``, ``herding``
            (:class:`~steerdiff.diversity.HerdingGuidance`; a recorded entry carries its
            ``reference_features``).
        scale, interval: classifier-free guidance (ignored without a label).
        seed: seeds CADS's embedding noise.
        options: the method's own options (CADS ``noise_scale`` / ``tau`` / ``psi``; the particle
            term's keyword arguments; ``interval`` overrides; ``plus``: ``{"method": "pg" | "repulsive" |
            "spell" | "dpp", **options}`` adds that particle term on top; ``scale`` overrides the guidance
            scale, so a recorded method can carry its own CFG, e.g. in an interval, at a request's scale 1).
        labelled: whether the request carries a class label.
    """
    opts = dict(options or {})
    interval = opts.pop("interval", interval)
    scale = float(opts.pop("scale", scale))
    plus = opts.pop("plus", None)  # a particle term on top: {"method": "repulsive", **its options}
    if method == "interval":
        check(interval is not None, "--method interval needs --cfg-interval LO,HI (or a recorded interval)")
    if not labelled:
        check(
            method not in ("cfg", "interval", "cads"),
            f"--method {method} guides toward a class: give --class-label (or use --method diverse)",
        )
        den = model
    elif method == "cads":
        den = cads(
            model, scale, interval, seed=seed, **{k: opts.pop(k) for k in ("noise_scale", "tau", "psi") if k in opts}
        )
    elif scale != 1.0 or interval is not None or method in ("cfg", "interval"):
        den = cfg(model, scale, interval)
    else:
        den = model
    terms = []
    if method in ("pg", "repulsive"):
        from .pg import ParticleGuidance, Repulsion

        terms = [(ParticleGuidance if method == "pg" else Repulsion)(**opts)]
    elif method in ("spell", "dpp", "entropy", "herding"):
        terms = [_diversity_term(method, opts)]
    else:
        check(not opts or method in ("cads",), f"--method {method}: unexpected options {sorted(opts)}")
    if plus:
        plus = dict(plus)
        terms = terms + fixed_condition(model, plus.pop("method"), options=plus, labelled=False)[1]
    return den, terms


def _diversity_term(method: str, opts: dict):
    """SPELL (sparse repellency) or the DPP log-det potential from :mod:`steerdiff.diversity`."""
    try:
        from . import diversity
    except ImportError:
        from ..core.errors import SteerdiffError

        raise SteerdiffError(f"--method {method} needs steerdiff.diversity, which this installation lacks") from None
    return diversity.term(method, **opts)


def diverse_setup(model, *, labelled: bool, scale: float | None = None, interval=None, seed: int = 0):
    """``(denoiser, guidance terms, chosen method's name)`` of ``--method diverse`` for ``model``: the recorded
    choice for the request (:func:`diverse_entry`): ``scale`` is the user's guidance scale (default 1),
    a user's ``interval`` overrides a recorded one. An unconditional request never passes a class
    label to the network."""
    entry = diverse_entry(model, labelled, scale)
    entry.pop("init_noise", None)  # the starting points, not the method: diverse_sample and draw apply it
    method = entry.pop("method")
    if method in ("stratified", "cover"):  # selection from iid draws: see diverse_sample
        entry = {k: v for k, v in entry.items() if k not in ("candidates", "embedding")}
    if interval is None:
        interval = entry.pop("interval", None)
    else:
        entry.pop("interval", None)
    scale = 1.0 if scale is None else scale
    den, terms = fixed_condition(
        model,
        "iid" if method in ("stratified", "cover") else method,
        scale=scale,
        interval=interval,
        seed=seed,
        options=entry,
        labelled=labelled,
    )
    return den, terms, method


def cover_sample(
    denoiser,
    n: int,
    *,
    candidates: int = 3,
    embedding="classifier-probs",
    seed: int,
    cond: dict | None = None,
    **sample_kwargs,
) -> torch.Tensor:
    """``n`` samples ``(n, *sample_shape)`` that cover as many modes as ``candidates * n`` iid draws hold.

    Draws ``candidates * n`` iid samples (:func:`steerdiff.sample`, streams ``0 ..``), labels each by
    the argmax of ``embedding`` on the clean sample (default: the noise-conditional classifier's
    class probabilities), then keeps, in draw order, the first draw of every label not yet kept, and
    fills the rest in draw order. Every kept sample is one of the model's own draws; the batch's
    labels are as distinct as the pool allows. Cost: ``candidates`` times iid sampling, no gradients.
    """
    from ..core.api import sample
    from .embeddings import get_embedding

    check(int(candidates) == candidates and candidates >= 1, f"candidates must be a positive integer, got {candidates}")
    pool = sample(denoiser, int(candidates) * n, seed=seed, cond=cond, **sample_kwargs)
    with torch.no_grad():
        keys = get_embedding(embedding)(pool, torch.zeros(len(pool), device=pool.device)).flatten(1).argmax(1).tolist()
    kept, seen = [], set()
    for i, k in enumerate(keys):
        if k not in seen and len(kept) < n:
            kept.append(i)
            seen.add(k)
    kept += [i for i in range(len(pool)) if i not in set(kept)][: n - len(kept)]
    return pool[torch.tensor(sorted(kept), device=pool.device)]


def diverse_sample(
    model, n: int, *, seed: int, cond: dict | None = None, scale: float | None = None, interval=None, **sample_kwargs
) -> torch.Tensor:
    """``n`` samples ``(n, *sample_shape)`` of ``--method diverse``: the model's recorded choice for this
    request (with a class label in ``cond["class_labels"]`` or without), built by :func:`diverse_setup`;
    a recorded ``stratified`` choice selects from ``candidates * n`` iid draws
    (:func:`steerdiff.stratified.stratified_sample`); a recorded ``init_noise`` (e.g. ``"simplex"``) sets
    the starting points unless ``sample_kwargs`` holds an ``initial_noise``."""
    from ..core.api import sample

    cond = dict(cond or {})
    labelled = cond.get("class_labels") is not None
    if "initial_noise" not in sample_kwargs:  # the recorded starting points (``init_noise``), if any
        noise = diverse_noise(model, labelled, scale)
        sample_kwargs = {**sample_kwargs, **({"initial_noise": noise} if noise is not None else {})}
    den, terms, method = diverse_setup(model, labelled=labelled, scale=scale, interval=interval, seed=seed)
    if method in ("stratified", "cover"):
        return select_sample(den, n, diverse_entry(model, labelled, scale), seed=seed, cond=cond, **sample_kwargs)
    return sample(den, n, seed=seed, cond=cond, guidance=terms, **sample_kwargs)


def select_sample(
    denoiser, n: int, entry: dict, *, seed: int, cond: dict | None = None, **sample_kwargs
) -> torch.Tensor:
    """``n`` samples ``(n, *sample_shape)`` selected from iid draws as a recorded ``entry`` says:
    ``{"method": "cover" | "stratified", "candidates": k, "embedding": ...}``."""
    if entry["method"] == "stratified":
        from .stratified import stratified_sample

        return stratified_sample(
            denoiser,
            n,
            candidates=entry.get("candidates", 4),
            embedding=entry.get("embedding"),
            seed=seed,
            cond=cond,
            **sample_kwargs,
        )
    check(entry["method"] == "cover", f"unknown selection {entry['method']!r}: use cover or stratified")
    return cover_sample(
        denoiser,
        n,
        candidates=entry.get("candidates", 3),
        embedding=entry.get("embedding", "classifier-probs"),
        seed=seed,
        cond=cond,
        **sample_kwargs,
    )


FIXED_CONDITION_METHODS = ("cfg", "interval", "cads", "spell", "dpp", "diverse")
# the particle options of the command line (argparse dests); the CLI refuses them where no term uses them
PARTICLE_OPTIONS = (
    "embedding",
    "kernel",
    "strength",
    "window",
    "on",
    "bandwidth",
    "bandwidth_scale",
    "weight",
    "project",
    "normalize",
    "archive",
    "prior_samples",
)


def parse_interval(text: str | None, flag: str = "--cfg-interval") -> tuple[float, float] | None:
    """``"LO,HI"`` -> ``(lo, hi)``; ``None`` passes."""
    if text is None:
        return None
    parts = str(text).split(",")
    try:
        if len(parts) == 2:
            return float(parts[0]), float(parts[1])
    except ValueError:
        pass
    from ..core.errors import SteerdiffError

    raise SteerdiffError(f"{flag} {text!r}: use LO,HI (two numbers), e.g. 0.3,5")


def from_args(a, model, cond: dict, seed: int, guidance: list):
    """The command line's ``(denoiser, guidance terms, selection)``: ``--method cfg / interval / cads /
    spell / dpp / diverse``, and ``--cfg-scale`` / ``--cfg-interval`` on any method for a
    class-conditional model. ``guidance`` is what the particle options already asked for (pg,
    repulsive). ``selection`` is ``None``, or the recorded entry of a ``--method diverse`` that selects
    from iid draws (draw it with :func:`select_sample`)."""
    method = a.method or "iid"
    scale, interval = getattr(a, "cfg_scale", None), parse_interval(getattr(a, "cfg_interval", None))
    check(
        getattr(a, "jacobian", None) is None or method == "dpp",
        f"--jacobian (jacobian=) is for --method dpp, not {method}: drop it or use --method dpp",
    )
    if method in FIXED_CONDITION_METHODS:
        takes = ("strength", "embedding", "window") if method in ("spell", "dpp") else ()
        unused = [
            "--" + k.replace("_", "-")
            for k in PARTICLE_OPTIONS
            if k not in takes and getattr(a, k, None) not in (None, 0)
        ]
        check(
            not unused,
            f"{', '.join(unused)}: --method {method} does not use them"
            f"{' (spell / dpp take --strength, --embedding, --window; dpp also --jacobian)' if takes else ''}; drop them",
        )
    labelled = cond.get("class_labels") is not None
    if getattr(a, "pipeline", None):  # the pipeline applies --cfg-scale itself
        check(
            method in ("iid", "pg", "repulsive", "stratified", "cads", "spell", "dpp"),
            f"--method {method} is for class-conditional models; with --pipeline use cads, pg, repulsive, spell or dpp",
        )
        check(interval is None, "--cfg-interval is for class-conditional models, not --pipeline (yet)")
        if method == "cads":
            model = cads_pipeline(model, seed=seed, **_cads_opts(a))
        elif method in ("spell", "dpp"):
            guidance = fixed_condition(model, method, options=_term_opts(a), labelled=False)[1]
        return model, guidance, None
    if method == "diverse":
        check(
            labelled or not getattr(model, "require_labels", False),
            f"--method diverse: model {getattr(a, 'model', 'this model')} draws only with a class label: give "
            f"--class-label (0..{getattr(model, 'num_classes', 1) - 1} or cycle)",
        )
        check(
            labelled or (scale is None and interval is None),
            "--cfg-scale / --cfg-interval guide toward a class: give --class-label, or drop them",
        )
        den, terms, chosen = diverse_setup(model, labelled=labelled, scale=scale, interval=interval, seed=seed)
        return den, terms, (diverse_entry(model, labelled, scale) if chosen in ("stratified", "cover") else None)
    if method in ("cfg", "interval", "cads"):
        check(
            labelled,
            f"--method {method} guides toward a class: give --class-label (on mnist-cond), or use --method diverse",
        )
        check(method != "cfg" or scale is not None, "--method cfg needs --cfg-scale S (e.g. 3)")
        check(method != "interval" or interval is not None, "--method interval needs --cfg-interval LO,HI (e.g. 0.3,5)")
    if scale is None and interval is None and method not in ("cfg", "interval", "cads"):
        if method in ("spell", "dpp"):
            return model, fixed_condition(model, method, options=_term_opts(a), labelled=False)[1], None
        return model, guidance, None
    if not labelled:
        check(
            method in ("spell", "dpp") or (scale is None and interval is None),
            "--cfg-scale / --cfg-interval guide toward a class: give --class-label",
        )
    opts = _cads_opts(a) if method == "cads" else (_term_opts(a) if method in ("spell", "dpp") else {})
    den, terms = fixed_condition(
        model,
        method if method in ("cfg", "interval", "cads", "spell", "dpp") else "iid",
        scale=1.0 if scale is None else scale,
        interval=interval,
        seed=seed,
        options=opts,
        labelled=labelled,
    )
    return den, (terms or guidance), None


def _cads_opts(a) -> dict:
    opts = {}
    if getattr(a, "cads_noise", None) is not None:
        opts["noise_scale"] = a.cads_noise
    if getattr(a, "cads_tau", None) is not None:
        opts["tau"] = parse_interval(a.cads_tau, "--cads-tau")
    return opts


def _term_opts(a) -> dict:
    """SPELL / DPP options from the particle flags (--strength, --embedding, --window; --jacobian: dpp only)."""
    opts = {k: getattr(a, k) for k in ("strength", "embedding", "jacobian") if getattr(a, k, None) is not None}
    if getattr(a, "window", None) is not None:
        opts["window"] = parse_interval(a.window, "--window")
    return opts
