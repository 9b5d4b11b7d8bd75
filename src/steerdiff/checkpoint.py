"""Checkpoint directories: ``config.json`` + safetensors, written atomically.

Layout of a steerdiff checkpoint ``DIR``::

    DIR/config.json                          steerdiff's config (kind, objective, sigmas, preset, ...)
    DIR/unet/config.json                     the UNet's diffusers config
    DIR/unet/diffusion_pytorch_model.safetensors   EMA weights (diffusers save_pretrained layout)
    DIR/state.safetensors                    training state: raw weights, optimizer, step (optional)
    DIR/state.json                           the non-tensor part of the training state (optional)

A save writes everything to a sibling temporary directory, reads it back to verify it, then swaps
it in with renames, so an interrupted or failed save never leaves ``DIR`` half-written and never
replaces a good checkpoint with a bad one. Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .core.errors import SteerdiffError, check

UNET_DIR = "unet"
WEIGHTS = "diffusion_pytorch_model.safetensors"
UNET_CLASS = "UNet2DModel"  # unet/config.json's _class_name, for diffusers' from_pretrained


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    check(path.is_file(), f"{path} is missing: is this a steerdiff checkpoint directory?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SteerdiffError(f"{path} is corrupt ({e.msg} at line {e.lineno}): restore it or retrain") from None
    except (UnicodeDecodeError, OSError) as e:
        raise SteerdiffError(
            f"{path} is not a readable JSON file ({type(e).__name__}): restore it or retrain"
        ) from None


def read_preset(path: str | os.PathLike) -> dict:
    """A sampling preset (``{"sampler": ..., "steps": ..., "particles": ...}``) from the JSON file ``path``,
    for :func:`steerdiff.models.export`."""
    preset = read_json(path)
    check(isinstance(preset, dict), f"--preset {path}: the file must hold a JSON object (sampler, steps, particles)")
    return preset


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    check(path.is_file(), f"{path} is missing: the checkpoint is incomplete; retrain or restore it")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SteerdiffError(f"{path} is corrupt ({e}): restore it or retrain") from None


def _old(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


def recover(directory: str | os.PathLike) -> bool:
    """Finish what a save killed between its two renames left behind: ``directory`` is missing and
    its previous version waits in ``.NAME.old``; rename it back (True if it did). Nothing is deleted."""
    directory = Path(directory)
    old = _old(directory)
    if old.is_dir() and not os.path.lexists(directory):
        os.replace(old, directory)
        return True
    return False


def clean_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the ``.NAME.XXXXXXXX.tmp/`` directories that killed saves of ``directory`` left (only
    directories named exactly as :func:`atomic_directory` names its temporaries); returns them."""
    import re

    directory = Path(directory)
    if not directory.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(directory.name)}\.[A-Za-z0-9_]{{8}}\.tmp")
    stale = [q for q in directory.parent.iterdir() if pattern.fullmatch(q.name) and q.is_dir() and not q.is_symlink()]
    for q in stale:
        shutil.rmtree(q, ignore_errors=True)
    return stale


# what each kind of steerdiff output directory holds (its own entries: nothing else is replaced silently)
OUTPUT_KINDS = {
    "training": ("a training checkpoint", {"config.json", UNET_DIR, "state.safetensors", "state.json"}),
    "model": ("an exported model (no training state)", {"config.json", UNET_DIR}),
    "edit": ("an h-space edit", {"config.json", "delta.safetensors", "global", "grid.png"}),
    "directions": ("training-free h-space directions (edit --discover)", None),
    "classifier": ("a classifier", {"config.json", "model.safetensors"}),
    "report": ("a report", None),
}


def output_kind(directory: str | os.PathLike) -> str | None:
    """The kind of steerdiff output ``directory`` holds (a key of :data:`OUTPUT_KINDS`), ``"empty"``,
    ``"missing"``, ``"file"``, or None for anything else (including a steerdiff output with extra files)."""
    directory = Path(directory)
    if not os.path.lexists(directory):
        return "missing"
    if not directory.is_dir():
        return "file"
    names = {q.name for q in directory.iterdir()}
    if not names:
        return "empty"
    try:
        conf = json.loads((directory / "config.json").read_text()) if "config.json" in names else {}
    except (OSError, ValueError):  # a corrupt config: judge by the weights files (the reader reports the corruption)
        conf = (
            {"format": "steerdiff-edit"}
            if "delta.safetensors" in names
            else {"arch": None}
            if "model.safetensors" in names
            else {"format": "steerdiff-checkpoint"}
            if UNET_DIR in names or "state.safetensors" in names
            else {}
        )
    conf = conf if isinstance(conf, dict) else {}
    kind = None
    if conf.get("format") == "steerdiff-checkpoint":
        kind = "training" if "state.safetensors" in names else "model"
    elif conf.get("format") == "steerdiff-edit":
        kind = "edit"
    elif "model.safetensors" in names and "arch" in conf:
        kind = "classifier"
    elif "directions.json" in names:  # edit --discover: pc1/, pc2/, ... each an edit
        ok = all(
            n == "directions.json" or (n.startswith("pc") and n[2:].isdigit() and output_kind(directory / n) == "edit")
            for n in names
        )
        return "directions" if ok else None
    elif {"report.json", "index.html"} <= names:
        ok = all(q.is_file() and q.suffix in (".png", ".json", ".html") for q in directory.iterdir())
        return "report" if ok else None
    if kind is None or not names <= OUTPUT_KINDS[kind][1]:
        return None
    return kind


def check_output_dir(
    directory: str | os.PathLike, kinds: tuple[str, ...], *, force: bool = False, flag: str = "--out"
) -> str:
    """Refuse to write over ``directory`` unless it is missing, empty or one of ``kinds`` (this
    command's own output) -- or ``force`` is set; a file is never replaced by a directory. Returns
    what it holds (see :func:`output_kind`). Call it before the work, so a refusal costs nothing."""
    directory = Path(directory)
    kind = output_kind(directory)
    check(kind != "file", f"{flag} {directory} is an existing file, not a directory: give another path")
    if kind in ("missing", "empty") or kind in kinds or force:
        return kind or "other"
    if kind is None:
        known = set().union(*(entries or () for _, entries in OUTPUT_KINDS.values()), {"report.json", "index.html"})
        names = sorted(q.name for q in directory.iterdir() if q.name not in known) or sorted(
            q.name for q in directory.iterdir()
        )
        what = f"files that are not this command's output ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
    else:
        what = OUTPUT_KINDS[kind][0]
    raise SteerdiffError(
        f"{flag} {directory} holds {what}, which this command would replace: give another {flag} "
        "(a new or empty directory), or add --force to replace it"
    )


@contextmanager
def atomic_directory(directory: str | os.PathLike, verify=None):
    """Yield a temporary sibling of ``directory`` to fill; on success, ``verify(tmp)`` reads it back
    and it replaces ``directory`` by renames. On any error the temporary is removed and the old
    ``directory`` is left untouched. A previous version left in ``.NAME.old`` by a save killed
    between the renames is renamed back first (never deleted while it is the only copy), and the
    temporaries of killed saves are removed."""
    directory = Path(directory)
    check(
        not os.path.lexists(directory) or directory.is_dir(),
        f"{directory} is an existing file, not a directory: give another path (nothing was written)",
    )
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover(directory)
    clean_stale_temporaries(directory)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a checkpoint should be readable like any written file
    try:
        yield tmp
        if verify is not None:
            verify(tmp)
        old = None
        if directory.exists():
            old = _old(directory)
            shutil.rmtree(old, ignore_errors=True)  # both exist: a completed swap whose clean-up was cut short
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------- a model's config.json
FORMAT = "steerdiff-checkpoint"
# The keys of a model's config.json that build its denoiser (steerdiff.models.load): every kind's,
# then each kind's own. Written by model_config, checked on reading by check_model_config.
MODEL_KEYS = ("kind", "sample_shape", "sigma_data")
KIND_KEYS = {"edm": ("sigma_min", "sigma_max", "time_scale"), "discrete": ("schedule", "prediction_type")}


def model_config(
    kind: str,
    *,
    sample_shape,
    sigma_data: float,
    preset: dict,
    num_classes: int | None = None,
    null_label: int | None = None,
    cond_frames: int = 0,
    **fields,
) -> dict:
    """A model's ``config.json``, the one place its keys are written (read back by :func:`check_model_config`).

    Args:
        kind: ``"edm"`` (EDM preconditioning) or ``"discrete"`` (a DDPM epsilon / v network).
        sample_shape: ``(C, H, W)`` of one sample.
        sigma_data: the data's standard deviation (images in ``[-1, 1]``).
        preset: the sampling defaults of :func:`steerdiff.sample` (``sampler``, ``steps``, ...).
        num_classes: labels of a class-conditional network (``None``: unconditional).
        null_label: the label that means "no label" (a network trained with label dropout), or ``None``.
        cond_frames: previous frames that condition a frame-conditional network (0: none).
        fields: the kind's own keys (:data:`KIND_KEYS`: ``sigma_min``, ``sigma_max``, ``time_scale``
            for ``edm``; ``schedule``, ``prediction_type`` for ``discrete``) and what else the
            checkpoint records (``dataset``, ``objective``, ``step``, ``train``).
    """
    check(kind in KIND_KEYS, f"model kind {kind!r}: use one of {', '.join(KIND_KEYS)}")
    conf = {
        "format": FORMAT,
        "version": 1,
        "kind": kind,
        "sample_shape": list(sample_shape),
        "sigma_data": sigma_data,
        "num_classes": num_classes,
        "null_label": null_label,
        "preset": preset,
        "cond_frames": cond_frames,
        **fields,
    }
    missing = [k for k in KIND_KEYS[kind] if k not in conf]
    check(not missing, f"a {kind} model config needs {', '.join(missing)}")
    return conf


def check_model_config(conf: dict, path: str | os.PathLike) -> dict:
    """``conf`` (the ``config.json`` read from checkpoint ``path``), checked for the keys that build its
    denoiser (see :func:`model_config`); returns it unchanged."""
    check(conf.get("format") == FORMAT, f"{path}/config.json is not a steerdiff checkpoint config")
    missing = [k for k in MODEL_KEYS + KIND_KEYS.get(conf.get("kind"), ()) if k not in conf]
    check(
        not missing,
        f"{path}/config.json lacks {', '.join(missing)}: the checkpoint is corrupt; restore it or re-export it",
    )
    return conf


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def save_checkpoint(
    directory: str | os.PathLike,
    config: dict,
    unet_config: dict,
    unet_state: dict[str, torch.Tensor],
    *,
    dtype: torch.dtype | None = None,
    train_state: dict[str, torch.Tensor] | None = None,
    train_meta: dict | None = None,
) -> Path:
    """Atomically write a checkpoint directory (see module docstring); returns its path.

    ``unet_state`` are the weights to sample with (EMA), cast to ``dtype`` if given (e.g. fp16 to
    ship). ``train_state``/``train_meta`` are what resuming needs.
    """
    with_state = train_state is not None
    with atomic_directory(directory, verify=lambda d: read_checkpoint(d, with_state=with_state)) as tmp:
        (tmp / UNET_DIR).mkdir()
        save_tensors(
            tmp / UNET_DIR / WEIGHTS,
            {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in unet_state.items()},
        )
        write_json_atomic(tmp / UNET_DIR / "config.json", {"_class_name": UNET_CLASS, **unet_config})
        if with_state:
            save_tensors(tmp / "state.safetensors", train_state)
            write_json_atomic(tmp / "state.json", train_meta or {})
        write_json_atomic(tmp / "config.json", config)
    return Path(directory)


def read_checkpoint(directory: str | os.PathLike, with_state: bool = False):
    """Read ``(config, unet_config, unet_state[, train_state, train_meta])`` from a checkpoint dir: what
    :func:`save_checkpoint` was given (``unet_config`` without the ``_class_name`` it adds for diffusers)."""
    directory = Path(directory)
    if not directory.is_dir():
        old = directory.with_name(f".{directory.name}.old")
        hint = f" (an interrupted save left {old}: rename it back)" if old.is_dir() else ""
        raise SteerdiffError(
            f"checkpoint directory {directory} does not exist{hint}: "
            "pass a shipped model name (see `steerdiff sample --help`) or a directory written by `steerdiff train`"
        )
    config = read_json(directory / "config.json")
    unet_config = read_json(directory / UNET_DIR / "config.json")
    if isinstance(unet_config, dict):  # without the keys save_checkpoint adds for diffusers
        unet_config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    unet_state = read_safetensors(directory / UNET_DIR / WEIGHTS)
    if not with_state:
        return config, unet_config, unet_state
    return (
        config,
        unet_config,
        unet_state,
        read_safetensors(directory / "state.safetensors"),
        read_json(directory / "state.json"),
    )
