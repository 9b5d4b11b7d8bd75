"""Stable Diffusion (1.x / 2.x) pipelines from diffusers as latent-space denoisers.

``from_pipeline(pipe, prompt, guidance_scale)`` wraps the pipeline's UNet and scheduler as a
:class:`~steerdiff.denoisers.DiscreteDenoiser` on latents (epsilon or v-prediction, read from the
scheduler) with classifier-free guidance, so every steerdiff sampler and particle term runs on it;
``decode`` maps latents to images through the VAE, ``to_images`` also applies the pipeline's safety
checker exactly as the pipeline would. ``particle_callback`` is the same guidance as a
``callback_on_step_end`` for an unchanged ``pipe(...)`` call. ``decoded`` makes any image embedding
an embedding of latents (decoded by the VAE, one chunk of particles at a time under activation
checkpointing, so the vector-Jacobian product does not hold every particle's decoder activations).
``style_latents`` / ``train_latent_classifier`` are the repulsion project's style generator: clean
latents for prompts of several styles, and a noise-conditional style classifier on them (its
features are the ``classifier:DIR`` embedding).

Nothing is downloaded: load a pipeline you have on disk (``StableDiffusionPipeline.from_pretrained(DIR)``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..core.denoisers import DiscreteDenoiser, as_sigma
from ..core.errors import SteerdiffError, check


def _check_pipeline(pipe) -> None:
    from diffusers import UNet2DConditionModel

    needed = ("unet", "vae", "scheduler", "tokenizer", "text_encoder", "encode_prompt")
    missing = [k for k in needed if getattr(pipe, k, None) is None]
    check(
        not missing,
        f"{type(pipe).__name__} is not a Stable Diffusion 1.x/2.x text-to-image pipeline (no "
        f"{', '.join(missing)}): load one with diffusers.StableDiffusionPipeline.from_pretrained(DIR)",
    )
    check(isinstance(pipe.unet, UNet2DConditionModel), f"{type(pipe).__name__}: its unet is not a UNet2DConditionModel")
    check(
        getattr(pipe.unet.config, "addition_embed_type", None) is None,
        f"{type(pipe).__name__} needs added conditioning ({pipe.unet.config.addition_embed_type}, e.g. SDXL): "
        "only Stable Diffusion 1.x / 2.x pipelines are supported",
    )
    check(
        getattr(pipe.scheduler, "alphas_cumprod", None) is not None,
        f"scheduler {type(pipe.scheduler).__name__} has no alphas_cumprod: use a DDPM-family scheduler (DDIM, PNDM, ...)",
    )


class _CFGNet(nn.Module):
    """``(x_vp, t) -> eps or v`` with classifier-free guidance ``u + scale (c - u)``, one UNet call
    on the doubled batch. ``cond`` / ``uncond``: prompt embeddings ``(P, L, D)``, ``P`` 1 or the batch."""

    def __init__(self, unet, cond: torch.Tensor, uncond: torch.Tensor | None, scale: float):
        super().__init__()
        self.unet, self.scale = unet, float(scale)
        self.register_buffer("cond", cond, persistent=False)
        self.register_buffer("uncond", uncond, persistent=False)

    def _embeds(self, e: torch.Tensor, b: int) -> torch.Tensor:
        check(
            len(e) in (1, b),
            f"the prompt list has {len(e)} prompts but the batch has {b} particles: "
            "give one prompt, or one per particle",
        )
        return e.expand(b, *e.shape[1:]) if len(e) == 1 else e

    def forward(self, x, t):
        b = x.shape[0]
        dtype = self.unet.dtype
        if self.uncond is None:
            return self.unet(x.to(dtype), t, encoder_hidden_states=self._embeds(self.cond, b)).sample.float()
        emb = torch.cat([self._embeds(self.uncond, b), self._embeds(self.cond, b)])
        out = self.unet(torch.cat([x, x]).to(dtype), torch.cat([t, t]), encoder_hidden_states=emb).sample.float()
        u, c = out.chunk(2)
        return u + self.scale * (c - u)


class PipelineDenoiser(DiscreteDenoiser):
    """A Stable Diffusion pipeline as a denoiser of latents ``(B, C, h, w)`` (VE scale: the clean
    latent plus ``sigma`` noise); ``decode``/``to_images`` give images. Build with :func:`from_pipeline`."""

    def __init__(
        self,
        pipe,
        prompt,
        guidance_scale: float = 7.5,
        negative_prompt=None,
        height: int | None = None,
        width: int | None = None,
    ):
        _check_pipeline(pipe)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        check(
            len(prompts) >= 1 and all(isinstance(p, str) for p in prompts),
            "prompt must be a string or a list of strings",
        )
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            check(
                len(negative_prompt) == len(prompts),
                f"negative_prompt has {len(negative_prompt)} entries for "
                f"{len(prompts)} prompts: give one, or one per prompt",
            )
        cfg = guidance_scale > 1.0
        device = pipe.unet.device
        with torch.no_grad():
            cond, uncond = pipe.encode_prompt(prompts, device, 1, cfg, negative_prompt)
        pred = pipe.scheduler.config.prediction_type
        check(
            pred in ("epsilon", "v_prediction"),
            f"scheduler prediction_type {pred!r}: only epsilon and v_prediction are supported",
        )
        f = pipe.vae_scale_factor
        h = (height or pipe.unet.config.sample_size * f) // f
        w = (width or pipe.unet.config.sample_size * f) // f
        super().__init__(
            _CFGNet(pipe.unet, cond, uncond if cfg else None, guidance_scale),
            pipe.scheduler.alphas_cumprod,
            prediction_type=pred,
            sample_shape=(pipe.unet.config.in_channels, h, w),
            sigma_data=1.0,
            preset={"sampler": "ddim", "steps": 50},
        )
        self.pipe, self.prompts, self.guidance_scale = pipe, prompts, float(guidance_scale)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in ``[-1, 1]`` from clean latents (no safety checker)."""
        vae = self.pipe.vae
        return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample.float().clamp(-1, 1)

    @torch.no_grad()
    def to_images(self, latents: torch.Tensor) -> tuple[torch.Tensor, list | None]:
        """``(images (B, 3, H, W) in [-1, 1], nsfw flags)`` with the pipeline's safety checker applied as
        the pipeline applies it (flagged images are blacked out; flags ``None`` without a checker)."""
        images = self.decode(latents)
        unit = (images + 1) / 2
        checked, flags = (
            self.pipe.run_safety_checker(unit.permute(0, 2, 3, 1).cpu().numpy(), latents.device, latents.dtype)
            if self.pipe.safety_checker is not None
            else (None, None)
        )
        if checked is not None:
            images = torch.as_tensor(checked).permute(0, 3, 1, 2).float() * 2 - 1
        return images, flags


def from_pipeline(
    pipe, prompt, guidance_scale: float = 7.5, negative_prompt=None, height: int | None = None, width: int | None = None
) -> PipelineDenoiser:
    """A latent denoiser for ``prompt`` (a string, or one per particle) under classifier-free
    guidance ``guidance_scale`` (1 turns CFG off) from a Stable Diffusion 1.x / 2.x pipeline."""
    return PipelineDenoiser(pipe, prompt, guidance_scale, negative_prompt, height, width)


def load_pipeline(path: str | os.PathLike, device: str = "cpu"):
    """A Stable Diffusion pipeline from a local directory (``save_pretrained`` layout); no downloads."""
    from diffusers import DiffusionPipeline

    check(
        os.path.isdir(path),
        f"--pipeline {path}: not a directory; pass a local Stable Diffusion pipeline folder "
        "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)",
    )
    try:
        pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise SteerdiffError(f"{path}: not a loadable diffusers pipeline ({str(e).splitlines()[0]})") from None
    _check_pipeline(pipe)
    return pipe.to(device)


def particle_callback(denoiser: PipelineDenoiser, *terms):
    """A ``callback_on_step_end`` that applies guidance ``terms`` (e.g. ``Repulsion``) to the latents of
    an unchanged ``pipe(..., callback_on_step_end=cb)`` call with a DDIM-family scheduler.

    After the pipeline's step from timestep ``t_i`` to ``t_{i+1}`` it adds one explicit Euler step of
    the guidance's share of the probability-flow ODE, ``dx/dsigma = -sigma w g``, over
    ``[sigma_{i+1}, sigma_i]``, in VE coordinates (``x = latents / sqrt(alpha_bar)``)."""
    from ..core.guidance import guided

    g = guided(denoiser, *terms)
    ac = denoiser.pipe.scheduler.alphas_cumprod

    def sigma_at(t) -> float:
        a = float(ac[int(t)])
        return ((1 - a) / a) ** 0.5

    def callback(pipe, i, t, kwargs):
        steps = pipe.scheduler.timesteps
        if i + 1 >= len(steps):
            return kwargs  # the final latents are clean
        lat = kwargs["latents"]
        t_next = int(steps[i + 1])
        s_cur, s_next = sigma_at(t), sigma_at(t_next)
        scale = float(ac[t_next]) ** 0.5
        x = lat.float() / scale
        _, delta = g.split(x, as_sigma(s_next, x), need_base=False)
        if delta is not None:
            x = x + (s_cur - s_next) / s_next * delta  # delta = sigma^2 w g
        kwargs["latents"] = (x * scale).to(lat.dtype)
        return kwargs

    return callback


class DecodedEmbedding(nn.Module):
    """``phi(decode(latents))``: an image embedding applied to VAE-decoded latents. Decodes ``chunk``
    particles at a time under activation checkpointing: the backward pass recomputes one chunk's
    decoder activations at a time instead of storing all of them."""

    def __init__(self, denoiser: PipelineDenoiser, embedding, chunk: int = 1):
        super().__init__()
        from ..particles.embeddings import get_embedding

        self.denoiser, self.phi, self.chunk = denoiser, get_embedding(embedding), int(chunk)

    def forward(self, x, sigma=None):
        feats = []
        for lo in range(0, x.shape[0], self.chunk):
            part = x[lo : lo + self.chunk]
            img = (
                checkpoint(self.denoiser.decode, part, use_reentrant=False)
                if part.requires_grad
                else self.denoiser.decode(part)
            )
            feats.append(self.phi(img, None if sigma is None else sigma[lo : lo + self.chunk]).flatten(1))
        return torch.cat(feats)


def decoded(denoiser: PipelineDenoiser, embedding="cnn16", chunk: int = 1) -> DecodedEmbedding:
    """An embedding of latents through the VAE decoder (use with ``on="x0"``: clean latents)."""
    return DecodedEmbedding(denoiser, embedding, chunk)


def style_latents(
    pipe,
    styles: dict[str, Sequence[str]],
    n_per_prompt: int = 4,
    *,
    steps: int = 20,
    guidance_scale: float = 7.5,
    seed: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The repulsion project's style generator: clean latents ``(N, C, h, w)`` sampled for every prompt of
    every style, labels ``(N,)`` (the style's index) and the style names."""
    from ..core.api import sample

    check(len(styles) >= 2, "give at least two styles, each a list of prompts")
    xs, ys, names = [], [], list(styles)
    for k, name in enumerate(names):
        for j, prompt in enumerate(styles[name]):
            den = from_pipeline(pipe, prompt, guidance_scale)
            xs.append(
                sample(
                    den,
                    n_per_prompt,
                    sampler="ddim",
                    steps=steps,
                    seed=seed,
                    start_index=1000 * (k * 1000 + j),
                    progress=progress,
                    clip=False,
                )
            )
            ys.append(torch.full((n_per_prompt,), k))
    return torch.cat(xs), torch.cat(ys), names


def train_latent_classifier(
    out,
    latents: torch.Tensor,
    labels: torch.Tensor,
    names: Sequence[str],
    *,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    sigma_max: float = 14.6,
    progress: bool = False,
) -> dict:
    """A noise-conditional style classifier on latents, trained on forward-noised copies
    (``log sigma`` uniform in ``[log 0.02, log sigma_max]``); written like ``train-classifier``'s
    output, so ``classifier:DIR`` is its embedding (features at the real noise level)."""
    import math

    from .. import checkpoint as ckpt
    from ..core.seeding import stream_seed
    from ..train.classifier import NoisyDigitCNN, add_noise, fit_classifier, load_classifier

    check(
        latents.ndim == 4 and latents.shape[-1] % 4 == 0,
        f"latents must be (N, C, h, w) with h, w divisible by 4, got {tuple(latents.shape)}",
    )
    torch.manual_seed(stream_seed("style-init", seed))
    model = NoisyDigitCNN(latents.shape[1], len(names), 24, image_size=latents.shape[-1], sigma_data=1.0)
    lo, hi = math.log(0.02), math.log(sigma_max)

    def batches(epoch: int, gen: torch.Generator):
        perm = torch.randperm(len(latents), generator=gen)
        for k in range(0, len(latents), batch_size):
            idx = perm[k : k + batch_size]
            sigma = (lo + (hi - lo) * torch.rand(len(idx), generator=gen)).exp()
            yield add_noise(latents[idx], sigma, gen), sigma, labels[idx]

    gen = torch.Generator().manual_seed(stream_seed("style-train", seed))  # one stream for every epoch
    fit_classifier(model, batches, epochs=epochs, lr=lr, seed=gen, progress=progress, desc="train style classifier")
    model.eval()
    with torch.no_grad():
        acc = float((model(latents, 0.02).argmax(1) == labels).float().mean())
    config = {
        "format": "steerdiff-classifier",
        "version": 1,
        "kind": "noisy-label",
        "dataset": "latent-styles",
        "styles": list(names),
        "arch": model.arch,
        "train_accuracy": acc,
        "seed": seed,
        "epochs": epochs,
    }
    with ckpt.atomic_directory(out, verify=lambda d: load_classifier(d)) as tmp:
        ckpt.save_tensors(tmp / "model.safetensors", model.state_dict())
        ckpt.write_json_atomic(tmp / "config.json", config)
    return config


def tiny_pipeline(workdir, prediction_type: str = "epsilon"):
    """A Stable-Diffusion-shaped pipeline: 16x16 images, 4x8x8 latents, a 2-layer CLIP text model and
    a character-level tokenizer whose vocabulary is written to ``workdir`` (for tests and benchmarks;
    needs ``transformers``)."""
    import json
    import string
    from pathlib import Path

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tmp_path = Path(workdir)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + " .,":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=16,
    )
    sched = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_from_options(options) -> PipelineDenoiser | None:
    """The latent denoiser of ``options.pipeline`` with its prompts, or None without a pipeline: what
    ``steerdiff sample --pipeline DIR --prompt TEXT`` samples (draw it with
    :func:`steerdiff.particles.draw.draw`, decode with :meth:`PipelineDenoiser.to_images`).

    Args:
        options: a :class:`~steerdiff.particles.draw.SamplingOptions` (or an argparse namespace) with
            ``pipeline`` (a local pipeline directory, or None), ``prompt`` (a list: one prompt, or one per
            particle), ``n`` (particles), ``cfg_scale`` (None: 7.5), ``negative_prompt``, ``size`` (image
            height and width in pixels; None: the pipeline's) and ``device``.
    """
    o = options
    if not getattr(o, "pipeline", None):
        check(getattr(o, "prompt", None) is None, "--prompt needs --pipeline DIR (a local Stable Diffusion pipeline)")
        return None
    check(o.prompt is not None, "--pipeline needs --prompt TEXT")
    check(
        len(o.prompt) in (1, o.n),
        f"{len(o.prompt)} --prompt values for --n {o.n}: give one prompt, or one per particle",
    )
    return from_pipeline(
        load_pipeline(o.pipeline, o.device),
        o.prompt[0] if len(o.prompt) == 1 else o.prompt,
        7.5 if o.cfg_scale is None else o.cfg_scale,
        o.negative_prompt,
        o.size,
        o.size,
    )
