"""Issue #15: the edit workflows of the command line are library functions (``steerdiff.edit.workflow``,
``steerdiff.edit.evaluate.evaluate_edit_file``); the commands give the same bytes as the Python calls."""

import json

import numpy as np
import pytest
import torch

from steerdiff.cli import main
from steerdiff.data import load_colormnist
from steerdiff.edit import dilate, load_edit
from steerdiff.edit import workflow as wf
from steerdiff.edit.evaluate import evaluate_edit_file
from steerdiff.errors import SteerdiffError
from steerdiff.training import command_line

# a short editing schedule keeps these tests fast: the command and the Python call read the same default
SHORT = 8


@pytest.fixture(autouse=True)
def short_schedule(monkeypatch):
    monkeypatch.setitem(wf.train_calibrated_edit.__kwdefaults__, "edit_steps", SHORT)


@pytest.fixture(scope="module")
def tiny(tiny_colormnist_checkpoint):
    return tiny_colormnist_checkpoint


def _tree(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_train_calibrated_edit_writes_the_bytes_of_train_edit(tiny, tmp_path):
    out = tmp_path / "edit"
    argv = ["train-edit", "--model", tiny, "--attribute", "thick", "--steps", "3", "--images", "3", "--seed", "4"]
    assert main([*argv, "--lr", "0.05", "--global", "--quiet", "--out", str(out)]) == 0
    cli = _tree(out)
    assert sorted(cli) == ["config.json", "delta.safetensors", "global/config.json", "global/delta.safetensors"]
    delta, conf = wf.train_calibrated_edit(
        tiny,
        "thick",
        images=3,
        steps=3,
        seed=4,
        lr=0.05,
        progress=False,
        out=out,
        save_global=True,
        command=command_line(),
    )
    assert _tree(out) == cli
    saved, saved_conf = load_edit(out)
    assert saved_conf["edit_steps"] == SHORT and saved_conf["model"] == tiny and len(conf["losses"]) == 3
    assert conf["strength"] in (0.25, 0.5, 0.75, 1.0, 1.25) and conf["strength"] == saved_conf["strength"]
    for k, v in delta.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[k], v, rtol=0, atol=0)
    # out=None trains the same edit and writes nothing; another seed trains another one
    again, _ = wf.train_calibrated_edit(tiny, "thick", images=3, steps=3, seed=4, lr=0.05, progress=False)
    torch.testing.assert_close(again.out.weight, delta.out.weight, rtol=0, atol=0)
    other, _ = wf.train_calibrated_edit(tiny, "thick", images=3, steps=3, seed=5, lr=0.05, progress=False)
    assert not torch.equal(other.out.weight, delta.out.weight)
    # targets= replaces the attribute's target: the sources themselves teach another edit
    ident, _ = wf.train_calibrated_edit(
        tiny, "thick", images=3, steps=3, seed=4, lr=0.05, progress=False, targets=lambda x: x
    )
    assert not torch.equal(ident.out.weight, delta.out.weight)
    # loss_space= takes the L1 elsewhere: another delta, the space named in the config (pixels: null)
    from steerdiff.edit import blur_pyramid

    blurred, bconf = wf.train_calibrated_edit(
        tiny, "thick", images=3, steps=3, seed=4, lr=0.05, progress=False, loss_space=blur_pyramid
    )
    assert not torch.equal(blurred.out.weight, delta.out.weight)
    assert bconf["loss_space"] == "blur_pyramid" and conf["loss_space"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edit"]


def test_train_calibrated_edit_refuses_before_any_work(tiny, tmp_path):
    with pytest.raises(SteerdiffError, match="skip connections"):
        wf.train_calibrated_edit(tiny, "green", out=tmp_path / "g")
    with pytest.raises(SteerdiffError, match="use thick"):
        wf.train_calibrated_edit(tiny, "bold")
    with pytest.raises(SteerdiffError, match="loss"):
        wf.train_calibrated_edit(tiny, "thick", loss="clip")
    with pytest.raises(SteerdiffError, match="must lie below"):
        wf.train_calibrated_edit(tiny, "thick", sigma_edit=20.0)
    with pytest.raises(SteerdiffError, match="keep_rate must be a fraction"):
        wf.train_calibrated_edit(tiny, "thick", keep_rate=95)
    with pytest.raises(SteerdiffError, match="targets must map images"):
        wf.train_calibrated_edit(tiny, "thick", targets=lambda x: x[:, :1])
    with pytest.raises(SteerdiffError, match="add --loss final"):
        wf.train_calibrated_edit(tiny, "thick", two_sided=True)
    with pytest.raises(SteerdiffError, match="loss_space applies to the paired and final losses"):
        wf.train_calibrated_edit(tiny, "thick", loss="direction", loss_space=lambda t: t)
    with pytest.raises(SteerdiffError, match="slant has no backward target"):
        wf.train_calibrated_edit(tiny, "slant", loss="final", two_sided=True)
    (tmp_path / "f").write_text("precious")
    with pytest.raises(SteerdiffError, match="existing file"):
        wf.train_calibrated_edit(tiny, "thick", out=tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_two_sided_edit_trains_both_directions(tiny, tmp_path):
    """``--two-sided`` (final loss): the edit is also trained at strength -1 toward :func:`fade_edges`,
    and says so in its config; the same training without it learns another delta."""
    from steerdiff.edit import fade_edges

    x = -torch.ones(1, 3, 5, 5)
    x[0, 0, 1:4, 1:4] = 1.0  # a 3x3 blob: its centre stays, its 8 edge pixels fade to half ink, nothing grows
    faded = fade_edges(x)[0, 0]
    assert float(faded[2, 2]) == 1.0 and float(faded[1, 2]) == float(faded[1, 1]) == 0.0
    assert int((faded > -1).sum()) == 9 and float(faded[0, 2]) == -1.0
    out = tmp_path / "e"
    argv = ["train-edit", "--model", tiny, "--attribute", "thick", "--loss", "final", "--two-sided"]
    assert main([*argv, "--steps", "2", "--images", "3", "--lr", "0.05", "--quiet", "--out", str(out)]) == 0
    two, conf = load_edit(out)
    assert conf["two_sided"] is True and conf["loss"] == "final"
    one, _ = wf.train_calibrated_edit(tiny, "thick", loss="final", images=3, steps=2, lr=0.05, progress=False)
    assert not torch.equal(one.out.weight, two.out.weight)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A tiny edit trained hard enough (lr 0.05) that its edits differ visibly from reconstructions."""
    out = tmp_path_factory.mktemp("edit") / "e"
    wf.train_calibrated_edit(
        tiny, "thick", images=3, steps=6, lr=0.05, seed=0, progress=False, out=out, edit_steps=SHORT, save_global=True
    )
    return str(out)


@pytest.mark.parametrize("suffix", [".npz", ".png"])
def test_edit_images_writes_the_bytes_of_steerdiff_edit(tiny, trained, tmp_path, suffix):
    a, b = tmp_path / f"cli{suffix}", tmp_path / f"py{suffix}"
    argv = ["edit", "--model", tiny, "--edit", trained, "--n", "3", "--seed", "2", "--strength", "3"]
    assert main([*argv, "--global", "--quiet", "--out", str(a)]) == 0
    r = wf.edit_images(trained, tiny, n=3, seed=2, strength=3.0, averaged=True, out=b)
    assert a.read_bytes() == b.read_bytes()
    assert r["edited"].shape == r["source"].shape == (3, 3, 28, 28) and r["attribute"] == "thick"
    if suffix == ".npz":
        z = np.load(b)
        np.testing.assert_array_equal(z["edited"], r["edited"].numpy())
        np.testing.assert_array_equal(z["source"], r["source"].numpy())
        assert float(z["strength"]) == 3.0 and bool((z["labels"] >= 0).all())
        # the sources are held-out digits drawn by the seed
        held = load_colormnist("colormnist", "heldout").images
        pick = torch.randperm(len(held), generator=torch.Generator().manual_seed(2))[:3]
        np.testing.assert_array_equal(z["source"], held[pick].numpy())


def test_edit_images_of_your_own_images(tiny, trained, tmp_path):
    x = load_colormnist("colormnist", "heldout").images[:4]
    np.save(tmp_path / "mine.npy", x.numpy())
    from_file = wf.edit_images(trained, tiny, str(tmp_path / "mine.npy"), n=3, seed=1, boost=False)
    from_tensor = wf.edit_images(trained, tiny, x, n=3, seed=1, boost=False)
    torch.testing.assert_close(from_file["edited"], from_tensor["edited"], rtol=0, atol=0)
    torch.testing.assert_close(from_tensor["source"], x[:3], rtol=0, atol=0)
    assert from_tensor["labels"].tolist() == [-1, -1, -1]
    # the calibrated strength by default; strength 0 is the plain reconstruction, unlike the edit
    assert from_tensor["strength"] == load_edit(trained)[1]["strength"]
    zero = wf.edit_images(trained, tiny, x, n=3, strength=0.0, boost=False)["edited"]
    assert float((zero - from_tensor["edited"]).abs().max()) > 1e-3
    with pytest.raises(SteerdiffError, match=r"holds images of shape \(1, 28, 28\), model .* edits \(3, 28, 28\)"):
        wf.edit_images(trained, tiny, x[:, :1])
    with pytest.raises(SteerdiffError, match="no such file or folder"):
        wf.edit_images(trained, tiny, str(tmp_path / "none.npy"))
    with pytest.raises(SteerdiffError, match="at least 1"):
        wf.edit_images(trained, tiny, x, n=0)


def _edit_file(path, strength, labels=True):
    d = load_colormnist("colormnist", "heldout")
    x = d.images[::200][:8]
    y = (d.labels[::200][:8] % 10).numpy() if labels else np.full(8, -1)
    np.savez(path, source=x.numpy(), edited=dilate(x).numpy(), labels=y, attribute="thick", strength=strength)


def test_evaluate_edit_file_is_evaluate_task_edit(tmp_path):
    f, out = tmp_path / "e.npz", tmp_path / "e.json"
    _edit_file(f, 1.0)
    record = evaluate_edit_file(f)
    assert main(["evaluate", "--task", "edit", "--samples", str(f), "--out", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert record["schema"] == "steerdiff-evaluate-edit/1" and record["config"]["strength"] == 1.0
    assert record["attribute"] == "thick" and record["success"] == 1.0  # dilation thickens every digit
    assert "vs_label" in record["digit_kept"]["mnist-evaluator"]
    np.savez(tmp_path / "bad.npz", samples=np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(SteerdiffError, match="no source / edited array"):
        evaluate_edit_file(tmp_path / "bad.npz")
    with pytest.raises(SteerdiffError, match="does not exist"):
        evaluate_edit_file(tmp_path / "none.npz")


def test_evaluate_edit_file_judges_a_negative_strength_as_the_opposite_attribute(tmp_path, monkeypatch):
    from steerdiff.edit import evaluate as edit_evaluate

    seen = []
    monkeypatch.setattr(
        edit_evaluate, "evaluate_edit", lambda src, edited, labels, **kw: seen.append((labels, kw)) or {"n": len(src)}
    )
    f = tmp_path / "e.npz"
    _edit_file(f, -1.0, labels=False)  # a strength -1 thick edit of your own images (labels -1)
    record = evaluate_edit_file(f, min_gain=0.1)
    assert seen[-1] == (None, {"attribute": "thin", "classifiers": edit_evaluate.JUDGES, "min_gain": 0.1})
    assert record["config"] == {"samples": str(f), "edit_attribute": "thick", "strength": -1.0} and record["n"] == 8
    _edit_file(f, 0.5)
    evaluate_edit_file(f)
    assert (
        seen[-1][1]["attribute"] == "thick"
        and seen[-1][0].tolist() == (load_colormnist("colormnist", "heldout").labels[::200][:8] % 10).tolist()
    )
