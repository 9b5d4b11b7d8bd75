"""``jacobian="gaussian"``: the DPP / entropy potentials on ``x0`` without a backward pass through the denoiser."""

import pytest
import torch

import steerdiff as sd
from steerdiff.diversity import DPPGuidance, EntropyGuidance
from steerdiff.errors import SteerdiffError
from steerdiff.fixed_condition import fixed_condition
from steerdiff.guidance import GuideContext
from steerdiff.toy import GaussianMixtureDenoiser
from test_fixed_condition import tiny_cond

CLASSES = [DPPGuidance, EntropyGuidance]


def _ctx(m, x, sigma, need_graph):
    xg = x.detach().requires_grad_(need_graph)
    s = torch.full((len(x),), float(sigma), dtype=x.dtype)
    with torch.enable_grad():
        d = m(xg, s)
    return GuideContext(xg, s, d, {}, m)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("sigma", [0.05, 0.7, 6.0])
def test_gaussian_jacobian_is_exact_for_gaussian_data(cls, sigma):
    """For data N(0, s^2 I) the denoiser is c_skip(sigma) x, whose Jacobian is what 'gaussian' assumes:
    both forms give the same force (the exact one differentiates through the denoiser)."""
    m = GaussianMixtureDenoiser(torch.zeros(1, 3), std=0.8)
    assert m.sigma_data == pytest.approx(0.8)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * (sigma + 0.8)
    exact = cls(on="x0", bandwidth=0.4).bind(m).guide(_ctx(m, x, sigma, need_graph=True))
    free = cls(on="x0", bandwidth=0.4, jacobian="gaussian").bind(m).guide(_ctx(m, x, sigma, need_graph=False))
    assert float(exact.abs().max()) > 1e-3
    torch.testing.assert_close(free, exact, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cls", CLASSES)
def test_gaussian_jacobian_differs_where_the_data_is_not_gaussian(cls):
    """On the 10-mode ring the denoiser's Jacobian is not c_skip I: the two forms differ (the test above
    is not passing because the option is ignored)."""
    m = sd.ring()
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = cls(on="x0", bandwidth=0.5).bind(m).guide(_ctx(m, x, 0.3, need_graph=True))
    free = cls(on="x0", bandwidth=0.5, jacobian="gaussian").bind(m).guide(_ctx(m, x, 0.3, need_graph=False))
    assert not torch.allclose(free, exact, rtol=1e-3, atol=1e-6)
    cos = float((free * exact).sum() / (free.norm() * exact.norm()))
    assert cos > 0.0  # the same potential, pushed along a related direction


class _Recording:
    """Wraps a denoiser and records whether each call's input required grad (a backward pass would)."""

    def __init__(self, m):
        self.m, self.grads = m, []
        for k in ("sigma_min", "sigma_max", "sigma_data", "sample_shape"):
            setattr(self, k, getattr(m, k))

    def __call__(self, x, sigma, **cond):
        self.grads.append(bool(x.requires_grad))
        return self.m(x, sigma, **cond)


@pytest.mark.parametrize("cls", CLASSES)
def test_gaussian_jacobian_never_asks_for_the_graph(cls):
    rec = _Recording(sd.ring())
    sd.sample(rec, 6, seed=0, steps=6, guidance=[cls(jacobian="gaussian", strength=2.0)])
    assert rec.grads and not any(rec.grads)
    rec.grads.clear()
    sd.sample(rec, 6, seed=0, steps=6, guidance=[cls(strength=2.0)])  # the exact form does
    assert any(rec.grads)


@pytest.mark.parametrize("cls", CLASSES)
def test_gaussian_jacobian_off_is_bit_identical_and_on_spreads(cls):
    m = sd.ring()
    plain = sd.sample(m, 10, seed=3, steps=12)
    assert torch.equal(plain, sd.sample(m, 10, seed=3, steps=12, guidance=[cls(jacobian="gaussian", strength=0.0)]))
    off_window = cls(jacobian="gaussian", strength=5.0, window=(100.0, 200.0))
    assert torch.equal(plain, sd.sample(m, 10, seed=3, steps=12, guidance=[off_window]))
    cover = lambda g: sum(  # noqa: E731
        len(set(m.assign(sd.sample(m, 10, seed=s, steps=24, guidance=g)).tolist())) for s in range(8)
    )
    strength = 2.0 if cls is DPPGuidance else 8.0
    assert cover([cls(jacobian="gaussian", window=(0.1, 20.0), bandwidth_scale=0.3, strength=strength)]) > cover([])


def test_bad_jacobian_options_fail_clearly():
    m = sd.ring()
    with pytest.raises(SteerdiffError, match="jacobian='vjp'"):
        sd.guided(m, DPPGuidance(jacobian="vjp"))
    with pytest.raises(SteerdiffError, match="needs on='x0'"):
        sd.guided(m, EntropyGuidance(on="x", jacobian="gaussian"))


def test_fixed_condition_builds_the_entropy_term_with_its_own_guidance():
    den, terms = fixed_condition(
        tiny_cond(),
        "entropy",
        options={"strength": 3.0, "jacobian": "gaussian", "window": (6.0, 80.0), "scale": 1.5, "interval": (3.0, 6.0)},
    )
    assert isinstance(terms[0], EntropyGuidance) and terms[0].jacobian == "gaussian"
    assert (den.scale, den.interval) == (1.5, (3.0, 6.0))


def test_cli_jacobian_flag(tmp_path, capsys):
    from steerdiff.cli import main

    base = ["sample", "--model", "mnist-cond", "--class-label", "7", "--n", "3", "--steps", "4", "--quiet"]
    a, b, c = (str(tmp_path / f"{k}.npy") for k in "abc")
    opts = ["--method", "dpp", "--strength", "300", "--seed", "1"]
    assert main(base + opts + ["--jacobian", "gaussian", "--out", a]) == 0
    assert main(base + opts + ["--jacobian", "gaussian", "--out", b]) == 0
    assert main(base + opts + ["--out", c]) == 0  # the exact form: a different sample
    import numpy as np

    xa, xb, xc = np.load(a), np.load(b), np.load(c)
    assert np.array_equal(xa, xb) and not np.allclose(xa, xc)
    assert main(base + ["--method", "spell", "--jacobian", "gaussian", "--out", str(tmp_path / "d.npy")]) == 2
    assert "is for --method dpp" in capsys.readouterr().err
    assert not (tmp_path / "d.npy").exists()
    with pytest.raises(SystemExit) as e:
        main(base + opts + ["--jacobian", "fast", "--out", str(tmp_path / "e.npy")])
    assert e.value.code == 2


def test_evaluate_checks_the_method_options_before_sampling(tmp_path, capsys):
    from steerdiff.cli import main

    out = tmp_path / "e.json"
    argv = ["evaluate", "--model", "mnist", "--method", "spell", "--jacobian", "gaussian", "--n", "8"]
    assert main(argv + ["--batches", "1", "--steps", "2", "--out", str(out)]) == 2  # progress bar on: no --quiet
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()] and "is for --method dpp" in err  # no progress line first
    assert not out.exists()
