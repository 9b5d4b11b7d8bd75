"""Keeping a prior while spreading a batch, on an exact two-mode mixture (issue: moving digits).

Modes of mass 0.7 / 0.3 (2-D Gaussians at x = +-2, std 0.3, the exact denoiser), batches of 8: the
share of particles in the 0.7 mode ("p(right)") and the share of particle pairs in a batch that land
in different modes, for iid sampling, Particle Guidance, prior-preserving PG (MMD to a pilot of 256
iid trajectories) at several strengths, and stratified selection from k x 8 iid draws. The best a
batch of 8 can do while keeping p = 0.7 is 5 or 6 particles in the heavy mode: 43-54% of pairs
disagreeing (iid: 42%).

    python benchmarks/bench_prior_toy.py [--batches 300]
"""

import argparse

import torch

import steerdiff as sd
from steerdiff.particles import Pilot
from steerdiff.stratified import stratified_sample


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=300)
    a = ap.parse_args()
    m = sd.GaussianMixtureDenoiser(torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), 0.3, [0.7, 0.3])
    pilot = Pilot(m, 256, seed=12345, steps=24)

    def pg(strength, prior=None):
        return lambda seed: sd.sample(
            m,
            8,
            seed=seed,
            steps=24,
            guidance=[sd.ParticleGuidance(strength=strength, on="x0", window=(0.1, 20), project=True, prior=prior)],
        )

    methods = {"iid": lambda seed: sd.sample(m, 8, seed=seed, steps=24), "pg strength 1": pg(1.0)}
    for s in (1.0, 3.0, 10.0):
        methods[f"pg + pilot, strength {s:g}"] = pg(s, pilot)
    for k in (2, 4, 8):
        methods[f"stratified, {k} x 8 draws"] = lambda seed, k=k: stratified_sample(
            m, 8, candidates=k, seed=seed, steps=24
        )
    print(f"two modes 0.7 / 0.3, {a.batches} batches of 8 (seeds 0..{a.batches - 1})")
    for name, draw in methods.items():
        right = (torch.stack([draw(b) for b in range(a.batches)])[..., 0] > 0).double()
        k = right.sum(1)
        p = float(right.mean())
        half = 1.96 * float(k.std()) / 8 / a.batches**0.5
        print(
            f"  {name:28s} p {p:.3f} ± {half:.3f}   pairs disagreeing {float((k * (8 - k) / 28).mean()):.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
