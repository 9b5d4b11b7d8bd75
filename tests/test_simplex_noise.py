"""Simplex initial noise (steerdiff.particles.noise): exact marginals, the simplex, the plumbing."""

import numpy as np
import pytest
import torch
from scipy.stats import chi, kstest

import steerdiff as sd
from steerdiff.errors import SteerdiffError
from steerdiff.particles.noise import SimplexNoise, default_block, initial_noise, simplex_noise


def _coarse(z, block):
    return torch.nn.functional.avg_pool2d(z, block).flatten(1).double() * block


def test_each_particle_is_exactly_standard_normal():
    """Slot by slot over 3,000 batches: mean 0, covariance I, chi_k radii (a fixed slot order, a missing
    rotation or unstratified-but-sorted radii each fail one of these)."""
    g = torch.Generator().manual_seed(0)
    zs = torch.stack([simplex_noise(torch.randn(4, 3, generator=g), 1, g) for _ in range(3000)])  # (3000, 4, 3)
    for slot in range(4):
        c = zs[:, slot].double()
        assert c.mean(0).abs().max() < 0.07
        assert (torch.cov(c.T) - torch.eye(3, dtype=torch.float64)).abs().max() < 0.1
        assert kstest(c.norm(dim=1).numpy(), chi(3).cdf).pvalue > 1e-3


def test_coarse_directions_form_a_simplex_and_fine_detail_is_kept():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 1, 8, 8, generator=g)
    out = simplex_noise(z, 4, g)  # k = 4 coarse coordinates: groups of 5 and 1
    c = _coarse(out, 4)
    u = c[:5] / c[:5].norm(dim=1, keepdim=True)
    cos = u @ u.T
    off = cos[~torch.eye(5, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -0.25), atol=1e-5)
    assert torch.equal(out[5], z[5])  # a group of one is left as drawn
    fine = lambda x: x - torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 4), scale_factor=4)  # noqa: E731
    assert torch.allclose(fine(out), fine(z), atol=1e-6)
    assert not torch.allclose(out, z)


def test_default_block_and_option_parsing():
    assert (default_block((1, 28, 28)), default_block((4, 64, 64)), default_block((2,))) == (4, 8, 1)
    assert initial_noise("iid") is None and initial_noise(None) is None
    assert initial_noise("simplex").block is None and initial_noise("simplex:2", (1, 28, 28)).block == 2
    for bad in ("simplex:0", "orthogonal", "simplex:x", "simplex:"):
        with pytest.raises(SteerdiffError, match="--init-noise"):
            initial_noise(bad)
    with pytest.raises(SteerdiffError, match="must divide"):
        initial_noise("simplex:5", (1, 28, 28))
    with pytest.raises(SteerdiffError, match="not images"):
        initial_noise("simplex:2", (2,))
    for bad in (0, 4.0, True, "4"):
        with pytest.raises(SteerdiffError, match="positive integer"):
            SimplexNoise(bad)


def test_sample_plumbing_is_exact_and_reproducible():
    """The identity transform gives plain sampling bit for bit, on a stochastic sampler too (each stream
    still continues past its initial draw); the same seed gives the same bytes."""
    ring = sd.ring()
    kw = dict(seed=3, steps=6, sampler="euler_ancestral")
    plain = sd.sample(ring, 7, **kw)
    assert torch.equal(sd.sample(ring, 7, initial_noise=lambda z, g: z, **kw), plain)
    a = sd.sample(ring, 7, initial_noise=SimplexNoise(), **kw)
    assert torch.equal(a, sd.sample(ring, 7, initial_noise=SimplexNoise(), **kw)) and not torch.equal(a, plain)
    with pytest.raises(SteerdiffError, match="initial_noise returned"):
        sd.sample(ring, 7, initial_noise=lambda z, g: z[:3], **kw)
    with pytest.raises(SteerdiffError, match="initial_noise returned NoneType"):
        sd.sample(ring, 7, initial_noise=lambda z, g: None, **kw)


def test_simplex_noise_covers_more_ring_modes_than_iid():
    """The exact 10-mode ring (2-D: groups of 3 at 120 degrees), 100 batches of 10: more modes per batch."""
    ring = sd.ring()
    modes = lambda x: len(set(ring.log_responsibilities(x, torch.zeros(len(x))).argmax(1).tolist()))  # noqa: E731
    iid = np.mean([modes(sd.sample(ring, 10, seed=s, steps=12)) for s in range(100)])
    simplex = np.mean([modes(sd.sample(ring, 10, seed=s, steps=12, initial_noise=SimplexNoise())) for s in range(100)])
    assert simplex > iid + 0.2, (iid, simplex)  # 6.59 -> 6.96


def test_cli_init_noise(tmp_path, capsys):
    from steerdiff.cli import main

    base = ["sample", "--model", "mnist", "--n", "4", "--steps", "3", "--seed", "2", "--quiet"]
    a, b, c = (str(tmp_path / f"{k}.npy") for k in "abc")
    assert main(base + ["--init-noise", "simplex", "--out", a]) == 0
    assert main(base + ["--init-noise", "simplex:4", "--out", b]) == 0
    assert main(base + ["--out", c]) == 0
    xa, xb, xc = np.load(a), np.load(b), np.load(c)
    assert np.array_equal(xa, xb) and not np.allclose(xa, xc)
    assert main(base + ["--init-noise", "simplex:5", "--out", str(tmp_path / "d.npy")]) == 2
    assert "block 5 must divide" in capsys.readouterr().err and not (tmp_path / "d.npy").exists()


def test_evaluate_samples_refuses_init_noise(tmp_path, capsys):
    from steerdiff.cli import main

    x = tmp_path / "x.npy"
    np.save(x, np.zeros((6, 1, 28, 28), dtype=np.float32))
    argv = ["evaluate", "--samples", str(x), "--batch-size", "3", "--init-noise", "simplex"]
    assert main(argv + ["--out", str(tmp_path / "e.json"), "--quiet"]) == 2
    assert "--init-noise" in capsys.readouterr().err and not (tmp_path / "e.json").exists()


def test_diverse_applies_the_recorded_noise_and_the_user_overrides_it():
    """mnist-cond records simplex noise for a class label under CFG (``preset.diverse.class``), none at scale 1."""
    from steerdiff.fixed_condition import diverse_entry, diverse_sample
    from steerdiff.particles.draw import draw

    model = sd.load("mnist-cond")
    assert diverse_entry(model, True, 3.0)["init_noise"] == "simplex"
    assert "init_noise" not in diverse_entry(model, True, 1.0)
    kw = dict(method="diverse", class_label=3, n=4, steps=3, seed=1, quiet=True)
    recorded = draw(model, cfg_scale=3.0, **kw).x
    assert torch.equal(recorded, draw(model, cfg_scale=3.0, init_noise="simplex", **kw).x)
    assert not torch.equal(recorded, draw(model, cfg_scale=3.0, init_noise="iid", **kw).x)
    labels = {"class_labels": torch.full((4,), 3)}
    assert torch.equal(recorded, diverse_sample(model, 4, seed=1, cond=labels, scale=3.0, steps=3))
    assert torch.equal(draw(model, **kw).x, draw(model, init_noise="iid", **kw).x)  # scale 1: nothing recorded


def test_evaluate_conditional_checks_options_before_its_progress_bar(tmp_path, capsys):
    from steerdiff.cli import main

    out = tmp_path / "c.json"
    argv = ["evaluate", "--task", "conditional", "--dataset", "horizontal", "--n", "4", "--steps", "2"]
    assert main(argv + ["--batches", "1", "--init-noise", "foo", "--out", str(out)]) == 2  # progress bar on
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--init-noise 'foo'" in err and not out.exists()
