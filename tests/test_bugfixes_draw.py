"""Bugs found while moving the command line's workflows into the library (#15): stratified selection with
class labels, ``report`` on a model that is not a digit model, ``--method diverse`` without a label."""

import json

import pytest
import torch

from steerdiff.cli import main
from steerdiff.core.api import sample
from steerdiff.core.denoisers import label_cond
from steerdiff.errors import SteerdiffError
from steerdiff.evaluation.report import write_report
from steerdiff.particles.draw import draw
from steerdiff.particles.stratified import stratified_sample
from steerdiff.toy import GaussianMixtureDenoiser


class LabelDenoiser(torch.nn.Module):
    """A class-conditional denoiser whose clean estimate is the constant image ``label / 10``: every sample
    ends exactly at its label's image, so a sample says which label drew it. Records the labels it gets."""

    sigma_min, sigma_max, sigma_data = 0.002, 80.0, 0.5
    sample_shape = (1, 4, 4)
    num_classes = 10

    def __init__(self, mix: float = 0.0):
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.mix = mix  # > 0: the estimate also depends on x, so the samples depend on the noise

    def forward(self, x, sigma, class_labels=None):
        labels = label_cond(x, class_labels, self.num_classes, None, True)["class_labels"]  # the network's check
        self.seen.append(labels)
        return (labels.to(x.dtype) / 10).view(-1, 1, 1, 1) + self.mix * torch.tanh(x)


def _labels_of(x):
    return (x.flatten(1).mean(1) * 10).round().long()


@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 0, 1]])
def test_stratified_keeps_each_samples_label(labels):
    den = LabelDenoiser()
    want = torch.tensor(labels)
    x = stratified_sample(den, len(labels), candidates=3, embedding="identity", seed=0, cond={"class_labels": want})
    assert torch.equal(_labels_of(x), want)  # output i carries label i
    # the candidates were drawn with the requested labels, in the requested proportions
    counts = torch.bincount(torch.cat(den.seen), minlength=10)
    assert torch.equal(counts * len(labels), torch.bincount(want, minlength=10) * counts.sum())


def test_stratified_single_label_is_a_broadcast():
    """One label for all samples draws the same candidates as a single int label would (same bytes)."""
    den = LabelDenoiser()
    a = stratified_sample(
        den, 4, candidates=3, embedding="identity", seed=2, cond={"class_labels": torch.full((4,), 5)}
    )
    b = stratified_sample(den, 4, candidates=3, embedding="identity", seed=2, cond={"class_labels": 5})
    assert torch.equal(a, b)


def test_stratified_one_candidate_is_iid_sampling_with_the_labels_as_given():
    den, labels = LabelDenoiser(mix=0.3), torch.tensor([0, 1, 2, 0])
    a = stratified_sample(den, 4, candidates=1, embedding="identity", seed=3, cond={"class_labels": labels})
    b = sample(den, 4, seed=3, cond={"class_labels": labels})
    assert torch.equal(a, b) and not torch.equal(a, sample(den, 4, seed=4, cond={"class_labels": labels}))


def test_draw_stratified_with_class_label_draws_that_class():
    """``steerdiff sample --model mnist-cond --method stratified --class-label 3``: the kept samples are 3s
    under the shipped evaluator."""
    from steerdiff.train.classifier import load_classifier

    drawn = draw("mnist-cond", method="stratified", class_label=3, n=4, candidates=2, steps=10, seed=0, quiet=True)
    assert drawn.x.shape == (4, 1, 28, 28) and drawn.extra["labels"].tolist() == [3] * 4
    clf = load_classifier("mnist-evaluator")
    with torch.no_grad():
        pred = clf(drawn.x).argmax(1)
    assert int((pred == 3).sum()) >= 3, pred.tolist()


def test_report_on_a_model_without_quality_plots_diversity(tmp_path):
    """A non-digit model with --features and no real data has no quality value (no classifier, no Fréchet
    distance): the report plots diversity against strength instead of crashing."""
    means = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = GaussianMixtureDenoiser(means, std=0.1, preset={"sampler": "heun", "steps": 4})
    out = tmp_path / "report"
    rep = write_report(
        out, model=model, strengths=[0, 5], n=4, batches=2, features=lambda x: x.flatten(1), progress=False
    )
    assert [r["quality"] for r in rep["rows"]] == [None, None]
    assert {"tradeoff.png", "features.png", "index.html"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "report.json").read_text())["rows"][1]["metrics"]["aggregate"]["vendi"]["mean"] > 0


def test_diverse_without_class_label_names_the_flag(tmp_path, capsys):
    out = str(tmp_path / "x.npy")
    assert main(["sample", "--model", "mnist-cond", "--method", "diverse", "--n", "4", "--quiet", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--class-label" in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SteerdiffError, match="--class-label"):
        draw("mnist-cond", method="diverse", n=4, steps=2, quiet=True)


def test_prior_samples_with_a_class_label_and_a_pilot_of_another_size():
    """The pilot (4 draws) of a labelled batch of 6 draws the same class; several labels are an error."""
    import pytest

    from steerdiff.errors import SteerdiffError
    from steerdiff.particles.draw import draw

    opts = dict(method="pg", kernel="rbf", prior_samples=4, n=6, steps=3, quiet=True)
    x = draw("mnist-cond", class_label=3, **opts).x
    assert x.shape == (6, 1, 28, 28) and bool(x.isfinite().all())
    with pytest.raises(SteerdiffError, match="give one --class-label"):
        draw("mnist-cond", class_label="cycle", **opts)
