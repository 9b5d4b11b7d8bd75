"""Issue #14, "Honest and safe": --out never destroys what it does not own, interrupted saves are
recovered, non-finite results are errors, same seed -> same bytes, and names say what they are."""

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import steerdiff as sd
from steerdiff import checkpoint as ckpt
from steerdiff.cli import build_parser, main
from steerdiff.errors import SteerdiffError

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--dataset", "digits8", "--net", "tiny", "--batch-size", "8", "--checkpoint-every", "1", "--quiet"]


def tree_bytes(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step training checkpoint (copy it before changing it)."""
    d = tmp_path_factory.mktemp("run") / "run"
    assert main([*TRAIN, "--steps", "2", "--out", str(d)]) == 0
    return d


def copy_run(run, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


# ---------------------------------------------------------------- 1. --out never destroys what it does not own
def test_train_refuses_a_directory_of_other_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert main([*TRAIN, "--steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"] and (out / "notes.txt").read_text() == "my notes"
    # a checkpoint with a stranger inside is refused too (the swap would drop the stranger)
    assert main([*TRAIN, "--steps", "1", "--out", str(out), "--force"]) == 0
    assert not (out / "notes.txt").exists() and (out / "state.safetensors").is_file()


def test_train_resumes_only_a_training_checkpoint(run, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["export", str(run), "--out", str(model)]) == 0
    before = tree_bytes(model)
    assert main([*TRAIN, "--steps", "3", "--out", str(model)]) == 2
    err = capsys.readouterr().err
    assert "exported model" in err and "--force" in err
    assert tree_bytes(model) == before
    # a training checkpoint is resumed as before
    mine = copy_run(run, tmp_path)
    assert main([*TRAIN, "--steps", "3", "--out", str(mine)]) == 0
    assert json.loads((mine / "state.json").read_text())["step"] == 3


def test_export_refuses_its_own_source_and_foreign_directories(run, tmp_path, capsys):
    mine = copy_run(run, tmp_path)
    before = tree_bytes(mine)
    assert main(["export", str(mine), "--out", str(mine)]) == 2
    assert "training state" in capsys.readouterr().err
    assert main(["export", str(mine), "--out", str(mine), "--force"]) == 2  # never, even with --force
    assert tree_bytes(mine) == before
    other = tmp_path / "other"
    copy_run(run, tmp_path, "other")
    assert main(["export", str(mine), "--out", str(other)]) == 2  # a training checkpoint is not an export
    assert (other / "state.safetensors").is_file()
    model = tmp_path / "model"
    assert main(["export", str(mine), "--out", str(model)]) == 0
    assert main(["export", str(mine), "--out", str(model), "--fp32"]) == 0  # an export replaces an export


@pytest.mark.parametrize(
    "argv",
    [
        [*TRAIN, "--steps", "1"],
        ["export", "RUN"],
        ["report", "--n", "2", "--batches", "1", "--steps", "1", "--strengths", "0", "--quiet"],
        ["train-edit", "--attribute", "thick", "--steps", "1", "--images", "2", "--quiet"],
        ["train-classifier", "--epochs", "1", "--quiet"],
    ],
)
def test_directory_commands_never_replace_a_file(run, tmp_path, argv):
    f = tmp_path / "keep.txt"
    f.write_text("precious")
    argv = [str(run) if a == "RUN" else a for a in argv]
    assert main([*argv, "--out", str(f)]) == 2
    assert f.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--n", "2", "--batches", "1", "--steps", "1", "--strengths", "0", "--quiet"],
        ["train-edit", "--attribute", "thick", "--steps", "1", "--images", "2", "--quiet"],
        ["train-classifier", "--epochs", "1", "--quiet"],
    ],
)
def test_other_directory_commands_refuse_foreign_directories(tmp_path, argv, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert main([*argv, "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_atomic_directory_never_turns_a_file_into_a_hidden_old(tmp_path):
    f = tmp_path / "ckpt"
    f.write_text("a file")
    with pytest.raises(SteerdiffError, match="existing file"):
        with ckpt.atomic_directory(f) as d:
            (d / "x").write_text("x")
    assert f.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# ---------------------------------------------------------------- 2. interrupted saves
def test_a_save_killed_between_its_renames_is_recovered(run, tmp_path, capsys):
    mine = copy_run(run, tmp_path)
    meta = json.loads((mine / "state.json").read_text())
    losses = meta["losses"] = [123.0, 456.0]  # marks the preserved copy: a resume carries them on
    (mine / "state.json").write_text(json.dumps(meta))
    os.replace(mine, tmp_path / ".run.old")  # what a kill between the two renames leaves
    stale = tmp_path / ".run.k1ll3d_1.tmp"  # and a killed save's temporary
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    keep = tmp_path / ".run.mine.tmp"  # not a steerdiff temporary: left alone
    keep.mkdir()
    assert main([*TRAIN, "--steps", "4", "--out", str(mine)]) == 0
    meta = json.loads((mine / "state.json").read_text())
    assert meta["step"] == 4 and meta["losses"][:2] == losses  # resumed, not restarted from step 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.mine.tmp", "run"]


def test_recover_never_deletes_the_only_copy(tmp_path):
    old = tmp_path / ".d.old"
    old.mkdir()
    (old / "config.json").write_text("{}")
    with ckpt.atomic_directory(tmp_path / "d") as d:
        (d / "config.json").write_text('{"new": 1}')
    assert json.loads((tmp_path / "d" / "config.json").read_text()) == {"new": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # the recovered copy was replaced, as a save does
    # a failed save after the recovery keeps the recovered copy, not an empty slot
    old.mkdir()
    (old / "config.json").write_text("{}")
    shutil.rmtree(tmp_path / "d")
    with pytest.raises(RuntimeError):
        with ckpt.atomic_directory(tmp_path / "d"):
            raise RuntimeError("killed")
    assert json.loads((tmp_path / "d" / "config.json").read_text()) == {}


# ---------------------------------------------------------------- 3. non-finite results, strict edit loading
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_edit_refuses_non_finite_strength(tmp_path, value):
    out = tmp_path / "e.npz"
    assert main(["edit", "--attribute", "thick", "--n", "1", f"--strength={value}", "--out", str(out), "--quiet"]) == 2
    assert not out.exists()


def test_edit_whose_result_is_non_finite_is_an_error(tmp_path, capsys):
    out = tmp_path / "e.npz"
    assert main(["edit", "--attribute", "thick", "--n", "1", "--strength", "1e30", "--out", str(out), "--quiet"]) == 2
    assert "non-finite" in capsys.readouterr().err and not out.exists()


def test_edit_with_wrong_weight_keys_is_refused(tmp_path, capsys):
    src = sd.models.weights_dir() / "edits" / "thick"
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    state = ckpt.read_safetensors(bad / "delta.safetensors")
    ckpt.save_tensors(bad / "delta.safetensors", {f"other.{k}": v for k, v in state.items()})
    from steerdiff.edit import load_edit

    with pytest.raises(SteerdiffError, match="missing: .*unexpected: other"):
        load_edit(bad)
    assert main(["edit", "--edit", str(bad), "--n", "1", "--out", str(tmp_path / "e.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "delta.safetensors" in err and len(err.strip().splitlines()) == 1
    load_edit(src)  # the shipped edit loads strictly


# ---------------------------------------------------------------- 4. same seed, same bytes
@pytest.mark.parametrize("suffix", [".pt", ".npy", ".npz", ".png"])
def test_same_seed_same_bytes_for_sample_files(tmp_path, suffix):
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}" / f"x{suffix}"  # different folders, the same file name
        argv = ["sample", "--model", "mnist", "--n", "2", "--steps", "2", "--seed", "3", "--out", str(out), "--quiet"]
        assert main(argv) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_same_seed_same_bytes_for_pt_whatever_the_temporary(tmp_path):
    from steerdiff.io import save_samples

    x = torch.randn(3, 1, 4, 4)
    save_samples(x, tmp_path / "a.pt")
    first = (tmp_path / "a.pt").read_bytes()
    save_samples(x, tmp_path / "a.pt")
    assert (tmp_path / "a.pt").read_bytes() == first
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True), x)


def test_same_seed_same_bytes_for_checkpoints_and_json(run, tmp_path):
    first = tree_bytes(run)
    shutil.move(str(run), str(tmp_path / "first"))  # the same command again (config.json records --out)
    try:
        assert main([*TRAIN, "--steps", "2", "--out", str(run)]) == 0
        assert tree_bytes(run) == first
    finally:
        shutil.rmtree(run, ignore_errors=True)
        shutil.move(str(tmp_path / "first"), str(run))
    samples = tmp_path / "s.npy"
    np.save(samples, np.random.default_rng(0).uniform(-1, 1, (20, 1, 28, 28)).astype(np.float32))
    jsons = []
    for k in range(2):
        out = tmp_path / f"m{k}.json"
        assert (
            main(
                [
                    "evaluate",
                    "--samples",
                    str(samples),
                    "--batch-size",
                    "10",
                    "--seed",
                    "0",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
        jsons.append(json.loads(out.read_text()))
    jsons = [{k: v for k, v in j.items() if k != "config"} for j in jsons]  # config names --out
    assert jsons[0] == jsons[1]


# ---------------------------------------------------------------- 5. honest embedding names
def test_noisy_digit_cnn_names_and_deprecated_aliases():
    from steerdiff.embeddings import EMBEDDINGS, ClassifierEmbedding, get_embedding

    assert "noisy-digit-cnn" in EMBEDDINGS and "noisy-digit-cnn-ro3" in EMBEDDINGS
    assert "vgg_noise" not in EMBEDDINGS and "vgg_noisero3" not in EMBEDDINGS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = get_embedding("noisy-digit-cnn-ro3")
    for old, ro3 in (("vgg_noise", False), ("vgg_noisero3", True)):
        with pytest.warns(DeprecationWarning, match="noisy-digit-cnn.*not a VGG"):
            phi = get_embedding(old)
        assert isinstance(phi, ClassifierEmbedding) and phi.with_ro3 is ro3
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        plain = get_embedding("noisy-digit-cnn").eval()(x, torch.ones(2))
        assert torch.allclose(new.eval()(x, torch.ones(2)), torch.cat([plain, sd.embeddings.ro3(x)], 1))


def test_noisy_digit_cnn_refuses_other_sample_shapes():
    from steerdiff.particles import ParticleGuidance

    ring = sd.toy.ring()
    for name in ("noisy-digit-cnn", "vgg_noisero3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with pytest.raises(SteerdiffError, match=f"embedding '{name}' is a digit classifier for 1x28x28 images"):
                ParticleGuidance(embedding=name).bind(ring)


def test_noisy_digit_cnn_on_a_colour_model_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "x.npy"
    with pytest.warns(DeprecationWarning, match="not a VGG network"):
        assert (
            main(
                [
                    "sample",
                    "--model",
                    "colormnist",
                    "--method",
                    "pg",
                    "--embedding",
                    "vgg_noise",
                    "--n",
                    "2",
                    "--steps",
                    "2",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 2
        )
    err = capsys.readouterr().err
    assert "1x28x28" in err and "3x28x28" in err and "Traceback" not in err and not out.exists()


def test_help_names_the_embeddings_honestly():
    helps = {c: build_parser()._subparsers._group_actions[0].choices[c].format_help() for c in ("sample", "repulse")}
    for text in helps.values():
        assert "noisy-digit-cnn" in text and "deprecated" in text


# ---------------------------------------------------------------- 6. green, CLIP
@pytest.mark.parametrize("command", ["edit", "train-edit"])
def test_green_is_not_advertised_and_says_why(tmp_path, command, capsys):
    text = build_parser()._subparsers._group_actions[0].choices[command].format_help()
    assert "--attribute green" not in text and "green or thick" not in text and "green," not in text
    assert (
        main(
            [
                command,
                "--attribute",
                "green",
                "--out",
                str(tmp_path / ("g.npz" if command == "edit" else "g")),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "skip connections" in err and "bench_hspace_reach" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_readme_claims_no_clip_edit_direction():
    readme = (ROOT / "README.md").read_text()
    assert "CLIP text direction" not in readme


# ---------------------------------------------------------------- 7. README
def tables(text: str) -> list[list[str]]:
    blocks, cur, fence = [], [], False
    for line in text.splitlines() + [""]:
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("|"):
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    return blocks


@pytest.mark.parametrize("name", ["README.md", "docs/benchmarks.md"])
def test_every_table_renders(name):
    """A markdown table is a header row, a |---| row, then rows: a blank line inside one splits it and
    the rows after it render as raw pipes."""
    blocks = tables((ROOT / name).read_text())
    assert blocks
    for b in blocks:
        assert len(b) >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", b[1].replace(" ", "")), b[:2]
        assert len({row.count("|") - row.count("\\|") for row in b}) == 1, b[0]


def test_readme_is_a_reference_and_links_the_lab_notes():
    readme = (ROOT / "README.md").read_text()
    bench = (ROOT / "docs" / "benchmarks.md").read_text()
    head = readme[:1500]
    assert "steerdiff sample --model mnist --n 64 --seed 0 --out digits.png" in head
    assert "python -m pytest -q" in head
    assert "docs/benchmarks.md" in readme
    assert len(readme.splitlines()) < 400
    for note in ("**Shipped MNIST model**", "| iid | 6.60", "| sigma | green | thick |", "bench_prior_toy.py"):
        assert note not in readme and note in bench
    assert bench.count("python benchmarks/") >= 10  # the measurements keep their reproducing commands


def test_a_diverged_edit_is_not_written(tmp_path):
    from steerdiff.edit import DeltaH, save_edit

    delta = DeltaH("channel", 4, 2, 2)
    with torch.no_grad():
        next(p for p in delta.parameters()).fill_(float("nan"))
    with pytest.raises(SteerdiffError, match="not finite"):
        save_edit(tmp_path / "e", delta, {"attribute": "thick", "intervals": {}, "edit_steps": 1})
    assert list(tmp_path.iterdir()) == []
