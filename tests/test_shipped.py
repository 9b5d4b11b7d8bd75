"""The models that ship inside the package: they load by name, and their recorded numbers hold."""
import torch

import steerdiff as sd
from steerdiff.classifier import accuracy, load_classifier
from steerdiff.data import load_mnist
from steerdiff.errors import SteerdiffError
from steerdiff.models import weights_dir


def test_shipped_weights_fit_the_budget_and_are_safetensors():
    files = [p for p in weights_dir().rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 60 * 2 ** 20
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt")]


def test_mnist_model_loads_and_samples():
    model = sd.load("mnist")
    assert isinstance(model, sd.EDMDenoiser) and model.sample_shape == (1, 28, 28)
    assert model.config["train"]["command"].startswith("steerdiff train")
    assert "particles" in model.preset
    x = sd.sample(model, 2, steps=4, seed=0)
    assert x.shape == (2, 1, 28, 28) and float(x.abs().max()) <= 1


def test_mnist_cond_needs_labels_and_uses_them():
    model = sd.load("mnist-cond")
    try:
        model(torch.zeros(1, 1, 28, 28), 1.0)
        raise AssertionError("expected an error")
    except SteerdiffError as e:
        assert "class_labels" in str(e)
    x = torch.randn(2, 1, 28, 28)
    a = model(x, 1.0, class_labels=torch.tensor([1, 1]))
    b = model(x, 1.0, class_labels=torch.tensor([7, 7]))
    assert float((a - b).abs().max()) > 1e-3


def test_evaluator_accuracy_is_what_it_records():
    held = load_mnist("heldout")
    for name in ("mnist-evaluator", "mnist-noisy"):
        clf = load_classifier(name)
        acc = accuracy(clf, held.images, held.labels)
        assert acc >= 0.97 and abs(acc - clf.config["heldout_accuracy"]) < 1e-6


def test_frame_models_ship_and_take_their_condition():
    from steerdiff.sequences import moving_digits
    held = load_mnist("heldout").images[:1]
    for name, k in (("circle", 1), ("horizontal", 2)):
        model = sd.load(name)
        assert model.cond_frames == k and model.sample_shape == (1, 32, 32)
        assert model.preset["particles"]["pg"]["embedding"] == "centroid"
        frames = moving_digits(name, held, length=k, seed=0)["frames"][:, -k:]
        x = sd.sample(model, 2, steps=4, seed=0, cond={"frames": frames})
        assert x.shape == (2, 1, 32, 32)
        try:
            model(torch.zeros(1, 1, 32, 32), 1.0)
            raise AssertionError("expected an error")
        except SteerdiffError as e:
            assert "frames" in str(e)


def test_colormnist_sets_and_joint_classifiers_ship():
    from steerdiff.joint import shipped_joint_classifier
    for short in ("M1", "M2", "MN1", "MN2", "MN3", "colormnist"):
        assert sd.load(short).sample_shape == (3, 28, 28)
    clf = shipped_joint_classifier(["M1", "M2"])
    assert clf.num_bases == 2 and clf.num_labels == 2 and "1,2" in clf.config["default_guidance_scale"]
    assert shipped_joint_classifier(["MN1", "MN2", "MN3"]).num_labels == 3
    assert sd.load("mnist-0to5").sample_shape == (1, 28, 28)


def test_compose_command_on_shipped_bases(tmp_path):
    from steerdiff.cli import main
    out = tmp_path / "c.npy"
    assert main(["compose", "--base", "M1", "M2", "--y", "1", "2", "--n", "2", "--steps", "4", "--quiet", "--out", str(out)]) == 0
    import numpy as np
    x = np.load(out)
    assert x.shape == (2, 3, 28, 28) and np.abs(x).max() <= 1


def test_mnist_pg_preset_gives_a_different_digit_per_particle():
    """The shipped preset (Potts kernel on labels through the model's own conditionals): 10
    particles become 9-10 different digits as judged by the evaluator (iid batches average 6.6)."""
    from steerdiff.quality import classify
    model = sd.load("mnist")
    assert model.preset["particles"]["pg"]["kernel"] == "label"
    evaluator = load_classifier("mnist-evaluator")
    for seed in (0, 1):
        p, _ = classify(evaluator, sd.sample(model, 10, seed=seed, steps=10, guidance=[sd.ParticleGuidance()]))
        assert len(set(p.argmax(1).tolist())) >= 9
