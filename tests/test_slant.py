"""The second edit attribute, ``slant`` (issue #16): italic targets by a shear, a slant judge that reads
the shear back from the ink's moments, and ``--strength -1`` judged as ``upright``."""

import numpy as np
import pytest
import torch

from steerdiff.data import load_dataset
from steerdiff.edit import attribute_data, shear
from steerdiff.edit.evaluate import evaluate_edit, evaluate_edit_file, slant
from steerdiff.edit.workflow import TRAINABLE_ATTRIBUTES
from steerdiff.errors import SteerdiffError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("colormnist", "heldout").images[:64]


@pytest.mark.parametrize("k", [0.3, -0.2, 0.0])
def test_the_slant_judge_reads_a_shear_back(digits, k):
    change = slant(shear(digits, k)) - slant(digits)
    torch.testing.assert_close(change.mean(), torch.tensor(k), atol=0.02, rtol=0)
    assert float(change.std()) < 0.05  # per digit, not only on average


def test_slant_of_an_empty_image_is_zero():
    assert torch.equal(slant(torch.full((2, 3, 28, 28), -1.0)), torch.zeros(2))


def test_slant_pairs_are_the_digits_and_their_italic_versions():
    src, tgt, labels = attribute_data("slant", "heldout")
    assert torch.equal(tgt, shear(src)) and labels.max() <= 9
    assert "slant" in TRAINABLE_ATTRIBUTES
    with pytest.raises(SteerdiffError, match="green, thick or slant"):
        attribute_data("bold")


def test_evaluate_judges_slant_by_the_slant_and_keeps_width_as_information(digits):
    r = evaluate_edit(digits, shear(digits), attribute="slant", classifiers=("mnist-evaluator",))
    assert r["success"] == 1.0 and r["min_gain"] == 0.1
    assert abs(r["slant"]["change_mean"] - 0.3) < 0.02
    assert 0.8 < r["stroke_width"]["ratio_mean"] < 1.25  # a shear barely changes stroke width
    assert r["directional"]["mean_cosine"] > 0.5  # the prototype direction is the sheared digits'
    back = evaluate_edit(digits, shear(digits), attribute="upright", classifiers=("mnist-evaluator",))
    assert back["success"] == 0.0


def test_a_negative_strength_slant_file_is_judged_as_upright(digits, tmp_path):
    f = tmp_path / "e.npz"
    edited = shear(digits[:8], -0.3)
    np.savez(
        f,
        samples=edited.numpy(),
        source=digits[:8].numpy(),
        edited=edited.numpy(),
        labels=np.full(8, -1),
        attribute="slant",
        strength=-1.0,
    )
    r = evaluate_edit_file(f, classifiers=("mnist-evaluator",))
    assert r["attribute"] == "upright" and r["success"] == 1.0
