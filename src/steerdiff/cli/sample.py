"""``steerdiff sample`` and ``steerdiff repulse``."""

from __future__ import annotations

import math
from pathlib import Path

from ..core.errors import SteerdiffError, check
from .options import _flag, build_parser, validate_args


def cmd_sample(a) -> int:
    from ..core.errors import check
    from ..io import SAMPLE_SUFFIXES, save_samples

    check(a.n >= 1, f"--n must be at least 1, got {a.n}")
    check(
        Path(a.out).suffix.lower() in SAMPLE_SUFFIXES, f"--out {a.out}: use a suffix among {', '.join(SAMPLE_SUFFIXES)}"
    )
    model = _pipeline_model(a)
    x, extra, archive = _draw(a, a.seed, model=model)
    if model is not None:
        latents = x
        x, flags = model.to_images(latents)
        extra["latents"] = latents
        if flags is not None and any(flags):
            print(f"the safety checker blacked out {sum(map(bool, flags))} of {len(flags)} images")
    from ..core.distributed import world

    if world()[0] == 0:  # under torchrun every rank holds all samples; one writes
        save_samples(x, a.out, **extra)
        print(f"wrote {a.n} samples {tuple(x.shape[1:])} to {a.out}")
    if archive is not None:  # only once the samples are written: a failed run leaves it as it was
        archive.add(latents if model is not None else x).save(a.archive)
    return 0


def _pipeline_model(a):
    """The latent denoiser of ``--pipeline`` with its ``--prompt``s, or None without ``--pipeline``."""
    if not getattr(a, "pipeline", None):
        check(getattr(a, "prompt", None) is None, "--prompt needs --pipeline DIR (a local Stable Diffusion pipeline)")
        return None
    from ..pipelines.stable_diffusion import from_pipeline, load_pipeline

    check(a.prompt is not None, "--pipeline needs --prompt TEXT")
    check(
        len(a.prompt) in (1, a.n),
        f"{len(a.prompt)} --prompt values for --n {a.n}: give one prompt, or one per particle",
    )
    return from_pipeline(
        load_pipeline(a.pipeline, a.device),
        a.prompt[0] if len(a.prompt) == 1 else a.prompt,
        7.5 if a.cfg_scale is None else a.cfg_scale,
        a.negative_prompt,
        a.size,
        a.size,
    )


def _setup(a, seed: int, model=None, frames=None):
    """Every check and the method's set-up of :func:`_draw`, without sampling: ``(model, cond, extra,
    sampler kwargs, guidance, archive, selection)`` (``model`` is the denoiser the method samples)."""
    import torch

    from ..core.errors import check
    from ..models import load

    model = model or load(a.model, device=a.device)
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
    _check_sampling_flags(a, model, kwargs)
    if a.corrector_plan:
        from ..core.sampling import parse_plan

        check((a.sampler or model.preset.get("sampler")) == "pc", "--corrector-plan needs --sampler pc")
        kwargs["plan"] = parse_plan(a.corrector_plan)
    guidance, archive = particle_terms(a)
    if archive is not None and len(archive):
        shape = tuple(archive.samples.shape[1:])
        check(
            shape == tuple(model.sample_shape),
            f"--archive {a.archive} holds samples of shape {shape}, this model draws "
            f"{tuple(model.sample_shape)}: use another archive file",
        )
    from ..particles.fixed_condition import from_args

    model, guidance, select = from_args(
        a, model, cond, seed, guidance
    )  # --cfg-scale / --cfg-interval, --method cfg ...
    return model, cond, extra, kwargs, guidance, archive, select


def _draw(a, seed: int, model=None, frames=None):
    """Samples as the sampling options of ``a`` ask: ``(x, extra arrays, archive)``; ``frames``
    (the previous frames of a frame-conditional model) take the place of ``--cond``."""
    from ..core.api import sample
    from ..core.errors import check

    model, cond, extra, kwargs, guidance, archive, select = _setup(a, seed, model, frames)
    if select is not None:  # --method diverse chose a selection from iid draws
        from ..particles.fixed_condition import select_sample

        x = select_sample(
            model,
            a.n,
            select,
            seed=seed,
            cond=cond,
            sampler=a.sampler,
            steps=a.steps,
            batch_size=a.batch_size,
            progress=not a.quiet,
            **kwargs,
        )
        return x, extra, archive
    if getattr(a, "prior_samples", 0):
        check(a.method == "pg", "--prior-samples is for --method pg (prior-preserving Particle Guidance)")
        check(a.prior_samples >= 2, f"--prior-samples must be >= 2 (the pilot's size), got {a.prior_samples}")
        # the model's own iid draws for this condition, from noise streams the batch does not use
        from ..particles.pg import Pilot

        guidance[0].prior = Pilot(
            model,
            a.prior_samples,
            sampler=a.sampler,
            steps=a.steps,
            seed=seed,
            cond=cond,
            start_index=PRIOR_STREAMS,
            **kwargs,
        )
    if a.method == "stratified":
        from ..particles.stratified import stratified_sample

        check(a.candidates >= 1, f"--candidates must be >= 1 (iid draws per kept sample), got {a.candidates}")
        unused = [
            f"--{k.replace('_', '-')}"
            for k in (
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
            )
            if getattr(a, k, None) is not None
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
            seed=seed,
            cond=cond,
            sampler=a.sampler,
            steps=a.steps,
            batch_size=a.batch_size,
            progress=not a.quiet,
            **kwargs,
        )
        return x, extra, archive
    x = sample(
        model,
        a.n,
        sampler=a.sampler,
        steps=a.steps,
        seed=seed,
        cond=cond,
        progress=not a.quiet,
        batch_size=a.batch_size,
        guidance=guidance,
        **kwargs,
    )
    return x, extra, archive


FIXED_CONDITION_METHODS = ("cfg", "interval", "cads", "spell", "dpp", "diverse")


PRIOR_STREAMS = 10**9  # first noise-stream index of --prior-samples pilot draws


# measured peak memory of one network call per sample, in multiples of the sample's float32 bytes
# (mnist, heun: about 380 without guidance, 1600 with PG's gradient through the estimate)
ACTIVATION_FACTOR = {"iid": 500, "guided": 2000}


def available_memory(device: str) -> int | None:
    """Bytes free for tensors on ``device`` (None where it cannot be told)."""
    import torch

    if torch.device(device).type == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _check_kept(model, total: int, what: str) -> None:
    """Refuse a run whose ``total`` kept samples alone would not fit in memory (with the features computed from them)."""
    import math

    free = available_memory("cpu")
    need = 8 * total * math.prod(model.sample_shape) * 4
    check(
        free is None or need <= free,
        f"{what} = {total} samples need about {need / 2**30:.1f} GiB of memory, more than "
        f"the {(free or 0) / 2**30:.1f} GiB available: evaluate fewer",
    )


def _check_sampling_flags(a, model, kwargs: dict) -> None:
    """Checks of the sampling options against the loaded model, before any sampling: sampler keywords,
    --cfg-scale, and the memory the run needs."""
    import inspect
    import math

    from ..core.sampling import get_sampler

    sampler = a.sampler or (getattr(model, "preset", None) or {}).get("sampler", "heun")
    takes = inspect.signature(get_sampler(sampler)).parameters
    unused = [_flag(k) for k in kwargs if k not in takes]
    check(
        not unused,
        f"{', '.join(unused)}: sampler {sampler} does not take it (--s-churn: euler, heun; --eta: ddim, "
        "euler_ancestral; --snr: pc); pick a --sampler that does, or drop it",
    )
    if getattr(a, "cfg_scale", None) is not None and not getattr(a, "pipeline", None):
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


def particle_terms(a):
    """The guidance terms (and archive) that ``--method`` and the particle options ask for."""
    from ..core.errors import check
    from ..particles.pg import Archive, ParticleGuidance, Repulsion

    if a.method in ("iid", "stratified", None) or a.method in FIXED_CONDITION_METHODS:
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
            from ..particles.kernels import BANDWIDTHS

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


def cmd_repulse(a) -> int:
    from ..core.errors import check

    check(
        (a.prompt is None) == (a.pipeline is None),
        "--prompt and --pipeline go together (a local Stable Diffusion pipeline)",
    )
    check(
        a.method != "iid" or a.strength is None,
        "--strength has no effect with --method iid: drop it or use --method repulsive/pg",
    )
    source = (
        ["--pipeline", a.pipeline, *(w for p in a.prompt for w in ("--prompt", p))]
        if a.pipeline
        else ["--model", a.diffusion_model]
    )
    particles = [] if a.method == "iid" else ["--embedding", a.model, "--on", "x"]  # iid: the embedding plays no part
    args = build_parser().parse_args(
        ["sample", *source, "--n", str(a.n), "--method", a.method, *particles, "--seed", str(a.seed), "--out", a.out]
        + (["--strength", str(a.strength)] if a.strength is not None else [])
        + (["--quiet"] if a.quiet else [])
    )
    validate_args(args)
    return cmd_sample(args)
