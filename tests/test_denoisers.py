"""Network adapters against diffusers' own schedulers on a tiny random UNet."""

import pytest
import torch

import steerdiff as sd
from steerdiff import sampling
from steerdiff.errors import SteerdiffError
from steerdiff.schedules_ddpm import ddpm_alphas_cumprod


def _diffusers_ddim(unet, scheduler, x_vp, steps):
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x_vp = scheduler.step(unet(x_vp, t).sample, t, x_vp, eta=0.0).prev_sample
    return x_vp


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_discrete_adapter_with_ddim_equals_diffusers_ddim_scheduler(tiny_unet, prediction_type):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        prediction_type=prediction_type,
        set_alpha_to_one=True,
        clip_sample=False,
    )
    model = sd.DiscreteDenoiser(
        tiny_unet, sched.alphas_cumprod, prediction_type=prediction_type, sample_shape=(1, 8, 8)
    )
    sigmas = sd.sigmas_from_scheduler(sched, 10)
    x_vp = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = _diffusers_ddim(tiny_unet, sched, x_vp, 10)
        # VE x = VP x / sqrt(abar) = VP x * sqrt(1 + sigma^2)
        ours = sampling.sample_ddim(model, x_vp * (1 + sigmas[0] ** 2).sqrt(), sigmas)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_discrete_adapter_interpolates_timesteps(tiny_unet):
    ac = ddpm_alphas_cumprod(1000)
    model = sd.DiscreteDenoiser(tiny_unet, ac, sample_shape=(1, 8, 8))
    table = ((1 - ac) / ac).sqrt().float()
    t = model.sigma_to_t(table[[0, 10, 500, 999]])
    torch.testing.assert_close(t, torch.tensor([0.0, 10.0, 500.0, 999.0]), atol=2e-3, rtol=0)
    mid = (table[10].log() * 0.75 + table[11].log() * 0.25).exp()
    assert abs(float(model.sigma_to_t(mid[None])) - 10.25) < 2e-3
    assert abs(float(model.t_to_sigma(torch.tensor([10.25]))) - float(mid)) < 1e-4 * float(mid)


def test_edm_adapter_equals_diffusers_edm_preconditioning(tiny_unet):
    from diffusers import EDMEulerScheduler

    sch = EDMEulerScheduler(sigma_data=0.5)
    model = sd.EDMDenoiser(tiny_unet, sample_shape=(1, 8, 8), time_scale=1.0)
    x = torch.randn(4, 1, 8, 8)
    sigma = torch.tensor([0.01, 0.3, 2.0, 50.0])
    s = sigma.view(-1, 1, 1, 1)
    with torch.no_grad():
        out = tiny_unet(sch.precondition_inputs(x, s), sch.precondition_noise(sigma)).sample
        ref = sch.precondition_outputs(x, out, s)
        torch.testing.assert_close(model(x, sigma), ref, rtol=1e-5, atol=1e-5)


def test_edm_euler_equals_diffusers_edm_euler_loop(tiny_unet):
    from diffusers import EDMEulerScheduler

    sch = EDMEulerScheduler(sigma_data=0.5)
    sch.set_timesteps(8)
    model = sd.EDMDenoiser(tiny_unet, sample_shape=(1, 8, 8), time_scale=1.0)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * sch.init_noise_sigma
    with torch.no_grad():
        ours = sampling.sample_euler(model, x, sd.sigmas_from_scheduler(sch))
        for t in sch.timesteps:
            inp = sch.scale_model_input(x, t)
            x = sch.step(tiny_unet(inp, t).sample, t, x).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


def test_score_adapter_of_the_exact_score_is_the_exact_denoiser():
    m = sd.ring()

    def score(x, sigma):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            return torch.autograd.grad(m.log_prob(x, sigma).sum(), x)[0]

    sm = sd.ScoreDenoiser(score, sigma_min=m.sigma_min, sigma_max=m.sigma_max, sample_shape=(2,))
    x = torch.randn(10, 2, dtype=torch.float64)
    torch.testing.assert_close(sm(x, 0.4), m(x, 0.4), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(sd.score_of(m, x, 0.4), score(x, torch.full((10,), 0.4, dtype=torch.float64)))


def test_class_conditional_edm_requires_valid_labels(tiny_unet):
    from diffusers import UNet2DModel

    from steerdiff.nets import unet_config

    net = UNet2DModel.from_config(
        unet_config("tiny", sample_size=8, in_channels=1, out_channels=1, num_class_embeds=11)
    )
    model = sd.EDMDenoiser(net, sample_shape=(1, 8, 8), num_classes=10, null_label=10)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        uncond, cond = model(x, 1.0), model(x, 1.0, class_labels=torch.tensor([1, 2, 3]))
        assert not torch.allclose(uncond, cond)
        torch.testing.assert_close(uncond, model(x, 1.0, class_labels=10))
        with pytest.raises(SteerdiffError, match="class_labels"):
            model(x, 1.0, class_labels=torch.tensor([1, 2, 30]))
    strict = sd.EDMDenoiser(net, sample_shape=(1, 8, 8), num_classes=10, null_label=10, require_labels=True)
    with pytest.raises(SteerdiffError, match="class-conditional"):
        strict(x, 1.0)


def test_wrong_shapes_are_reported(tiny_unet):
    model = sd.EDMDenoiser(tiny_unet, sample_shape=(1, 8, 8))
    with pytest.raises(SteerdiffError, match=r"takes \(B, 1, 8, 8\)"):
        model(torch.randn(2, 3, 8, 8), 1.0)
    with pytest.raises(SteerdiffError, match="sigma has shape"):
        model(torch.randn(2, 1, 8, 8), torch.ones(3))
