"""`steerdiff quality` / `steerdiff.quality.model_quality` (issue #18, item 3): a model's own quality
table. Its numbers must be the direct metric calls on the same samples, the goals must judge them
(a one-class model fails class balance), the JSON must be valid and bad flags clean errors."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.cli import main
from steerdiff.compose_eval import class_weights, color_digit_classes
from steerdiff.data import load_mnist
from steerdiff.metrics import frechet_distance, near_copy_rate
from steerdiff.quality import GOALS, circle_conditions, classify, format_table, horizontal_conditions, model_quality
from steerdiff.sequences import centroid, direction_metrics, p_right


def _rows(result: dict) -> dict:
    return {r["metric"]: r for r in result["rows"]}


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_mnist_table_equals_direct_metric_calls():
    n = 12
    res = model_quality("mnist", n=n, seed=3, batch_size=n)  # one sample call: the very samples below
    x = sd.sample(sd.load("mnist"), n, seed=3)
    ev = load_classifier("mnist-evaluator")
    probs, feats = classify(ev, x)
    train, held = load_mnist("train"), load_mnist("heldout")
    _, held_feats = classify(ev, held.images)
    sub = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))[:n]  # same-size reference
    _, train_feats = classify(ev, train.images[sub])
    rows = _rows(res)
    assert rows["evaluator confidence (mean)"]["value"] == pytest.approx(float(probs.max(1).values.mean()), abs=1e-6)
    shares = np.bincount(probs.argmax(1).numpy(), minlength=10) / n
    assert rows["class shares (digits 0-9)"]["value"] == pytest.approx(shares.tolist(), abs=1e-4)
    assert rows["class balance: min / max share"]["value"] == pytest.approx([shares.min(), shares.max()], abs=1e-4)
    fd, ref = frechet_distance(feats, held_feats), frechet_distance(train_feats, held_feats)
    assert rows["Frechet distance to held-out (evaluator)"]["value"] == pytest.approx([fd, ref, fd / ref], rel=1e-6)
    nc = near_copy_rate(x, train.images, held.images)["near_copy_rate"]
    assert rows["near-copy rate (vs training set)"]["value"] == pytest.approx(nc)
    assert res["schema"] == "steerdiff-quality/1" and res["kind"] == "mnist" and res["n"] == n
    # every goal row judged by its own value
    r = rows["evaluator confidence (mean)"]
    assert r["pass"] == (r["value"] >= GOALS["confidence"])
    r = rows["Frechet distance to held-out (evaluator)"]
    assert r["pass"] == (r["value"][2] <= GOALS["frechet_ratio"])
    assert res["passed"] == all(r["pass"] for r in res["rows"] if r["pass"] is not None)
    table = format_table(res)
    assert table.count("PASS") + table.count("FAIL") == sum(r["pass"] is not None for r in res["rows"])


def test_class_conditional_table_has_label_carried():
    n = 10
    res = model_quality("mnist-cond", n=n, seed=0, batch_size=n)
    labels = torch.arange(n)
    x = sd.sample(sd.load("mnist-cond"), n, seed=0, cond={"class_labels": labels})
    pred = classify(load_classifier("mnist-evaluator"), x)[0].argmax(1)
    row = _rows(res)["label carried (evaluator = requested)"]
    assert row["value"] == pytest.approx(float((pred == labels).double().mean()))
    assert row["pass"] == (row["value"] >= GOALS["label_carried"])


class OneDigit(torch.nn.Module):
    """A 'model' whose denoised estimate is always one real digit: every sample is that digit."""

    sigma_min, sigma_max, sample_shape = 0.002, 80.0, (1, 28, 28)

    def __init__(self, image):
        super().__init__()
        self.image = image

    def forward(self, x, sigma, **cond):
        return self.image.expand_as(x)


def test_a_model_that_draws_one_class_fails_class_balance():
    held = load_mnist("heldout")
    digit = int(held.labels[0])
    res = model_quality(OneDigit(held.images[0]), n=20, seed=0)
    rows = _rows(res)
    shares = rows["class shares (digits 0-9)"]["value"]
    assert shares[digit] == 1.0 and sum(shares) == pytest.approx(1.0)
    assert rows["class balance: min / max share"]["pass"] is False
    assert res["passed"] is False
    assert "FAIL" in format_table(res)


def test_frame_tables_equal_direct_calls_and_json_is_valid(tmp_path):
    n = 6
    out = tmp_path / "q.json"
    rc, stdout, err = run_cli(
        ["quality", "--model", "circle", "--n", str(n), "--batch-size", str(n), "--out", str(out), "--quiet"]
    )
    assert rc == 0, err
    res = json.loads(out.read_text())
    assert res["schema"] == "steerdiff-quality/1" and res["kind"] == "circle" and "goal >= 95%" in stdout
    frames = circle_conditions(n, 0)
    x = sd.sample(sd.load("circle"), n, seed=0, cond={"frames": frames})
    m = direction_metrics(x, frames, 8)
    rows = _rows(res)
    assert rows["moves in an allowed direction"]["value"] == pytest.approx(m["accuracy"])
    freq = [m["directions"].count(j) / n for j in range(8)] + [m["directions"].count(-1) / n]
    assert rows["direction frequencies (0=right, ccw; stayed)"]["value"] == pytest.approx(freq)

    res = model_quality("horizontal", n=n, seed=1, batch_size=n)
    frames, left = horizontal_conditions(n, 2, seed=1)
    assert left.tolist() == [False, True] * 3 and not torch.equal(frames[0], frames[1])
    x = sd.sample(sd.load("horizontal"), n, seed=1, cond={"frames": frames})
    dirs = torch.where(centroid(x)[:, 1] - centroid(frames[:, -1:])[:, 1] >= 0, 1, -1)
    direct = p_right(dirs.tolist(), p0=0.7)
    row = _rows(res)["p(right)"]
    assert row["value"] == pytest.approx(direct["p_right"])
    assert row["pass"] == (abs(direct["p_right"] - 0.7) <= 0.03 and direct["ci95"][0] <= 0.7 <= direct["ci95"][1])
    assert res["metrics"]["p_right"] == direct


def test_set_table_equals_the_judge():
    n = 4
    res = model_quality("M1", n=n, seed=0, batch_size=n)
    classes = color_digit_classes(sd.sample(sd.load("M1"), n, seed=0))
    own = float((class_weights("colormnist-m1")[classes] > 0).double().mean())
    row = _rows(res)["colormnist-m1: own digits and colours"]
    assert row["value"] == pytest.approx(own) and row["pass"] == (own >= GOALS["own_set"])


@pytest.mark.parametrize(
    "argv",
    [
        ["--n", "0"],
        ["--n", "1"],
        ["--n", "1000000000"],
        ["--n", "x"],
        ["--out", "q.npy"],
        ["--model", "ring"],
        ["--model", "bogus"],
        ["--set-guidance", "1"],
        ["--model", "circle", "--set-guidance", "1"],
        ["--model", "M1", "--set-guidance", "-1"],
        ["--set-guidance", "nan"],
        ["--batch-size", "0"],
        ["--device", "bogus"],
        ["--model", "mnist-0to5", "--set-guidance", "1"],
        ["--seed", "1.5"],
    ],
)
def test_bad_flags_are_clean_errors(argv, tmp_path):
    with pytest.raises(SystemExit) if argv[1] in ("x", "1.5") else contextlib.nullcontext():
        rc, _, err = run_cli(["quality", "--n", "2", "--out", str(tmp_path / "q.json"), "--quiet", *argv])
        assert rc == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("steerdiff quality: error:"), err
        assert not (tmp_path / "q.json").exists()


def test_set_network_table_covers_the_composed_sets():
    from steerdiff.quality import _plan

    for name in ("colormnist", "colormnist-sets"):
        kind, sets = _plan(name, 1.0, "cpu")
        assert kind == "sets" and [s for s, _ in sets] == [f"colormnist-{k}" for k in ("m1", "m2", "mn1", "mn2", "mn3")]
    assert _plan("MN2", 0.0, "cpu")[1][0][0] == "colormnist-mn2"
