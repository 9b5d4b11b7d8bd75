"""The sampling and report workflows of the command line, called from Python (issue 15): ``draw`` gives
the bytes ``steerdiff sample`` writes, the options carry the command line's defaults, and ``write_report``
/ ``method_frontier`` measure what ``sd.sample`` draws."""

import json

import numpy as np
import pytest
import torch

import steerdiff as sd
from steerdiff.cli import build_parser, main, validate_args
from steerdiff.errors import SteerdiffError
from steerdiff.evaluation.metrics import vendi_score
from steerdiff.evaluation.report import frontier_options, method_frontier, write_report
from steerdiff.particles import draw as draw_module
from steerdiff.particles.draw import SamplingOptions, check_sampling_options, draw, guidance_terms, prepare
from steerdiff.particles.pg import Archive, ParticleGuidance, Repulsion
from steerdiff.toy import GaussianMixtureDenoiser


def _sample_namespace(*flags):
    a = build_parser().parse_args(["sample", *flags, "--out", "x.npy"])
    validate_args(a)
    return a


def _mixture():
    means = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return GaussianMixtureDenoiser(means, std=0.2, preset={"sampler": "heun", "steps": 8})


def test_draw_writes_the_bytes_of_the_sample_command(tmp_path):
    out = tmp_path / "x.npy"
    flags = ["--model", "mnist", "--n", "3", "--steps", "3", "--method", "pg", "--kernel", "rbf", "--seed", "3"]
    assert main(["sample", *flags, "--quiet", "--out", str(out)]) == 0
    x = draw("mnist", method="pg", kernel="rbf", n=3, steps=3, seed=3, quiet=True).x
    assert np.load(out).tobytes() == x.numpy().tobytes()
    iid = draw("mnist", n=3, steps=3, seed=3, quiet=True).x  # iid: sd.sample itself, another path
    assert torch.equal(iid, sd.sample(sd.load("mnist"), 3, steps=3, seed=3, progress=False))
    assert not torch.equal(iid, x)  # the particle term did act


def test_options_carry_the_command_line_defaults():
    assert SamplingOptions.from_namespace(_sample_namespace()) == SamplingOptions()
    given = _sample_namespace("--method", "pg", "--strength", "3", "--window", "0.1,20", "--no-project", "--n", "5")
    o = SamplingOptions.from_namespace(given)
    assert (o.method, o.strength, o.window, o.project, o.n) == ("pg", 3.0, "0.1,20", False, 5)
    assert o == SamplingOptions(method="pg", strength=3, window=(0.1, 20), project=False, n=5)
    assert SamplingOptions(class_label=7).class_label == "7" and SamplingOptions().replace(n=2).n == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda: SamplingOptions(strenght=3),
        lambda: SamplingOptions().replace(strenght=3),
        lambda: draw(_mixture(), n=2, strenght=3),
        lambda: SamplingOptions(method="bogus"),
    ],
)
def test_an_unknown_option_is_one_line(call):
    with pytest.raises(SteerdiffError) as e:
        call()
    assert "\n" not in str(e.value) and ("strenght" in str(e.value) or "bogus" in str(e.value))


def test_guidance_terms_build_pg_and_repulsion(tmp_path):
    terms, archive = guidance_terms(SamplingOptions(method="pg", strength=4, window=(0.1, 20), bandwidth="2.5"))
    assert archive is None and len(terms) == 1 and isinstance(terms[0], ParticleGuidance)
    assert (terms[0].strength, terms[0].window, terms[0].bandwidth) == (4.0, (0.1, 20.0), 2.5)
    path = tmp_path / "a.npy"
    terms, archive = guidance_terms(_sample_namespace("--method", "repulsive", "--archive", str(path)))
    assert isinstance(terms[0], Repulsion) and isinstance(archive, Archive) and len(archive) == 0
    assert terms[0].archive is archive
    for method in ("iid", "stratified", "cfg", "spell"):
        assert guidance_terms(SamplingOptions(method=method)) == ([], None)
    with pytest.raises(SteerdiffError, match="--window '0.1': use LO,HI"):
        guidance_terms(SamplingOptions(method="pg", window="0.1"))


def test_prepare_checks_before_sampling(monkeypatch):
    model = _mixture()
    with pytest.raises(SteerdiffError, match="--class-label: model mnist is unconditional"):
        prepare(model, class_label=3)
    with pytest.raises(SteerdiffError, match="--eta: sampler heun does not take it"):
        prepare(model, eta=0.5)
    monkeypatch.setattr(draw_module, "available_memory", lambda device: 2**20)
    with pytest.raises(SteerdiffError, match=r"--n 100 needs about .* than the 0\.0 GiB available"):
        check_sampling_options(SamplingOptions(n=100), model, {})
    check_sampling_options(SamplingOptions(n=2), model, {})  # 2 samples of 4x4 fit in a MiB


def test_write_report_measures_what_sample_draws(tmp_path):
    model, flat = _mixture(), lambda x: x.flatten(1)
    real = model.sample_exact(20, torch.Generator().manual_seed(1)).float()
    rep = write_report(tmp_path / "r", model=model, strengths="0,5", n=3, batches=1, steps=2, features=flat, real=real)
    assert json.loads((tmp_path / "r" / "report.json").read_text())["rows"] == json.loads(json.dumps(rep["rows"]))
    assert [r["strength"] for r in rep["rows"]] == [0.0, 5.0]
    x0 = sd.sample(model, 3, steps=2, seed=0, progress=False)  # strength 0: iid with the report's seeds
    assert rep["rows"][0]["metrics"]["batches"][0]["vendi"] == pytest.approx(vendi_score(flat(x0)), rel=1e-6)
    x5 = sd.sample(model, 3, steps=2, seed=0, progress=False, guidance=[ParticleGuidance(strength=5.0)])
    assert rep["rows"][1]["metrics"]["batches"][0]["vendi"] == pytest.approx(vendi_score(flat(x5)), rel=1e-6)
    with pytest.raises(SteerdiffError, match="--strengths: with --vs method"):
        write_report(tmp_path / "f", vs="method:iid,pg", strengths=[1.0])


def test_frontier_options_are_the_sample_commands():
    a = _sample_namespace("--model", "mnist-cond", "--method", "cads", "--n", "4", "--class-label", "3")
    a2 = _sample_namespace("--model", "mnist-cond", "--method", "pg", "--n", "4", "--kernel", "rbf", "--steps", "3")
    want = SamplingOptions.from_namespace(a).replace(quiet=True, cfg_scale=2.0)
    got = frontier_options("cads", model="mnist-cond", n=4, class_label=3, cfg_scale=2.0, kernel="rbf")
    assert got == want  # the kernel goes to pg and repulsive only
    got = frontier_options("pg", model="mnist-cond", n=4, kernel="rbf", steps=3)
    assert got == SamplingOptions.from_namespace(a2).replace(quiet=True)


def test_method_frontier_refuses_before_any_work(tmp_path):
    with pytest.raises(SteerdiffError, match="--vs method:cads: --method cads guides toward a class"):
        method_frontier(tmp_path / "r", ["iid", "cads"], model="mnist")
    with pytest.raises(SteerdiffError, match="bogus: not a method"):
        method_frontier(tmp_path / "r", ["iid", "bogus"])
    assert not (tmp_path / "r").exists()
