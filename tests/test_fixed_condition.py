"""Classifier-free guidance, interval guidance, CADS and --method diverse (steerdiff.fixed_condition)."""

import pytest
import torch
from diffusers import UNet2DModel

import steerdiff as sd
from steerdiff.cli import main
from steerdiff.denoisers import EDMDenoiser
from steerdiff.errors import SteerdiffError
from steerdiff.fixed_condition import (
    cads,
    cads_gamma,
    cfg,
    cover_sample,
    diverse_sample,
    diverse_setup,
    fixed_condition,
)
from steerdiff.nets import unet_config


def tiny_cond(preset=None):
    """A tiny random class-conditional EDM denoiser, 10 classes and null label 10, at 8x8."""
    torch.manual_seed(0)
    net = UNet2DModel.from_config(
        unet_config("tiny", sample_size=8, in_channels=1, out_channels=1, num_class_embeds=11)
    )
    # a random class embedding is tiny next to the time embedding: make the label matter
    with torch.no_grad():
        net.class_embedding.weight.mul_(30)
    return EDMDenoiser(
        net.eval().requires_grad_(False),
        sample_shape=(1, 8, 8),
        num_classes=10,
        null_label=10,
        preset=preset or {"sampler": "heun", "steps": 6},
    )


def inputs(b=4, sigma=2.0):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 1, 8, 8, generator=g) * sigma, torch.full((b,), sigma), torch.tensor([1, 3, 3, 7][:b])


def test_cfg_scale_one_is_the_conditional_exactly():
    m = tiny_cond()
    x, s, y = inputs()
    assert torch.equal(cfg(m, 1.0)(x, s, class_labels=y), m(x, s, class_labels=y))
    lab = {"class_labels": torch.full((3,), 5)}
    assert torch.equal(sd.sample(cfg(m, 1.0), 3, seed=0, cond=lab), sd.sample(m, 3, seed=0, cond=lab))


def test_cfg_is_uncond_plus_scaled_difference_in_one_batched_call():
    m = tiny_cond()
    x, s, y = inputs()
    calls = []
    m.net.register_forward_pre_hook(lambda mod, args, kw: calls.append(len(args[0])), with_kwargs=True)
    out = cfg(m, 3.0)(x, s, class_labels=y)
    assert calls == [8]  # cond + uncond in one forward
    d_c, d_u = m(x, s, class_labels=y), m(x, s)  # no labels: the null label
    torch.testing.assert_close(out, d_u + 3.0 * (d_c - d_u), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, d_c, atol=1e-3)  # the label matters in this net
    assert torch.equal(cfg(m, 3.0)(x, s), m(x, s))  # no label: the unconditional denoiser


def test_interval_is_cfg_inside_and_conditional_outside():
    m = tiny_cond()
    x, _, y = inputs()
    full, inter = cfg(m, 3.0), cfg(m, 3.0, interval=(0.5, 5.0))
    inside, outside, edge = torch.full((4,), 2.0), torch.full((4,), 10.0), torch.full((4,), 0.5)
    assert torch.equal(inter(x, inside, class_labels=y), full(x, inside, class_labels=y))
    assert torch.equal(inter(x, outside, class_labels=y), m(x, outside, class_labels=y))
    assert torch.equal(inter(x, edge, class_labels=y), m(x, edge, class_labels=y))  # (lo, hi]: lo is outside
    mixed = torch.tensor([2.0, 10.0, 2.0, 10.0])  # per-sample sigmas: each gets its own rule
    out = inter(x, mixed, class_labels=y)
    torch.testing.assert_close(out[0::2], full(x, mixed, class_labels=y)[0::2])
    torch.testing.assert_close(out[1::2], m(x, mixed, class_labels=y)[1::2])


def test_cads_zero_noise_is_cfg_and_noise_acts_only_where_gamma_below_one():
    m = tiny_cond()
    x, _, y = inputs()
    for sigma in (0.01, 2.0, 60.0):
        s = torch.full((4,), sigma)
        assert torch.equal(cads(m, 3.0, noise_scale=0.0)(x, s, class_labels=y), cfg(m, 3.0)(x, s, class_labels=y))
    lab = {"class_labels": torch.full((3,), 5)}
    assert torch.equal(
        sd.sample(cads(m, 3.0, noise_scale=0.0), 3, seed=0, cond=lab), sd.sample(cfg(m, 3.0), 3, seed=0, cond=lab)
    )
    noisy = cads(m, 3.0, noise_scale=1.0, tau=(0.6, 0.9))
    assert noisy.t_of(m.sigma_min) == 0 and noisy.t_of(m.sigma_max) == 1
    low, high = torch.full((4,), 0.01), torch.full((4,), 60.0)  # t ~ 0.3 (gamma 1) and t ~ 0.97 (gamma 0)
    assert torch.equal(noisy(x, low, class_labels=y), cfg(m, 3.0)(x, low, class_labels=y))
    assert not torch.allclose(noisy(x, high, class_labels=y), cfg(m, 3.0)(x, high, class_labels=y), atol=1e-4)
    # reproducible: the embedding noise is seeded
    assert torch.equal(
        noisy(x, high, class_labels=y), cads(m, 3.0, noise_scale=1.0, tau=(0.6, 0.9))(x, high, class_labels=y)
    )
    assert [cads_gamma(t, 0.6, 0.9) for t in (0.0, 0.6, 0.75, 0.9, 1.0)] == pytest.approx([1, 1, 0.5, 0, 0])


def test_cads_leaves_the_null_label_embedding_alone():
    m = tiny_cond()
    x, _, y = inputs()
    s = torch.full((4,), 60.0)
    # scale 0 keeps only the unconditional half of the batched call: CADS must not have touched it
    torch.testing.assert_close(cads(m, 0.0, noise_scale=1.0)(x, s, class_labels=y), m(x, s), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cads(m, 1.0, noise_scale=1.0)(x, s, class_labels=y), m(x, s, class_labels=y), atol=1e-4)


def test_strength_zero_is_plain_sampling_bit_for_bit():
    m = tiny_cond()
    lab = {"class_labels": torch.full((4,), 2)}
    plain = sd.sample(m, 4, seed=3, cond=lab)
    assert torch.equal(sd.sample(cfg(m, 1.0, interval=(0.5, 5.0)), 4, seed=3, cond=lab), plain)
    assert torch.equal(sd.sample(cads(m, 1.0, noise_scale=0.0), 4, seed=3, cond=lab), plain)
    for method in ("pg", "repulsive"):
        den, terms = fixed_condition(m, method, options={"embedding": "identity", "kernel": "rbf", "strength": 0.0})
        assert torch.equal(sd.sample(den, 4, seed=3, cond=lab, guidance=terms), plain)
    uncond = sd.sample(m, 4, seed=3)
    den, terms = fixed_condition(m, "repulsive", options={"embedding": "identity", "strength": 0.0}, labelled=False)
    assert torch.equal(sd.sample(den, 4, seed=3, guidance=terms), uncond)


def test_bad_inputs_are_one_line_errors():
    m = tiny_cond()
    with pytest.raises(SteerdiffError, match="outside the model's sigma range"):
        cfg(m, 3.0, interval=(100.0, 200.0))
    with pytest.raises(SteerdiffError, match="lo < hi"):
        cfg(m, 3.0, interval=(5.0, 1.0))
    with pytest.raises(SteerdiffError, match="has none"):
        cads(sd.ring(), 3.0)  # no condition embedding at all
    torch.manual_seed(0)
    unc = EDMDenoiser(
        UNet2DModel.from_config(unet_config("tiny", sample_size=8, in_channels=1, out_channels=1)).eval(),
        sample_shape=(1, 8, 8),
        num_classes=10,
        null_label=10,
    )
    with pytest.raises(SteerdiffError, match="condition embedding"):
        cads(unc, 3.0)
    with pytest.raises(SteerdiffError, match="null label"):
        cfg(EDMDenoiser(m.net, sample_shape=(1, 8, 8), num_classes=10), 3.0)
    with pytest.raises(SteerdiffError, match="give --class-label"):
        fixed_condition(m, "cads", labelled=False)


def test_cli_methods_and_errors(tmp_path, capsys):
    out = str(tmp_path / "x.npy")
    base = ["sample", "--model", "mnist-cond", "--n", "2", "--steps", "3", "--quiet", "--out", out]
    with pytest.raises(SystemExit) as e:
        main(base + ["--method", "bogus"])
    assert e.value.code == 2
    assert main(base + ["--class-label", "3", "--cfg-scale", "3", "--cfg-interval", "100,200"]) == 2
    assert "outside the model's sigma range" in capsys.readouterr().err
    assert main(base + ["--method", "cads"]) == 2  # no class label
    assert "--class-label" in capsys.readouterr().err
    assert main(base + ["--class-label", "3", "--cfg-interval", "nope"]) == 2
    assert main(base + ["--class-label", "3", "--method", "cfg", "--cfg-scale", "3", "--kernel", "rbf"]) == 2
    assert "does not use them" in capsys.readouterr().err
    for extra in (
        ["--method", "cfg", "--cfg-scale", "3"],
        ["--method", "interval", "--cfg-scale", "3", "--cfg-interval", "0.3,5"],
        ["--method", "cads", "--cfg-scale", "2", "--cads-noise", "0.5", "--cads-tau", "0.5,0.8"],
        ["--method", "diverse"],
        ["--method", "diverse", "--cfg-scale", "3"],
    ):
        assert main(base + ["--class-label", "3", *extra]) == 0, extra
    unlabelled = ["sample", "--model", "mnist", "--n", "3", "--steps", "3", "--quiet", "--out", out]
    assert main(unlabelled + ["--method", "diverse"]) == 0  # the recorded label-free choice
    assert main(unlabelled + ["--method", "diverse", "--cfg-scale", "3"]) == 2


def _recording(model):
    """Every network call's class labels, recorded."""
    labels = []
    model.net.register_forward_pre_hook(lambda mod, args, kw: labels.append(kw.get("class_labels")), with_kwargs=True)
    return labels


def test_diverse_unconditional_makes_no_class_conditional_calls():
    m = sd.load("mnist")
    labels = _recording(m)
    x = diverse_sample(m, 3, seed=0, steps=3)
    assert x.shape == (3, 1, 28, 28) and labels
    assert all(lab is not None and bool((lab == m.null_label).all()) for lab in labels), diverse_setup(
        m, labelled=False
    )[2]


def test_diverse_with_a_label_keeps_the_class():
    m = sd.load("mnist-cond")
    labels = _recording(m)
    for scale in (None, 1.0, 3.0):
        diverse_sample(m, 3, seed=0, steps=3, scale=scale, cond={"class_labels": torch.full((3,), 7)})
    assert labels and all(set(lab.tolist()) <= {7, m.null_label} for lab in labels)
    assert any(7 in lab.tolist() for lab in labels)


def test_cads_on_pipeline_prompt_embeddings(tmp_path):
    pytest.importorskip("transformers")
    from steerdiff.fixed_condition import cads_pipeline
    from steerdiff.pipelines import from_pipeline, tiny_pipeline

    pipe = tiny_pipeline(tmp_path)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 50
    s = torch.full((2,), 50.0)
    ref = from_pipeline(pipe, "a red cat", guidance_scale=3.0)(x, s)
    assert torch.equal(cads_pipeline(from_pipeline(pipe, "a red cat", guidance_scale=3.0), noise_scale=0.0)(x, s), ref)
    den = cads_pipeline(from_pipeline(pipe, "a red cat", guidance_scale=3.0), noise_scale=1.0)
    assert not torch.allclose(den(x, s), ref)
    low = torch.full((2,), float(den.sigma_min) * 1.01)  # gamma 1 at the data end: unchanged
    assert torch.equal(den(x, low), from_pipeline(pipe, "a red cat", guidance_scale=3.0)(x, low))


def test_cover_sample_keeps_model_draws_and_covers_labels():
    ring = sd.ring()
    pool = sd.sample(ring, 30, seed=0, steps=8)
    modes = lambda x: sd.ring().log_responsibilities(x, torch.zeros(len(x))).argmax(1)  # noqa: E731
    x = cover_sample(
        ring, 10, candidates=3, embedding=lambda y: torch.nn.functional.one_hot(modes(y), 10), seed=0, steps=8
    )
    assert all(any(torch.equal(xi, p) for p in pool) for xi in x)  # every kept sample is an iid draw
    assert len(set(modes(x).tolist())) == len(set(modes(pool).tolist()))  # as many modes as the pool holds


def test_cli_cads_on_a_pipeline(tmp_path):
    pytest.importorskip("transformers")
    from steerdiff.pipelines import tiny_pipeline

    tiny_pipeline(tmp_path).save_pretrained(tmp_path / "sd")
    base = [
        "sample",
        "--pipeline",
        str(tmp_path / "sd"),
        "--prompt",
        "a red cat",
        "--n",
        "2",
        "--steps",
        "3",
        "--quiet",
    ]
    assert (
        main(base + ["--method", "cads", "--cfg-scale", "3", "--cads-noise", "0.5", "--out", str(tmp_path / "a.npy")])
        == 0
    )
    assert main(base + ["--method", "cfg", "--out", str(tmp_path / "b.npy")]) == 2
    assert main(base + ["--cfg-interval", "0.3,5", "--out", str(tmp_path / "c.npy")]) == 2
