"""How much of a deterministic sample does its initial noise decide *linearly*?

Simplex initial noise (``--init-noise simplex``) couples the block means of the batch's starting
points; any such coupling can only spread what a linear function of the noise predicts. This
script measures that ceiling on the shipped models with the preset sampler (Heun, 18 levels, a
deterministic map from the initial noise to the sample):

- ``mnist`` without a label: the digit of each sample (the argmax of ``mnist-noisy``'s class
  probabilities, the labeller ``cover`` and the DPP rows use; not the benchmark's evaluator)
  predicted from the noise's ``b x b`` block means by a ridge-regularised linear softmax, fitted on
  the first ``--train`` samples and scored on the rest (chance: about 10%);
- ``mnist-cond`` at scale 1, per class: the samples' ``mnist-noisy`` features (standardised per
  class) regressed on the block means (ridge), fitted on the first ``--train-per-class`` samples of
  every class, held-out R^2 on the rest (0: the noise's block means predict nothing of the style).

Noise: ``torch.randn`` from generator seed 123 (label-free) and ``777 + c`` (class ``c``).

``--coupling-batches B`` also puts the simplex coupling on the most predictive subspace instead of the
block means: the 9 linear-discriminant directions of the 2 x 2 block means for the label-free digit
(fitted on all ``--n`` samples), and samples ``B`` batches of 10 (seeds 2000, 2001, ...) with iid
noise, block simplex noise and this discriminant simplex noise, each alone and under the DPP on
``mnist-noisy`` probabilities (strength 48, Gaussian Jacobian); the benchmark's evaluator judges
(distinct digits per batch, Fréchet distance to the held-out digits).

    python benchmarks/bench_noise_predictability.py                 # 4,000 + 10 x 300 samples
    python benchmarks/bench_noise_predictability.py --coupling-batches 100  # and the coupling rows
    python benchmarks/bench_noise_predictability.py --n 800 --per-class 60 --train 600 --train-per-class 40
"""

import argparse
import time

import torch
import torch.nn.functional as F

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.data import load_mnist
from steerdiff.fixed_condition import fixed_condition
from steerdiff.metrics import frechet_distance
from steerdiff.particles.embeddings import get_embedding
from steerdiff.particles.noise import SimplexNoise, simplex_coordinates
from steerdiff.quality import classify


def draw(den, z, cond, chunk=250):
    """Samples ``(N, 1, 28, 28)`` from the given standard-normal initial noise ``z``."""
    out = []
    for i in range(0, len(z), chunk):
        zb = z[i : i + chunk]
        out.append(sd.sample(den, len(zb), seed=0, cond=cond, initial_noise=lambda _z, _g, zb=zb: zb.to(_z)))
    return torch.cat(out)


def pooled(z, b):
    """Block means of ``z`` rescaled to unit variance: ``(N, (28 / b)^2)``."""
    return (F.avg_pool2d(z, b) * b).flatten(1).double()


def softmax_accuracy(x, y, n_train, wd):
    """Held-out accuracy of a ridge-regularised linear softmax fitted by L-BFGS."""
    w = torch.zeros(x.shape[1], 10, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(10, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x[:n_train] @ w + bias, y[:n_train]) + wd * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x[n_train:] @ w + bias).argmax(1) == y[n_train:]).double().mean())


def ridge_r2(xs, ys, n_train, lam):
    """Held-out R^2 of a ridge regression of features on noise coordinates; ``xs``, ``ys``: per class."""
    tr_x = torch.cat([x[:n_train] for x in xs])
    scale = [(y[:n_train].mean(0), y[:n_train].std(0) + 1e-2) for y in ys]
    live = torch.stack([s for _, s in scale]).min(0).values > 1e-1  # features alive in every class
    norm = [((y - m) / s)[:, live] for y, (m, s) in zip(ys, scale, strict=True)]
    tr_y = torch.cat([y[:n_train] for y in norm]).double()
    beta = torch.linalg.solve(tr_x.T @ tr_x + lam * torch.eye(tr_x.shape[1], dtype=tr_x.dtype), tr_x.T @ tr_y)
    te_x = torch.cat([x[n_train:] for x in xs])
    te_y = torch.cat([y[n_train:] for y in norm]).double()
    return float(1 - ((te_y - te_x @ beta) ** 2).sum() / (te_y**2).sum()), int(live.sum())


def discriminant_basis(z, y, b=2, k=9, ridge=0.1):
    """``(k, 784)`` orthonormal pixel-space directions: the top linear discriminants of the labels ``y``
    in the noise's ``b x b`` block means (each block-mean direction spread evenly over its pixels)."""
    x = pooled(z, b)
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    centred = torch.cat([x[y == c] - means[c] for c in range(10)])
    within = centred.T @ centred / len(x)
    between = ((means - x.mean(0)).T * (torch.bincount(y, minlength=10).double() / len(x))) @ (means - x.mean(0))
    _, vectors = torch.linalg.eigh(torch.linalg.solve(within + ridge * torch.eye(len(within), dtype=x.dtype), between))
    v = torch.linalg.qr(vectors.real.flip(1)[:, :k])[0]  # (F, k), orthonormal block-mean coordinates
    h = z.shape[-1] // b
    return (F.interpolate(v.T.reshape(k, 1, h, h), scale_factor=b, mode="nearest") / b).flatten(1)


class BasisSimplexNoise:
    """``initial_noise``: the batch's coordinates on an orthonormal ``basis`` ``(k, D)`` on a turned simplex
    (:func:`steerdiff.particles.noise.simplex_coordinates`); batches of at most ``k + 1``."""

    def __init__(self, basis):
        self.basis = basis

    def __call__(self, z, generator):
        assert 2 <= len(z) <= self.basis.shape[0] + 1, "one group per batch: 2 to k + 1 samples"
        flat = z.flatten(1).double()
        coords = simplex_coordinates(len(z), self.basis.shape[0], generator)
        return (flat + (coords - flat @ self.basis.T) @ self.basis).to(z.dtype).view_as(z)


def coupling_rows(basis, batches):
    """The coupling table: distinct digits and Fréchet distance per initial noise, alone and under the DPP."""
    evaluator = load_classifier("mnist-evaluator")
    _, held = classify(evaluator, load_mnist("heldout").images)
    model = sd.load("mnist")
    print(f"\n## mnist, no label: {batches} batches of 10, seeds 2000-, by the evaluator\n")
    print("| initial noise | guidance | distinct digits per 10 | Fréchet | seconds per batch |")
    print("|---|---|---|---|---|")
    dpp = {"strength": 48.0, "jacobian": "gaussian", "embedding": "classifier-probs"}
    for guide in ("none", "dpp-g mnist-noisy probs 48"):
        for name, noise in (
            ("iid", None),
            ("block simplex", SimplexNoise()),
            ("discriminant simplex", BasisSimplexNoise(basis)),
        ):
            xs, t0 = [], time.perf_counter()
            for seed in range(2000, 2000 + batches):
                den, terms = fixed_condition(
                    model,
                    "iid" if guide == "none" else "dpp",
                    seed=seed,
                    options={} if guide == "none" else dpp,
                    labelled=False,
                )
                xs.append(sd.sample(den, 10, seed=seed, guidance=terms, **({"initial_noise": noise} if noise else {})))
            sec = (time.perf_counter() - t0) / batches
            p, f = classify(evaluator, torch.cat(xs))
            d = [len(set(p[i : i + 10].argmax(1).tolist())) for i in range(0, len(p), 10)]
            print(
                f"| {name} | {guide} | {sum(d) / len(d):.2f} | {frechet_distance(f, held):.1f} | {sec:.2f} |",
                flush=True,
            )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000, help="label-free samples (default 4000)")
    ap.add_argument("--train", type=int, default=3000, help="of which fitted on (default 3000)")
    ap.add_argument("--per-class", type=int, default=300, help="mnist-cond samples per class (default 300)")
    ap.add_argument("--train-per-class", type=int, default=220, help="of which fitted on (default 220)")
    ap.add_argument("--coupling-batches", type=int, default=0, help="batches of the coupling table (default 0: skip)")
    a = ap.parse_args()
    if not 0 < a.train < a.n or not 0 < a.train_per_class < a.per_class:
        ap.error("need 0 < --train < --n and 0 < --train-per-class < --per-class (held-out samples to score on)")
    if a.coupling_batches < 0:
        ap.error(f"--coupling-batches must be 0 (skip) or positive, got {a.coupling_batches}")
    t0 = time.perf_counter()
    probs, feats = get_embedding("classifier-probs"), get_embedding("classifier")

    z = torch.randn(a.n, 1, 28, 28, generator=torch.Generator().manual_seed(123))
    x = draw(sd.load("mnist"), z, {})
    with torch.no_grad():
        y = probs(x, torch.zeros(len(x))).flatten(1).argmax(1)
    print(
        f"\n## mnist, no label: {a.n} samples, digit predicted from the noise's block means ({time.perf_counter() - t0:.0f} s)\n"
    )
    print("| block | coordinates | held-out accuracy, ridge 1e-3 | ridge 1e-2 | ridge 1e-1 |")
    print("|---|---|---|---|---|")
    for b in (7, 4, 2, 1):
        accs = [softmax_accuracy(pooled(z, b), y, a.train, wd) for wd in (1e-3, 1e-2, 1e-1)]
        print(f"| {b} | {(28 // b) ** 2} | " + " | ".join(f"{100 * v:.1f}%" for v in accs) + " |", flush=True)
    if a.coupling_batches:
        coupling_rows(discriminant_basis(z.double(), y), a.coupling_batches)

    den, _ = fixed_condition(sd.load("mnist-cond"), "iid", scale=1.0, labelled=True)
    zs, fs = [], []
    for c in range(10):
        zc = torch.randn(a.per_class, 1, 28, 28, generator=torch.Generator().manual_seed(777 + c))
        with torch.no_grad():
            xc = draw(den, zc, {"class_labels": c}, chunk=150)
            fs.append(feats(xc, torch.zeros(len(xc))).flatten(1))
        zs.append(zc)
    print(
        f"\n## mnist-cond, scale 1: {a.per_class} samples per class, mnist-noisy features from the noise's block means "
        f"({time.perf_counter() - t0:.0f} s)\n"
    )
    print("| block | coordinates | held-out R^2, ridge 1 | ridge 30 | ridge 300 |")
    print("|---|---|---|---|---|")
    for b in (7, 4, 2, 1):
        r2 = [ridge_r2([pooled(zc, b) for zc in zs], fs, a.train_per_class, lam) for lam in (1.0, 30.0, 300.0)]
        print(
            f"| {b} | {(28 // b) ** 2} | " + " | ".join(f"{v:.3f}" for v, _ in r2) + f" | ({r2[0][1]} live features)",
            flush=True,
        )


if __name__ == "__main__":
    main()
