"""``steerdiff evaluate``, ``steerdiff reference`` and ``steerdiff quality``."""

from __future__ import annotations

from ..core.errors import check
from ..particles.draw import FrameDraw, SamplingOptions, check_kept_memory, draw, prepare
from ..pipelines.stable_diffusion import pipeline_from_options
from .edit import _evaluate_edit
from .options import _flag


def cmd_evaluate(a) -> int:
    from ..checkpoint import write_json_atomic
    from ..evaluation.evaluate import evaluate_next_frame, evaluate_samples, read_images

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
    config = {k: v for k, v in vars(a).items() if k != "quiet"}
    if a.task == "conditional":
        check(
            not a.pipeline and not a.samples,
            "--task conditional samples the frame-conditional --model itself: drop --pipeline / --samples",
        )
        options = SamplingOptions.from_namespace(a)
        result = evaluate_next_frame(
            a.model,
            a.dataset,
            batches=a.batches,
            seed=a.seed,
            anywhere=a.anywhere,
            draw=FrameDraw(options),
            device=a.device,
            config=config,
            progress=not a.quiet,
        )
        write_json_atomic(a.out, result)
        agg = result["aggregate"]
        print(", ".join(f"{m} {agg[m]['mean']:.3f}" for m in agg) + f"; wrote {a.out}")
        return 0
    if a.task == "edit":
        return _evaluate_edit(a)
    check(not (a.samples and a.pipeline), "give --samples FILE or --pipeline DIR, not both")
    if a.samples:
        unused = [
            _flag(k)
            for k in ("pipeline", "method", "class_label", "cond", "sampler", "steps", "init_noise")
            if getattr(a, k, None) not in (None, "iid")
        ]
        check(not unused, f"{', '.join(unused)}: --samples evaluates a file and samples nothing; drop them")
        samples = read_images(a.samples)
        check(len(samples) > 0, f"--samples {a.samples} holds no samples")
        total, seeds = len(samples), None
    else:
        total, seeds = a.n * a.batches, [a.seed + b for b in range(a.batches)]
    check(
        a.k < total, f"--k {a.k}: PRDC needs more than k samples, got {total}; lower --k (default 5) or evaluate more"
    )
    real = read_images(a.real) if a.real else None
    check(
        real is None or a.k < len(real),
        f"--k {a.k}: PRDC needs more than k real images, --real has {0 if real is None else len(real)}",
    )
    if not a.samples:
        options = SamplingOptions.from_namespace(a)
        model = pipeline_from_options(options)
        if model is None:
            from ..models import load

            model = load(a.model, device=a.device)
            check_kept_memory(model, a.n * a.batches, "--n x --batches")
            samples = lambda s: draw(model, options, s).x  # noqa: E731
        else:  # score the decoded images, not the latents
            samples = lambda s: model.to_images(draw(model, options, s).x)[0]  # noqa: E731
        prepare(model, options, a.seed)  # every option's check before the first batch and its progress bar
    result = evaluate_samples(
        samples,
        seeds,
        batch_size=(a.batch_size or a.n) if a.samples else None,  # the size of the batches --samples is cut into
        features=a.features,
        feature_input=a.feature_input,
        classifier=a.classifier,
        real=real,
        reference=a.reference,
        k=a.k,
        config=config,
        progress=not a.quiet,
    )
    write_json_atomic(a.out, result)
    agg = result["aggregate"]
    line = ", ".join(f"{m} {agg[m]['mean']:.3f}" for m in agg if agg[m]["mean"] is not None)
    print(
        f"{len(result['batches'])} batches: {line}; overall Fréchet "
        f"{result['overall'].get('frechet', float('nan')):.2f}; wrote {a.out}"
    )
    return 0


def cmd_reference(a) -> int:
    from ..evaluation.reference import reference_set
    from ..io import save_samples

    x, labels = reference_set(a.n, a.source, a.model, a.seed, progress=not a.quiet)
    save_samples(x, a.out, labels=labels)
    print(f"wrote a class-balanced reference set of {len(x)} to {a.out}")
    return 0


def cmd_quality(a) -> int:
    from ..evaluation.quality import MAX_N, format_table, model_quality

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
        from ..checkpoint import write_json_atomic

        write_json_atomic(a.out, result)
        print(f"wrote {a.out}")
    return 0
