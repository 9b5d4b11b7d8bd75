"""Samplers against the exact Gaussian-mixture denoiser and against independent reference updates."""

import math

import numpy as np
import pytest
import torch

import steerdiff as sd
from steerdiff import sampling
from steerdiff.errors import SteerdiffError
from steerdiff.toy import GaussianMixtureDenoiser


# ------------------------------------------------------------------------------------ schedules
def test_karras_schedule_formula():
    s = sd.get_sigmas_karras(5, 0.002, 80.0, rho=7.0)
    assert s.shape == (6,) and s[-1] == 0
    ref = [(80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(5)]
    np.testing.assert_allclose(s[:-1].numpy(), ref, rtol=1e-6)


def test_ve_schedule_is_geometric():
    s = sd.get_sigmas_ve(10, 0.01, 50.0)
    assert s.shape == (11,) and s[-1] == 0
    ratios = (s[1:-1] / s[:-2]).numpy()
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)
    assert abs(float(s[0]) - 50.0) < 1e-4 and abs(float(s[-2]) - 0.01) < 1e-7


def test_sigmas_from_diffusers_schedulers():
    from diffusers import DDIMScheduler, EDMEulerScheduler

    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    s = sd.sigmas_from_scheduler(ddim, 10)
    ac = ddim.alphas_cumprod[ddim.timesteps]
    np.testing.assert_allclose(s[:-1].numpy(), ((1 - ac) / ac).sqrt().numpy(), rtol=1e-5)
    assert s[-1] == 0 and bool((s[1:] < s[:-1]).all())
    edm = EDMEulerScheduler()
    s = sd.sigmas_from_scheduler(edm, 12)
    np.testing.assert_allclose(s.numpy(), sd.get_sigmas_karras(12, 0.002, 80.0).numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "bad, msg",
    [
        (torch.tensor([1.0, 2.0, 0.0]), "decrease"),
        (torch.tensor([1.0, -0.5, 0.0]), "non-negative"),
        (torch.tensor([float("nan"), 0.0]), "inf or nan"),
        (torch.tensor([[1.0, 0.0]]), "1-D"),
    ],
)
def test_bad_sigmas_raise_a_clear_error(bad, msg):
    with pytest.raises(SteerdiffError, match=msg):
        sampling.sample_euler(sd.ring(), torch.zeros(2, 2), bad)


def test_non_finite_model_output_is_reported():
    def broken(x, sigma):
        return x * float("nan")

    with pytest.raises(SteerdiffError, match="non-finite"):
        sampling.sample_heun(broken, torch.ones(2, 2), sd.get_sigmas_karras(4, 0.01, 1.0))


# ------------------------------------------------------------------------- against the exact mixture
TWO = GaussianMixtureDenoiser(torch.tensor([[-2.0], [2.0]]), std=0.5, weights=[0.3, 0.7], sigma_max=40.0)

CASES = [
    ("euler", 128, {}),
    ("heun", 48, {}),
    ("heun", 48, {"s_churn": 10.0}),
    ("euler_ancestral", 128, {}),
    ("ddim", 128, {}),
    ("ddim", 128, {"eta": 1.0}),
    ("dpmpp_2m", 48, {}),
    ("pc", 128, {"snr": 0.1}),
]


@pytest.mark.parametrize("name, steps, kw", CASES)
def test_sampler_reproduces_mixture_weights_and_moments(name, steps, kw):
    """Two 1-D components (weights 0.3 / 0.7, std 0.5): mode weights and per-mode moments.

    40,000 samples (float64, fixed seed, the sampler called directly): the weight estimate has std
    0.0023, the smaller mode's mean and std estimates 0.0046 and 0.0032. The tolerances (0.015, 0.035,
    0.025 = 5% of the std) leave room for the measured discretisation bias at these step counts (weight
    within 0.007, means within 0.022, stds 0.4875 for ancestral / eta=1 to 0.516 for pc), and catch
    a 5% error in the std (the old 4,000-sample test with +-0.05 let a 10% error through).
    """
    torch.manual_seed(1)
    sig = sd.get_sigmas_karras(steps, TWO.sigma_min, TWO.sigma_max).double()
    x0 = torch.randn(40000, 1, dtype=torch.float64) * sig[0]
    x = sd.sampling.get_sampler(name)(TWO, x0, sig, disable=True, **kw).squeeze(1)
    left = x < 0
    assert abs(float(left.double().mean()) - 0.3) < 0.015
    for mask, mu in ((left, -2.0), (~left, 2.0)):
        assert abs(float(x[mask].mean()) - mu) < 0.035
        assert abs(float(x[mask].std()) - 0.5) < 0.025


@pytest.mark.parametrize("name", ["heun", "euler_ancestral", "dpmpp_2m", "pc"])
def test_sampler_covers_ring_modes(name):
    m = sd.ring()
    x = sd.sample(m, 1000, sampler=name, steps=64, seed=0)
    counts = torch.bincount(m.assign(x), minlength=10)
    assert int(counts.min()) > 60 and int(counts.max()) < 140  # 100 expected, std ~9.5
    r = x.double().norm(dim=1)
    assert abs(float(r.mean()) - 1.0) < 0.01 and 0.06 < float(r.std()) < 0.082  # std sqrt(0.005) = 0.0707


# ------------------------------------------------------------------- independent reference updates
def np_denoiser(model):
    return lambda x, s: model(torch.from_numpy(x), torch.full((x.shape[0],), float(s), dtype=torch.float64)).numpy()


def ref_edm_heun(D, x, sigmas, s_churn=0.0, noises=None):
    """EDM Algorithm 2, written out in numpy from the paper (t = sigma, s(t) = 1)."""
    n = len(sigmas) - 1
    for i in range(n):
        t, t_next = sigmas[i], sigmas[i + 1]
        gamma = min(s_churn / n, math.sqrt(2) - 1)
        t_hat = t + gamma * t
        if gamma > 0:
            x = x + math.sqrt(t_hat**2 - t**2) * noises[i]
        d = (x - D(x, t_hat)) / t_hat
        x_next = x + (t_next - t_hat) * d
        if t_next != 0:
            d_prime = (x_next - D(x_next, t_next)) / t_next
            x_next = x + (t_next - t_hat) * (0.5 * d + 0.5 * d_prime)
        x = x_next
    return x


def ref_dpmpp_2m(D, x, sigmas):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) with alpha = 1, sigma = sigma, lambda = -log sigma."""
    lam = lambda s: -math.log(s)
    prev = None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = D(x, s)
        if s_next == 0:
            x = x0
            break
        h = lam(s_next) - lam(s)
        if prev is None:
            x = (s_next / s) * x - (math.exp(-h) - 1) * x0
        else:
            h_prev = lam(s) - lam(sigmas[i - 1])
            r = h_prev / h
            dd = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * prev
            x = (s_next / s) * x - (math.exp(-h) - 1) * dd
        prev = x0
    return x


def test_heun_and_euler_equal_the_edm_reference():
    m = sd.ring()
    sig = sd.get_sigmas_karras(12, m.sigma_min, m.sigma_max).double()
    x0 = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * sig[0]
    ours = sampling.sample_heun(m, x0, sig).numpy()
    ref = ref_edm_heun(np_denoiser(m), x0.numpy(), sig.tolist())
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
    # with churn: the same noise draws in both
    noises = [
        torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + i)) for i in range(12)
    ]
    it = iter(noises)
    ours = sampling.sample_heun(m, x0, sig, s_churn=5.0, noise_sampler=lambda a, b: next(it)).numpy()
    ref = ref_edm_heun(np_denoiser(m), x0.numpy(), sig.tolist(), 5.0, [n.numpy() for n in noises])
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_dpmpp_2m_equals_the_paper_algorithm():
    m = sd.ring()
    sig = sd.get_sigmas_karras(10, m.sigma_min, m.sigma_max).double()
    x0 = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * sig[0]
    np.testing.assert_allclose(
        sampling.sample_dpmpp_2m(m, x0, sig).numpy(),
        ref_dpmpp_2m(np_denoiser(m), x0.numpy(), sig.tolist()),
        rtol=1e-10,
        atol=1e-10,
    )


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_equals_euler_ancestral_with_the_same_eta(eta):
    """DDIM's VP noise, rewritten in sigma, is the ancestral step: the two must agree draw for draw."""
    m = sd.ring()
    sig = sd.get_sigmas_karras(15, m.sigma_min, m.sigma_max).double()
    x0 = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * sig[0]

    def noise():
        g = torch.Generator().manual_seed(9)
        return lambda a, b: torch.randn(32, 2, dtype=torch.float64, generator=g)

    a = sampling.sample_ddim(m, x0, sig, eta=eta, noise_sampler=noise())
    b = sampling.sample_euler_ancestral(m, x0, sig, eta=eta, noise_sampler=noise())
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_eta0_equals_euler():
    m = sd.ring()
    sig = sd.get_sigmas_karras(15, m.sigma_min, m.sigma_max).double()
    x0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * sig[0]
    torch.testing.assert_close(
        sampling.sample_ddim(m, x0, sig), sampling.sample_euler(m, x0, sig), rtol=1e-9, atol=1e-9
    )


def test_callback_keys():
    seen = []
    sampling.sample_heun(sd.ring(), torch.randn(4, 2) * 20, sd.get_sigmas_karras(3, 0.01, 20.0), callback=seen.append)
    assert len(seen) == 3 and set(seen[0]) == {"x", "i", "sigma", "sigma_hat", "denoised"}
    assert [c["i"] for c in seen] == [0, 1, 2]
