"""``steerdiff train-edit`` and ``steerdiff edit``."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import SteerdiffError, check
from .options import ATTRIBUTES, _flag


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
    from ..models import load

    return load(name)


def cmd_train_edit(a) -> int:
    import torch

    from ..checkpoint import check_output_dir
    from ..core.errors import check
    from ..edit.hspace import (
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
    from ..train.training import command_line

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


def cmd_edit(a) -> int:
    import torch

    from ..core.errors import check
    from ..edit.hspace import apply_edit, attribute_data, conf_sigmas, invert, load_edit
    from ..io import save_samples

    check((a.attribute is None) != (a.edit is None), "give --attribute thick or --edit DIR")
    _refuse_green(a.attribute)
    from ..edit.hspace import SHIPPED as SHIPPED_EDITS

    check(
        a.attribute is None or a.attribute in SHIPPED_EDITS,
        f"--attribute {a.attribute!r}: use a shipped edit ({', '.join(SHIPPED_EDITS)}), or --edit DIR for a trained one",
    )
    check(a.n is None or a.n >= 1, f"--n must be at least 1, got {a.n}")
    check(Path(a.out).suffix.lower() in (".npz", ".png"), f"--out {a.out}: use .npz or .png")
    if a.input is not None:
        from ..evaluation.evaluate import read_images

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


def _evaluate_edit(a) -> int:
    """``evaluate --task edit``: the metrics of :func:`steerdiff.edit_eval.evaluate_edit` for the
    ``source`` / ``edited`` arrays of an .npz written by ``steerdiff edit``."""
    import numpy as np
    import torch

    from ..checkpoint import write_json_atomic
    from ..edit.evaluate import evaluate_edit

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
