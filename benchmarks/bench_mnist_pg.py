"""Particle Guidance on the shipped MNIST model: distinct digits per batch, quality and cost.

The preset is PG's Potts kernel on class labels, sampled through the model's own class conditionals
(``kernel="label"``); for comparison, the gradient form of a class potential (``kernel="dot"`` on the
noise-conditional classifier's probabilities, the previous preset) on ``x`` and on the estimate ``x0``.

Batches of 10 particles with seeds 0..B-1, the same seeds for every method. For each method: the
number of distinct digits per batch (judged by the shipped evaluator, which is not the classifier
that drives PG), mean evaluator confidence, Fréchet distance (evaluator features) of all samples to
the 1,000 held-out digits, and wall time per batch relative to iid.

    python benchmarks/bench_mnist_pg.py [--batches 30] [--model mnist]
"""

import argparse
import time

import torch

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.data import load_mnist
from steerdiff.metrics import frechet_distance
from steerdiff.quality import classify


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--model", default="mnist")
    a = ap.parse_args()
    model = sd.load(a.model)
    evaluator = load_classifier("mnist-evaluator")
    _, held = classify(evaluator, load_mnist("heldout").images)
    methods = {
        "iid": [],
        "pg (preset)": [sd.ParticleGuidance()],
        "pg cheap: ro3 on x": [sd.ParticleGuidance(embedding="ro3", kernel="rbf", on="x", strength=1.0, project=False)],
        # the gradient form of the same potential: the expected number of same-class pairs (dot kernel
        # on the noisy classifier's probabilities), differentiated through the classifier
        "pg dot kernel on x": [
            sd.ParticleGuidance(kernel="dot", on="x", strength=30.0, window=(0.5, 80.0), project=True)
        ],
        "pg dot kernel on x0": [
            sd.ParticleGuidance(kernel="dot", on="x0", strength=30.0, window=(0.5, 80.0), project=True)
        ],
    }
    print(f"model {a.model}, 10 particles x {a.batches} batches (seeds 0..{a.batches - 1}), preset {model.preset}")
    base_time = None
    for name, guidance in methods.items():
        distinct, conf, feats = [], [], []
        t0 = time.perf_counter()
        for seed in range(a.batches):
            x = sd.sample(model, 10, seed=seed, guidance=guidance)
            p, f = classify(evaluator, x)
            distinct.append(len(set(p.argmax(1).tolist())))
            conf.append(float(p.max(1).values.mean()))
            feats.append(f)
        sec = (time.perf_counter() - t0) / a.batches
        base_time = base_time or sec
        d = torch.tensor(distinct, dtype=torch.float64)
        print(
            f"{name:22s} distinct digits {float(d.mean()):.2f} ± {1.96 * float(d.std()) / a.batches**0.5:.2f}   "
            f"confidence {sum(conf) / len(conf):.3f}   Fréchet {frechet_distance(torch.cat(feats), held):.1f}   "
            f"{sec:.2f} s/batch ({sec / base_time:.2f}x iid)"
        )


if __name__ == "__main__":
    main()
