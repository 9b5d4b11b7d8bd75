"""Drawing a batch by method: the sampling options of ``steerdiff sample`` as one object, the guidance
terms they ask for, the memory a run needs, and :func:`draw`.

``draw`` is what ``steerdiff sample`` (and ``evaluate``, ``compose``, ``report --vs method:...``) runs::

    from steerdiff.particles.draw import SamplingOptions, draw

    x, extra, archive = draw("mnist", SamplingOptions(method="pg", n=8, steps=18), seed=0)
    x = draw("mnist-cond", method="cads", class_label=7, n=8).x

Methods: ``iid``; ``pg`` and ``repulsive`` (a :class:`~steerdiff.particles.pg.ParticleGuidance` /
:class:`~steerdiff.particles.pg.Repulsion` term built from the particle options, prior-preserving with
``prior_samples``); ``stratified`` (:func:`~steerdiff.particles.stratified.stratified_sample`); and the
fixed-condition methods of :mod:`steerdiff.particles.fixed_condition` (``cfg``, ``interval``, ``cads``,
``spell``, ``dpp``, ``diverse``). The error messages name the command line's flags (``--strength``),
which are the option names with ``-`` for ``_``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..core.errors import SteerdiffError, check
from .fixed_condition import FIXED_CONDITION_METHODS, PARTICLE_OPTIONS

METHODS = ("iid", "pg", "repulsive", "stratified", *FIXED_CONDITION_METHODS)

PRIOR_STREAMS = 10**9  # first noise-stream index of the prior-preserving pilot's draws (prior_samples)

# measured peak memory of one network call per sample, in multiples of the sample's float32 bytes
# (mnist, heun: about 380 without guidance, 1600 with PG's gradient through the estimate)
ACTIVATION_FACTOR = {"iid": 500, "guided": 2000}


def option_flag(name: str) -> str:
    """The command line's flag of an option: ``"bandwidth_scale"`` -> ``"--bandwidth-scale"``."""
    return "--" + name.replace("_", "-")


@dataclass(init=False)
class SamplingOptions:
    """Every option of ``steerdiff sample`` that says how to draw a batch, with the command line's
    defaults. Build it from keywords (``SamplingOptions(method="pg", n=8)``; an unknown keyword is a
    :class:`~steerdiff.SteerdiffError`) or from an ``argparse.Namespace`` (:meth:`from_namespace`).

    Args:
        model: shipped model name or checkpoint directory, loaded when :func:`draw` gets no denoiser (and
            named in messages).
        n: batch size (particles).
        method: one of :data:`METHODS`.
        candidates: ``stratified`` / ``diverse``: iid draws per kept sample.
        embedding: particle feature space (``pg``, ``repulsive``; ``spell`` / ``dpp``), e.g. ``cnn16``;
            None: the model's recorded preset.
        kernel: ``rbf``, ``cosine``, ``iou``, ``dot`` or ``label``; None: the preset.
        strength: coefficient of the log-potential (dimensionless).
        window: ``"LO,HI"`` or ``(lo, hi)``: the sigma range where the term acts (units of sigma).
        jacobian: ``dpp`` on ``x0``: ``"exact"`` (a backward pass through the network) or ``"gaussian"``
            (the denoiser's Jacobian taken as ``c_skip(sigma) I``: no backward pass).
        on: embed the noisy sample (``"x"``) or the denoised estimate (``"x0"``).
        bandwidth: rbf bandwidth: ``median``, ``per-particle``, ``sigma`` or a number (as a string or float).
        bandwidth_scale: multiplies the rbf bandwidth.
        weight: weight schedule inside the window: ``constant``, ``sigma``, ``cosine``.
        project: drop the force's component along the score.
        normalize: rescale each particle's force to ``strength`` times its score norm.
        archive: ``.npy`` path of earlier samples to repel from (created when missing; :func:`draw` returns
            the :class:`~steerdiff.particles.pg.Archive`, the caller adds the new samples and saves it).
        prior_samples: ``pg``: size of the iid pilot of prior-preserving PG (0: off).
        class_label: class-conditional models: a label (``7`` or ``"7"``) or ``"cycle"`` (0, 1, ..., 9, 0, ...).
        cond: frame-conditional models: path of the previous frames, a ``(1, K, H, W)`` ``.npy``/``.pt`` array
            in [-1, 1] shared by all particles (:func:`draw`'s ``frames`` takes a tensor instead).
        sampler: sampler name; None: the model's preset.
        steps: number of noise levels; None: the preset.
        s_churn: EDM churn (euler, heun).
        eta: noise scale (ddim, euler_ancestral).
        snr: Langevin signal-to-noise ratio (pc).
        corrector_plan: ``pc``: extra corrector steps ``KIND:LO-HI[:COUNT],...``.
        batch_size: samples per network call; None: all at once.
        device: torch device of the loaded model.
        pipeline: a local Stable Diffusion pipeline directory (see
            :func:`steerdiff.pipelines.stable_diffusion.pipeline_from_options`).
        prompt: the prompts of ``pipeline``: a list of one prompt, or one per particle.
        negative_prompt: the pipeline's negative prompt.
        cfg_scale: classifier-free guidance scale (pipelines; class-conditional models with a null label).
        cfg_interval: ``"LO,HI"`` or ``(lo, hi)``: classifier-free guidance only for sigma in (LO, HI].
        cads_noise: ``cads``: noise scale on the class embedding.
        cads_tau: ``cads``: ``"TAU1,TAU2"`` or ``(tau1, tau2)`` in [0, 1] along log sigma.
        size: pipelines: image height and width in pixels.
        init_noise: the batch's initial noise: ``iid`` (each sample its own draw) or ``simplex`` /
            ``simplex:B`` (coarse components of the batch on a random simplex, each sample still an exact
            draw: :class:`~steerdiff.particles.noise.SimplexNoise`, block ``B`` pixels); composes with
            every method. None: iid, or what ``--method diverse`` recorded for the request.
        quiet: no progress bar.
    """

    model: str = "mnist"
    n: int = 16
    method: str = "iid"
    candidates: int = 4
    embedding: str | None = None
    kernel: str | None = None
    strength: float | None = None
    window: str | None = None
    jacobian: str | None = None
    on: str | None = None
    bandwidth: str | float | None = None
    bandwidth_scale: float | None = None
    weight: str | None = None
    project: bool | None = None
    normalize: bool | None = None
    archive: str | None = None
    prior_samples: int = 0
    class_label: str | None = None
    cond: str | None = None
    sampler: str | None = None
    steps: int | None = None
    s_churn: float | None = None
    eta: float | None = None
    snr: float | None = None
    corrector_plan: str | None = None
    batch_size: int | None = None
    device: str = "cpu"
    pipeline: str | None = None
    prompt: list[str] | None = None
    negative_prompt: str | None = None
    cfg_scale: float | None = None
    cfg_interval: str | None = None
    cads_noise: float | None = None
    cads_tau: str | None = None
    size: int | None = None
    init_noise: str | None = None
    quiet: bool = False

    def __init__(self, **options: Any) -> None:
        known = [f.name for f in fields(self)]
        unknown = [k for k in options if k not in known]
        check(not unknown, f"unknown sampling option(s) {', '.join(unknown)}: use some of {', '.join(known)}")
        for f in fields(self):
            v = options.get(f.name)
            setattr(self, f.name, f.default if v is None else v)  # None: not given (argparse's default)
        if isinstance(self.class_label, int) and not isinstance(self.class_label, bool):
            self.class_label = str(self.class_label)
        for name in ("window", "cfg_interval", "cads_tau"):  # (lo, hi) from Python: the flags' "LO,HI"
            if isinstance(getattr(self, name), (tuple, list)):
                setattr(self, name, ",".join(map(str, getattr(self, name))))
        check(self.method in METHODS, f"method {self.method!r}: use one of {', '.join(METHODS)}")

    @classmethod
    def from_namespace(cls, a: Any) -> SamplingOptions:
        """The options held by ``a`` (an ``argparse.Namespace`` or any object with these attributes; the
        ones it lacks, or holds as None, take their defaults; other attributes are ignored)."""
        if isinstance(a, SamplingOptions):
            return a
        return cls(**{f.name: getattr(a, f.name) for f in fields(cls) if getattr(a, f.name, None) is not None})

    def replace(self, **options: Any) -> SamplingOptions:
        """A copy with ``options`` changed (an unknown one is a :class:`~steerdiff.SteerdiffError`)."""
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **options})


def as_options(options: Any = None, **keywords: Any) -> SamplingOptions:
    """``options`` (a :class:`SamplingOptions`, an argparse namespace, or None for the defaults) with
    ``keywords`` changed."""
    base = SamplingOptions() if options is None else SamplingOptions.from_namespace(options)
    return base.replace(**keywords) if keywords else base


def guidance_terms(options: Any) -> tuple[list, Any]:
    """The guidance terms (and archive) that ``method`` and the particle options ask for: one
    :class:`~steerdiff.particles.pg.ParticleGuidance` (``pg``) or :class:`~steerdiff.particles.pg.Repulsion`
    (``repulsive``) with the options given (the others from the model's preset when it binds); none for the
    other methods. Shared by ``steerdiff sample`` and ``steerdiff report``.

    Args:
        options: :class:`SamplingOptions` (or an object :meth:`SamplingOptions.from_namespace` takes).

    Returns:
        ``(terms, archive)``: a list of guidance terms for :func:`steerdiff.sample`, and the
        :class:`~steerdiff.particles.pg.Archive` of ``options.archive`` (loaded, or empty when the file is
        missing) or None.
    """
    from .pg import Archive, ParticleGuidance, Repulsion

    a = SamplingOptions.from_namespace(options)
    if a.method in ("iid", "stratified") or a.method in FIXED_CONDITION_METHODS:
        return [], None
    opts = {
        "embedding": a.embedding,
        "kernel": a.kernel,
        "strength": a.strength,
        "on": a.on,
        "weight": a.weight,
        "bandwidth_scale": a.bandwidth_scale,
        "project": a.project,
        "normalize": a.normalize,
    }
    if a.window is not None:
        parts = a.window.split(",")
        check(len(parts) == 2, f"--window {a.window!r}: use LO,HI (two sigmas), e.g. 0.1,20")
        try:
            opts["window"] = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise SteerdiffError(f"--window {a.window!r}: use LO,HI (two numbers), e.g. 0.1,20") from None
    if a.bandwidth is not None:
        try:
            opts["bandwidth"] = float(a.bandwidth)
        except ValueError:
            from .kernels import BANDWIDTHS

            check(a.bandwidth in BANDWIDTHS, f"--bandwidth {a.bandwidth!r}: use {', '.join(BANDWIDTHS)} or a number")
            opts["bandwidth"] = a.bandwidth
        check(
            not isinstance(opts["bandwidth"], float) or (math.isfinite(opts["bandwidth"]) and opts["bandwidth"] > 0),
            f"--bandwidth {a.bandwidth}: a fixed bandwidth must be a positive finite number",
        )
    archive = None
    if a.archive:
        archive = Archive.load(a.archive) if Path(a.archive).exists() else Archive()
        opts["archive"] = archive
    cls = ParticleGuidance if a.method == "pg" else Repulsion
    return [cls(**{k: v for k, v in opts.items() if v is not None})], archive


def available_memory(device: str) -> int | None:
    """Bytes free for tensors on ``device`` (None where it cannot be told).

    Args:
        device: a torch device name (``cpu``, ``cuda:0``, ...).
    """
    if torch.device(device).type == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_kept_memory(model, total: int, what: str) -> None:
    """Refuse a run whose ``total`` kept samples alone would not fit in memory (with the features
    computed from them).

    Args:
        model: the denoiser (its ``sample_shape`` sets the bytes per sample).
        total: number of samples the run keeps.
        what: how the message names ``total`` (e.g. ``"--n x --batches"``).
    """
    free = available_memory("cpu")
    need = 8 * total * math.prod(model.sample_shape) * 4
    check(
        free is None or need <= free,
        f"{what} = {total} samples need about {need / 2**30:.1f} GiB of memory, more than "
        f"the {(free or 0) / 2**30:.1f} GiB available: evaluate fewer",
    )


def check_sampling_options(options: Any, model, sampler_kwargs: dict) -> None:
    """Checks of the sampling options against the loaded model, before any sampling: sampler keywords,
    ``cfg_scale``, and the memory the run needs on ``options.device``.

    Args:
        options: :class:`SamplingOptions` (or an object :meth:`SamplingOptions.from_namespace` takes).
        model: the loaded denoiser (``sample_shape``, ``preset``, ``num_classes``).
        sampler_kwargs: the sampler keywords the run passes (``s_churn``, ``eta``, ``snr``).
    """
    import inspect

    from ..core.sampling import get_sampler

    a = SamplingOptions.from_namespace(options)
    sampler = a.sampler or (getattr(model, "preset", None) or {}).get("sampler", "heun")
    takes = inspect.signature(get_sampler(sampler)).parameters
    unused = [option_flag(k) for k in sampler_kwargs if k not in takes]
    check(
        not unused,
        f"{', '.join(unused)}: sampler {sampler} does not take it (--s-churn: euler, heun; --eta: ddim, "
        "euler_ancestral; --snr: pc); pick a --sampler that does, or drop it",
    )
    if a.cfg_scale is not None and not a.pipeline:
        check(
            getattr(model, "num_classes", None) is not None,
            f"--cfg-scale: model {a.model} is unconditional, so there is no classifier-free guidance to scale; "
            "use a class-conditional model (mnist-cond) or --pipeline DIR, or drop it",
        )
    free = available_memory(a.device)
    if free is None:
        return
    per = math.prod(model.sample_shape) * 4
    guided_run = a.method in ("pg", "repulsive")
    chunk = a.n if (guided_run or a.batch_size is None) else min(a.n, a.batch_size)
    if a.method == "stratified":
        chunk = chunk if a.batch_size else a.n * a.candidates
    need = (
        4 * a.n * per * max(1, a.candidates if a.method == "stratified" else 1)
        + chunk * per * ACTIVATION_FACTOR["guided" if guided_run else "iid"]
    )
    check(
        need <= free,
        f"--n {a.n} needs about {need / 2**30:.1f} GiB of memory on {a.device}, more than the "
        f"{free / 2**30:.1f} GiB available: lower --n{'' if guided_run else ' or set --batch-size'}",
    )


class Setup(NamedTuple):
    """What :func:`prepare` returns: everything :func:`draw` samples with."""

    model: Any  # the denoiser the method samples (a CFG / CADS wrapper for the fixed-condition methods)
    cond: dict  # conditioning keywords of the denoiser (class_labels, frames)
    extra: dict  # arrays written beside the samples (labels)
    sampler_kwargs: dict  # s_churn, eta, snr, plan, initial_noise
    guidance: list  # guidance terms
    archive: Any  # the Archive of options.archive, or None
    selection: Any  # method diverse: the recorded selection from iid draws, or None


class Drawn(NamedTuple):
    """What :func:`draw` returns."""

    x: torch.Tensor  # (n, *sample_shape) samples (latents for a pipeline denoiser)
    extra: dict  # arrays written beside the samples (labels: (n,) class labels)
    archive: Any  # the Archive of options.archive (without the new samples), or None


def _load(model, options: SamplingOptions) -> tuple[Any, SamplingOptions]:
    if model is None or isinstance(model, str):
        from ..models import load

        options = options if model is None else options.replace(model=model)
        return load(options.model, device=options.device), options
    return model, options


def prepare(
    model=None, options: Any = None, seed: int = 0, frames: torch.Tensor | None = None, **keywords: Any
) -> Setup:
    """Every check and the method's set-up of :func:`draw`, without sampling.

    Args:
        model: a denoiser, a shipped model name or checkpoint directory, or None for ``options.model``.
        options: :class:`SamplingOptions` (or an argparse namespace); None: the defaults.
        seed: random seed of the draw (the fixed-condition methods and the pilot use it).
        frames: frame-conditional models: ``(1, K, H, W)`` previous frames in [-1, 1], in place of
            ``options.cond``.
        **keywords: options changed on top of ``options`` (an unknown one is a ``SteerdiffError``).

    Returns:
        :class:`Setup`.
    """
    a = as_options(options, **keywords)
    model, a = _load(model, a)
    cond, extra = {}, {}
    if a.cond is not None:
        from ..io import load_array

        check(getattr(model, "cond_frames", 0) > 0, f"--cond: model {a.model} is not frame-conditional")
        cond["frames"] = load_array(a.cond).float()
    if frames is not None:
        cond["frames"] = frames
    if a.class_label is not None:
        check(
            getattr(model, "num_classes", None) is not None,
            f"--class-label: model {a.model} is unconditional; use mnist-cond",
        )
        if a.class_label == "cycle":
            labels = torch.arange(a.n) % model.num_classes
        else:
            check(
                a.class_label.isdigit() and int(a.class_label) < model.num_classes,
                f"--class-label {a.class_label!r}: use an integer in 0..{model.num_classes - 1} or 'cycle'",
            )
            labels = torch.full((a.n,), int(a.class_label))
        cond["class_labels"] = labels
        extra["labels"] = labels
    kwargs = {k: v for k, v in (("s_churn", a.s_churn), ("eta", a.eta), ("snr", a.snr)) if v is not None}
    check_sampling_options(a, model, kwargs)
    from .fixed_condition import diverse_noise
    from .noise import initial_noise

    if a.method == "diverse" and a.init_noise is None:  # the recorded choice's noise, unless the user gave one
        noise = diverse_noise(model, cond.get("class_labels") is not None, a.cfg_scale)
    else:
        noise = initial_noise(a.init_noise, model.sample_shape)
    if noise is not None:
        kwargs["initial_noise"] = noise
    if a.corrector_plan:
        from ..core.sampling import parse_plan

        check((a.sampler or model.preset.get("sampler")) == "pc", "--corrector-plan needs --sampler pc")
        kwargs["plan"] = parse_plan(a.corrector_plan)
    guidance, archive = guidance_terms(a)
    if archive is not None and len(archive):
        shape = tuple(archive.samples.shape[1:])
        check(
            shape == tuple(model.sample_shape),
            f"--archive {a.archive} holds samples of shape {shape}, this model draws "
            f"{tuple(model.sample_shape)}: use another archive file",
        )
    from .fixed_condition import from_args

    model, guidance, select = from_args(a, model, cond, seed, guidance)  # cfg_scale / cfg_interval, method cfg ...
    return Setup(model, cond, extra, kwargs, guidance, archive, select)


def draw(model=None, options: Any = None, seed: int = 0, frames: torch.Tensor | None = None, **keywords: Any) -> Drawn:
    """A batch drawn by ``options.method``: iid, Particle Guidance (prior-preserving with
    ``prior_samples``), repulsion, stratified selection, or a fixed-condition method. Sample ``i`` uses the
    noise stream of ``(seed, i)``: the same seed gives the same bytes as ``steerdiff sample --seed``.

    Args:
        model: a denoiser (e.g. from :func:`steerdiff.load`, a composition, or
            :func:`~steerdiff.pipelines.stable_diffusion.pipeline_from_options`), a shipped model name or
            checkpoint directory, or None for ``options.model``.
        options: :class:`SamplingOptions` (or an argparse namespace); None: the defaults.
        seed: random seed.
        frames: frame-conditional models: ``(1, K, H, W)`` previous frames in [-1, 1] shared by all
            particles, in place of ``options.cond``.
        **keywords: options changed on top of ``options`` (an unknown one is a ``SteerdiffError``).

    Returns:
        :class:`Drawn` ``(x, extra, archive)``: ``x`` the ``(n, *model.sample_shape)`` samples in the model's
        range ([-1, 1] for images; latents for a pipeline denoiser), ``extra`` the arrays to write beside
        them (``labels`` with a class label), ``archive`` the archive of ``options.archive`` or None (add
        ``x`` and save it once the samples are written).
    """
    from ..core.api import sample

    a = as_options(options, **keywords)
    model, a = _load(model, a)
    model, cond, extra, kwargs, guidance, archive, select = prepare(model, a, seed, frames)
    run = dict(sampler=a.sampler, steps=a.steps, seed=seed, cond=cond, **kwargs)  # every draw's settings
    if select is not None:  # --method diverse chose a selection from iid draws
        from .fixed_condition import select_sample

        x = select_sample(model, a.n, select, batch_size=a.batch_size, progress=not a.quiet, **run)
        return Drawn(x, extra, archive)
    if a.prior_samples:
        check(a.method == "pg", "--prior-samples is for --method pg (prior-preserving Particle Guidance)")
        check(a.prior_samples >= 2, f"--prior-samples must be >= 2 (the pilot's size), got {a.prior_samples}")
        # the model's own iid draws for this condition, from noise streams the batch does not use
        from .pg import Pilot

        pilot = {k: v for k, v in run.items() if k != "initial_noise"}  # the model's iid draws
        labels = cond.get("class_labels")
        if isinstance(labels, torch.Tensor) and labels.ndim == 1:  # one label per particle: the pilot's own size
            check(
                bool((labels == labels[0]).all()),
                "--prior-samples with several class labels: the pilot draws one condition; give one --class-label",
            )
            pilot["cond"] = {**cond, "class_labels": int(labels[0])}
        guidance[0].prior = Pilot(model, a.prior_samples, start_index=PRIOR_STREAMS, **pilot)
    if a.method == "stratified":
        from .stratified import stratified_sample

        check(a.candidates >= 1, f"--candidates must be >= 1 (iid draws per kept sample), got {a.candidates}")
        unused = [
            option_flag(k)
            for k in PARTICLE_OPTIONS
            if k not in ("embedding", "prior_samples") and getattr(a, k) is not None
        ]
        check(
            not unused,
            f"{', '.join(unused)}: --method stratified selects from iid draws and takes only "
            "--candidates and --embedding; drop them or use --method pg",
        )
        x = stratified_sample(
            model,
            a.n,
            candidates=a.candidates,
            embedding=a.embedding,
            batch_size=a.batch_size,
            progress=not a.quiet,
            **run,
        )
        return Drawn(x, extra, archive)
    x = sample(model, a.n, progress=not a.quiet, batch_size=a.batch_size, guidance=guidance, **run)
    return Drawn(x, extra, archive)


class FrameDraw:
    """``draw(model, seed, frames) -> (n, *sample_shape)`` samples of ``options`` for a frame-conditional
    evaluation (:func:`steerdiff.evaluation.evaluate.evaluate_next_frame`); :meth:`check` runs every
    option's check (:func:`prepare`) without sampling, so a bad option fails before the first batch.

    Args:
        options: :class:`SamplingOptions` (or an argparse namespace).
    """

    def __init__(self, options: Any) -> None:
        self.options = as_options(options)

    def check(self, model, frames: torch.Tensor) -> None:
        prepare(model, self.options, 0, frames)

    def __call__(self, model, seed: int, frames: torch.Tensor) -> torch.Tensor:
        return draw(model, self.options, seed, frames).x
