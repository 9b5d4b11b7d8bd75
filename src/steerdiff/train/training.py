"""Training of denoising networks: EDM loss or discrete DDPM epsilon / v-prediction.

Randomness is a pure function of ``(seed, step)``: each step seeds torch's global generator (dropout)
and its own generator (noise levels, noise, label dropout) from a hash of ``(seed, step)``, and batch
``k`` of epoch ``e`` is a slice of a permutation drawn from ``(seed, e)``. Resuming from a
checkpoint at step ``k`` therefore repeats exactly the losses an uninterrupted run would have had.
"""

from __future__ import annotations

import copy
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import checkpoint as ckpt
from ..core import distributed
from ..core.denoisers import EDMDenoiser, append_dims
from ..core.errors import SteerdiffError, check
from ..core.schedules_ddpm import ddpm_alphas_cumprod
from ..core.seeding import stream_seed
from ..data import load_dataset
from .nets import PRESETS, build_unet, unet_config

OBJECTIVES = ("edm", "eps", "v")
MOVING = ("circle", "horizontal", "free")
DATASET_ALIASES = {"circle_jumping": "circle"}  # the particle-guidance project's name of the circle dataset


def frame_pairs(cfg, digits: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch of moving digits: ``(next frame (B, 1, 32, 32), K previous frames (B, K, 32, 32))``,
    a window of ``K + 1`` frames at a random offset of a fresh sequence per digit."""
    from ..sequences.moving import moving_digits

    k = cfg.cond_frames
    opts = {
        "circle": {"n_directions": cfg.n_directions, "p_first": cfg.p_first},
        "horizontal": {"p_right": cfg.p_right},
        "free": {},
    }[cfg.dataset]
    seq = moving_digits(
        cfg.dataset, digits, length=k + 4, seed=int(torch.randint(0, 2**31, (1,), generator=gen)), **opts
    )
    start = torch.randint(0, 4, (len(digits),), generator=gen)
    frames = torch.stack([seq["frames"][i, s : s + k + 1] for i, s in enumerate(start.tolist())])
    return frames[:, k : k + 1], frames[:, :k]


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in the checkpoint's ``config.json``); the
    dataset name ``circle_jumping`` is read as ``circle`` (:data:`DATASET_ALIASES`)."""

    dataset: str = "mnist"
    objective: str = "edm"
    net: str = "lean"
    steps: int = 20000
    batch_size: int = 64
    lr: float = 5e-4
    warmup: int = 200
    ema_decay: float = 0.999
    dropout: float = 0.1
    class_conditional: bool = False
    p_uncond: float = 0.0  # label dropout: with class_conditional, the share trained without labels
    seed: int = 0
    checkpoint_every: int = 500
    # EDM (Karras et al. 2022): ln(sigma) ~ N(P_mean, P_std^2), sigma_data; sampling range
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    time_scale: float = 250.0
    # discrete DDPM schedule (objective eps / v)
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    idx_dir: str | None = None
    # moving digits (dataset circle / horizontal / free): K previous frames condition the next one
    cond_frames: int = 0
    n_directions: int = 8
    p_first: float | None = None
    p_right: float = 0.7
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dataset = DATASET_ALIASES.get(self.dataset, self.dataset)


def ema_decay_at(step: int, max_decay: float) -> float:
    """EMA decay with warm-up, ``min(max_decay, (1 + step) / (10 + step))``: early weights are not frozen in."""
    return min(max_decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=False):
        pe.lerp_(pm, 1 - decay)


def _part(part: slice, *tensors):
    return [t[part] for t in tensors]


def edm_loss(
    denoiser: EDMDenoiser, x0: torch.Tensor, gen: torch.Tensor, cfg: TrainConfig, part: slice = slice(None), **cond
) -> torch.Tensor:
    """EDM's weighted denoising loss, ``lambda(s) ||D(x0 + s n, s) - x0||^2`` with ``ln s ~ N(P_mean, P_std^2)``.
    The noise is drawn for the whole batch; ``part`` selects the samples this process computes (DDP)."""
    b = x0.shape[0]
    sigma = (cfg.p_mean + cfg.p_std * torch.randn(b, generator=gen)).exp().to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    x0, sigma, noise = _part(part, x0, sigma, noise)
    cond = {k: v[part] for k, v in cond.items()}
    weight = (sigma**2 + cfg.sigma_data**2) / (sigma * cfg.sigma_data) ** 2
    d = denoiser(x0 + append_dims(sigma, x0.ndim) * noise, sigma, **cond)
    return (append_dims(weight, x0.ndim) * (d - x0) ** 2).mean()


def ddpm_loss(
    net: torch.nn.Module,
    x0: torch.Tensor,
    gen: torch.Generator,
    alphas_cumprod: torch.Tensor,
    objective: str,
    part: slice = slice(None),
    **cond,
) -> torch.Tensor:
    """DDPM's simple loss: MSE of the epsilon (``eps``) or v (``v``) prediction at a uniform timestep."""
    b = x0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (b,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    x0, t, noise = _part(part, x0, t, noise)
    cond = {k: v[part] for k, v in cond.items()}
    a = append_dims(alphas_cumprod[t].float().sqrt(), x0.ndim).to(x0.device)
    s = append_dims((1 - alphas_cumprod[t]).float().sqrt(), x0.ndim).to(x0.device)
    target = noise if objective == "eps" else a * noise - s * x0
    out = net(a * x0 + s * noise, t.to(x0.device), **cond).sample
    return ((out - target) ** 2).mean()


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {f"opt.{i}.{k}": torch.as_tensor(v).cpu() for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def model_config(cfg: TrainConfig, sample_shape, num_classes: int | None, step: int) -> dict:
    """The steerdiff ``config.json`` of a checkpoint trained with ``cfg``."""
    if cfg.objective == "edm":
        kind, preset = "edm", {"sampler": "heun", "steps": 18}
        own = dict(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, time_scale=cfg.time_scale)
    else:
        kind, preset = "discrete", {"sampler": "ddim", "steps": 50}
        own = dict(
            prediction_type="epsilon" if cfg.objective == "eps" else "v_prediction",
            schedule={
                "num_train_timesteps": cfg.num_train_timesteps,
                "beta_start": cfg.beta_start,
                "beta_end": cfg.beta_end,
                "beta_schedule": "linear",
            },
        )
    return ckpt.model_config(
        kind,
        sample_shape=sample_shape,
        sigma_data=cfg.sigma_data,
        preset=preset,
        num_classes=num_classes,
        null_label=num_classes if (num_classes and cfg.p_uncond > 0) else None,
        cond_frames=cfg.cond_frames,
        dataset=cfg.dataset,
        objective=cfg.objective,
        step=step,
        train={k: v for k, v in asdict(cfg).items() if k != "extra"},
        **own,
    )


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    progress: bool = True,
    command: str | None = None,
    stop_after: int | None = None,
    force: bool = False,
    device: str | torch.device = "cpu",
    time_limit: float | None = None,
) -> dict:
    """Train (or resume) a model into checkpoint directory ``out``; returns ``{"losses": [...], "step": n}``.

    If ``out`` holds a checkpoint with training state, training resumes from it (its recorded config
    must match ``cfg`` except for ``steps``/``checkpoint_every``). ``stop_after`` ends the run early
    after that many steps in this call (for tests and chunked runs); a checkpoint is written at the end.
    ``out`` must be missing, empty or a training checkpoint: anything else (an exported model, other
    files) is refused unless ``force`` (then a fresh run replaces it).

    ``device`` runs the network (and its optimizer and EMA) there; every random draw stays on the CPU
    generators, so a run on ``cuda`` sees the same batches, noise and labels as one on the CPU and
    differs only by the device's float rounding. A run may move between devices when resumed;
    ``state.json`` records which steps ran where. ``time_limit`` (seconds) ends the run after the
    first step that passes it, with a checkpoint (for clusters' job limits).
    """
    check(cfg.objective in OBJECTIVES, f"objective {cfg.objective!r}: use one of {', '.join(OBJECTIVES)}")
    check(cfg.net in PRESETS, f"net {cfg.net!r}: use one of {', '.join(PRESETS)}")
    check(cfg.steps > 0 and cfg.batch_size > 0, "steps and batch size must be positive")
    check(0 <= cfg.p_uncond < 1, "p_uncond must lie in [0, 1)")
    check(math.isfinite(cfg.lr) and cfg.lr > 0, f"lr must be a positive finite number, got {cfg.lr}")
    check(
        0 <= cfg.ema_decay < 1 and 0 <= cfg.dropout < 1,
        f"ema_decay and dropout must lie in [0, 1), got {cfg.ema_decay} and {cfg.dropout}",
    )
    check(cfg.checkpoint_every >= 1, f"checkpoint_every must be at least 1, got {cfg.checkpoint_every}")
    out = Path(out)
    if distributed.world()[0] == 0:
        try:  # a save killed between its renames left the checkpoint in .NAME.old
            ckpt.recover(out)
        except FileNotFoundError:
            pass
        ckpt.clean_stale_temporaries(out)  # the temporaries of saves that were killed
    kind = ckpt.check_output_dir(out, ("training",), force=force)
    moving = cfg.dataset in MOVING
    check(
        not moving or cfg.cond_frames >= 1,
        f"dataset {cfg.dataset} predicts frames: set --cond-frames (1 for circle, 2 for free/horizontal)",
    )
    check(not moving or cfg.objective == "edm", "frame-conditional training uses --objective edm")
    kwargs = {"idx_dir": cfg.idx_dir} if cfg.idx_dir else {}
    data = load_dataset("mnist" if moving else cfg.dataset, "train", **kwargs)
    check(
        not cfg.class_conditional or data.labels is not None,
        f"dataset {cfg.dataset} has no labels for class-conditional training",
    )
    sample_shape = (1, 32, 32) if moving else tuple(data.images.shape[1:])
    num_classes = int(data.labels.max()) + 1 if cfg.class_conditional else None
    n_embeds = None if num_classes is None else num_classes + (1 if cfg.p_uncond > 0 else 0)
    ucfg = unet_config(
        cfg.net,
        sample_size=sample_shape[-1],
        in_channels=sample_shape[0] + cfg.cond_frames,
        out_channels=sample_shape[0],
        num_class_embeds=n_embeds,
        dropout=cfg.dropout,
    )
    torch.manual_seed(stream_seed("init", cfg.seed))
    net = build_unet(ucfg)
    device = torch.device(device)
    net = net.to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step, losses, segments = 0, [], []

    if kind == "training" or (force and (out / "state.safetensors").is_file()):
        old_conf, _, ema_state, state, meta = ckpt.read_checkpoint(out, with_state=True)
        mine = {k: v for k, v in asdict(cfg).items() if k not in ("steps", "checkpoint_every", "extra")}
        theirs = {k: v for k, v in old_conf.get("train", {}).items() if k in mine}
        diff = sorted(k for k in mine if theirs.get(k) != mine[k])
        check(
            not diff,
            f"{out} holds a run with different settings ({', '.join(f'{k}={theirs.get(k)!r}' for k in diff)}): "
            "use a new --out or the same settings to resume",
        )
        try:
            net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
            ema.load_state_dict(ema_state)
            _load_optimizer(opt, state, meta["param_groups"])
            step, losses = int(meta["step"]), list(meta["losses"])
            segments = list(meta.get("devices", [{"device": "cpu", "steps": [0, step]}]))
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise SteerdiffError(
                f"{out}: the training state (state.json / state.safetensors) does not match this run "
                f"({what}): the checkpoint is corrupt; restore it or train into a new --out"
            ) from None
    # DDP under torchrun: every rank draws the whole batch's randomness (so runs match one process) and
    # computes the loss of its equal share; DDP averages the gradients, i.e. the full-batch gradient
    rank, world_size = distributed.world()
    check(
        cfg.batch_size % world_size == 0,
        f"batch size {cfg.batch_size} does not split over {world_size} processes: use a multiple of {world_size}",
    )
    part = slice(rank * cfg.batch_size // world_size, (rank + 1) * cfg.batch_size // world_size)
    model = net
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(net)
    denoiser = EDMDenoiser(
        model,
        sigma_min=cfg.sigma_min,
        sigma_max=cfg.sigma_max,
        sigma_data=cfg.sigma_data,
        sample_shape=sample_shape,
        time_scale=cfg.time_scale,
        num_classes=n_embeds,
        cond_frames=cfg.cond_frames,
    )
    alphas_cumprod = ddpm_alphas_cumprod(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)

    def save(at_step: int) -> None:
        if rank != 0:
            return
        conf = model_config(cfg, sample_shape, num_classes, at_step)
        if command:
            conf["train"]["command"] = command
        opt_tensors, groups = _optimizer_tensors(opt)
        state = {**{f"net.{k}": v.cpu() for k, v in net.state_dict().items()}, **opt_tensors}
        ckpt.save_checkpoint(
            out,
            conf,
            ucfg,
            {k: v.cpu() for k, v in ema.state_dict().items()},
            train_state=state,
            train_meta={"step": at_step, "losses": losses, "param_groups": groups, "devices": devices(at_step)},
        )

    start_step = step

    def devices(at_step: int) -> list[dict]:
        """Which steps ran on which device: the resumed run's segments, then this call's (merged when equal)."""
        merged = [dict(d) for d in segments]
        if at_step > start_step:
            if merged and merged[-1]["device"] == device.type and merged[-1]["steps"][1] == start_step:
                merged[-1]["steps"] = [merged[-1]["steps"][0], at_step]
            else:
                merged.append({"device": device.type, "steps": [start_step, at_step]})
        return merged

    n = len(data)
    steps_per_epoch = max(1, n // cfg.batch_size)
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not progress or rank != 0,
        desc=f"train {cfg.dataset}/{cfg.objective}",
        unit="step",
        dynamic_ncols=True,
    )
    net.train()
    t0, seen = time.perf_counter(), 0
    while step < end:
        epoch, k = divmod(step, steps_per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(stream_seed("epoch", cfg.seed, epoch)))
        idx = perm[k * cfg.batch_size : (k + 1) * cfg.batch_size]
        gen = torch.Generator().manual_seed(stream_seed("step", cfg.seed, step))
        torch.manual_seed(stream_seed("dropout", cfg.seed, step))
        x0 = data.images[idx]
        cond = {}
        if moving:
            x0, cond["frames"] = frame_pairs(cfg, data.images[idx], gen)
        if num_classes is not None:
            labels = data.labels[idx].clone()
            if cfg.p_uncond > 0:
                labels[torch.rand(len(labels), generator=gen) < cfg.p_uncond] = num_classes
            cond["class_labels"] = labels
        x0, cond = x0.to(device), {k: v.to(device) for k, v in cond.items()}
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
        if cfg.objective == "edm":
            loss = edm_loss(denoiser, x0, gen, cfg, part, **cond)
        else:
            loss = ddpm_loss(model, x0, gen, alphas_cumprod, cfg.objective, part, **cond)
        loss_value = distributed.all_reduce_sum(loss.detach()) / world_size
        if not torch.isfinite(loss_value):
            raise SteerdiffError(
                f"loss became {loss.item()} at step {step}: lower --lr; the last good checkpoint in {out} is kept"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, net, ema_decay_at(step, cfg.ema_decay))
        step += 1
        losses.append(round(float(loss_value), 6))
        seen += len(idx)
        bar.update(1)
        bar.set_postfix(
            loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}"
        )
        over_time = time_limit is not None and time.perf_counter() - t0 >= time_limit
        if step % cfg.checkpoint_every == 0 or step == end or over_time:
            save(step)
        if over_time:
            break
    bar.close()
    return {"losses": losses, "step": step, "images_per_s": seen / max(1e-9, time.perf_counter() - t0)}


def command_line() -> str:
    """The current process's command line, for recording in a checkpoint."""
    return " ".join(shlex.quote(a) for a in ["steerdiff", *sys.argv[1:]])
