"""Moving-digit datasets follow their motion rules exactly; the direction detector is right."""

import numpy as np
import pytest
import torch

from steerdiff.data import load_mnist
from steerdiff.errors import SteerdiffError
from steerdiff.sequences import (
    CENTRE,
    LIMIT,
    centroid,
    circle_positions,
    detect_direction,
    direction_metrics,
    direction_shifts,
    frame_quality,
    free_positions,
    horizontal_positions,
    moving_digits,
    p_right,
    shift_frames,
)


def test_direction_shifts():
    s = direction_shifts(8)
    assert s.tolist() == [[0, 4], [-3, 3], [-4, 0], [-3, -3], [0, -4], [3, -3], [4, 0], [3, 3]]
    assert direction_shifts(2).tolist() == [[0, 4], [0, -4]]


@pytest.mark.parametrize("n_dir", [2, 4, 8])
def test_circle_rule_and_prior(n_dir):
    g = torch.Generator().manual_seed(0)
    pos, dirs = circle_positions(4000, 5, n_directions=n_dir, p_first=0.5, generator=g)
    shifts = direction_shifts(n_dir)
    assert (pos[:, 0::2] == CENTRE).all()  # back to the centre every other frame
    assert torch.equal(pos[:, 1::2], CENTRE + shifts[dirs[:, 1::2]])  # out by the chosen direction's shift
    frac0 = float((dirs[:, 1] == 0).double().mean())
    assert abs(frac0 - 0.5) < 0.03  # 4,000 draws: std 0.008
    counts = torch.bincount(dirs[:, 1], minlength=n_dir)[1:].double() / 4000
    assert float((counts - 0.5 / (n_dir - 1)).abs().max()) < 0.03


def test_horizontal_rule():
    g = torch.Generator().manual_seed(1)
    pos, dirs = horizontal_positions(3000, 40, p_right=0.7, generator=g)
    col = pos[..., 1]
    assert (pos[..., 0] == CENTRE).all() and ((col >= 0) & (col <= LIMIT)).all()
    assert ((col[:, 1:] - col[:, :-1]).abs() == 2).all()  # 2 px every frame
    # the direction changes only at the centre (a re-draw) or at a wall (a bounce)
    change = dirs[:, 1:] != dirs[:, :-1]
    at = col[:, 1:]
    assert bool(((at[change] == CENTRE) | (at[change] == 0) | (at[change] == LIMIT)).all())
    # re-draws at the centre go right with probability 0.7
    redrawn = dirs[col == CENTRE]
    assert abs(float((redrawn > 0).double().mean()) - 0.7) < 0.02


def test_free_rule_bounces():
    g = torch.Generator().manual_seed(2)
    pos, vel = free_positions(500, 30, generator=g)
    assert ((pos >= 0) & (pos <= LIMIT)).all()
    assert not (vel == 0).all(-1).any()
    step = pos[:, 1:] - pos[:, :-1]
    same = step == vel[:, :-1]  # moved by the velocity ...
    flipped = vel[:, 1:] == -vel[:, :-1]  # ... or bounced (velocity reversed)
    assert bool((same | flipped).all())


def test_direction_detector_on_ground_truth_shifts():
    digits = moving_digits("circle", load_mnist("heldout").images[:64], length=2, seed=3)
    cond, pred = digits["frames"][:, 0], digits["frames"][:, 1]
    d, _ = detect_direction(pred, cond, direction_shifts(8))
    assert torch.equal(d, digits["motion"][:, 1])
    m = direction_metrics(pred[:8], cond[:8], 8)
    assert m["accuracy"] == 1.0 and m["l2"] < 1e-6 and m["iou"] == 1.0


def test_quality_and_shift_helpers():
    f = torch.full((1, 32, 32), -1.0)
    f[0, 10:14, 10:14] = 1.0
    moved = shift_frames(f, torch.tensor([[2, -3]]))
    torch.testing.assert_close(centroid(moved) - centroid(f), torch.tensor([[2.0, -3.0]], dtype=torch.float64))
    assert frame_quality(moved, f, torch.tensor([[2, -3]]))["iou"] == 1.0


def test_p_right_binomial():
    r = p_right([1] * 70 + [-1] * 30, p0=0.5)
    assert r["p_right"] == 0.7 and r["p_value"] < 1e-4 and r["ci95"][0] < 0.7 < r["ci95"][1]
    assert p_right([1] * 50 + [-1] * 50)["p_value"] == pytest.approx(1.0)


def test_bad_dataset_options():
    with pytest.raises(SteerdiffError, match="n_directions"):
        direction_shifts(6)
    with pytest.raises(SteerdiffError, match="unknown moving-digit dataset"):
        moving_digits("zigzag", torch.zeros(1, 1, 28, 28))


def test_frame_conditional_training_and_sampling(tmp_path):
    import steerdiff as sd
    from steerdiff.cli import main
    from steerdiff.training import TrainConfig, train

    train(
        TrainConfig(dataset="circle", cond_frames=1, net="tiny", steps=2, batch_size=4), tmp_path / "c", progress=False
    )
    model = sd.load(tmp_path / "c")
    assert model.cond_frames == 1 and model.sample_shape == (1, 32, 32)
    frames = moving_digits("circle", load_mnist("heldout").images[:1], length=1)["frames"]  # (1, 1, 32, 32): centred
    np.save(tmp_path / "cond.npy", frames.numpy())
    assert (
        main(
            [
                "sample",
                "--model",
                str(tmp_path / "c"),
                "--cond",
                str(tmp_path / "cond.npy"),
                "--n",
                "3",
                "--steps",
                "2",
                "--method",
                "pg",
                "--embedding",
                "ro3",
                "--out",
                str(tmp_path / "next.npy"),
                "--quiet",
            ]
        )
        == 0
    )
    got = np.load(tmp_path / "next.npy")
    assert got.shape == (3, 1, 32, 32)
    # the command is the library call with the frames as condition (seed 0 by default) ...
    pg = [sd.ParticleGuidance(embedding="ro3")]
    expected = sd.sample(model, 3, steps=2, seed=0, cond={"frames": frames}, guidance=pg)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)
    # ... and the frames reach the network: another digit as condition, same seed, other samples
    other = moving_digits("circle", load_mnist("heldout").images[7:8], length=1)["frames"]
    moved = sd.sample(model, 3, steps=2, seed=0, cond={"frames": other}, guidance=pg)
    assert float((moved - expected).abs().max()) > 1e-3
    with pytest.raises(SteerdiffError, match="predicts the next frame: give its 1 previous frame"):
        model(torch.zeros(2, 1, 32, 32), 1.0)
    with pytest.raises(SteerdiffError, match=r"expected \(1, 1, 32, 32\)"):
        model(torch.zeros(2, 1, 32, 32), 1.0, frames=torch.zeros(1, 2, 32, 32))


@pytest.mark.parametrize("dataset, k", [("circle_jumping", 1), ("horizontal", 2)])
def test_conditional_evaluate_cli(tmp_path, dataset, k):
    import json

    from steerdiff.cli import main
    from steerdiff.training import TrainConfig, train

    name = {"circle_jumping": "circle"}.get(dataset, dataset)
    train(TrainConfig(dataset=name, cond_frames=k, net="tiny", steps=1, batch_size=4), tmp_path / "m", progress=False)
    out = tmp_path / "e.json"
    assert (
        main(
            [
                "evaluate",
                "--task",
                "conditional",
                "--dataset",
                dataset,
                "--model",
                str(tmp_path / "m"),
                "--method",
                "pg",
                "--embedding",
                "ro3",
                "--pg_factor",
                "1",
                "--batch_size",
                "4",
                "--batches",
                "2",
                "--steps",
                "2",
                "--seed",
                "0",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert len(d["batches"]) == 2 and len(d["batches"][0]["directions"]) == 4
    assert d["aggregate"]["l2"]["n_batches"] == 2
    assert ("p_right" in d) == (name == "horizontal")


def test_horizontal_decision_frames_arrive_at_the_centre():
    from steerdiff.sequences import arriving_at_centre

    digit = load_mnist("heldout").images[:1]
    for from_left, sign in ((True, 1), (False, -1)):
        f = arriving_at_centre(digit, 2, from_left=from_left)
        c = centroid(f[0, :, None].reshape(2, 1, 32, 32))
        assert abs(float(c[1, 1] - c[0, 1]) - 2 * sign) < 1e-9  # moved 2 px towards the centre
        assert abs(float(c[1, 0] - c[0, 0])) < 1e-9  # along the middle row
        ref = moving_digits("horizontal", digit, length=1, seed=0)["frames"]
        assert f.shape == (1, 2, 32, 32) and ref.shape[-2:] == f.shape[-2:]
