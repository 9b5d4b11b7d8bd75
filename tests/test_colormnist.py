"""ColorMNIST sets, joint classifiers and the composition command."""

import itertools

import pytest
import torch

import steerdiff as sd
from steerdiff.cli import main
from steerdiff.compose_eval import class_histogram, color_digit_classes, exact_target, total_variation
from steerdiff.data import COLOR_SETS, SET_ORDER, colorize, load_dataset
from steerdiff.errors import SteerdiffError
from steerdiff.joint import (
    JointClassifier,
    _outer,
    load_joint_classifier,
    shipped_joint_classifier,
    train_joint_classifier,
)


@pytest.mark.parametrize("name", list(COLOR_SETS))
def test_color_sets_hold_exactly_their_digit_colour_pairs(name):
    d = load_dataset(name)
    pairs = {(int(v) % 10, int(v) // 10) for v in d.labels.unique()}
    assert pairs == set(COLOR_SETS[name])
    # the digit sits in its colour's channel, every other channel is black
    colour = d.labels // 10
    for c in colour.unique().tolist():
        x = d.images[colour == c]
        assert bool((x[:, 1 - c] == -1).all()) and bool((x[:, 2] == -1).all()) and float(x[:, c].max()) > 0.9
    # each allowed pair equally often (every digit in every allowed colour)
    counts = torch.bincount(d.labels, minlength=20)[[dd + 10 * c for dd, c in COLOR_SETS[name]]]
    assert len(set(counts.tolist())) <= 2 if name == "colormnist" else len(set(counts.tolist())) == 1


def test_set_conditional_data_balances_the_sets():
    d = load_dataset("colormnist-sets")
    counts = torch.bincount(d.labels)
    assert len(counts) == len(SET_ORDER) and len(set(counts.tolist())) == 1
    m1 = d.images[d.labels == SET_ORDER.index("colormnist-m1")]
    assert set(map(int, color_digit_classes(m1[:200]).unique())) <= {0, 10}


def test_subdigit_sets_and_short_names():
    assert set(load_dataset("mnist-0to5").labels.unique().tolist()) == set(range(6))
    assert set(load_dataset("mnist-4to9").labels.unique().tolist()) == set(range(4, 10))
    assert torch.equal(load_dataset("M1").images, load_dataset("colormnist-m1").images)


def test_colour_digit_judge_on_held_out_colormnist():
    d = load_dataset("colormnist", "heldout")
    pred = color_digit_classes(d.images)
    assert bool(((pred // 10) == (d.labels // 10)).all())  # colour by the ink rule: exact
    assert float(((pred % 10) == (d.labels % 10)).float().mean()) > 0.95  # digit by the evaluator


def test_exact_targets_by_hand():
    """M1 = {red 0, green 0}, M2 = {green 0, green 1}: the harmonic mean is green 0; the contrast
    (1, 1) has p_mix(c) q_c(1)^2 = red 0: 1/4 * 1, green 0: 1/2 * 1/4 -> (2/3, 1/3)."""
    t = exact_target(["M1", "M2"], (1, 2))
    assert float(t[10]) == pytest.approx(1.0)
    t = exact_target(["M1", "M2"], (1, 1))
    assert float(t[0]) == pytest.approx(2 / 3) and float(t[10]) == pytest.approx(1 / 3)
    assert float(exact_target(["MN1", "MN2", "MN3"], (1, 2, 3))[10]) == pytest.approx(1.0)
    t = exact_target(["mnist-0to5", "mnist-4to9"], (1, 2))
    assert float(t[4]) == pytest.approx(0.5) and float(t[5]) == pytest.approx(0.5)
    assert total_variation(class_histogram(torch.tensor([4, 5, 5, 9]), 10), t) == pytest.approx(0.25)


@pytest.mark.parametrize("k", [2, 3])
def test_joint_classifier_is_symmetric_and_normalised_by_construction(k):
    torch.manual_seed(0)
    clf = JointClassifier(3, num_bases=3, num_labels=k).eval()
    x = torch.randn(5, 3, 28, 28)
    lj = clf(x, torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0]))
    assert lj.shape == (5,) + (3,) * k
    for p in itertools.permutations(range(1, k + 1)):
        torch.testing.assert_close(lj, lj.permute(0, *p))
    torch.testing.assert_close(lj.exp().flatten(1).sum(1), torch.ones(5))


def test_outer_product_of_label_distributions():
    p = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    torch.testing.assert_close(_outer(p, 2), p[:, :, None] * p[:, None, :])
    torch.testing.assert_close(_outer(p, 3), p[:, :, None, None] * p[:, None, :, None] * p[:, None, None, :])


def test_joint_classifier_training_learns_the_source_base(tmp_path):
    """Four short epochs on M1 / M2 (two warm-up, two bootstrapped): red and green are easy, so the
    y_1 accuracy on clean held-out images nears its Bayes limit of 0.75 (green zeros are shared)."""
    conf = train_joint_classifier(tmp_path / "j", ["M1", "M2"], epochs=4, warmup_epochs=2, progress=False)
    assert 0.62 < conf["heldout_accuracy_y1"]["0.0"] <= 0.76
    clf = load_joint_classifier(tmp_path / "j")
    assert clf.num_bases == 2 and clf.num_labels == 2 and clf.config["bases"] == ["colormnist-m1", "colormnist-m2"]


def test_conditioned_model_fixes_the_condition():
    from steerdiff.denoisers import EDMDenoiser
    from steerdiff.nets import build_unet, unet_config

    torch.manual_seed(0)
    net = build_unet(unet_config("tiny", sample_size=8, in_channels=1, out_channels=1, num_class_embeds=3)).eval()
    model = EDMDenoiser(net, sample_shape=(1, 8, 8), num_classes=3)
    c = sd.condition(model, class_labels=2)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(c(x, 0.7), model(x, 0.7, class_labels=torch.full((4,), 2)))


def test_shipped_joint_classifier_lookup_errors():
    with pytest.raises(SteerdiffError, match="order of its training"):
        shipped_joint_classifier(["M2", "M1"])
    with pytest.raises(SteerdiffError, match="no shipped classifier"):
        shipped_joint_classifier(["M1", "MN1"])


def test_compose_cli_bad_input(tmp_path, capsys):
    assert main(["compose", "--base", "M1", "--y", "1", "--out", str(tmp_path / "x.npy")]) == 2
    assert "at least 2 base models" in capsys.readouterr().err
    assert main(["compose", "--base", "mnist", "mnist", "--y", "1", "2", "--out", str(tmp_path / "x.npy")]) == 2
    assert "no shipped classifier" in capsys.readouterr().err
    assert main(["compose", "--base", "M1", "M2", "--y", "1", "2", "--out", str(tmp_path / "x.txt")]) == 2
    assert "suffix" in capsys.readouterr().err
    assert (
        main(
            ["compose", "--base", "M1", "M2", "--y", "1", "1", "--set-guidance", "-1", "--out", str(tmp_path / "x.npy")]
        )
        == 2
    )
    assert "--set-guidance must be >= 0" in capsys.readouterr().err
    assert (
        main(
            [
                "compose",
                "--base",
                "mnist-0to5",
                "mnist-4to9",
                "--y",
                "1",
                "2",
                "--set-guidance",
                "1",
                "--out",
                str(tmp_path / "x.npy"),
            ]
        )
        == 2
    )
    assert "ColorMNIST set models" in capsys.readouterr().err


def test_set_guidance_is_cfg_against_the_all_digit_set():
    """load(set, set_guidance=w) = D(x|S) + w (D(x|S) - D(x|all)) of the set-conditional network,
    0 the plain set model; compose uses the default recorded with the shipped classifier."""
    net = sd.load("colormnist-sets")
    x, s = torch.randn(3, 3, 28, 28), torch.tensor([2.0, 0.5, 5.0])
    d_s = net(x, s, class_labels=torch.full((3,), SET_ORDER.index("colormnist-m1")))
    d_all = net(x, s, class_labels=torch.full((3,), SET_ORDER.index("colormnist")))
    torch.testing.assert_close(sd.load("M1", set_guidance=1.5)(x, s), d_s + 1.5 * (d_s - d_all), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sd.load("M1", set_guidance=0)(x, s), d_s)
    assert shipped_joint_classifier(["M1", "M2"]).config["default_set_guidance"] == 1.0


def test_colorize_puts_digits_in_their_channel():
    g = torch.rand(2, 1, 4, 4) * 2 - 1
    x = colorize(g, torch.tensor([0, 1]))
    torch.testing.assert_close(x[0, 0], g[0, 0])
    torch.testing.assert_close(x[1, 1], g[1, 0])
    assert bool((x[0, 1:] == -1).all()) and bool((x[1, [0, 2]] == -1).all())
