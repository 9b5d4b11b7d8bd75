"""Issue #14 ("honest and safe"): bad values fail fast with one-line errors, flags that would be ignored
are refused or given their intended meaning, and the conditional task's directional accuracy follows
the dataset's rule. (The per-flag fuzz of every subcommand is tests/test_fuzz.py.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import steerdiff as sd
import steerdiff.particles.draw
from steerdiff import cli
from steerdiff.cli import main
from steerdiff.cli import sample as cli_sample
from steerdiff.data import load_mnist
from steerdiff.errors import SteerdiffError
from steerdiff.particles.draw import Drawn
from steerdiff.sequences import direction_metrics, direction_shifts, moving_digits, shift_frames


def run(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv + ["--quiet"])
    except SystemExit as e:  # argparse's own usage errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    return rc, err


def one_line_error(argv, capsys, *needles, strict: bool = True) -> str:
    """Exit 2 with the error on one line (argparse's errors too: no usage block; strict=False allows
    other libraries' progress output before it)."""
    rc, err = run(argv, capsys)
    assert rc == 2, (argv, rc, err)
    lines = err.splitlines()
    assert lines[-1].startswith("steerdiff"), err
    assert not strict or len(lines) == 1, err
    for n in needles:
        assert n in lines[-1], (n, err)
    return lines[-1]


@pytest.fixture(scope="module")
def digits12(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "digits.npy"
    np.save(path, load_mnist("heldout").images[:12].numpy())
    return str(path)


# ------------------------------------------------------------------------------------- item 4
def test_steps_zero_is_refused_not_replaced_by_the_preset(tmp_path, capsys):
    for argv in (
        ["sample", "--n", "2"],
        ["compose", "--base", "M1", "M2", "--y", "1", "2", "--n", "2"],
        ["report", "--n", "2", "--batches", "1"],
    ):
        out = str(tmp_path / ("r" if argv[0] == "report" else "x.npy"))
        one_line_error(argv + ["--steps", "0", "--out", out], capsys, "--steps must be at least 1, got 0")
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "r").exists()
    with pytest.raises(SteerdiffError, match="steps must be a positive integer, got 0"):
        sd.sample(sd.load("mnist"), 2, steps=0)


def test_evaluate_k_is_checked_and_the_json_is_valid(tmp_path, capsys, digits12):
    out = tmp_path / "e.json"
    for k, needle in (
        ("0", "--k must be at least 1"),
        ("-3", "--k must be at least 1"),
        ("100000", "PRDC needs more than k samples, got 12"),
    ):
        one_line_error(["evaluate", "--samples", digits12, "--k", k, "--out", str(out)], capsys, needle)
    one_line_error(["evaluate", "--samples", digits12, "--batch-size", "0", "--out", str(out)], capsys, "--batch-size")
    assert not out.exists()
    rc, err = run(["evaluate", "--samples", digits12, "--batch-size", "4", "--k", "3", "--out", str(out)], capsys)
    assert rc == 0, err

    def no_nan(name):
        raise AssertionError(f"{name} in the JSON")

    d = json.loads(out.read_text(), parse_constant=no_nan)
    prdc = d["overall"]["prdc"]
    assert 0 <= prdc["precision"] <= 1 and prdc["density"] >= 0 and len(d["batches"]) == 3


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train-classifier", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["train-classifier", "--epochs", "0"], "--epochs must be at least 1"),
        (["train-classifier", "--epochs", "-1"], "--epochs must be at least 1"),
        (["train-classifier", "--lr", "nan"], "--lr must be a positive finite number"),
        (["train", "--ema-decay", "-1"], "--ema-decay must be in [0, 1)"),
        (["train", "--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
        (["train", "--lr", "nan"], "--lr must be a positive finite number"),
        (["train", "--lr", "-1"], "--lr must be a positive finite number"),
        (["train", "--dropout", "2"], "--dropout must be in [0, 1)"),
        (["train-edit", "--attribute", "thick", "--lr", "nan"], "--lr must be a positive finite number"),
    ],
)
def test_training_values_fail_before_any_work(tmp_path, capsys, argv, needle):
    one_line_error(argv + ["--out", str(tmp_path / "run")], capsys, needle)
    assert not (tmp_path / "run").exists()


def test_class_labels_must_be_integers():
    m = sd.load("mnist-cond")
    with pytest.raises(SteerdiffError, match="class_labels must be integers"):
        sd.sample(m, 2, steps=1, cond={"class_labels": torch.tensor([1.5, 2.5])})
    a = sd.sample(m, 2, steps=2, seed=0, cond={"class_labels": torch.tensor([1.0, 2.0])})  # integral floats: fine
    b = sd.sample(m, 2, steps=2, seed=0, cond={"class_labels": torch.tensor([1, 2])})
    assert torch.equal(a, b)


def test_archive_is_untouched_when_the_run_fails(tmp_path, monkeypatch, capsys):
    arch = tmp_path / "arch.npy"
    np.save(arch, np.zeros((3, 1, 28, 28), np.float32))
    before = arch.read_bytes()
    argv = [
        "sample",
        "--n",
        "2",
        "--steps",
        "1",
        "--method",
        "pg",
        "--kernel",
        "rbf",
        "--embedding",
        "identity",
        "--archive",
        str(arch),
        "--out",
        str(tmp_path / "x.npy"),
    ]

    def fail(*a, **k):
        raise SteerdiffError("disk full")

    monkeypatch.setattr("steerdiff.io.save_samples", fail)
    one_line_error(argv, capsys, "disk full")
    assert arch.read_bytes() == before
    monkeypatch.undo()
    rc, err = run(argv, capsys)
    assert rc == 0, err
    assert np.load(arch).shape == (5, 1, 28, 28)  # appended once the samples were written
    one_line_error(
        argv[:-4] + ["--archive", str(tmp_path / "a.txt"), "--out", str(tmp_path / "y.npy")],
        capsys,
        "use a .npy file path",
    )
    np.save(arch, np.zeros((3, 3, 28, 28), np.float32))  # another model's samples
    one_line_error(argv, capsys, "holds samples of shape (3, 28, 28)")


# ------------------------------------------------------------------------------------- item 5
def _moved(kind: str, shifts: torch.Tensor, k: int = 1):
    """Condition frames (1, k, 32, 32) at the decision point and predictions moved by ``shifts``."""
    digit = load_mnist("heldout").images[:1]
    cond = moving_digits(kind, digit, length=1, seed=0)["frames"] if kind == "circle" else None
    if cond is None:
        from steerdiff.sequences import arriving_at_centre

        cond = arriving_at_centre(digit, k)
    last = cond[:, -1]
    pred = shift_frames(last.expand(len(shifts), -1, -1), shifts)[:, None]
    return cond, last[:, None], pred


def test_direction_accuracy_follows_the_rule():
    shifts = direction_shifts(8, 4)  # the 8 moves, in direction order
    _, last, pred = _moved("circle", shifts)
    assert direction_metrics(pred, last, 8)["accuracy"] == 1.0
    assert direction_metrics(pred, last, 8)["directions"] == list(range(8))
    four = direction_metrics(pred, last, 4)  # the diagonals are forbidden with 4 directions
    assert four["accuracy"] == 0.5
    assert direction_metrics(pred[::2], last, 4)["accuracy"] == 1.0
    assert direction_metrics(pred, last, 2)["accuracy"] == 0.25  # only right and left
    stay = direction_metrics(last.expand(3, -1, -1, -1).clone(), last, 8)  # no move is never an allowed jump
    assert stay["accuracy"] == 0.0 and stay["directions"] == [-1, -1, -1]


@pytest.mark.parametrize("shift, accuracy", [((0, 2), 1.0), ((0, -2), 1.0), ((-2, 0), 0.0), ((2, 2), 0.0)])
def test_conditional_evaluate_scores_forbidden_moves_below_one(tmp_path, monkeypatch, capsys, shift, accuracy):
    """horizontal: one step left or right is the rule; up, or diagonally, is not."""

    def draw(model, options, seed, frames=None):
        last = frames[:, -1]
        x = shift_frames(last.expand(options.n, -1, -1), torch.tensor([shift] * options.n))[:, None]
        return Drawn(x, {}, None)

    monkeypatch.setattr(steerdiff.particles.draw, "draw", draw)  # what evaluate's FrameDraw calls
    out = tmp_path / "h.json"
    rc, err = run(
        [
            "evaluate",
            "--task",
            "conditional",
            "--dataset",
            "horizontal",
            "--n",
            "4",
            "--batches",
            "2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, err
    d = json.loads(out.read_text())
    assert d["config"]["model"] == "horizontal"  # the dataset's shipped model by default
    assert d["aggregate"]["accuracy"]["mean"] == accuracy


# ------------------------------------------------------------------------------------- item 6
@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "--strength", "3"],
        ["sample", "--pg_factor", "3", "--method", "iid"],
        ["sample", "--embedding", "cnn16"],
        ["sample", "--kernel", "rbf"],
        ["sample", "--window", "1,2"],
        ["sample", "--bandwidth-scale", "2"],
        ["sample", "--no-normalize"],
        ["sample", "--prior-samples", "8"],
        ["compose", "--base", "M1", "M2", "--y", "1", "2", "--on", "x"],
        ["evaluate", "--n", "6", "--batches", "1", "--project"],
    ],
)
def test_particle_options_under_iid_are_refused(tmp_path, capsys, argv):
    out = str(tmp_path / ("e.json" if argv[0] == "evaluate" else "x.npy"))
    one_line_error(argv + ["--steps", "1", "--out", out], capsys, "no effect with --method iid")


def test_pg_factor_means_particle_guidance():
    a = cli.build_parser().parse_args(["sample", "--pg_factor", "1.7", "--out", "x.npy"])
    cli.validate_args(a)
    assert (a.method, a.strength) == ("pg", 1.7)
    a = cli.build_parser().parse_args(["sample", "--strength", "2", "--method", "repulsive", "--out", "x.npy"])
    cli.validate_args(a)
    assert (a.method, a.strength) == ("repulsive", 2.0)


def test_the_edm_mnist_example_runs_pg_on_the_circle_model(tmp_path, capsys):
    """`evaluate --task conditional --dataset circle_jumping --pg_factor 1.7 --batch_size 8`: Particle
    Guidance at strength 1.7 on the shipped circle model (--batch_size is the Particle Guidance project's particle count)."""
    base = [
        "evaluate",
        "--task",
        "conditional",
        "--dataset",
        "circle_jumping",
        "--batch_size",
        "8",
        "--batches",
        "1",
        "--steps",
        "6",
    ]
    rc, err = run(base + ["--pg_factor", "1.7", "--out", str(tmp_path / "pg.json")], capsys)
    assert rc == 0, err
    pg = json.loads((tmp_path / "pg.json").read_text())
    c = pg["config"]
    assert (c["model"], c["method"], c["strength"], c["n"]) == ("circle", "pg", 1.7, 8)
    rc, err = run(base + ["--out", str(tmp_path / "iid.json")], capsys)
    assert rc == 0, err
    iid = json.loads((tmp_path / "iid.json").read_text())
    assert iid["config"]["method"] == "iid"
    assert pg["batches"][0]["l2"] != iid["batches"][0]["l2"]  # the guidance acted
    rc, err = run(base + ["--model", "circle", "--pg_factor", "1.7", "--out", str(tmp_path / "pg2.json")], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "pg2.json").read_text())["batches"] == pg["batches"]


def test_train_accepts_the_circle_jumping_alias(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_train(cfg, out, **kw):
        seen["dataset"] = cfg.dataset
        return {"step": 0}

    monkeypatch.setattr("steerdiff.training.train", fake_train)
    rc, err = run(["train", "--dataset", "circle_jumping", "--cond-frames", "1", "--out", str(tmp_path / "t")], capsys)
    assert rc == 0, err
    assert seen["dataset"] == "circle"


def test_pipeline_flags_need_a_pipeline(tmp_path, capsys):
    out = str(tmp_path / "x.npy")
    one_line_error(["sample", "--size", "64", "--steps", "1", "--out", out], capsys, "--size", "--pipeline")
    one_line_error(
        ["sample", "--model", "horizontal", "--cfg-scale", "3", "--steps", "1", "--out", out], capsys, "--cfg-scale"
    )
    one_line_error(
        [
            "evaluate",
            "--pipeline",
            str(tmp_path / "missing"),
            "--prompt",
            "a",
            "--n",
            "6",
            "--batches",
            "1",
            "--out",
            str(tmp_path / "e.json"),
        ],
        capsys,
        "--pipeline",
        "not a directory",
    )
    assert not (tmp_path / "e.json").exists()
    # a class-conditional model takes --cfg-scale (classifier-free guidance toward --class-label)
    rc, err = run(
        [
            "sample",
            "--model",
            "mnist-cond",
            "--class-label",
            "3",
            "--cfg-scale",
            "2",
            "--n",
            "2",
            "--steps",
            "1",
            "--out",
            out,
        ],
        capsys,
    )
    assert rc == 0, err


def test_evaluate_pipeline_scores_the_pipelines_images(tmp_path, capsys):
    from steerdiff.pipelines import tiny_pipeline

    (tmp_path / "tok").mkdir()
    tiny_pipeline(tmp_path / "tok").save_pretrained(tmp_path / "sd")
    base = [
        "evaluate",
        "--pipeline",
        str(tmp_path / "sd"),
        "--prompt",
        "a red cat",
        "--n",
        "3",
        "--batches",
        "1",
        "--steps",
        "2",
        "--k",
        "1",
        "--out",
        str(tmp_path / "e.json"),
    ]
    one_line_error(base, capsys, "not 28x28 digits: pass --features", strict=False)  # images, not MNIST samples

    class Features(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :16]

    # exported for (B, 3, 16, 16) images only: the pipeline's decoded images fit, its (B, 4, 2, 2) latents would not
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Features(), (torch.zeros(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(tmp_path / "f.pt2"))
    rc, err = run(base + ["--features", str(tmp_path / "f.pt2")], capsys)
    assert rc == 0, err
    d = json.loads((tmp_path / "e.json").read_text())
    assert d["overall"]["n"] == 3 and d["batches"][0]["n"] == 3
    # the same features on MNIST digits: a one-line error, not a traceback
    one_line_error(
        [
            "evaluate",
            "--n",
            "6",
            "--batches",
            "1",
            "--steps",
            "1",
            "--features",
            str(tmp_path / "f.pt2"),
            "--out",
            str(tmp_path / "m.json"),
        ],
        capsys,
        "does not take images of shape (1, 28, 28)",
    )


def test_repulse_passes_every_prompt(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(cli_sample, "cmd_sample", lambda a: seen.setdefault("args", a) and 0)
    rc, err = run(
        [
            "repulse",
            "--pipeline",
            str(tmp_path),
            "--prompt",
            "a cat",
            "--prompt",
            "a dog",
            "--nparticles",
            "2",
            "--out",
            str(tmp_path / "r.png"),
        ],
        capsys,
    )
    assert rc == 0, err
    assert seen["args"].prompt == ["a cat", "a dog"]
    one_line_error(
        ["repulse", "--method", "iid", "--strength", "5", "--out", str(tmp_path / "r.png")], capsys, "--strength"
    )


# ------------------------------------------------------------------------------ tracebacks -> errors
def test_memory_is_estimated_before_sampling(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(steerdiff.particles.draw, "available_memory", lambda device: 8 * 2**30)
    err = one_line_error(
        ["sample", "--n", "100000", "--out", str(tmp_path / "x.npy")], capsys, "--n 100000 needs about"
    )
    assert "GiB" in err and "8.0 GiB available" in err
    one_line_error(["sample", "--n", "1e9", "--out", str(tmp_path / "x.npy")], capsys, "invalid int value")
    one_line_error(["evaluate", "--n", "100000", "--batches", "100", "--out", str(tmp_path / "e.json")], capsys, "GiB")


def test_devices_are_checked(tmp_path, capsys):
    out = str(tmp_path / "x.npy")
    one_line_error(["sample", "--device", "bogus", "--out", out], capsys, "not a torch device")
    if not torch.cuda.is_available():
        one_line_error(["sample", "--device", "cuda", "--out", out], capsys, "CUDA is not available")
    with pytest.raises(SteerdiffError, match="not a torch device"):
        sd.load("mnist", device="bogus")


def test_checkpoints_that_parse_but_lack_keys(tmp_path, capsys):
    from steerdiff.training import TrainConfig, train

    run_dir = tmp_path / "run"
    train(TrainConfig(net="tiny", steps=1, batch_size=2), run_dir, progress=False)
    argv = ["train", "--net", "tiny", "--steps", "2", "--batch-size", "2", "--out", str(run_dir)]
    meta = (run_dir / "state.json").read_text()
    (run_dir / "state.json").write_text("{}")
    one_line_error(argv, capsys, "training state", "corrupt")
    (run_dir / "state.json").write_text(meta)
    from safetensors.torch import save_file

    save_file({"net.bogus": torch.zeros(3)}, str(run_dir / "state.safetensors"))
    one_line_error(argv, capsys, "training state", "corrupt")
    conf = json.loads((run_dir / "config.json").read_text())
    del conf["sample_shape"]
    (run_dir / "config.json").write_text(json.dumps(conf))
    one_line_error(["sample", "--model", str(run_dir), "--out", str(tmp_path / "x.npy")], capsys, "lacks sample_shape")


def test_python_api_rejects_bad_arguments():
    m = sd.load("mnist")
    with pytest.raises(SteerdiffError, match="1-D tensor"):
        sd.sample(m, 2, sigmas=torch.ones(2, 3))
    with pytest.raises(SteerdiffError, match="unknown condition 'colour'"):
        sd.sample(m, 2, steps=1, cond={"colour": 1})
    with pytest.raises(SteerdiffError, match="seed must be an integer"):
        sd.sample(m, 2, steps=1, seed=1.5)
    with pytest.raises(SteerdiffError, match="n must be a positive integer"):
        sd.sample(m, math.nan, steps=1)
    with pytest.raises(SteerdiffError, match="takes no eta"):
        sd.sample(m, 2, steps=1, sampler="heun", eta=0.5)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["sample", "--method", "bogus"], "invalid choice: 'bogus'"),
        (["sample", "--n", "abc"], "invalid int value: 'abc'"),
        (["sample"], "required: --out"),
        (["bogus-command"], "invalid choice: 'bogus-command'"),
        (["sample", "--out", "x.npy", "--mthod", "pg"], "steerdiff sample: error: unrecognized arguments: --mthod"),
    ],
)
def test_argparse_errors_are_one_line_without_the_usage_block(argv, needle, capsys):
    line = one_line_error(argv, capsys, needle)
    assert "--help" in line and "usage" not in line
