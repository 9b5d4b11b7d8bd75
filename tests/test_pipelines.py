"""Stable Diffusion pipelines, on a tiny random pipeline built from configs (no downloads)."""

import pytest
import torch

import steerdiff as sd
from steerdiff.errors import SteerdiffError

# transformers is a test extra (pip install -e ".[test]"): a missing one fails here rather than skipping the file
from steerdiff.pipelines import (
    decoded,
    from_pipeline,
    particle_callback,
    style_latents,
    tiny_pipeline,
    train_latent_classifier,
)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_denoiser_is_the_pipelines_cfg_prediction(tmp_path, prediction_type):
    """D(x, sigma) from the wrapped pipeline equals the x0 that the scheduler's own formula gives
    from the UNet's guided output at the same timestep."""
    p = tiny_pipeline(tmp_path, prediction_type)
    den = from_pipeline(p, "a red cat", guidance_scale=3.0)
    t = 500
    a = p.scheduler.alphas_cumprod[t].float()
    sigma = ((1 - a) / a).sqrt()
    x = torch.randn(2, 4, 8, 8) * (1 + sigma**2).sqrt()
    with torch.no_grad():
        cond, uncond = p.encode_prompt("a red cat", "cpu", 1, True)
        x_vp = x * a.sqrt()
        out = p.unet(
            torch.cat([x_vp] * 2),
            t,
            encoder_hidden_states=torch.cat([uncond.expand(2, -1, -1), cond.expand(2, -1, -1)]),
        ).sample
        u, c = out.chunk(2)
        guided_out = u + 3.0 * (c - u)
        x0 = (
            (x_vp - (1 - a).sqrt() * guided_out) / a.sqrt()
            if prediction_type == "epsilon"
            else a.sqrt() * x_vp - (1 - a).sqrt() * guided_out
        )
        torch.testing.assert_close(den(x, sigma), x0, atol=1e-4, rtol=1e-4)


def test_ddim_on_the_wrapper_matches_the_pipeline(pipe):
    """steerdiff's DDIM over the pipeline's own timesteps reproduces pipe(...) with the DDIM scheduler.
    (With ``set_alpha_to_one=False`` diffusers' last step lands on ``alphas_cumprod[0]``, not on a
    clean sample: the schedule's last sigma is that level here.)"""
    den = from_pipeline(pipe, "a red cat", guidance_scale=5.0)
    sigmas = sd.sigmas_from_scheduler(pipe.scheduler, 6)
    a0 = pipe.scheduler.alphas_cumprod[0].float()
    sigmas[-1] = ((1 - a0) / a0).sqrt()
    lat0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = pipe(
        "a red cat",
        num_inference_steps=6,
        guidance_scale=5.0,
        height=16,
        width=16,
        latents=lat0.clone(),
        output_type="latent",
        num_images_per_prompt=2,
    ).images
    x = sd.sampling.sample_ddim(den, lat0 * (1 + sigmas[0] ** 2).sqrt(), sigmas, disable=True)
    torch.testing.assert_close(x * a0.sqrt(), ref, atol=2e-4, rtol=1e-3)


def test_prompt_list_and_pipeline_kind_errors(pipe):
    den = from_pipeline(pipe, ["a cat", "a dog", "a cow"], guidance_scale=2.0)
    with pytest.raises(SteerdiffError, match="3 prompts but the batch has 2"):
        den(torch.randn(2, 4, 8, 8), 1.0)
    assert den(torch.randn(3, 4, 8, 8), 1.0).shape == (3, 4, 8, 8)
    with pytest.raises(SteerdiffError, match="not a Stable Diffusion"):
        from_pipeline(object(), "a cat")


def test_repulsion_on_latents_spreads_and_is_reproducible(pipe):
    den = from_pipeline(pipe, "a red cat", guidance_scale=3.0)
    iid = sd.sample(den, 4, seed=0, steps=8, clip=False)
    rep = [sd.Repulsion(embedding="averagedim", strength=50.0, on="x")]
    x1 = sd.sample(den, 4, seed=0, steps=8, guidance=rep, clip=False)
    x2 = sd.sample(den, 4, seed=0, steps=8, guidance=rep, clip=False)
    torch.testing.assert_close(x1, x2)
    spread = lambda x: torch.pdist(x.flatten(2).mean(-1)).mean()  # noqa: E731
    assert spread(x1) > 1.2 * spread(iid)
    images, flags = den.to_images(x1)
    # the pipeline's own decode and post-processing (VAE, then diffusers' image processor to [0, 1])
    with torch.no_grad():
        ref = pipe.image_processor.postprocess(
            pipe.vae.decode(x1 / pipe.vae.config.scaling_factor).sample, output_type="pt"
        )
    assert images.shape == (4, 3, 16, 16) and flags is None
    torch.testing.assert_close(images, ref * 2 - 1, atol=1e-5, rtol=0)


def test_callback_on_an_unchanged_pipeline(pipe):
    den = from_pipeline(pipe, "a red cat", guidance_scale=3.0)
    lat0 = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = {
        "num_inference_steps": 6,
        "guidance_scale": 3.0,
        "height": 16,
        "width": 16,
        "output_type": "latent",
        "num_images_per_prompt": 4,
    }
    plain = pipe("a red cat", latents=lat0.clone(), **kw).images
    off = pipe(
        "a red cat",
        latents=lat0.clone(),
        callback_on_step_end=particle_callback(den, sd.Repulsion(embedding="averagedim", strength=0.0, on="x")),
        **kw,
    ).images
    torch.testing.assert_close(off, plain)
    cb = particle_callback(den, sd.Repulsion(embedding="averagedim", strength=50.0, on="x"))
    pushed = pipe("a red cat", latents=lat0.clone(), callback_on_step_end=cb, **kw).images
    spread = lambda x: torch.pdist(x.flatten(2).mean(-1)).mean()  # noqa: E731
    assert spread(pushed) > 1.2 * spread(plain)


def test_decoded_embedding_chunks_give_the_same_gradient(pipe):
    den = from_pipeline(pipe, "a cat", guidance_scale=1.0)
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    g = [torch.autograd.grad(decoded(den, "ro3", chunk=c)(x).pow(2).sum(), x)[0] for c in (1, 3)]
    torch.testing.assert_close(g[0], g[1], atol=1e-5, rtol=1e-4)


def test_style_classifier_on_latents_drives_an_embedding(pipe, tmp_path):
    lat, labels, names = style_latents(pipe, {"red": ["a red cat"], "blue": ["a blue dog"]}, n_per_prompt=4, steps=4)
    assert lat.shape == (8, 4, 8, 8) and labels.tolist() == [0] * 4 + [1] * 4
    conf = train_latent_classifier(tmp_path / "style", lat, labels, names, epochs=3)
    assert conf["styles"] == ["red", "blue"]
    # the classifier separates the styles, and the recorded accuracy is what a fresh load measures
    from steerdiff.classifier import load_classifier

    with torch.no_grad():
        acc = float((load_classifier(tmp_path / "style")(lat, 0.02).argmax(1) == labels).float().mean())
    assert acc == conf["train_accuracy"] == 1.0
    # PG in that embedding spreads the particles' classifier features, more with more strength
    # (measured mean pairwise feature distance 1.143 at strength 0, 1.170 at 5, 1.252 at 20)
    den = from_pipeline(pipe, "a cat", guidance_scale=2.0)
    emb = f"classifier:{tmp_path / 'style'}"
    from steerdiff.embeddings import get_embedding

    phi = get_embedding(emb)
    spread = {}
    for strength in (0.0, 5.0, 20.0):
        x = sd.sample(
            den,
            3,
            seed=0,
            steps=4,
            clip=False,
            guidance=[sd.ParticleGuidance(embedding=emb, strength=strength, on="x")],
        )
        with torch.no_grad():
            spread[strength] = float(torch.pdist(phi(x, torch.full((3,), 0.02)).flatten(1)).mean())
    assert spread[0.0] < spread[5.0] < spread[20.0] and spread[20.0] > 1.05 * spread[0.0], spread


def test_cli_sample_and_repulse_with_a_pipeline(pipe, tmp_path):
    from steerdiff.cli import main

    pipe.save_pretrained(tmp_path / "sd")
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "sample",
                "--pipeline",
                str(tmp_path / "sd"),
                "--prompt",
                "a red cat",
                "--n",
                "2",
                "--steps",
                "4",
                "--method",
                "repulsive",
                "--embedding",
                "averagedim",
                "--strength",
                "100",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 0
    assert (
        main(
            [
                "repulse",
                "--pipeline",
                str(tmp_path / "sd"),
                "--prompt",
                "a cat",
                "--model",
                "averagedim",
                "--nparticles",
                "2",
                "--quiet",
                "--out",
                str(tmp_path / "r.npz"),
            ]
        )
        == 0
    )
    assert (
        main(["sample", "--pipeline", str(tmp_path / "nothing"), "--prompt", "a", "--out", str(tmp_path / "x.png")])
        == 2
    )
    assert main(["sample", "--model", "mnist", "--prompt", "a", "--out", str(tmp_path / "x.png")]) == 2
