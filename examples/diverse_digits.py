"""Particle Guidance against iid sampling with the same seeds, on the shipped MNIST model and on
the exact ring of Gaussians; prints distinct digits / modes per batch and writes grids.

    python examples/diverse_digits.py        # writes examples_out/iid.png, examples_out/pg.png
"""

from pathlib import Path

import torch

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.io import save_samples

out = Path("examples_out")
model = sd.load("mnist")
evaluator = load_classifier("mnist-evaluator")  # the judge; PG is driven by a different network
rows = {"iid": [], "pg": []}
for seed in range(4):
    for name, guidance in (("iid", []), ("pg", [sd.ParticleGuidance()])):  # PG with the model's preset
        x = sd.sample(model, 10, seed=seed, guidance=guidance)
        digits = evaluator(x).argmax(1).tolist()
        print(f"seed {seed} {name:3s}: digits {digits} -> {len(set(digits))} distinct")
        rows[name].append(x)
for name, xs in rows.items():
    save_samples(torch.cat(xs), out / f"{name}.png", nrow=10)

ring = sd.ring()
for name, guidance in (("iid", []), ("pg", [sd.ParticleGuidance()])):
    modes = [len(set(ring.assign(sd.sample(ring, 10, seed=s, guidance=guidance)).tolist())) for s in range(10)]
    print(f"ring {name}: modes found per batch of 10 particles {modes}")
