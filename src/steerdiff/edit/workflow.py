"""The two edit workflows of the command line, as functions.

- :func:`train_calibrated_edit` (``steerdiff train-edit``): pick training pairs of a built-in
  attribute, learn a delta-h network (:func:`~steerdiff.edit.hspace.train_edit`), calibrate its
  default strength on the training images (:func:`~steerdiff.edit.hspace.calibrate_strength`) and
  save it (optionally with its averaged, global direction).
- :func:`edit_images` (``steerdiff edit``): invert images (yours, or held-out digits drawn by seed),
  regenerate them with an edit at its calibrated (or a given) strength, and optionally write them.

Error messages name the command-line flags (``--images``, ``--input``, ...): these functions are what
the commands run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..core.errors import check
from ..hub import EDIT_MODEL
from .hspace import (
    HEADED_KINDS,
    KEEP_RATE,
    RECON_SPACE,
    REVERSE_TARGETS,
    DeltaH,
    apply_edit,
    attribute_data,
    calibrate_strength,
    conf_sigmas,
    edit_features,
    global_direction,
    invert,
    load_edit,
    prototype_direction,
    save_edit,
    train_edit,
)

__all__ = [
    "EDIT_MODEL",
    "TRAINABLE_ATTRIBUTES",
    "discover_edits",
    "edit_images",
    "heldout_images",
    "refuse_green",
    "train_calibrated_edit",
]

# what an h-space edit of EDIT_MODEL can learn (green cannot: see refuse_green)
TRAINABLE_ATTRIBUTES = ("thick", "slant")
LOSSES = ("paired", "final", "direction")
CALIBRATION_PAIRS = 256  # training pairs the default strength is calibrated on (all of them when fewer)


def refuse_green(attribute: str | None) -> None:
    """``green`` was advertised once; it is accepted only to say why it cannot work."""
    check(
        attribute != "green",
        "--attribute green: a colour swap cannot be learned in this UNet's h-space: colour travels through the skip "
        "connections, not the bottleneck an h-space edit shifts (measured in benchmarks/bench_hspace_reach.py); "
        "use --attribute thick",
    )


def _load_model(model):
    """``(denoiser, name)`` of a shipped model name / checkpoint directory, or of a denoiser."""
    if isinstance(model, (str, os.PathLike)):
        from ..models import load

        return load(model), str(model)
    return model, getattr(model, "name", type(model).__name__)


def train_calibrated_edit(
    model=EDIT_MODEL,
    attribute: str = "thick",
    *,
    images: int = 256,
    steps: int = 300,
    loss: str = "paired",
    kind: str = "conv",
    heads: int | None = None,
    ffn_dim: int | None = None,
    lr: float = 2e-3,
    recon_weight: float = 1.0,
    keep_weight: float = 0.0,
    sigma_edit: float | None = None,
    sigma_top: float = 10.0,
    edit_steps: int = 60,
    seed: int = 0,
    targets=None,
    keep_rate: float | None = KEEP_RATE,
    two_sided: bool = False,
    loss_space=None,
    progress: bool = True,
    out: str | os.PathLike | None = None,
    force: bool = False,
    save_global: bool = False,
    command: str | None = None,
) -> tuple[DeltaH, dict]:
    """Train, calibrate and (optionally) save an h-space edit of a built-in attribute.

    ``images`` training pairs (source digit, the same digit edited: :func:`attribute_data`) are drawn
    by ``seed`` from the attribute's training split; the delta network learns them with the ``paired``
    loss (L1 to the edited digit at every level), the ``final`` loss (L1 on the final edited image) or
    the ``direction`` loss (along the class-prototype direction of :func:`edit_features` over the first
    1,000 drawn pairs, plus L1 reconstruction). The default strength is then calibrated on up to
    :data:`CALIBRATION_PAIRS` (256) of the pairs (:func:`calibrate_strength`: the pixel-closest strength
    among those that keep the digit on ``keep_rate`` of the pairs by ``mnist-noisy``).

    Args:
        model: the denoiser to edit, or a shipped model name / checkpoint directory
            (default ``colormnist``); it must contain a diffusers UNet with a mid block and produce
            images of the attribute's shape ``(3, 28, 28)``.
        attribute: a trainable attribute (``thick``: strokes thickened by one pixel; ``slant``: italic).
        images: number of training pairs, at least 1.
        steps: optimizer steps, at least 1.
        loss: ``paired`` (L1 to the edited digit at every level of the interval), ``final`` (L1 to
            it on the final edited image, backpropagated through the whole edited trajectory:
            about ``edit_steps`` times slower per step) or ``direction``.
        kind: the delta network (one of :data:`~steerdiff.edit.hspace.DELTA_KINDS`).
        heads: attention heads of a ``pixel``, ``pixel-channel`` or ``transformer`` delta; must divide h's
            channels (``None``: 4; an error for the other nets, which have no heads).
        ffn_dim: feed-forward width of a ``transformer`` delta (``None``: 256; an error for the others).
        lr: Adam learning rate.
        recon_weight: weight of the L1 reconstruction term (``direction`` loss).
        keep_weight: weight of the identity term (``mnist-noisy``'s digit probabilities of the plain and the
            edited prediction, KL; 0: off), for either loss.
        sigma_edit: lower end of the editing interval, in the model's sigma units (default: chosen
            from the measured interval curves); must lie below ``sigma_top``.
        sigma_top: the noise level (sigma units, > 0) the training digits are inverted to.
        edit_steps: number of noise levels of the editing schedule (:func:`~steerdiff.edit.hspace.edit_sigmas`), recorded in
            the config so that the edit is applied on the same schedule.
        seed: random seed of the pair draw, the network's initialisation, the training batches and the
            calibration's boosting noise.
        targets: a function from source images ``(B, 3, 28, 28)`` to their edited targets, replacing the
            attribute's own (for ablations of the target, e.g. ``lambda x: dilate(x, "square")``).
        keep_rate: the share of calibration pairs whose digit the default strength must keep
            (:func:`calibrate_strength`); ``None``: the pixel-closest strength whatever it does to the digit.
        two_sided: also train the edit run backwards (``final`` loss only): each trajectory is run at
            strength -1 too, toward the attribute's backward target (``thick``: :func:`fade_edges`), so
            that a negative strength undoes the attribute instead of breaking the digit.
        loss_space: the space of the paired L1 (``paired`` / ``final`` loss; ``None``: pixels), e.g.
            :func:`~steerdiff.edit.hspace.blur_pyramid` (:func:`~steerdiff.edit.hspace.train_edit`); its
            name is recorded in the config. The calibration still measures pixels.
        progress: show a progress bar.
        out: the edit directory to write (``delta.safetensors`` + ``config.json``), checked before
            any work (missing, empty or an earlier edit, unless ``force``); ``None`` writes nothing.
        force: replace whatever ``out`` holds.
        save_global: also write the direction averaged over the training images
            (:func:`global_direction`) to ``out/global``.
        command: the command line to record in the config (``None`` when called from Python).

    Returns:
        ``(delta, config)``: the trained network and the config written beside it (attribute, model
        name, loss, intervals, calibrated ``strength`` with the L1 and the digit-kept share of each tried strength, curves,
        schedule, losses, command).
    """
    refuse_green(attribute)
    check(
        attribute in TRAINABLE_ATTRIBUTES,
        f"--attribute {attribute!r}: use {', '.join(TRAINABLE_ATTRIBUTES)}",
    )
    check(loss in LOSSES, f"edit loss {loss!r}: use one of {', '.join(LOSSES)}")
    check(loss_space is None or loss != "direction", "loss_space applies to the paired and final losses, not direction")
    check(out is not None or not save_global, "save_global writes out/global: give out")
    if out is not None:
        ckpt.check_output_dir(out, ("edit",), force=force)
    check(
        heads is None or kind in HEADED_KINDS,
        f"--heads applies to --net {', '.join(HEADED_KINDS[:-1])} or {HEADED_KINDS[-1]}, not {kind}: drop it",
    )
    check(ffn_dim is None or kind == "transformer", f"--ffn-dim applies to --net transformer, not {kind}: drop it")
    check(heads is None or heads >= 1, f"--heads must be at least 1, got {heads}")
    check(ffn_dim is None or ffn_dim >= 1, f"--ffn-dim must be at least 1, got {ffn_dim}")
    check(images >= 1 and steps >= 1, f"--images and --steps must be at least 1, got {images} and {steps}")
    check(
        sigma_edit is None or sigma_edit < sigma_top,
        f"--sigma-edit {sigma_edit} must lie below --sigma-top {sigma_top} (the editing interval is sigma_edit..sigma_top)",
    )
    check(sigma_top > 0, f"--sigma-top must be a positive noise level, got {sigma_top}")
    check(
        loss == "final" or not two_sided, f"--two-sided trains on the final edited image: add --loss final (got {loss})"
    )
    check(
        not two_sided or attribute in REVERSE_TARGETS,
        f"--two-sided: {attribute} has no backward target; use it with {', '.join(REVERSE_TARGETS)}",
    )
    check(
        keep_rate is None or (isinstance(keep_rate, (int, float)) and 0 <= keep_rate <= 1),
        f"keep_rate must be a fraction in [0, 1] or None, got {keep_rate}",
    )
    check(
        math.isfinite(keep_weight) and keep_weight >= 0,
        f"--keep-weight must be a finite number >= 0, got {keep_weight}",
    )
    denoiser, name = _load_model(model)
    sources, edited, _ = attribute_data(attribute, "train")  # target i is source i edited
    if targets is not None:
        edited = targets(sources)
        check(
            isinstance(edited, torch.Tensor) and edited.shape == sources.shape,
            f"targets must map images {tuple(sources.shape)} to a tensor of the same shape",
        )
    check(
        images <= len(sources),
        f"--images {images}: there are {len(sources)} training images for {attribute}; use that many or fewer",
    )
    pick = torch.randperm(len(sources), generator=torch.Generator().manual_seed(seed))
    src, tgt = sources[pick[:images]], edited[pick[:images]]
    if loss in ("paired", "final"):
        direction, paired = None, tgt
    else:
        direction, paired = prototype_direction(edit_features, sources[pick[:1000]], edited[pick[:1000]]), None
    delta, info = train_edit(
        denoiser,
        src,
        direction,
        target=paired,
        kind=kind,
        heads=4 if heads is None else heads,
        ffn_dim=256 if ffn_dim is None else ffn_dim,
        steps=steps,
        lr=lr,
        recon_weight=recon_weight,
        keep_weight=keep_weight,
        sigma_edit=sigma_edit,
        edit_steps=edit_steps,
        objective="final" if loss == "final" else "level",
        reverse_target=REVERSE_TARGETS[attribute](src) if two_sided else None,
        loss_space=loss_space,
        seed=seed,
        progress=progress,
        recon_space=RECON_SPACE[attribute],
        sigma_top=sigma_top,
    )
    n_cal = min(images, CALIBRATION_PAIRS)
    cal = calibrate_strength(
        denoiser,
        delta,
        src[:n_cal],
        tgt[:n_cal],
        info["intervals"],
        info["edit_steps"],
        seed=seed,
        sigma_top=sigma_top,
        keep=keep_rate,
        progress=progress,
    )
    conf = {
        "attribute": attribute,
        "model": name,
        "loss": loss,
        "keep_weight": keep_weight,
        "two_sided": two_sided,
        "loss_space": None if loss_space is None else getattr(loss_space, "__name__", repr(loss_space)),
        "intervals": info["intervals"],
        "strength": cal["strength"],
        "strength_l1": cal["l1"],
        "strength_kept": cal["kept"],
        "keep_rate": keep_rate,
        "curves": info["curves"],
        "edit_steps": info["edit_steps"],
        "sigma_top": info["sigma_top"],
        "losses": info["losses"],
        "command": command,
    }
    if out is not None:
        save_edit(out, delta, conf)
        if save_global:
            save_edit(
                Path(out) / "global",
                global_direction(denoiser, delta, src, conf_sigmas(denoiser, conf)),
                {**conf, "global_of": str(out)},
            )
    return delta, conf


def edit_images(
    edit: str | os.PathLike = "thick",
    model=EDIT_MODEL,
    images: torch.Tensor | str | os.PathLike | None = None,
    *,
    n: int | None = None,
    strength: float | None = None,
    seed: int = 0,
    boost: bool = True,
    averaged: bool = False,
    out: str | os.PathLike | None = None,
) -> dict:
    """Edit images with a shipped or trained h-space edit: DDIM inversion to the edit's top level,
    then the asymmetric reverse process with the edit (:func:`apply_edit`).

    Args:
        edit: a shipped edit name (``thick``) or a directory written by :func:`train_calibrated_edit`.
        model: the denoiser the edit was trained on, or a shipped model name / checkpoint directory
            (default ``colormnist``).
        images: the images to edit: ``(N, C, H, W)`` in ``[-1, 1]`` of the model's sample shape, or
            the path of an ``.npy``/``.npz``/``.pt`` array or of a folder of PNG/JPG images; ``None``
            edits ``n`` held-out digits of the edit's attribute, drawn by ``seed``.
        n: how many held-out digits (default 16), or how many of ``images`` (the first ``n``; default
            all); at least 1.
        strength: the edit's strength (default its calibrated strength, 1 if it has none); 0 is the
            plain reconstruction, a negative strength runs the edit backwards.
        seed: random seed of the held-out draw and of the quality-boosting noise.
        boost: step stochastically in the edit's quality-boosting interval (off: deterministic).
        averaged: use the edit's global (averaged) direction (``global/`` of its directory).
        out: write the result here: ``.npz`` (``samples`` = ``edited``, plus ``source``, ``edited``,
            ``labels``, ``attribute``, ``strength``) or a ``.png`` grid of the sources over the edits
            (``N`` per row); ``None`` writes nothing.

    Returns:
        ``{"source": (N, C, H, W), "edited": (N, C, H, W) in [-1, 1], "labels": (N,) digit labels
        (-1 for your own images), "attribute": the edit's attribute, "strength": the strength used}``.
    """
    from ..io import save_samples

    check(n is None or n >= 1, f"--n must be at least 1, got {n}")
    check(out is None or Path(out).suffix.lower() in (".npz", ".png"), f"--out {out}: use .npz or .png")
    what = "the given tensor"
    if images is not None and not isinstance(images, torch.Tensor):
        from ..evaluation.evaluate import read_images

        what = f"--input {images}"
        inp = Path(images)
        check(inp.exists(), f"--input {images}: no such file or folder; give the path of your images")
        check(
            inp.is_dir() or (inp.is_file() and inp.suffix.lower() in (".npy", ".npz", ".pt")),
            f"--input {images}: give an .npy/.npz/.pt array file or a folder of PNG images",
        )
        images = read_images(inp)
    if images is not None:
        x0 = images[:n]
        check(len(x0) > 0, f"{what} holds no images")
    delta, conf = load_edit(edit, averaged=averaged)
    made_for = conf.get("model")
    same = lambda a, b: str(a) == str(b) or (Path(a).exists() and Path(a).resolve() == Path(b).resolve())  # noqa: E731
    check(
        not isinstance(model, (str, os.PathLike)) or made_for is None or same(made_for, model),
        f"this edit was made for model {made_for} (its h-space), not {model}: use --model {made_for}",
    )
    denoiser, name = _load_model(model)
    if images is not None:
        want = tuple(denoiser.sample_shape)
        check(
            tuple(x0.shape[1:]) == want,
            f"{what} holds images of shape {tuple(x0.shape[1:])}, model {name} edits {want}"
            + (
                ": give RGB images (ColorMNIST digits: the ink in the red or green channel)"
                if want[0] == 3 and x0.shape[1] == 1
                else ": give images of that shape"
            ),
        )
        labels = torch.full((len(x0),), -1)
    elif "discovered" in conf:  # a training-free direction: any held-out digits of the model's data
        x0, labels = heldout_images(denoiser, n or 16, seed)
    else:
        n = n or 16
        src, _, labels = attribute_data(conf["attribute"], "heldout")
        check(
            n <= len(src),
            f"--n {n}: there are {len(src)} held-out digits to edit for {conf['attribute']}; use --n {len(src)} or less",
        )
        pick = torch.randperm(len(src), generator=torch.Generator().manual_seed(seed))[:n]
        x0, labels = src[pick], labels[pick]
    sig = conf_sigmas(denoiser, conf)
    strength = conf.get("strength", 1.0) if strength is None else strength
    edited = apply_edit(
        denoiser, invert(denoiser, x0, sig), sig, delta, conf, strength=strength, seed=seed, boost=boost
    )
    result = {"source": x0, "edited": edited, "labels": labels, "attribute": conf["attribute"], "strength": strength}
    if out is not None and str(out).endswith(".npz"):
        save_samples(
            edited, out, source=x0, edited=edited, labels=labels, attribute=conf["attribute"], strength=float(strength)
        )
    elif out is not None:
        save_samples(torch.cat([x0, edited]), out, nrow=len(x0))
    return result


# the held-out images of a model's training data (the set network trains on colormnist's digits)
_HELDOUT_DATA = {"colormnist-sets": "colormnist"}


def heldout_images(denoiser, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (n, C, H, W) in [-1, 1], digit labels (n,))``: ``n`` held-out images of the data
    ``denoiser`` was trained on (its config's dataset), drawn by ``seed``."""
    from ..data import load_dataset

    dataset = (getattr(denoiser, "config", None) or {}).get("dataset")
    check(dataset is not None, "this model records no training dataset: give the images yourself (--input)")
    d = load_dataset(_HELDOUT_DATA.get(dataset, dataset), "heldout")
    check(1 <= n <= len(d), f"--n {n}: there are {len(d)} held-out images of {dataset}; use 1 to {len(d)}")
    pick = torch.randperm(len(d), generator=torch.Generator().manual_seed(seed))[:n]
    labels = d.labels[pick] if d.labels is not None else torch.full((n,), -1)
    return d.images[pick], labels % 10


def discover_edits(
    model=EDIT_MODEL,
    k: int = 4,
    *,
    n: int = 128,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    strengths: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0),
    show: int = 8,
    force: bool = False,
    command: str | None = None,
    method: str = "pca",
) -> list[tuple[DeltaH, dict]]:
    """Training-free h-space directions of ``model`` (``steerdiff edit --discover K``): the top ``k``
    principal directions of h over ``n`` held-out images, or the top ``k`` directions of the
    prediction's Jacobian with respect to h (:func:`~steerdiff.edit.discover.discover_directions`).

    Args:
        model: a shipped model name, checkpoint directory or denoiser (default ``colormnist``).
        k: number of directions (at least 1).
        n: held-out images the directions are computed from (more than ``k``).
        seed: draws the held-out images (and the ``show`` digits of the grids, a separate draw).
        out: a directory to write: ``pcJ/`` (``jacJ/``) per direction (an edit directory, usable as
            ``steerdiff edit --edit DIR/pcJ``) with ``grid.png`` (rows: ``strengths``, columns:
            ``show`` held-out digits), and ``directions.json`` (explained variance, intervals).
            It must be missing, empty or an earlier ``--discover`` output unless ``force``; it is
            written whole or not at all.
        strengths: the strengths of the grids' rows.
        show: digits per grid row.
        force: replace what ``out`` holds.
        command: recorded in each direction's config.
        method: ``pca`` or ``jacobian`` (:data:`~steerdiff.edit.discover.METHODS`).

    Returns:
        ``[(delta, config)]`` per direction (see ``discover_directions``).
    """
    from ..io import save_samples
    from .discover import METHODS, discover_directions, save_directions

    check(isinstance(k, int) and k >= 1, f"--discover must be at least 1, got {k}")
    check(method in METHODS, f"--discover-method {method!r}: use one of {', '.join(METHODS)}")
    check(n > k, f"--n {n}: {k} directions need more than {k} images")
    if out is not None:
        ckpt.check_output_dir(out, ("directions",), force=force)
    denoiser, name = _load_model(model)
    check(
        not getattr(denoiser, "cond_frames", 0),
        f"model {name} predicts the next frame: --discover needs an image model (e.g. colormnist or mnist)",
    )
    images, _ = heldout_images(denoiser, n, seed)
    # a set model's label is in the denoiser
    directions = discover_directions(denoiser, images, k, method=method, seed=seed)
    if out is None:
        return directions
    digits, _ = heldout_images(denoiser, show, seed + 1)
    sig = conf_sigmas(denoiser, directions[0][1])
    start = invert(denoiser, digits, sig)
    with ckpt.atomic_directory(out) as tmp:
        extra = {"model": name, **({"command": command} if command else {})}
        save_directions(tmp, directions, **extra)
        for delta, conf in directions:
            rows = [apply_edit(denoiser, start, sig, delta, conf, strength=s, seed=seed) for s in strengths]
            save_samples(torch.cat(rows), Path(tmp) / conf["attribute"] / "grid.png", nrow=show)
        summary = {
            "model": name,
            "images": n,
            "seed": seed,
            "method": method,
            "grid_strengths": list(strengths),
            "directions": [
                {"name": c["attribute"], **c["discovered"], "intervals": c["intervals"]} for _, c in directions
            ],
        }
        ckpt.write_json_atomic(Path(tmp) / "directions.json", summary)
    return directions
