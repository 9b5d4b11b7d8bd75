"""Compositions against exact Gaussian-mixture targets."""

import pytest
import torch

import steerdiff as sd
from steerdiff.compose import ExactLabelPosterior, compose, mixture
from steerdiff.errors import SteerdiffError
from steerdiff.toy import GaussianMixtureDenoiser

MEANS = torch.tensor([[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
P1 = GaussianMixtureDenoiser(MEANS, 0.1, [0.5, 0.3, 0.1, 0.1])
P2 = GaussianMixtureDenoiser(MEANS, 0.1, [0.05, 0.3, 0.45, 0.2])
P3 = GaussianMixtureDenoiser(MEANS, 0.1, [0.3, 0.05, 0.05, 0.6])


def tv(x, weights):
    emp = torch.bincount(P1.assign(x), minlength=len(weights)).double() / len(x)
    return 0.5 * float((emp - weights).abs().sum())


# The paper's closed forms (Garipov et al. 2023), written from the base weights alone (not from the
# classifier's q): on separated shared components, component k of the composition has weight
#   harmonic mean y=(1,2):  p1 p2 / (p1 + p2);   contrast y=(1,1): p1^2 / (p1 + p2);   y=(2,2): p2^2 / (p1 + p2)
#   3-way y=(1,2,3):        p1 p2 p3 / (p1 + p2 + p3)^2
W1, W2, W3 = P1.weights, P2.weights, P3.weights
HAND_TARGETS = {
    (1, 2): W1 * W2 / (W1 + W2),
    (1, 1): W1**2 / (W1 + W2),
    (2, 2): W2**2 / (W1 + W2),
    (1, 2, 3): W1 * W2 * W3 / (W1 + W2 + W3) ** 2,
}


@pytest.mark.parametrize("y", [(1, 2), (1, 1), (2, 2)])
def test_binary_compositions_match_the_exact_targets(y):
    clf = ExactLabelPosterior([P1, P2])
    target = HAND_TARGETS[y] / HAND_TARGETS[y].sum()
    torch.testing.assert_close(clf.target_weights(y), target)
    x = sd.sample(compose([P1, P2], clf, y=y), 3000, seed=0, steps=48)
    assert tv(x, target) < 0.04  # 3,000 samples: sampling noise of TV ~0.015


def test_three_way_composition():
    clf = ExactLabelPosterior([P1, P2, P3], num_labels=3)
    target = HAND_TARGETS[(1, 2, 3)] / HAND_TARGETS[(1, 2, 3)].sum()
    torch.testing.assert_close(clf.target_weights((1, 2, 3)), target)
    x = sd.sample(compose([P1, P2, P3], clf, y=(1, 2, 3)), 3000, seed=1, steps=48)
    assert tv(x, target) < 0.04


@pytest.mark.parametrize("scale", [0.0, 0.5, 2.0])
def test_guidance_scale_multiplies_the_label_score(scale):
    """compose(..., guidance_scale=a) = D_mix + sigma^2 a grad log p_sigma(y | x), with the exact mixture
    denoiser and, written out here from the definitions, p_sigma(y1=1, y2=2 | x) = sum_c r_c(x) q_c(1) q_c(2):
    labels drawn independently given x0 (q_c(i) = w_i[c] / sum_l w_l[c] on separated components),
    r_c the posterior of component c under the mixture at noise level sigma."""
    clf = ExactLabelPosterior([P1, P2])
    c = compose([P1, P2], clf, y=(1, 2), guidance_scale=scale)
    mix_w = (W1 + W2) / 2
    mix = GaussianMixtureDenoiser(MEANS, 0.1, mix_w)
    q1, q2 = W1 / (W1 + W2), W2 / (W1 + W2)
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.5
    for sigma in (0.05, 0.4, 2.0):
        xg = x.clone().requires_grad_(True)
        d2 = ((xg[:, None, :] - MEANS.double()[None]) ** 2).sum(-1)
        r = torch.softmax(mix_w.log()[None] - d2 / (2 * (0.01 + sigma**2)), dim=1)
        (grad,) = torch.autograd.grad((r * q1 * q2).sum(1).log().sum(), xg)
        torch.testing.assert_close(c(x, sigma), mix(x, sigma) + sigma**2 * scale * grad, rtol=1e-7, atol=1e-9)


def test_exact_label_posterior_is_symmetric_and_normalised():
    clf = ExactLabelPosterior([P1, P2])
    x = torch.randn(16, 2, dtype=torch.float64)
    lj = clf(x, 0.7)
    torch.testing.assert_close(lj, lj.transpose(1, 2))
    torch.testing.assert_close(lj.exp().flatten(1).sum(1), torch.ones(16, dtype=torch.float64))


def test_composition_of_a_model_with_itself_is_the_model():
    clf = ExactLabelPosterior([P1, P1])
    c = compose([P1, P1], clf, y=(1, 2))
    x = torch.randn(8, 2, dtype=torch.float64)
    torch.testing.assert_close(c(x, 0.5), P1(x, 0.5))


def test_mixture_of_exact_bases_is_the_exact_mixture():
    mix = mixture([P1, P2], weights=[0.25, 0.75])
    ref = GaussianMixtureDenoiser(MEANS, 0.1, 0.25 * P1.weights + 0.75 * P2.weights)
    x = torch.randn(8, 2, dtype=torch.float64)
    torch.testing.assert_close(mix(x, 0.3), ref(x, 0.3))


def test_bad_compositions():
    clf = ExactLabelPosterior([P1, P2])
    with pytest.raises(SteerdiffError, match=r"labels must be integers in 1..2"):
        compose([P1, P2], clf, y=(1, 3))
    with pytest.raises(SteerdiffError, match="has 3 labels"):
        compose([P1, P2], clf, y=(1, 2, 1))
    other = GaussianMixtureDenoiser(torch.zeros(2, 3), 0.1)
    with pytest.raises(SteerdiffError, match="different sample shapes"):
        compose([P1, other], clf)
    with pytest.raises(SteerdiffError, match="trained for 2 bases, not 3"):
        compose([P1, P2, P3], clf, y=(1, 2))


def test_conjunction_is_a_product_of_experts_on_exact_conditionals():
    """With conditionals p(x|c) = mixtures over component subsets, AND of two conditions is
    p(x|c1) p(x|c2) / p(x): on separated components, the weights multiply and divide exactly."""
    from steerdiff.compose import conjunction

    w_all = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    w_c = {0: torch.tensor([0.4, 0.4, 0.1, 0.1]), 1: torch.tensor([0.1, 0.4, 0.4, 0.1])}

    class Cond(torch.nn.Module):
        sigma_min, sigma_max, sigma_data, sample_shape, preset = 0.002, 40.0, 1.0, (2,), {}

        def forward(self, x, sigma, c=None):
            w = w_all if c is None else w_c[c]
            return GaussianMixtureDenoiser(MEANS, 0.1, w)(x, sigma)

    model = Cond()
    and_ = conjunction(model, [{"c": 0}, {"c": 1}])
    x = sd.sample(and_, 3000, seed=0, steps=64)
    target = w_c[0].double() * w_c[1].double() / w_all
    assert tv(x, target / target.sum()) < 0.04
    only = conjunction(model, [{"c": 0}])
    xx = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(only(xx, 0.4), model(xx, 0.4, c=0))
    # c0 AND NOT c1 aims at p(x|c0) (p(x|c1) / p(x))^-1: component weights w_c0 w_all / w_c1 = (.64, .16, .04, .16).
    # Summing noisy scores only approximates that product at high noise (unlike AND here), so the check is
    # looser: measured TV 0.079 (weights .56, .19, .06, .19), against 0.32 for c0 alone
    not_ = conjunction(model, [{"c": 0}], negate=[{"c": 1}])
    target = w_c[0].double() * w_all / w_c[1].double()
    target = target / target.sum()
    tv_not = tv(sd.sample(not_, 3000, seed=1, steps=64), target)
    tv_c0 = tv(sd.sample(only, 3000, seed=1, steps=64), target)
    assert tv_not < 0.12 and tv_not < tv_c0 / 3, (tv_not, tv_c0)
    # negative_weight w scales the NOT term: D_u + (D_c0 - D_u) - w (D_c1 - D_u)
    half = conjunction(model, [{"c": 0}], negate=[{"c": 1}], negative_weight=0.5)
    du, d0, d1 = model(xx, 0.4), model(xx, 0.4, c=0), model(xx, 0.4, c=1)
    torch.testing.assert_close(half(xx, 0.4), d0 - 0.5 * (d1 - du))
