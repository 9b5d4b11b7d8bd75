"""The training and composition workflows of the command line as library functions (issue 15):
``train_classifier`` / ``train_joint_classifier`` / ``load_composition`` / ``read_preset`` give the
bytes the CLI gives for the same seed, and the one classifier training loop (``fit_classifier``)
trains every classifier exactly as the three loops it replaced did."""

import importlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from steerdiff.checkpoint import read_preset
from steerdiff.cli import main
from steerdiff.core.errors import SteerdiffError
from steerdiff.core.seeding import stream_seed
from steerdiff.data import ImageData, load_dataset
from steerdiff.models import export, load_composition
from steerdiff.pipelines.stable_diffusion import train_latent_classifier
from steerdiff.train.classifier import (
    NoisyDigitCNN,
    fit_classifier,
    random_shift,
    train_classifier,
    training_sigmas,
)
from steerdiff.train.training import TrainConfig

classifier_mod = importlib.import_module("steerdiff.train.classifier")
joint_mod = importlib.import_module("steerdiff.compose.joint")


@pytest.fixture
def tiny_data(monkeypatch):
    """Every dataset cut to 48 training and 24 held-out images spread over it (the files are sorted by
    class), so a classifier trains in a blink."""

    def tiny(name, split="train", **kw):
        d = load_dataset(name, split, **kw)
        n = 48 if split == "train" else 24
        pick = torch.linspace(0, len(d) - 1, n).long()
        return ImageData(d.images[pick], None if d.labels is None else d.labels[pick], d.name)

    monkeypatch.setattr(classifier_mod, "load_dataset", tiny)
    monkeypatch.setattr(joint_mod, "load_dataset", tiny)
    return tiny


def _weights(directory) -> dict:
    return load_file(str(directory / "model.safetensors"))


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------- the loops before they became one
# Each reference below is the training loop its trainer had before issue 15 (the oracle the shared
# loop must reproduce bit for bit: same random streams in the same order, same optimiser steps).


def _old_label_loop(model, train, *, kind, epochs, batch_size, lr, seed):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * (len(train) // batch_size))
    for epoch in range(epochs):
        model.train()
        gen = torch.Generator().manual_seed(stream_seed("classifier-epoch", seed, epoch))
        torch.manual_seed(stream_seed("classifier-dropout", seed, epoch))
        perm = torch.randperm(len(train), generator=gen)
        for k in range(len(train) // batch_size):
            idx = perm[k * batch_size : (k + 1) * batch_size]
            x = random_shift(train.images[idx], 2, gen)
            if kind == "noisy-label":
                sigma = (-1.2 + 1.2 * torch.randn(len(idx), generator=gen)).exp()
                sigma = torch.where(torch.rand(len(idx), generator=gen) < 0.1, torch.zeros_like(sigma), sigma)
                logits = model(x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen), sigma)
            else:
                logits = model(x)
            loss = F.cross_entropy(logits, train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


def _old_joint_loop(model, train, *, k, epochs, batch_size, lr, warmup_epochs, seed):
    m = len(train)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    per = max(1, batch_size // m)
    steps_per_epoch = max(len(d) for d in train) // per
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    for epoch in range(epochs):
        model.train()
        gen = torch.Generator().manual_seed(stream_seed("joint-epoch", seed, epoch))
        torch.manual_seed(stream_seed("joint-dropout", seed, epoch))
        for _ in range(steps_per_epoch):
            x0 = torch.cat([d.images[torch.randint(0, len(d), (per,), generator=gen)] for d in train])
            y1 = torch.arange(m).repeat_interleave(per)
            x0 = random_shift(x0, 1, gen)
            sigma = (-1.2 + 1.2 * torch.randn(len(x0), generator=gen)).exp()
            sigma = torch.where(torch.rand(len(x0), generator=gen) < 0.1, torch.full_like(sigma, 0.002), sigma)
            x = x0 + sigma.view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=gen)
            lj = model(x, sigma)
            if epoch < warmup_epochs or k == 1:
                loss = F.nll_loss(lj.flatten(2).logsumexp(-1) if k > 1 else lj, y1)
            else:
                with torch.no_grad():
                    model.eval()
                    q = model.log_marginal(x0, 0.002).exp()
                    model.train()
                    target = joint_mod._outer(q, k - 1)
                rows = lj[torch.arange(len(x)), y1]
                loss = -(target * rows).flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


def _old_style_loop(model, latents, labels, *, epochs, batch_size, lr, seed, sigma_max):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(stream_seed("style-train", seed))
    lo, hi = math.log(0.02), math.log(sigma_max)
    for _ in range(epochs):
        perm = torch.randperm(len(latents), generator=gen)
        for k in range(0, len(latents), batch_size):
            idx = perm[k : k + batch_size]
            sigma = (lo + (hi - lo) * torch.rand(len(idx), generator=gen)).exp()
            x = latents[idx] + sigma.view(-1, 1, 1, 1) * torch.randn(latents[idx].shape, generator=gen)
            loss = F.cross_entropy(model(x, sigma), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("kind, arch", [("label", "cnn"), ("label", "lenet"), ("noisy-label", "cnn")])
def test_train_classifier_trains_as_its_old_loop(tmp_path, tiny_data, kind, arch):
    opts = dict(epochs=2, batch_size=16, lr=2e-3, seed=3)
    train_classifier(tmp_path / "c", kind=kind, arch=arch, width=4, progress=False, **opts)
    train = tiny_data("mnist", "train")
    torch.manual_seed(stream_seed("classifier-init", 3))
    net = NoisyDigitCNN if kind == "noisy-label" else classifier_mod.NETS[arch]
    model = net(1, int(train.labels.max()) + 1, 4, image_size=28)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    _old_label_loop(model, train, kind=kind, **opts)
    _assert_same_weights(_weights(tmp_path / "c"), model.state_dict())
    assert not all(torch.equal(init[k], v) for k, v in model.state_dict().items())  # it trained


@pytest.mark.parametrize("bases, k", [(["M1", "M2"], 2), (["MN1", "MN2", "MN3"], 3)])
def test_joint_classifier_trains_as_its_old_loop(tmp_path, tiny_data, bases, k):
    opts = dict(epochs=3, batch_size=12, lr=2e-3, warmup_epochs=1, seed=2)
    joint_mod.train_joint_classifier(tmp_path / "j", bases, num_labels=k, width=4, progress=False, **opts)
    train = [tiny_data(b, "train") for b in bases]
    torch.manual_seed(stream_seed("joint-init", 2))
    model = joint_mod.JointClassifier(3, len(bases), k, 4, image_size=28)
    _old_joint_loop(model, train, k=k, **opts)
    _assert_same_weights(_weights(tmp_path / "j"), model.state_dict())


def test_latent_classifier_trains_as_its_old_loop(tmp_path):
    g = torch.Generator().manual_seed(0)
    latents, labels = torch.randn(20, 4, 8, 8, generator=g), torch.arange(20) % 2
    train_latent_classifier(tmp_path / "s", latents, labels, ["a", "b"], epochs=2, batch_size=8, seed=5)
    torch.manual_seed(stream_seed("style-init", 5))
    model = NoisyDigitCNN(4, 2, 24, image_size=8, sigma_data=1.0)
    _old_style_loop(model, latents, labels, epochs=2, batch_size=8, lr=1e-3, seed=5, sigma_max=14.6)
    _assert_same_weights(_weights(tmp_path / "s"), model.state_dict())


def test_fit_classifier_without_steps_per_epoch_takes_plain_adam_steps():
    """Without ``steps_per_epoch`` the learning rate stays ``lr`` (a one-cycle schedule would start at
    ``lr / 25``): one step on a linear model is Adam's first step, ``lr * g / (|g| + eps)``."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 3)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    x, y = torch.tensor([[1.0, -2.0]]), torch.tensor([1])

    def batches(epoch, gen):
        yield x, None, y

    loss = fit_classifier(model, batches, epochs=1, lr=0.1, seed=0, progress=False)
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    ref = F.cross_entropy(x @ w.T + b, y)
    gw, gb = torch.autograd.grad(ref, (w, b))
    assert loss == pytest.approx(ref.item())
    torch.testing.assert_close(model.weight.detach(), w0 - 0.1 * gw / (gw.abs() + 1e-8))
    torch.testing.assert_close(model.bias.detach(), b0 - 0.1 * gb / (gb.abs() + 1e-8))
    with pytest.raises(SteerdiffError, match="epochs must be at least 1"):
        fit_classifier(model, batches, epochs=0, lr=0.1, seed=0, progress=False)


def test_training_sigmas_follow_edm_with_a_clean_share():
    """``ln sigma ~ N(-1.2, 1.2^2)`` with a share ``p_clean`` set to ``clean``: moments within a few
    standard errors of the formula."""
    n = 200_000
    s = training_sigmas(n, torch.Generator().manual_seed(0), clean=0.002, p_clean=0.25)
    clean = s == 0.002
    assert abs(clean.double().mean().item() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    logs = s[~clean].double().log()
    assert abs(logs.mean().item() + 1.2) < 4 * 1.2 / math.sqrt(0.75 * n)
    assert abs(logs.std().item() - 1.2) < 0.01


# ------------------------------------------------------------------- the CLI is the library
def _config(directory) -> dict:
    conf = json.loads((directory / "config.json").read_text())
    conf.pop("command")
    return conf


@pytest.mark.parametrize(
    "argv, call",
    [
        (
            ["--kind", "noisy-label", "--epochs", "1", "--batch-size", "16", "--seed", "4"],
            lambda out: train_classifier(out, kind="noisy-label", epochs=1, batch_size=16, seed=4, progress=False),
        ),
        (
            ["--kind", "joint", "--bases", "M1", "M2", "--epochs", "1", "--lr", "1e-3"],
            lambda out: joint_mod.train_joint_classifier(out, ["M1", "M2"], epochs=1, lr=1e-3, progress=False),
        ),
    ],
)
def test_train_classifier_cli_gives_the_library_bytes(tmp_path, tiny_data, capsys, argv, call):
    assert main(["train-classifier", *argv, "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    assert "classifier in" in capsys.readouterr().out
    call(tmp_path / "lib")
    assert (tmp_path / "cli" / "model.safetensors").read_bytes() == (
        tmp_path / "lib" / "model.safetensors"
    ).read_bytes()
    assert _config(tmp_path / "cli") == _config(tmp_path / "lib")


def test_train_cli_gives_the_library_bytes(tmp_path, capsys):
    from steerdiff.train.training import train

    argv = ["train", "--net", "tiny", "--steps", "2", "--batch-size", "4", "--seed", "6", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 0
    assert "trained to step 2" in capsys.readouterr().out
    train(TrainConfig(net="tiny", steps=2, batch_size=4, seed=6), tmp_path / "lib", progress=False)
    files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*.safetensors"))
    assert len(files) == 2  # the EMA network and the training state
    for f in files:
        assert (tmp_path / "cli" / f).read_bytes() == (tmp_path / "lib" / f).read_bytes(), f


def test_classifier_trainers_refuse_an_output_that_is_not_a_classifier(tmp_path, tiny_data):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(SteerdiffError, match="add --force"):
        train_classifier(tmp_path / "x", epochs=1, progress=False)
    with pytest.raises(SteerdiffError, match="add --force"):
        joint_mod.train_joint_classifier(tmp_path / "x", ["M1", "M2"], epochs=1, progress=False)
    assert (tmp_path / "x" / "notes.txt").read_text() == "mine"
    train_classifier(tmp_path / "x", epochs=1, batch_size=16, width=4, progress=False, force=True)
    assert not (tmp_path / "x" / "notes.txt").exists() and (tmp_path / "x" / "model.safetensors").is_file()


def test_export_cli_gives_the_library_bytes(tmp_path, capsys):
    from steerdiff.hub import weights_dir

    src = weights_dir() / "mnist"
    (tmp_path / "p.json").write_text('{"sampler": "euler", "steps": 7}')
    argv = ["export", str(src), "--out", str(tmp_path / "cli"), "--preset", str(tmp_path / "p.json")]
    assert main(argv) == 0
    export(src, tmp_path / "lib", preset=read_preset(tmp_path / "p.json"))
    files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    assert files and files == sorted(
        p.relative_to(tmp_path / "lib") for p in (tmp_path / "lib").rglob("*") if p.is_file()
    )
    for f in files:
        assert (tmp_path / "cli" / f).read_bytes() == (tmp_path / "lib" / f).read_bytes(), f
    assert json.loads((tmp_path / "lib" / "config.json").read_text())["preset"] == {"sampler": "euler", "steps": 7}


def test_read_preset_wants_a_json_object(tmp_path):
    (tmp_path / "p.json").write_text("[1, 2]")
    with pytest.raises(SteerdiffError, match="must hold a JSON object"):
        read_preset(tmp_path / "p.json")
    (tmp_path / "q.json").write_text('{"steps": 3}')
    assert read_preset(tmp_path / "q.json") == {"steps": 3}


def test_train_config_reads_the_circle_jumping_alias():
    assert TrainConfig(dataset="circle_jumping").dataset == "circle"
    assert TrainConfig(dataset="horizontal").dataset == "horizontal"


def test_load_composition_takes_the_classifier_s_recorded_settings():
    """The defaults are what the shipped classifier's config.json records for these labels (read
    here from the file itself); given values win."""
    from steerdiff.hub import JOINT_CLASSIFIERS, weights_dir

    conf = json.loads(
        (weights_dir() / JOINT_CLASSIFIERS[("colormnist-m1", "colormnist-m2")] / "config.json").read_text()
    )
    comp = load_composition(["M1", "M2"], (1, 1))
    assert comp.scale == conf["default_guidance_scale"]["1,1"] and comp.y == (1, 1)
    assert comp.set_guidance == conf["default_set_guidance"]
    comp = load_composition(["M1", "M2"], (2, 2), guidance_scale=0.5, set_guidance=0.0)
    assert (comp.scale, comp.set_guidance) == (0.5, 0.0)
    with pytest.raises(SteerdiffError, match="no shipped classifier"):
        load_composition(["mnist", "mnist"], (1, 2))


def test_compose_cli_gives_the_library_bytes(tmp_path, capsys):
    from steerdiff.particles.draw import draw

    argv = ["compose", "--base", "M1", "M2", "--y", "1", "2", "--n", "2", "--steps", "2", "--seed", "3"]
    assert main([*argv, "--guidance-scale", "2", "--out", str(tmp_path / "x.npy"), "--quiet"]) == 0
    assert "guidance scale 2" in capsys.readouterr().out
    comp = load_composition(["M1", "M2"], (1, 2), guidance_scale=2)
    x = draw(comp, seed=3, n=2, steps=2, quiet=True).x
    assert np.load(tmp_path / "x.npy").tobytes() == x.numpy().tobytes()
