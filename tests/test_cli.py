"""The command line: outputs by suffix, help text, one-line errors, python -m equivalence."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from steerdiff.cli import main
from steerdiff.training import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    train(
        TrainConfig(dataset="digits8", net="tiny", steps=2, batch_size=8, class_conditional=True, p_uncond=0.5),
        out,
        progress=False,
    )
    return out


def test_sample_writes_each_format(tiny_ckpt, tmp_path):
    for name in ("x.npy", "x.pt", "x.png", "x.npz"):
        assert (
            main(
                [
                    "sample",
                    "--model",
                    str(tiny_ckpt),
                    "--n",
                    "3",
                    "--steps",
                    "3",
                    "--seed",
                    "1",
                    "--out",
                    str(tmp_path / name),
                    "--quiet",
                ]
            )
            == 0
        )
    a = np.load(tmp_path / "x.npy")
    # the command writes what the library draws with the same settings (not just something in [-1, 1])
    import steerdiff as sd

    expected = sd.sample(sd.load(str(tiny_ckpt)), 3, steps=3, seed=1).numpy()
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(torch.load(tmp_path / "x.pt", weights_only=True).numpy(), a)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npz")["samples"], a)
    from PIL import Image

    # the PNG grid: 2-pixel padding, 8x8 images scaled 8x (to 64 pixels), grey = round((x + 1) * 127.5)
    png = np.asarray(Image.open(tmp_path / "x.png").convert("RGB"))
    assert png.shape == (2 * (64 + 2) + 2, 2 * (64 + 2) + 2, 3)
    for k in range(3):
        top, left = 2 + (k // 2) * 66, 2 + (k % 2) * 66
        tile = png[top : top + 64 : 8, left : left + 64 : 8, 0].astype(int)
        np.testing.assert_array_equal(tile, np.round((a[k, 0] + 1) * 127.5).astype(int))


def test_same_seed_same_output_and_aliases(tiny_ckpt, tmp_path):
    main(
        [
            "sample",
            "--model",
            str(tiny_ckpt),
            "--particles",
            "4",
            "--steps",
            "3",
            "--seed",
            "5",
            "--out",
            str(tmp_path / "a.npy"),
            "--quiet",
        ]
    )
    main(
        [
            "sample",
            "--model",
            str(tiny_ckpt),
            "--nparticles",
            "4",
            "--steps",
            "3",
            "--seed",
            "5",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path / "b.npy"),
            "--quiet",
        ]
    )
    main(
        [
            "sample",
            "--model",
            str(tiny_ckpt),
            "--n",
            "4",
            "--steps",
            "3",
            "--seed",
            "6",
            "--out",
            str(tmp_path / "c.npy"),
            "--quiet",
        ]
    )
    a, b, c = (np.load(tmp_path / f"{k}.npy") for k in "abc")
    np.testing.assert_allclose(a, b, atol=1e-4)  # batched float32 convolutions round differently
    assert np.abs(a - c).max() > 0.1


def test_class_labels(tiny_ckpt, tmp_path):
    assert (
        main(
            [
                "sample",
                "--model",
                str(tiny_ckpt),
                "--n",
                "4",
                "--steps",
                "2",
                "--class-label",
                "cycle",
                "--out",
                str(tmp_path / "l.npz"),
                "--quiet",
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "l.npz")["labels"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "--model", "nope", "--out", "x.npy"], "unknown model 'nope'"),
        (["sample", "--model", "TINY", "--n", "0", "--out", "x.npy"], "--n must be at least 1"),
        (["sample", "--model", "TINY", "--out", "x.txt"], "use a suffix among"),
        (["sample", "--model", "TINY", "--sampler", "rk4", "--out", "x.npy"], "unknown sampler 'rk4'"),
        (["sample", "--model", "TINY", "--class-label", "12", "--out", "x.npy"], "--class-label '12'"),
        (["sample", "--model", "missing/dir", "--out", "x.npy"], "does not exist"),
    ],
)
def test_bad_input_is_one_line(tiny_ckpt, tmp_path, capsys, args, message):
    args = [str(tiny_ckpt) if a == "TINY" else (str(tmp_path / a) if a.startswith("x.") else a) for a in args]
    assert main(args + ["--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_help_is_a_manual(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("train", "train-classifier", "sample", "export"):
        assert cmd in text
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = capsys.readouterr().out
    assert "--particles" in text and "Examples" in text


def test_python_m_equals_console_script(tiny_ckpt, tmp_path):
    # the console script installed next to this interpreter (not whatever `steerdiff` is first on PATH)
    import sysconfig
    from pathlib import Path

    script = Path(sysconfig.get_path("scripts")) / ("steerdiff.exe" if sys.platform == "win32" else "steerdiff")
    assert script.exists(), f"no console script at {script}: install the package with pip install -e ."
    outs = []
    for launcher in ([sys.executable, "-m", "steerdiff"], [str(script)]):
        out = tmp_path / f"{len(outs)}.npy"
        subprocess.run(
            launcher
            + [
                "sample",
                "--model",
                str(tiny_ckpt),
                "--n",
                "2",
                "--steps",
                "2",
                "--seed",
                "3",
                "--out",
                str(out),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
        outs.append(np.load(out))
    np.testing.assert_array_equal(*outs)


def test_particle_methods_from_the_cli(tiny_ckpt, tmp_path):
    for method in ("pg", "repulsive"):
        out = tmp_path / f"{method}.npy"
        assert (
            main(
                [
                    "sample",
                    "--model",
                    str(tiny_ckpt),
                    "--n",
                    "4",
                    "--steps",
                    "3",
                    "--method",
                    method,
                    "--embedding",
                    "cnn16",
                    "--kernel",
                    "rbf",
                    "--strength",
                    "2",
                    "--window",
                    "0.01,100",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
    # the options reach the library: the command equals sd.sample with the terms they name (seed 0 by default)
    import steerdiff as sd

    model = sd.load(str(tiny_ckpt))
    for method, cls in (("pg", sd.ParticleGuidance), ("repulsive", sd.Repulsion)):
        term = cls(embedding="cnn16", kernel="rbf", strength=2.0, window=(0.01, 100.0))
        expected = sd.sample(model, 4, steps=3, seed=0, guidance=[term]).numpy()
        np.testing.assert_allclose(np.load(tmp_path / f"{method}.npy"), expected, atol=1e-6)
    iid = tmp_path / "iid.npy"
    main(["sample", "--model", str(tiny_ckpt), "--n", "4", "--steps", "3", "--out", str(iid), "--quiet"])
    assert np.abs(np.load(iid) - np.load(tmp_path / "pg.npy")).max() > 1e-3
    # the archive: run 1 (empty archive) is plain PG; run 2, same seed, is repelled from run 1's samples,
    # so it differs from run 1; the archive holds exactly the two runs' samples, in order
    arch = tmp_path / "arch.npy"
    for k in range(2):
        main(
            [
                "sample",
                "--model",
                str(tiny_ckpt),
                "--n",
                "3",
                "--steps",
                "3",
                "--method",
                "pg",
                "--embedding",
                "identity",
                "--archive",
                str(arch),
                "--out",
                str(tmp_path / f"a{k}.npy"),
                "--quiet",
            ]
        )
    a0, a1 = np.load(tmp_path / "a0.npy"), np.load(tmp_path / "a1.npy")
    plain = sd.sample(model, 3, steps=3, seed=0, guidance=[sd.ParticleGuidance(embedding="identity")]).numpy()
    np.testing.assert_allclose(a0, plain, atol=1e-6)
    assert np.abs(a1 - a0).max() > 1e-3
    np.testing.assert_array_equal(np.load(arch), np.concatenate([a0, a1]))
    runs = []
    for name in ("strat1.npy", "strat2.npy"):
        assert (
            main(
                [
                    "sample",
                    "--model",
                    str(tiny_ckpt),
                    "--n",
                    "3",
                    "--steps",
                    "2",
                    "--method",
                    "stratified",
                    "--candidates",
                    "3",
                    "--embedding",
                    "identity",
                    "--out",
                    str(tmp_path / name),
                    "--quiet",
                ]
            )
            == 0
        )
        runs.append(np.load(tmp_path / name))
    np.testing.assert_array_equal(runs[0], runs[1])  # same seed, same selection
    strat = tmp_path / "strat1.npy"
    pool = tmp_path / "pool.npy"
    main(["sample", "--model", str(tiny_ckpt), "--n", "9", "--steps", "2", "--out", str(pool), "--quiet"])
    # every kept sample is one of the 3 x 3 iid draws of the same seed
    assert all(np.abs(np.load(pool) - row).reshape(9, -1).max(1).min() < 1e-4 for row in np.load(strat))
    assert (
        main(
            [
                "repulse",
                "--method",
                "repulsive",
                "--model",
                "ro3",
                "--strength",
                "10",
                "--nparticles",
                "3",
                "--diffusion-model",
                str(tiny_ckpt),
                "--out",
                str(tmp_path / "r.npy"),
                "--quiet",
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "pg", "--embedding", "vgg"], "unknown embedding 'vgg'"),
        (["--method", "pg", "--kernel", "laplace"], "unknown kernel 'laplace'"),
        (["--method", "pg", "--window", "1"], "--window '1'"),
        (["--corrector-plan", "langevin:0-1"], "--corrector-plan needs --sampler pc"),
        (["--method", "stratified", "--strength", "3"], "--method stratified selects from iid draws"),
        (["--method", "stratified", "--candidates", "0"], "--candidates must be >= 1"),
        (["--method", "stratified", "--prior-samples", "8"], "--prior-samples is for --method pg"),
        (["--method", "pg", "--embedding", "identity", "--prior-samples", "1"], "--prior-samples must be >= 2"),
        (["--method", "pg", "--kernel", "label"], "use a classifier of the model's classes"),
    ],
)
def test_bad_particle_options(tiny_ckpt, tmp_path, capsys, args, message):
    assert (
        main(
            [
                "sample",
                "--model",
                str(tiny_ckpt),
                "--n",
                "2",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "x.npy"),
                "--quiet",
            ]
            + args
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_evaluate_writes_the_documented_json(tiny_ckpt, tmp_path):
    import json

    class Feat(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x.flatten(1).mean(1, keepdim=True), x.flatten(1)[:, :7]], 1)

    torch.export.save(
        torch.export.export(Feat(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},)),
        str(tmp_path / "feat.pt2"),
    )
    real = torch.rand(40, 1, 8, 8) * 2 - 1
    np.save(tmp_path / "real.npy", real.numpy())
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_ckpt),
                "--n",
                "6",
                "--batches",
                "3",
                "--steps",
                "2",
                "--method",
                "pg",
                "--embedding",
                "identity",
                "--features",
                str(tmp_path / "feat.pt2"),
                "--real",
                str(tmp_path / "real.npy"),
                "--k",
                "3",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert d["schema"] == "steerdiff-evaluate/1" and len(d["batches"]) == 3
    assert [b["seed"] for b in d["batches"]] == [0, 1, 2]
    agg = d["aggregate"]["vendi"]
    # the interval recomputed from the per-batch values: mean +- t(0.975, df=2) * sd / sqrt(3), t from a table
    v = np.array([b["vendi"] for b in d["batches"]])
    half = 4.302652729911275 * v.std(ddof=1) / np.sqrt(3)
    assert agg["n_batches"] == 3
    np.testing.assert_allclose([agg["mean"], *agg["ci95"]], [v.mean(), v.mean() - half, v.mean() + half], rtol=1e-9)
    assert {"frechet", "kid", "prdc", "vendi"} <= set(d["overall"])
    # the same samples read back from a file give the same per-batch numbers
    samples = tmp_path / "s.npy"
    main(
        [
            "sample",
            "--model",
            str(tiny_ckpt),
            "--n",
            "6",
            "--steps",
            "2",
            "--seed",
            "0",
            "--out",
            str(samples),
            "--quiet",
        ]
    )
    out2 = tmp_path / "m2.json"
    assert (
        main(
            [
                "evaluate",
                "--samples",
                str(samples),
                "--batch-size",
                "3",
                "--features",
                str(tmp_path / "feat.pt2"),
                "--classifier",
                "none",
                "--out",
                str(out2),
                "--quiet",
            ]
        )
        == 0
    )
    rows = json.loads(out2.read_text())["batches"]
    assert len(rows) == 2
    x = torch.from_numpy(np.load(samples))
    for row, part in zip(rows, (x[:3], x[3:]), strict=True):
        f = Feat()(part).double().numpy()
        u = f / np.linalg.norm(f, axis=1, keepdims=True)
        lam = np.linalg.eigvalsh(u @ u.T / 3)
        lam = lam[lam > 1e-12] / lam[lam > 1e-12].sum()
        dist = np.linalg.norm(f[:, None] - f[None], axis=-1)[np.triu_indices(3, 1)]
        cos = (u @ u.T)[np.triu_indices(3, 1)]
        np.testing.assert_allclose(
            [row["vendi"], row["pairwise_mean"], row["in_batch_similarity"]],
            [np.exp(-(lam * np.log(lam)).sum()), dist.mean(), cos.mean()],
            rtol=1e-5,
        )
    assert main(["evaluate", "--samples", str(samples), "--out", str(tmp_path / "x.json"), "--quiet"]) == 2
