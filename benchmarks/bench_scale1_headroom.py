"""How much within-class diversity can a fixed-label batch gain at scale 1 without moving the pooled
distribution? Two numbers for ``mnist-cond`` (docs/benchmarks.md, "Classifier guidance at scale 1"):

1. the Vendi score (cosine kernel, q = 1, evaluator features) of batches of 10 *real* held-out digits of
   one class, against which the iid batches' score is to be read;
2. how linearly the initial noise decides the class-centred output: a ridge map from the initial noise
   (784 numbers) to the sample (784 pixels, minus its class's mean over the fitting samples), fitted on
   80% of ``--per-class`` x 10 samples and scored (R^2, with the training R^2 beside it) on the rest; a
   stratification of the noise along fixed directions can only spread what such a map explains.

    OMP_NUM_THREADS=2 python benchmarks/bench_scale1_headroom.py     # about 5 minutes on 2 cores
"""

import argparse

import numpy as np
import torch

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.data import load_mnist
from steerdiff.metrics import vendi_score
from steerdiff.quality import classify


def real_vendi(n: int = 10) -> tuple[float, int]:
    """Mean Vendi score of consecutive batches of ``n`` held-out digits of one class, and the batch count."""
    held = load_mnist("heldout")
    _, f = classify(load_classifier("mnist-evaluator"), held.images)
    scores = []
    for c in range(10):
        fc = f[held.labels == c]
        scores += [vendi_score(fc[i : i + n]) for i in range(0, len(fc) - n + 1, n)]
    return float(np.mean(scores)), len(scores)


def noise_to_output(per_class: int, lams=(10.0, 100.0, 1000.0)) -> dict:
    """Held-out R^2 of ridge maps (one per ``lams``) from initial noise to the class-centred samples."""
    model = sd.load("mnist-cond")
    zs, xs, ys = [], [], []
    for c in range(10):
        for b in range(per_class // 50):
            rec = {}

            def keep(z, generator, rec=rec):
                rec["z"] = z.clone()
                return z

            xs.append(sd.sample(model, 50, seed=5000 + 1000 * c + b, cond={"class_labels": c}, initial_noise=keep))
            zs.append(rec["z"])
            ys += [c] * 50
    z, x, y = (torch.cat(zs).flatten(1).double(), torch.cat(xs).flatten(1).double(), torch.tensor(ys))
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(z))
    tr, te = perm[:cut], perm[cut:]
    fit = torch.zeros(len(z), dtype=torch.bool)
    fit[tr] = True
    for c in range(10):  # class means from the fitting samples only
        x[y == c] -= x[(y == c) & fit].mean(0)
    out = {}
    for lam in lams:
        eye = torch.eye(z.shape[1], dtype=torch.float64)
        a = torch.linalg.solve(z[tr].T @ z[tr] + lam * eye, z[tr].T @ x[tr])
        r2 = [float(1 - ((x[i] - z[i] @ a) ** 2).sum() / (x[i] ** 2).sum()) for i in (tr, te)]
        out[lam] = tuple(r2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--per-class", type=int, default=100, help="samples per class for the ridge map, a multiple of 50 (default 100)"
    )
    a = ap.parse_args()
    if a.per_class < 50 or a.per_class % 50:
        ap.error(f"--per-class {a.per_class}: use a multiple of 50 (the samples are drawn 50 at a time)")
    v, k = real_vendi()
    print(f"real held-out digits, batches of 10 of one class: Vendi {v:.3f} ({k} batches)")
    for lam, (fit, held) in noise_to_output(a.per_class).items():
        print(
            f"ridge map initial noise -> class-centred sample, lambda {lam:g}: R^2 {fit:.3f} fitted, {held:.3f} held out"
        )


if __name__ == "__main__":
    main()
