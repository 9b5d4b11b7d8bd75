"""``steerdiff sample`` and ``steerdiff repulse``."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import check
from ..particles.draw import SamplingOptions, draw
from ..pipelines.stable_diffusion import pipeline_from_options
from .options import build_parser, validate_args


def cmd_sample(a) -> int:
    from ..core.distributed import world
    from ..io import SAMPLE_SUFFIXES, save_samples

    check(a.n >= 1, f"--n must be at least 1, got {a.n}")
    check(
        Path(a.out).suffix.lower() in SAMPLE_SUFFIXES, f"--out {a.out}: use a suffix among {', '.join(SAMPLE_SUFFIXES)}"
    )
    options = SamplingOptions.from_namespace(a)
    model = pipeline_from_options(options)
    x, extra, archive = draw(model, options, a.seed)
    if model is not None:
        latents = x
        x, flags = model.to_images(latents)
        extra["latents"] = latents
        if flags is not None and any(flags):
            print(f"the safety checker blacked out {sum(map(bool, flags))} of {len(flags)} images")
    if world()[0] == 0:  # under torchrun every rank holds all samples; one writes
        save_samples(x, a.out, **extra)
        print(f"wrote {a.n} samples {tuple(x.shape[1:])} to {a.out}")
    if archive is not None:  # only once the samples are written: a failed run leaves it as it was
        archive.add(latents if model is not None else x).save(a.archive)
    return 0


def cmd_repulse(a) -> int:
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
