"""The evaluation workflows of ``steerdiff evaluate`` / ``reference`` as Python functions (issue 15):
the library call gives the command's JSON for the same seed, and each answers a constructed case
whose result is known."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

import steerdiff as sd
from steerdiff.cli import main
from steerdiff.data import load_mnist
from steerdiff.errors import SteerdiffError
from steerdiff.evaluation.evaluate import evaluate_next_frame, evaluate_samples
from steerdiff.evaluation.reference import reference_set
from steerdiff.sequences import (
    centroid,
    direction_shifts,
    horizontal_directions,
    next_frame_condition,
    next_frame_dataset,
    next_frame_metrics,
    shift_frames,
)


def _cli_json(argv: list[str], out) -> dict:
    assert main(argv + ["--out", str(out), "--quiet"]) == 0
    return json.loads(out.read_text())


def _same(library: dict, cli: dict, keys) -> None:
    """The library's result, through JSON as the command writes it, equals the command's."""
    library = json.loads(json.dumps(library))
    for key in keys:
        assert library[key] == cli[key], key


# ------------------------------------------------------------------------------ evaluate_samples
def test_evaluate_samples_gives_the_commands_json(tmp_path):
    cli = _cli_json(
        ["evaluate", "--model", "mnist", "--n", "6", "--batches", "2", "--steps", "4", "--seed", "3"],
        tmp_path / "e.json",
    )
    model = sd.load("mnist")
    lib = evaluate_samples(lambda s: sd.sample(model, 6, seed=s, steps=4), [3, 4])
    assert lib["schema"] == cli["schema"] == "steerdiff-evaluate/1"
    _same(lib, cli, ("batches", "aggregate", "overall"))
    assert [b["seed"] for b in lib["batches"]] == [3, 4] and lib["overall"]["n"] == 12
    assert "near_copy_rate" in lib["overall"] and "class_fractions" in lib["overall"]  # the digit defaults


def test_evaluate_samples_cuts_a_file_into_batches_and_takes_options(tmp_path):
    x = load_mnist("heldout").images[:10]
    np.save(tmp_path / "x.npy", x.numpy())
    cli = _cli_json(
        ["evaluate", "--samples", str(tmp_path / "x.npy"), "--batch-size", "4", "--k", "3"], tmp_path / "e.json"
    )
    lib = evaluate_samples(x, batch_size=4, k=3)
    _same(lib, cli, ("batches", "aggregate", "overall"))
    assert [b["n"] for b in lib["batches"]] == [4, 4, 2] and lib["batches"][0]["seed"] is None
    # the same batches as a list; real digits of one class are one class
    listed = evaluate_samples([x[:4], x[4:8], x[8:]], k=3)
    assert json.dumps(listed["batches"]) == json.dumps(lib["batches"])
    sevens = load_mnist("heldout")
    sevens = sevens.images[sevens.labels == 7][:6]
    one = evaluate_samples(sevens, classifier="mnist-evaluator", real=sevens, k=2)
    assert one["batches"][0]["distinct_classes"] == 1 and one["overall"]["class_fractions"][7] == 1.0
    assert "near_copy_rate" not in one["overall"]  # given real images: no near-copy rate
    plain = evaluate_samples(sevens, classifier="none", real=sevens, k=2)
    assert "distinct_classes" not in plain["batches"][0] and "class_fractions" not in plain["overall"]


def test_evaluate_samples_needs_features_off_digits():
    with pytest.raises(SteerdiffError, match="not 28x28 digits: pass --features"):
        evaluate_samples(torch.zeros(4, 3, 16, 16))
    with pytest.raises(SteerdiffError, match="needs seeds"):
        evaluate_samples(lambda s: torch.zeros(2, 1, 28, 28))
    feats = evaluate_samples(torch.rand(4, 3, 16, 16) * 2 - 1, features=lambda x: x.flatten(1)[:, :5])
    assert feats["overall"]["n"] == 4 and "frechet" not in feats["overall"]  # no real images for these


# ------------------------------------------------------------------------------ evaluate_next_frame
@pytest.mark.parametrize("dataset", ["horizontal", "circle_jumping"])
def test_evaluate_next_frame_gives_the_commands_json(tmp_path, dataset):
    argv = ["evaluate", "--task", "conditional", "--dataset", dataset, "--n", "4", "--batches", "2", "--steps", "4"]
    cli = _cli_json(argv + ["--seed", "5"], tmp_path / "c.json")
    model = next_frame_dataset(dataset)  # the dataset's shipped model
    lib = evaluate_next_frame(model, dataset, n=4, batches=2, seed=5, sample_kwargs={"steps": 4})
    assert lib["schema"] == cli["schema"] == "steerdiff-evaluate-conditional/1"
    _same(lib, cli, ("batches", "aggregate") + (("p_right",) if model == "horizontal" else ()))
    assert [b["seed"] for b in lib["batches"]] == [5, 6]
    assert lib["config"]["model"] == model and lib["config"]["batches"] == 2


def _frame_model(cond_frames: int, **train) -> types.SimpleNamespace:
    """What evaluate_next_frame reads of a model: its condition frames and training settings."""
    return types.SimpleNamespace(cond_frames=cond_frames, config={"train": train}, name="constructed")


def _moved(frames: torch.Tensor, shifts) -> torch.Tensor:
    """The last condition frame moved by each of ``shifts``: predictions ``(len(shifts), 1, 32, 32)``."""
    shifts = torch.as_tensor(shifts)
    return shift_frames(frames[:, -1].expand(len(shifts), -1, -1), shifts)[:, None]


def test_next_frame_circle_accuracy_is_the_share_of_allowed_moves():
    every = direction_shifts(8, 4)  # one prediction per direction, in direction order
    seen = []

    def draw(model, seed, frames):
        seen.append((seed, tuple(frames.shape)))
        return _moved(frames, every)

    for n_directions, accuracy in ((8, 1.0), (4, 0.5), (2, 0.25)):
        seen.clear()
        r = evaluate_next_frame(_frame_model(1, n_directions=n_directions), "circle", batches=3, seed=10, draw=draw)
        assert seen == [(10, (1, 1, 32, 32)), (11, (1, 1, 32, 32)), (12, (1, 1, 32, 32))]
        assert [b["directions"] for b in r["batches"]] == [list(range(8))] * 3
        assert r["aggregate"]["accuracy"] == {"mean": accuracy, "ci95": [accuracy, accuracy], "n_batches": 3}
        assert r["aggregate"]["distinct"]["mean"] == 8 and "p_right" not in r
    # a prediction that stays is never an allowed move
    still = evaluate_next_frame(_frame_model(1), "circle", batches=1, draw=lambda m, s, f: _moved(f, [[0, 0]] * 3))
    assert still["batches"][0]["directions"] == [-1, -1, -1] and still["aggregate"]["accuracy"]["mean"] == 0.0


def test_next_frame_horizontal_rule_and_p_right():
    # three of four predictions one step right, one left: p(right) 3/4 over both batches, all allowed
    r = evaluate_next_frame(
        _frame_model(2, p_right=0.7),
        "horizontal",
        batches=2,
        draw=lambda m, s, f: _moved(f, [[0, 2], [0, 2], [0, 2], [0, -2]]),
    )
    assert [b["directions"] for b in r["batches"]] == [[1, 1, 1, -1]] * 2
    assert r["aggregate"]["accuracy"]["mean"] == 1.0 and r["aggregate"]["distinct"]["mean"] == 2
    assert r["p_right"]["p_right"] == 0.75 and r["p_right"]["n"] == 8
    assert r["aggregate"]["l2"]["mean"] < 1e-6 and r["aggregate"]["iou"]["mean"] == 1.0  # exactly the moved frame
    # up is not a horizontal move, nor diagonally right
    for shift in ([-2, 0], [2, 2]):
        bad = evaluate_next_frame(
            _frame_model(2), "horizontal", batches=1, draw=lambda m, s, f, d=shift: _moved(f, [d])
        )
        assert bad["aggregate"]["accuracy"]["mean"] == 0.0
    free = evaluate_next_frame(_frame_model(2), "free", batches=1, draw=lambda m, s, f: _moved(f, [[0, 2]]))
    assert set(free["aggregate"]) == {"distinct", "l2", "iou"} and "p_right" not in free


def test_next_frame_conditions_and_checks():
    digit = load_mnist("heldout").images[:1]
    for seed, sign in ((4, 1), (7, -1)):  # an even seed arrives from the left
        f = next_frame_condition("horizontal", digit, 2, seed)
        c = centroid(f[0, :, None])
        assert f.shape == (1, 2, 32, 32) and abs(float(c[1, 1] - c[0, 1]) - 2 * sign) < 1e-9
        assert abs(float(c[1, 1]) - float(centroid(next_frame_condition("circle", digit, 1, seed)[0])[0, 1])) < 1e-9
    anywhere = next_frame_condition("horizontal", digit, 3, 0, anywhere=True, p_right=1.0)
    assert anywhere.shape == (1, 3, 32, 32)
    last = anywhere[:, -1:]
    assert horizontal_directions(_moved(anywhere, [[0, 2], [0, -2], [0, 0]]), last).tolist() == [1, -1, 1]
    assert next_frame_metrics(_moved(anywhere, [[0, -2]]), last, "free")["directions"] == [-1]
    assert next_frame_dataset("circle_jumping") == "circle"
    with pytest.raises(SteerdiffError, match="use circle"):
        next_frame_dataset("bogus")
    with pytest.raises(SteerdiffError, match="constructed is not frame-conditional"):
        evaluate_next_frame(_frame_model(0), "circle", draw=lambda m, s, f: None)


# ------------------------------------------------------------------------------ reference_set
def test_reference_set_real_is_balanced_held_out_digits(tmp_path):
    x, labels = reference_set(30, "real", seed=2)
    held = load_mnist("heldout")
    assert torch.bincount(labels, minlength=10).tolist() == [3] * 10
    # each image is a held-out digit of its label, no digit twice
    match = (x.flatten(1)[:, None] == held.images.flatten(1)[None]).all(-1)
    idx = match.float().argmax(1)
    assert bool(match.any(1).all()) and len(set(idx.tolist())) == 30 and torch.equal(held.labels[idx], labels)
    assert not torch.equal(reference_set(30, "real", seed=3)[0], x)  # the seed chooses
    assert main(["reference", "--n", "30", "--seed", "2", "--out", str(tmp_path / "r.npz"), "--quiet"]) == 0
    saved = np.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(saved["samples"], x.numpy())
    np.testing.assert_array_equal(saved["labels"], labels.numpy())
    with pytest.raises(SteerdiffError, match="at least 10"):
        reference_set(5)
    with pytest.raises(SteerdiffError, match="100 held-out digits per class"):
        reference_set(2000)
    with pytest.raises(SteerdiffError, match="is for --source model"):
        reference_set(10, "real", model="mnist-cond")


def test_reference_set_model_samples_each_class(tmp_path):
    model = sd.load("mnist-cond")
    x, labels = reference_set(10, "model", model, seed=1)
    assert labels.tolist() == list(range(10)) and x.shape == (10, 1, 28, 28)
    from steerdiff.train.classifier import classify, load_classifier

    probs, _ = classify(load_classifier("mnist-evaluator"), x)
    assert int((probs.argmax(1) == labels).sum()) >= 8  # the labels reach the model
    assert (
        main(
            ["reference", "--source", "model", "--n", "10", "--seed", "1", "--out", str(tmp_path / "r.npz"), "--quiet"]
        )
        == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "r.npz")["samples"], x.numpy())
    with pytest.raises(SteerdiffError, match="unconditional: use mnist-cond"):
        reference_set(10, "model", "ring")
