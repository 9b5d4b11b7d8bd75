"""Training: exact resume, atomic checkpoints, corrupt files, each objective loads as a denoiser."""

import json
import shutil

import pytest
import torch

import steerdiff as sd
from steerdiff import checkpoint as ckpt
from steerdiff.errors import SteerdiffError
from steerdiff.training import TrainConfig, train


def cfg(**kw):
    base = dict(dataset="digits8", net="tiny", steps=6, batch_size=16, checkpoint_every=3, warmup=2, dropout=0.1)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path):
    full = train(cfg(), tmp_path / "full", progress=False)
    first = train(cfg(), tmp_path / "split", progress=False, stop_after=4)  # stops off the checkpoint grid
    assert first["step"] == 4
    rest = train(cfg(), tmp_path / "split", progress=False)
    assert rest["step"] == 6
    assert rest["losses"] == full["losses"]
    a, b = (
        ckpt.read_checkpoint(tmp_path / "full", with_state=True),
        ckpt.read_checkpoint(tmp_path / "split", with_state=True),
    )
    for k in a[2]:
        torch.testing.assert_close(a[2][k], b[2][k], rtol=0, atol=0)
    for k in a[3]:
        torch.testing.assert_close(a[3][k], b[3][k], rtol=0, atol=0)


def test_resume_refuses_different_settings(tmp_path):
    train(cfg(steps=2), tmp_path / "run", progress=False)
    with pytest.raises(SteerdiffError, match="different settings.*lr"):
        train(cfg(steps=4, lr=1e-2), tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    "objective, kind", [("edm", "EDMDenoiser"), ("eps", "DiscreteDenoiser"), ("v", "DiscreteDenoiser")]
)
def test_each_objective_trains_and_loads_as_a_denoiser(tmp_path, objective, kind):
    from steerdiff.data import load_dataset

    # held-out digits noised at sigma 0.5 and 1: the loaded denoiser's error must fall with training
    # (measured: 1 -> 60 steps cuts it by 36-60% for each objective; a wrong objective/adapter pairing does not)
    x0 = load_dataset("digits8", "heldout").images[:64].float()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))

    def error(model):
        with torch.no_grad():
            return sum(float(((model(x0 + s * noise, s) - x0) ** 2).mean()) for s in (0.5, 1.0)) / 2

    settings = dict(
        objective=objective, class_conditional=True, p_uncond=0.2, lr=2e-3, dropout=0.0, checkpoint_every=1000
    )
    train(cfg(steps=1, **settings), tmp_path / objective, progress=False)
    early = error(sd.load(tmp_path / objective))
    train(cfg(steps=60, **settings), tmp_path / objective, progress=False)  # resumes to step 60
    model = sd.load(tmp_path / objective)
    assert type(model).__name__ == kind and model.sample_shape == (1, 8, 8)
    late = error(model)
    assert late < 0.8 * early, (early, late)
    # the labels reach the network: the same noise streams with labels 3, 4 give other samples
    x = sd.sample(model, 2, steps=3, seed=0)
    y = sd.sample(model, 2, steps=3, seed=0, cond={"class_labels": torch.tensor([3, 4])})
    assert x.shape == y.shape == (2, 1, 8, 8) and float((x - y).abs().max()) > 1e-3


def test_failed_save_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    train(cfg(steps=3), tmp_path / "run", progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_tensors", boom)
    with pytest.raises(OSError, match="disk full"):
        train(cfg(steps=6), tmp_path / "run", progress=False)
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary left behind


def test_verify_rejects_a_checkpoint_that_does_not_read_back(tmp_path, monkeypatch):
    train(cfg(steps=3), tmp_path / "run", progress=False)
    good = (tmp_path / "run" / "config.json").read_text()
    real = ckpt.save_tensors

    def truncated(path, tensors):
        real(path, tensors)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])

    monkeypatch.setattr(ckpt, "save_tensors", truncated)
    with pytest.raises(SteerdiffError, match="corrupt"):
        train(cfg(steps=6), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "config.json").read_text() == good
    monkeypatch.undo()
    assert json.loads(good)["step"] == 3 and sd.load(tmp_path / "run").sample_shape == (1, 8, 8)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: (d / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage"), "corrupt"),
        (lambda d: (d / "config.json").write_text("{not json"), "corrupt"),
        (lambda d: (d / "unet" / "diffusion_pytorch_model.safetensors").unlink(), "missing"),
        (lambda d: shutil.rmtree(d), "does not exist"),
    ],
)
def test_corrupt_or_missing_checkpoints_give_one_line_errors(tmp_path, damage, match):
    train(cfg(steps=1), tmp_path / "run", progress=False)
    damage(tmp_path / "run")
    with pytest.raises(SteerdiffError, match=match) as e:
        sd.load(tmp_path / "run")
    assert "\n" not in str(e.value)


def test_unknown_model_name():
    with pytest.raises(SteerdiffError, match="unknown model 'mnistt'.*mnist"):
        sd.load("mnistt")
