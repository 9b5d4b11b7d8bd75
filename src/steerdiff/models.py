"""Loading denoisers: shipped models by name, or any steerdiff checkpoint directory.

``load("mnist")`` returns the shipped unconditional MNIST denoiser; ``load("mnist-cond")`` the same
network used class-conditionally (it was trained with label dropout, so one set of weights is both
a true unconditional and a true class-conditional denoiser); ``load(path)`` any directory written
by ``steerdiff train``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import checkpoint as ckpt
from .core.denoisers import Denoiser, DiscreteDenoiser, EDMDenoiser
from .core.errors import SteerdiffError, check
from .core.schedules_ddpm import ddpm_alphas_cumprod
from .data import SET_ORDER, SHORT_NAMES
from .hub import MODELS as SHIPPED
from .hub import weights_dir
from .train.nets import build_unet

if TYPE_CHECKING:
    from .compose.sculpt import Composition


def resolve(name_or_path: str | os.PathLike) -> tuple[Path, dict]:
    """The checkpoint directory and loading options for a shipped name or a path."""
    key = SHORT_NAMES.get(str(name_or_path), str(name_or_path))
    if key in SHIPPED:
        folder, opts = SHIPPED[key]
        path = weights_dir() / folder
        check(path.is_dir(), f"shipped model {key!r} is not in this installation ({path} missing): reinstall steerdiff")
        return path, dict(opts)
    path = Path(key).expanduser()
    if not path.exists() and os.sep not in key and "/" not in key:
        raise SteerdiffError(
            f"unknown model {key!r}: use a shipped name ({', '.join(SHIPPED)}, or 'ring' for the analytic toy) or a checkpoint directory"
        )
    return path, {}


def load(
    name_or_path: str | os.PathLike = "mnist",
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    set_guidance: float = 0.0,
) -> Denoiser:
    """A denoiser from a shipped model name or a checkpoint directory (weights in ``dtype`` on ``device``).

    The result is in eval mode with frozen parameters; gradients with respect to its *input* (which
    guidance needs) still flow. Its ``config`` attribute is the checkpoint's ``config.json``.
    ``set_guidance`` (ColorMNIST sets only) is classifier-free guidance of the set against the
    all-digit ``colormnist`` set: ``D(x | S) + w (D(x | S) - D(x | all))``, the set's density
    sharpened by ``(p_S / p_all)^w`` (0: the plain set model).
    """
    check(
        isinstance(dtype, torch.dtype) and dtype.is_floating_point,
        f"dtype must be a floating torch.dtype (e.g. torch.float16), got {dtype!r}",
    )
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise SteerdiffError(f"device {device!r}: not a torch device; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    check(
        device.type != "cuda" or torch.cuda.is_available(),
        f"device {device}: CUDA is not available on this machine; use 'cpu'",
    )
    if str(name_or_path) == "ring":
        from .core.toy import ring

        return ring().to(device)
    path, opts = resolve(name_or_path)
    conf, ucfg, state = ckpt.read_checkpoint(path)
    ckpt.check_model_config(conf, path)
    try:
        net = build_unet(ucfg)
    except (TypeError, ValueError, KeyError) as e:
        raise SteerdiffError(
            f"{path}/unet/config.json is not a valid UNet config ({str(e).splitlines()[0]}): the checkpoint is corrupt"
        ) from None
    try:
        net.load_state_dict(state)  # copies (and casts fp16 shipped weights) into the float32 parameters
    except RuntimeError as e:
        raise SteerdiffError(
            f"{path}: weights do not match unet/config.json ({str(e).splitlines()[0]}): the checkpoint is corrupt"
        ) from None
    net = net.to(device).eval().requires_grad_(False)
    if dtype != torch.float32:
        net = net.half() if dtype == torch.float16 else net.to(dtype=dtype)
    model = denoiser_from_config(net, conf, require_labels=opts.get("require_labels"), path=path)
    model.name = str(name_or_path)
    model = model.to(device)
    check(
        set_guidance == 0 or "set" in opts,
        f"set_guidance is for the ColorMNIST set models ({', '.join(SET_ORDER[:-1])}), not {name_or_path}",
    )
    if "set" in opts:
        return _set_model(model, opts["set"], set_guidance)
    if "digits" in opts:
        return _subdigit_model(model, opts["digits"], device)
    return model


def denoiser_from_config(
    net: torch.nn.Module, conf: dict, *, require_labels: bool | None = None, path: str | os.PathLike = "the model"
) -> Denoiser:
    """The denoiser a model's ``config.json`` describes (:func:`steerdiff.checkpoint.model_config`) around
    its network; its ``config`` attribute is ``conf``.

    Args:
        net: the network (a diffusers ``UNet2DModel`` built from ``unet/config.json``).
        conf: the model's config (checked with :func:`steerdiff.checkpoint.check_model_config`).
        require_labels: refuse calls without class labels (default: when the network has no null label).
        path: where ``conf`` came from, for error messages.
    """
    num, null = conf.get("num_classes"), conf.get("null_label")
    common = dict(
        sample_shape=conf["sample_shape"],
        sigma_data=conf["sigma_data"],
        preset=conf.get("preset"),
        num_classes=num,
        null_label=null,
        require_labels=(null is None and num is not None) if require_labels is None else require_labels,
    )
    model: Denoiser
    if conf["kind"] == "edm":
        model = EDMDenoiser(
            net,
            sigma_min=conf["sigma_min"],
            sigma_max=conf["sigma_max"],
            time_scale=conf["time_scale"],
            cond_frames=conf.get("cond_frames", 0),
            **common,
        )
    elif conf["kind"] == "discrete":
        model = DiscreteDenoiser(
            net, ddpm_alphas_cumprod(**conf["schedule"]), prediction_type=conf["prediction_type"], **common
        )
    else:
        raise SteerdiffError(f"{path}: unknown model kind {conf['kind']!r}")
    model.config = conf
    return model


def load_composition(
    bases: Sequence[str | os.PathLike],
    y: Sequence[int] = (1, 2),
    *,
    classifier: str | os.PathLike | None = None,
    guidance_scale: float | None = None,
    set_guidance: float | None = None,
    device: str | torch.device = "cpu",
) -> Composition:
    """The compositional sculpting of models named ``bases`` (:func:`steerdiff.compose.compose`), what
    ``steerdiff compose`` samples: the bases are loaded with :func:`load`, the joint classifier from
    ``classifier`` or the shipped one for these bases, and the settings the classifier records.

    Args:
        bases: ``m >= 2`` shipped model names or checkpoint directories, in the classifier's label order.
        y: the observed labels, one per label axis of the classifier, each in ``1..m``.
        classifier: a joint classifier directory (``steerdiff train-classifier --kind joint``); ``None``:
            the shipped one for ``bases``.
        guidance_scale: multiplies the classifier term (1: the exact composition); ``None``: the value
            the classifier records for ``y``
            (:meth:`~steerdiff.compose.joint.JointClassifier.recorded_guidance`), else 1.
        set_guidance: ColorMNIST set bases: classifier-free guidance of each set against the all-digit
            set (see :func:`load`), ``>= 0``; ``None``: the value the classifier records, else 0.
        device: where the bases and the classifier are put.

    Returns:
        The composition denoiser; ``.scale`` and ``.set_guidance`` hold the values used.
    """
    from .compose.joint import load_joint_classifier, shipped_joint_classifier
    from .compose.sculpt import compose

    clf = load_joint_classifier(classifier) if classifier else shipped_joint_classifier(bases)
    scale, w = clf.recorded_guidance(y)
    scale = scale if guidance_scale is None else guidance_scale
    w = w if set_guidance is None else set_guidance
    check(w >= 0, f"set_guidance must be >= 0, got {w}")
    comp = compose([load(b, device=device, set_guidance=w) for b in bases], clf.to(device), tuple(y), scale)
    comp.set_guidance = w
    return comp


def _set_model(model: Denoiser, set_name: str, guidance: float = 0.0) -> Denoiser:
    """The denoiser of one ColorMNIST set: the set-conditional network with its set index fixed;
    with ``guidance`` w, sharpened against the all-digit set (see :func:`load`)."""
    from .compose.sculpt import conjunction
    from .core.denoisers import condition

    check(guidance >= 0, f"set_guidance must be >= 0, got {guidance}")
    idx = SET_ORDER.index(set_name)
    if guidance and set_name != "colormnist":
        out = conjunction(
            model, [{"class_labels": idx}], [1.0 + guidance], uncond={"class_labels": SET_ORDER.index("colormnist")}
        )
    else:
        out = condition(model, class_labels=idx)
    out.config, out.name = model.config, set_name
    return out


class _ClassSubset(torch.nn.Module):
    """``log p_sigma(c | x, c in subset)`` ``(B, len(subset))`` from a noisy classifier's logits."""

    def __init__(self, classifier, subset):
        super().__init__()
        self.classifier, self.subset = classifier, list(subset)

    def forward(self, x, sigma):
        return torch.log_softmax(self.classifier(x, sigma)[:, self.subset], 1)


def _subdigit_model(model: Denoiser, digits, device) -> Denoiser:
    """The denoiser of MNIST restricted to ``digits``: ``sum_c p_sigma(c | x, digits) D(x | c)``, the
    exact mixture identity with the posterior from the shipped noise-conditional classifier."""
    from .compose.sculpt import mixture
    from .core.denoisers import condition
    from .train.classifier import load_classifier

    bases = [condition(model, class_labels=c) for c in digits]
    out = mixture(bases, classifier=_ClassSubset(load_classifier("mnist-noisy").to(device), digits))
    out.config, out.name = model.config, f"mnist digits {list(digits)}"
    return out


def export(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    fp16: bool = True,
    preset: dict | None = None,
    force: bool = False,
) -> Path:
    """Copy a checkpoint's sampling weights (EMA) and configs to ``dst`` without training state;
    ``preset`` replaces the recorded sampling preset. ``dst`` must be missing, empty or an exported
    model (anything else only with ``force``), and never ``src`` itself."""
    check(
        not (Path(dst).exists() and Path(src).exists() and os.path.samefile(src, dst)),
        f"--out {dst} is the checkpoint being exported: exporting over it would drop its training state; "
        "give another --out",
    )
    ckpt.check_output_dir(dst, ("model",), force=force)
    conf, ucfg, state = ckpt.read_checkpoint(src)
    if preset is not None:
        conf["preset"] = preset
    return ckpt.save_checkpoint(dst, conf, ucfg, state, dtype=torch.float16 if fp16 else None)
