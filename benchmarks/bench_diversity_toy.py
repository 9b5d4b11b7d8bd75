"""Diversity terms on exact Gaussian mixtures: modes covered per batch and the shift of the mode frequencies.

Two toys with the exact denoiser, Heun, 24 steps, the same seeds for every method:

- **70/30**: two 2-D Gaussians at x = +-2 (std 0.3) with masses 0.7 / 0.3, batches of 8: modes
  covered per batch (of 2), the share ``p`` of particles in the heavy mode (true 0.7; ± a 95% interval
  over batches) and the share of particle pairs in different modes (the best a batch of 8 can do at
  p = 0.7: 43-54%; iid: 42%).
- **ring**: the 10-mode ring (equal masses, std 0.07), batches of 10: modes covered per batch (of 10)
  and the total-variation distance between the pooled mode frequencies and the true uniform weights;
  "on a mode": the share of samples within 3 std of a mode's mean (iid: about 99%).

Methods: iid; Particle Guidance (identity RBF on x0, projected, the bench_prior_toy setting); SPELL at
several radii (absolute, in data units; full window, or only for sigma >= 0.3 ("s>=0.3")); the DPP
log-determinant and the order-2 kernel entropy (identity RBF on x0, median bandwidth x 0.3, window
(0.1, 20)) at a few strengths, with and without ``project=True``; kernel herding toward 256 of the toy's
own draws (``HerdingGuidance``, identity RBF on x0, bandwidth ``b`` x the references' median squared
distance, window (0.1, 20)).

    python benchmarks/bench_diversity_toy.py [--batches 200]
"""

import argparse

import torch

import steerdiff as sd
from steerdiff.diversity import SPELL, DPPGuidance, EntropyGuidance, HerdingGuidance


def methods_for(scale: float, model=None) -> dict:
    """Guidance lists by name; ``scale`` is the toy's typical within-mode distance unit; ``model``'s own
    256 draws (seed 10000, not a batch seed) are the herding rows' reference set."""
    w = (0.1, 20.0)
    out = {"iid": [], "pg strength 1": [sd.ParticleGuidance(strength=1.0, on="x0", window=w, project=True)]}
    for r in (0.5, 1.0, 2.0):
        out[f"spell r={r * scale:g}"] = [SPELL(radius=r * scale)]
    for r in (1.0, 2.0):
        out[f"spell r={r * scale:g} s>=0.3"] = [SPELL(radius=r * scale, window=(0.3, 20.0))]
    for s in (1.0, 3.0):
        out[f"dpp strength {s:g}"] = [DPPGuidance(strength=s, window=w, bandwidth_scale=0.3)]
    out["dpp project 1"] = [DPPGuidance(strength=1.0, window=w, bandwidth_scale=0.3, project=True)]
    for s in (1.0, 4.0):
        out[f"entropy strength {s:g}"] = [EntropyGuidance(strength=s, window=w, bandwidth_scale=0.3)]
    for s in (4.0, 16.0):
        out[f"entropy project {s:g}"] = [EntropyGuidance(strength=s, window=w, bandwidth_scale=0.3, project=True)]
    if model is not None:
        ref = sd.sample(model, 256, seed=10000, steps=24)
        for b in (0.1, 1.0, 30.0):
            for s in (1.0, 4.0, 16.0):
                out[f"herding b={b:g} s={s:g}"] = [
                    HerdingGuidance(reference=ref, strength=s, bandwidth_scale=b, window=w)
                ]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=200)
    a = ap.parse_args()

    two = sd.GaussianMixtureDenoiser(torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), 0.3, [0.7, 0.3])
    print(f"70/30 two-mode toy, {a.batches} batches of 8 (seeds 0..{a.batches - 1}), heun 24 steps")
    print(f"  {'method':22s} {'modes/batch':>11s} {'p(heavy)':>16s} {'|p - 0.7|':>9s} {'pairs disagreeing':>17s}")
    for name, g in methods_for(1.0, two).items():
        right = (
            torch.stack([sd.sample(two, 8, seed=b, steps=24, guidance=g) for b in range(a.batches)])[..., 0] > 0
        ).double()
        k = right.sum(1)
        p = float(right.mean())
        half = 1.96 * float(k.std()) / 8 / a.batches**0.5
        cover = float(((k > 0).double() + (k < 8).double()).mean())
        print(
            f"  {name:22s} {cover:11.3f} {p:9.3f} ± {half:.3f} {abs(p - 0.7):9.3f} {float((k * (8 - k) / 28).mean()):17.3f}",
            flush=True,
        )

    ring = sd.ring()
    print(f"\n10-mode ring (equal weights), {a.batches} batches of 10, heun 24 steps")
    print(f"  {'method':22s} {'modes/batch':>11s} {'TV to uniform':>13s} {'on a mode':>9s}")
    for name, g in methods_for(0.5, ring).items():
        xs = torch.stack([sd.sample(ring, 10, seed=b, steps=24, guidance=g) for b in range(a.batches)]).reshape(-1, 2)
        on_mode = float((torch.cdist(xs.double(), ring.means).min(1).values < 3 * ring.std).double().mean())
        modes = ring.assign(xs).reshape(a.batches, 10)
        cover = sum(len(set(row.tolist())) for row in modes) / a.batches
        freq = torch.bincount(modes.reshape(-1), minlength=10).double() / modes.numel()
        print(f"  {name:22s} {cover:11.2f} {0.5 * float((freq - 0.1).abs().sum()):13.3f} {on_mode:9.3f}", flush=True)


if __name__ == "__main__":
    main()
