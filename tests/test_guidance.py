"""guided(): a term is a score; with the exact class-posterior gradient it turns a mixture into a component."""

import pytest
import torch

import steerdiff as sd
from steerdiff.toy import GaussianMixtureDenoiser

MEANS = torch.tensor([[-2.0, 0.0], [1.0, 1.5], [1.0, -1.5]], dtype=torch.float64)
STD = 0.3
MIX = GaussianMixtureDenoiser(MEANS, STD, [0.5, 0.3, 0.2])


def class_score(k):
    """The plain-callable term grad_x log p_sigma(component k | x), by autograd of the exact posterior."""

    def g(x, sigma, **cond):
        with torch.enable_grad():
            xg = x.detach().double().requires_grad_(True)
            lr = MIX.log_responsibilities(xg, torch.as_tensor(sigma, dtype=torch.float64).expand(len(x)))
            (grad,) = torch.autograd.grad(lr[:, k].sum(), xg)
        return grad.to(x.dtype)

    return g


@pytest.mark.parametrize("k", [0, 1, 2])
def test_class_posterior_term_turns_the_mixture_into_a_component(k):
    """Bayes: grad log p(x) + grad log p(k | x) = grad log p(x | k), so guided(mixture, g_k) is component
    k's exact denoiser mu_k + s^2 / (s^2 + sigma^2) (x - mu_k), written out here."""
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(k)) * 2
    den = sd.guided(MIX, class_score(k))
    for sigma in (0.01, 0.3, 1.0, 5.0):
        expected = MEANS[k] + STD**2 / (STD**2 + sigma**2) * (x - MEANS[k])
        torch.testing.assert_close(den(x, sigma), expected, rtol=1e-9, atol=1e-9)


def test_class_posterior_term_samples_one_component():
    x = sd.sample(sd.guided(MIX, class_score(1)), 200, seed=0, steps=24)
    assert MIX.assign(x).tolist() == [1] * 200
    assert abs(float(x.std(0).mean()) - STD) < 0.05


def test_terms_add_and_zero_terms_change_nothing():
    """Two plain terms add; a zero term is bit-identical to no guidance under a sampler."""
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    half = lambda x, sigma, **c: 0.5 * class_score(2)(x, sigma)  # noqa: E731
    torch.testing.assert_close(sd.guided(MIX, half, half)(x, 0.4), sd.guided(MIX, class_score(2))(x, 0.4))
    zero = lambda x, sigma, **c: torch.zeros_like(x)  # noqa: E731
    assert torch.equal(sd.sample(sd.guided(MIX, zero), 12, seed=3, steps=8), sd.sample(MIX, 12, seed=3, steps=8))
