"""One source of truth (issue 15, item 4): the model config is written in one place and round-trips,
one wrapper base carries a wrapped denoiser's attributes, one sigma conversion and one condition slicer
serve everywhere, and the h-space edit's stochastic step is the ancestral sampler's."""

import json
import math

import pytest
import torch
from diffusers import UNet2DModel

import steerdiff.checkpoint as ckpt
from steerdiff.compose.sculpt import Conjunction
from steerdiff.core.api import Chunked
from steerdiff.core.denoisers import (
    Conditioned,
    DenoiserWrapper,
    EDMDenoiser,
    ScoreDenoiser,
    as_sigma,
    slice_cond,
)
from steerdiff.core.errors import SteerdiffError
from steerdiff.core.sampling import get_ancestral_step, get_sigmas_karras, sample_euler_ancestral
from steerdiff.core.seeding import stream_seed
from steerdiff.edit.hspace import asymmetric_sample
from steerdiff.models import denoiser_from_config, export, load
from steerdiff.particles.fixed_condition import CFG
from steerdiff.particles.pg import _Recording
from steerdiff.train.nets import build_unet, unet_config
from steerdiff.train.training import TrainConfig, model_config


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("objective", ["edm", "eps", "v"])
def test_model_config_round_trips_through_a_checkpoint(tmp_path, objective):
    cfg = TrainConfig(dataset="digits8", objective=objective, net="tiny", class_conditional=True, p_uncond=0.2)
    conf = model_config(cfg, (1, 8, 8), num_classes=10, step=3)
    conf["train"]["command"] = "steerdiff train ..."
    ucfg = unet_config("tiny", sample_size=8, in_channels=1, out_channels=1, num_class_embeds=11)
    torch.manual_seed(0)
    state = build_unet(ucfg).state_dict()
    ckpt.save_checkpoint(tmp_path / "run", conf, ucfg, state)

    got_conf, got_ucfg, got_state = ckpt.read_checkpoint(tmp_path / "run")
    assert got_conf == conf  # save -> read: the same dicts
    assert got_ucfg == ucfg
    assert got_state.keys() == state.keys() and all(torch.equal(got_state[k], state[k]) for k in state)
    # diffusers still finds the class it builds
    assert json.loads((tmp_path / "run" / "unet" / "config.json").read_text())["_class_name"] == "UNet2DModel"
    # the train section is the run's TrainConfig again
    assert TrainConfig(**{k: v for k, v in got_conf["train"].items() if k != "command"}) == cfg

    model = load(tmp_path / "run")
    assert model.config == conf
    # the denoiser is built from the recorded values (written out here, not read back from the code)
    assert model.sample_shape == (1, 8, 8) and model.sigma_data == 0.5 and model.null_label == 10
    if objective == "edm":
        assert (model.sigma_min, model.sigma_max, model.time_scale) == (0.002, 80.0, 250.0)
        assert model.preset == {"sampler": "heun", "steps": 18}
    else:
        assert model.prediction_type == ("epsilon" if objective == "eps" else "v_prediction")
        assert math.isclose(model.sigma_min, math.sqrt(1e-4 / (1 - 1e-4)), rel_tol=1e-6)
        assert model.preset == {"sampler": "ddim", "steps": 50}

    # export copies the config byte for byte (fp32 keeps the weights too)
    export(tmp_path / "run", tmp_path / "exp", fp16=False)
    for name in ("config.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"):
        assert (tmp_path / "exp" / name).read_bytes() == (tmp_path / "run" / name).read_bytes()


def test_config_writer_and_reader_share_the_keys(tmp_path):
    conf = ckpt.model_config(
        "edm", sample_shape=(1, 8, 8), sigma_data=0.5, preset={}, sigma_min=0.01, sigma_max=10.0, time_scale=1.0
    )
    assert ckpt.check_model_config(conf, tmp_path) is conf
    with pytest.raises(SteerdiffError, match="needs time_scale"):
        ckpt.model_config("edm", sample_shape=(1, 8, 8), sigma_data=0.5, preset={}, sigma_min=0.01, sigma_max=10.0)
    with pytest.raises(SteerdiffError, match="model kind"):
        ckpt.model_config("flow", sample_shape=(1, 8, 8), sigma_data=0.5, preset={})
    broken = {k: v for k, v in conf.items() if k not in ("sample_shape", "sigma_max")}
    with pytest.raises(SteerdiffError, match="lacks sample_shape, sigma_max"):
        ckpt.check_model_config(broken, tmp_path)
    torch.manual_seed(0)
    net = UNet2DModel.from_config(unet_config("tiny", sample_size=8, in_channels=1, out_channels=1)).eval()
    den = denoiser_from_config(net, conf)
    assert (den.sigma_min, den.sigma_max, den.time_scale, den.config) == (0.01, 10.0, 1.0, conf)


def test_shipped_configs_pass_the_reader():
    from steerdiff.hub import MODELS, weights_dir

    for folder, _ in MODELS.values():
        conf, ucfg, _ = ckpt.read_checkpoint(weights_dir() / folder)
        ckpt.check_model_config(conf, folder)
        assert not any(k.startswith("_") for k in ucfg)


# ------------------------------------------------------------------------------ wrapper base
def _score_model(**extra):
    m = ScoreDenoiser(
        lambda x, sigma, **c: -x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2),
        sigma_min=0.01,
        sigma_max=20.0,
        sigma_data=0.7,
        sample_shape=(1, 4, 4),
        preset={"sampler": "euler", "steps": 7},
    )
    for k, v in extra.items():
        setattr(m, k, v)
    return m


def test_wrappers_carry_the_wrapped_denoisers_attributes():
    inner = _score_model(num_classes=3, null_label=3, config={"kind": "x"}, name="inner")
    wrappers = [
        Conditioned(inner, class_labels=1),
        Conjunction(inner, [{"class_labels": 1}], [2.0]),
        Chunked(inner, 2),
        _Recording(inner, {}),
        CFG(inner, scale=2.0),
    ]
    for w in wrappers:
        assert isinstance(w, DenoiserWrapper), type(w).__name__
        got = (w.sigma_min, w.sigma_max, w.sigma_data, w.sample_shape, w.preset)
        assert got == (0.01, 20.0, 0.7, (1, 4, 4), {"sampler": "euler", "steps": 7}), type(w).__name__
        assert w.preset is not inner.preset  # a copy: editing the wrapper's preset leaves the model's
    cfg = wrappers[-1]
    assert (cfg.config, cfg.name, cfg.num_classes) == ({"kind": "x"}, "inner", 3)
    # attributes named in `also` are copied only where the inner denoiser has them
    plain = DenoiserWrapper(_score_model(), also=("config",))
    assert not hasattr(plain, "config")


def test_chunked_calls_equal_one_call_and_slice_per_sample_conditions():
    torch.manual_seed(0)
    seen = []

    def score(x, sigma, class_labels=None, frames=None):
        seen.append((x.shape[0], class_labels.shape[0], frames.shape[0]))
        return -x * class_labels.reshape(-1, 1, 1, 1) / sigma.reshape(-1, 1, 1, 1)

    inner = ScoreDenoiser(score, sigma_min=0.01, sigma_max=20.0, sample_shape=(1, 4, 4))
    x, labels, frames = torch.randn(5, 1, 4, 4), torch.arange(1.0, 6.0), torch.zeros(1, 2, 4, 4)
    whole = inner(x, 0.5, class_labels=labels, frames=frames)
    chunked = Chunked(inner, 2)(x, torch.full((5,), 0.5), class_labels=labels, frames=frames)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
    # per-sample labels were cut with the batch, the shared frames passed whole
    assert seen[1:] == [(2, 2, 1), (2, 2, 1), (1, 1, 1)]


def test_slice_cond():
    labels, frames = torch.arange(6), torch.zeros(1, 2, 4, 4)
    cut = slice_cond({"class_labels": labels, "frames": frames, "scale": 2.0}, 2, 4, n=6)
    assert cut["class_labels"].tolist() == [2, 3] and cut["frames"] is frames and cut["scale"] == 2.0
    rows = slice_cond({"class_labels": labels, "frames": frames}, 0, 1)  # no n: every tensor is cut
    assert rows["class_labels"].tolist() == [0] and rows["frames"].shape == (1, 2, 4, 4)
    assert slice_cond({"class_labels": torch.tensor(3)}, 0, 1)["class_labels"].ndim == 0


def test_as_sigma_takes_one_value_or_one_per_sample():
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    for s in (0.5, torch.tensor(0.5), torch.tensor([0.5])):
        out = as_sigma(s, x)
        assert out.dtype == torch.float64 and out.tolist() == [0.5, 0.5, 0.5]
    assert as_sigma(torch.tensor([1.0, 2.0, 3.0]), x).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(SteerdiffError, match="sigma has shape"):
        as_sigma(torch.ones(2), x)


# ------------------------------------------------------------------------------ ancestral step
def test_ancestral_step_on_floats_is_the_formula_in_float64():
    for s, s_next in [(10.0, 3.0), (0.5, 0.01), (2.0, 0.0)]:
        down, up = get_ancestral_step(s, s_next)
        assert isinstance(down, float) and isinstance(up, float)
        # written out independently: sigma_up^2 = s'^2 (s^2 - s'^2) / s^2, sigma_down^2 = s'^2 - sigma_up^2
        up_ref = math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)
        assert up == pytest.approx(up_ref, rel=1e-15, abs=0)
        assert down == pytest.approx(math.sqrt(s_next**2 - up_ref**2), rel=1e-12, abs=1e-300)
        t_down, t_up = get_ancestral_step(torch.tensor(s), torch.tensor(s_next))
        assert float(t_up) == pytest.approx(up, rel=1e-6) and float(t_down) == pytest.approx(down, rel=1e-6, abs=1e-7)


def test_the_edits_stochastic_steps_are_the_ancestral_samplers(tiny_unet):
    model = EDMDenoiser(tiny_unet, sample_shape=(1, 8, 8))
    sigmas = get_sigmas_karras(6, 0.05, 5.0)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    # no edit, stochastic everywhere (sigma_boost above every level): the edit's reverse process
    edited = asymmetric_sample(model, x, sigmas, None, sigma_boost=float("inf"), seed=4)
    # the ancestral sampler, fed the same noise stream the edit draws from
    gen = torch.Generator().manual_seed(stream_seed("boost", 4))
    ancestral = sample_euler_ancestral(
        model, x, sigmas, disable=True, noise_sampler=lambda s, s_next: torch.randn(x.shape, generator=gen)
    )
    torch.testing.assert_close(edited, ancestral, rtol=1e-5, atol=1e-5)
    # and it is not the deterministic path
    plain = asymmetric_sample(model, x, sigmas, None, seed=4)
    assert (plain - ancestral).abs().max() > 1e-2
