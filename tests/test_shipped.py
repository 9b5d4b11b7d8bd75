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
