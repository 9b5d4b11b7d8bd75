"""Quality of the shipped MNIST models, judged by the shipped evaluator.

Unconditional: mean top-class confidence, class fractions, Fréchet distance (evaluator features) to
the 1,000 held-out digits, near-copy rate. Class-conditional: the evaluator's agreement with the
requested label.

    python benchmarks/mnist_quality.py [--n 1000] [--sampler heun] [--steps 18] [--seed 0]
"""

import argparse
import json
import time

import torch

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.quality import classify, mnist_quality


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sampler", default="heun")
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="optional JSON file for the numbers")
    a = ap.parse_args()
    evaluator = load_classifier("mnist-evaluator")
    t0 = time.perf_counter()
    x = sd.sample(sd.load(a.model), a.n, sampler=a.sampler, steps=a.steps, seed=a.seed, batch_size=250, progress=True)
    report = {
        "model": a.model,
        "sampler": a.sampler,
        "steps": a.steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "evaluator_heldout_accuracy": evaluator.config["heldout_accuracy"],
        **mnist_quality(x, evaluator),
    }
    cond = sd.load("mnist-cond")
    labels = torch.arange(a.n) % 10
    xc = sd.sample(
        cond,
        a.n,
        sampler=a.sampler,
        steps=a.steps,
        seed=a.seed,
        batch_size=250,
        cond={"class_labels": labels},
        progress=True,
    )
    probs, _ = classify(evaluator, xc)
    report["conditional_label_accuracy"] = float((probs.argmax(1) == labels).float().mean())
    report["conditional_mean_confidence"] = float(probs.max(1).values.mean())
    print(json.dumps(report, indent=2))
    if a.out:
        from steerdiff.checkpoint import write_json_atomic

        write_json_atomic(a.out, report)


if __name__ == "__main__":
    main()
