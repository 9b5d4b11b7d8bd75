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


@pytest.mark.parametrize("y", [(1, 2), (1, 1), (2, 2)])
def test_binary_compositions_match_the_exact_targets(y):
    clf = ExactLabelPosterior([P1, P2])
    x = sd.sample(compose([P1, P2], clf, y=y), 3000, seed=0, steps=48)
    assert tv(x, clf.target_weights(y)) < 0.04   # 3,000 samples: sampling noise of TV ~0.015


def test_three_way_composition():
    clf = ExactLabelPosterior([P1, P2, P3], num_labels=3)
    x = sd.sample(compose([P1, P2, P3], clf, y=(1, 2, 3)), 3000, seed=1, steps=48)
    assert tv(x, clf.target_weights((1, 2, 3))) < 0.04


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
