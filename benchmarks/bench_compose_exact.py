"""Compositional sculpting on exact 2-D Gaussian-mixture bases: total-variation distance between
10,000 samples and the exact composed distribution (over the shared components), for the harmonic
mean (1, 2), the contrasts (1, 1) and (2, 2), and the 3-way composition (1, 2, 3).

    python benchmarks/bench_compose_exact.py [--n 10000] [--steps 64]
"""

import argparse

import torch

import steerdiff as sd
from steerdiff.compose import ExactLabelPosterior, compose
from steerdiff.toy import GaussianMixtureDenoiser

MEANS = torch.tensor([[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
BASES = [
    GaussianMixtureDenoiser(MEANS, 0.1, w)
    for w in ([0.5, 0.3, 0.1, 0.1], [0.05, 0.3, 0.45, 0.2], [0.3, 0.05, 0.05, 0.6])
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=64)
    a = ap.parse_args()
    for bases, y in (((0, 1), (1, 2)), ((0, 1), (1, 1)), ((0, 1), (2, 2)), ((0, 1, 2), (1, 2, 3))):
        bs = [BASES[i] for i in bases]
        clf = ExactLabelPosterior(bs, num_labels=len(y))
        x = sd.sample(compose(bs, clf, y=y), a.n, seed=0, steps=a.steps)
        emp = torch.bincount(BASES[0].assign(x), minlength=4).double() / a.n
        target = clf.target_weights(y)
        print(
            f"y={y}: target {target.numpy().round(3).tolist()} sampled {emp.numpy().round(3).tolist()} "
            f"TV {0.5 * float((emp - target).abs().sum()):.4f}"
        )


if __name__ == "__main__":
    main()
