"""``steerdiff evaluate``, ``steerdiff reference`` and ``steerdiff quality``."""

from __future__ import annotations

from ..core.errors import SteerdiffError, check
from .edit import _evaluate_edit
from .options import _flag
from .sample import _check_kept, _draw, _pipeline_model


def cmd_evaluate(a) -> int:
    from tqdm.auto import tqdm

    from ..checkpoint import write_json_atomic
    from ..core.errors import check
    from ..data import load_mnist
    from ..evaluation.evaluate import evaluate_batches, read_images
    from ..evaluation.features import load_features
    from ..models import load
    from ..train.classifier import load_classifier

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


def _evaluate_conditional(a) -> int:
    """Next-frame prediction: per batch one held-out condition shared by all particles."""
    import torch
    from tqdm.auto import tqdm

    from ..checkpoint import write_json_atomic
    from ..core.errors import check
    from ..data import load_mnist
    from ..evaluation.evaluate import interval
    from ..models import load
    from ..sequences.moving import arriving_at_centre, direction_metrics, frame_quality, moving_digits, p_right

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
            from ..sequences.moving import centroid

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


def cmd_reference(a) -> int:
    import torch

    from ..core.api import sample
    from ..core.errors import check
    from ..data import load_mnist
    from ..io import save_samples
    from ..models import load

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
