"""Issue #16: edit evaluation (two independent judges), editing your own images, and the edit's sign."""

import json

import numpy as np
import pytest
import torch

import steerdiff as sd
from steerdiff.classifier import DigitCNN, DigitLeNet, accuracy, load_classifier
from steerdiff.cli import main
from steerdiff.data import load_colormnist, load_mnist
from steerdiff.edit import (
    DeltaH,
    HSpace,
    apply_edit,
    asymmetric_sample,
    conf_sigmas,
    dilate,
    edit_sigmas,
    invert,
    load_edit,
)
from steerdiff.edit_eval import evaluate_edit, outside_region, stroke_width
from steerdiff.errors import SteerdiffError


def _erode(x):
    return -torch.nn.functional.max_pool2d(-x, 3, stride=1, padding=1)


def test_stroke_width_reads_the_width_of_a_bar():
    for w in (1, 2, 3, 4):
        x = torch.full((1, 1, 28, 28), -1.0)
        x[0, 0, 4:24, 10 : 10 + w] = 1.0  # a 20 x w bar: 2 * 20w / (40 + 2w)
        assert abs(float(stroke_width(x)) - 40 * w / (40 + 2 * w)) < 1e-5
    assert float(stroke_width(torch.full((1, 3, 28, 28), -1.0))) == 0.0  # no ink: width 0
    digits = load_mnist("heldout").images[:50]
    assert bool((stroke_width(dilate(digits)) > stroke_width(digits)).all())


def test_evaluate_edit_on_known_image_edits():
    d = load_colormnist("colormnist", "heldout")
    x, y = d.images[::100][:20], d.labels[::100][:20] % 10
    same = evaluate_edit(x, x.clone(), y)
    assert same["success"] == 0.0 and same["l1_outside"] == 0.0 and same["colour_kept"] == 1.0
    assert same["digit_kept"]["mnist-evaluator"]["vs_source"] == 1.0 == same["kept_by_all"]
    assert set(same["digit_kept"]) == {"mnist-evaluator", "mnist-evaluator2"}
    thick = evaluate_edit(x, dilate(x), y)
    # a 1-pixel dilation stays in the region (but for faint ink below the mask's threshold)
    assert thick["success"] == 1.0 and thick["l1_outside"] < 0.005
    # dilation defines the prototype direction; per image the cosine is lower (measured 0.35 here)
    assert thick["directional"]["mean_cosine"] > 0.25 and thick["directional"]["share_positive"] > 0.9
    assert thick["stroke_width"]["ratio_mean"] > 1.3
    thin = evaluate_edit(x, _erode(x), y, attribute="thin")
    assert thin["success"] > 0.9 and thin["stroke_width"]["ratio_mean"] < 1
    # a change far from the ink is what l1_outside sees
    far = x.clone()
    far[outside_region(x).expand_as(x)] = 0.0
    assert evaluate_edit(x, far, y)["l1_outside"] == pytest.approx(1.0, abs=1e-3)  # background -1 -> 0
    with pytest.raises(SteerdiffError, match="differ in shape"):
        evaluate_edit(x, x[:3], y)
    with pytest.raises(SteerdiffError, match="attribute"):
        evaluate_edit(x, x, y, attribute="bold")


def test_second_classifier_ships_and_is_independent():
    held = load_mnist("heldout")
    ev, ev2 = load_classifier("mnist-evaluator"), load_classifier("mnist-evaluator2")
    assert isinstance(ev2, DigitLeNet) and not isinstance(ev2, DigitCNN)
    assert ev2.config["seed"] != ev.config["seed"] and "--arch lenet" in ev2.config["command"]
    acc = accuracy(ev2, held.images, held.labels)
    assert acc >= 0.97 and abs(acc - ev2.config["heldout_accuracy"]) < 1e-6


def test_train_classifier_arch_option(tmp_path, capsys):
    assert (
        main(
            [
                "train-classifier",
                "--arch",
                "lenet",
                "--kind",
                "noisy-label",
                "--epochs",
                "1",
                "--quiet",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
    assert "--arch lenet is for --kind label" in capsys.readouterr().err
    from steerdiff.classifier import train_classifier

    with pytest.raises(SteerdiffError, match="arch"):
        train_classifier(tmp_path / "d", arch="vit", epochs=1, progress=False)


def test_evaluate_task_edit_cli(tmp_path, capsys):
    d = load_colormnist("colormnist", "heldout")
    x = d.images[::200][:8]
    np.savez(tmp_path / "e.npz", source=x.numpy(), edited=dilate(x).numpy(), labels=(d.labels[::200][:8] % 10).numpy())
    out = tmp_path / "e.json"
    assert main(["evaluate", "--task", "edit", "--samples", str(tmp_path / "e.npz"), "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    assert r["schema"] == "steerdiff-evaluate-edit/1" and r["success"] == 1.0 and r["attribute"] == "thick"
    for key in ("digit_kept", "kept_by_all", "directional", "frechet", "l1_outside", "colour_kept"):
        assert key in r
    np.savez(tmp_path / "bad.npz", samples=x.numpy())
    assert main(["evaluate", "--task", "edit", "--samples", str(tmp_path / "bad.npz"), "--out", str(out)]) == 2
    assert "no source / edited" in capsys.readouterr().err
    assert main(["evaluate", "--task", "edit", "--out", str(out)]) == 2
    assert "--samples e.npz" in capsys.readouterr().err


def test_edit_input_png_folder_and_bad_inputs(tmp_path, capsys):
    from PIL import Image

    d = load_colormnist("colormnist", "heldout")
    x = d.images[:1]
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray(((x[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)).save(folder / "a.png")
    out = tmp_path / "mine.npz"
    assert main(["edit", "--attribute", "thick", "--input", str(folder), "--out", str(out), "--quiet"]) == 0
    z = np.load(out)
    assert z["source"].shape == z["edited"].shape == (1, 3, 28, 28)
    assert np.abs(z["source"] - x.numpy()).max() < 1 / 127  # the PNG round trip
    assert float(stroke_width(torch.from_numpy(z["edited"]))) > float(stroke_width(x))
    # a 1-channel array for the 3-channel model, values outside [-1, 1], a missing file: one-line errors
    np.save(tmp_path / "gray.npy", load_mnist("heldout").images[:2].numpy())
    np.save(tmp_path / "range.npy", 3 * x.numpy())
    for bad, msg in (
        ("gray.npy", "model colormnist edits (3, 28, 28)"),
        ("range.npy", "not in [-1, 1]"),
        ("missing.npy", "--input"),
    ):
        assert main(["edit", "--attribute", "thick", "--input", str(tmp_path / bad), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1


def test_shipped_edit_strength_zero_is_the_source_and_negative_thins():
    """Three held-out digits through the shipped ``thick`` edit: strength 0 is exactly the plain
    reconstruction (no hook) and within RMS 0.05 of the source; strength -1 thins (stroke width
    down), its calibrated default strength thickens."""
    model = sd.load("colormnist")
    delta, conf = load_edit("thick")
    x0 = load_colormnist("colormnist", "heldout").images[[5, 700, 1400]]
    sig = conf_sigmas(model, conf)
    xT = invert(model, x0, sig)
    zero = apply_edit(model, xT, sig, delta, conf, strength=0.0, boost=False)
    plain = asymmetric_sample(model, xT, sig, None).clamp(-1, 1)
    torch.testing.assert_close(zero, plain, rtol=0, atol=0)
    assert float((zero - x0).pow(2).mean().sqrt()) < 0.05
    w0 = stroke_width(x0)
    thick = stroke_width(apply_edit(model, xT, sig, delta, conf, boost=False))
    thin = stroke_width(apply_edit(model, xT, sig, delta, conf, strength=-1.0, boost=False))
    assert bool((thin < w0).all()) and bool((thick > w0).all())


def test_editing_a_tiny_diffusers_ddpm_unet_uses_the_same_path(tiny_unet):
    """A diffusers DDPM ``UNet2DModel`` (tiny, random) behind ``DiscreteDenoiser``: h-space is found,
    a zero delta is plain DDIM, a nonzero delta edits, through the same functions as the shipped edit."""
    from steerdiff.schedules_ddpm import ddpm_alphas_cumprod

    model = sd.DiscreteDenoiser(tiny_unet.requires_grad_(False), ddpm_alphas_cumprod(1000), sample_shape=(1, 8, 8))
    x0 = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sig = edit_sigmas(model, 10, sigma_top=5.0)
    xT = invert(model, x0, sig)
    c, h, w = HSpace(model).shape(x0, 1.0)
    delta = DeltaH("conv", c, h, w)
    conf = {"intervals": {"sigma_edit": 0.5, "sigma_boost": 0.0}}
    plain = asymmetric_sample(model, xT, sig, None).clamp(-1, 1)
    torch.testing.assert_close(apply_edit(model, xT, sig, delta, conf), plain, rtol=0, atol=0)  # zero-initialised
    with torch.no_grad():
        torch.nn.init.normal_(delta.out.weight, std=0.5)
    edited = apply_edit(model, xT, sig, delta, conf)
    assert edited.shape == x0.shape and bool(torch.isfinite(edited).all())
    assert float((edited - plain).abs().max()) > 1e-3
    torch.testing.assert_close(apply_edit(model, xT, sig, delta, conf, strength=0.0), plain, rtol=0, atol=0)


def test_edit_input_that_does_not_exist_says_so(tmp_path, capsys):
    from steerdiff.cli import main

    argv = ["edit", "--attribute", "thick", "--input", str(tmp_path / "none.npy"), "--out", str(tmp_path / "e.npz")]
    assert main(argv) == 2
    assert "no such file or folder" in capsys.readouterr().err
