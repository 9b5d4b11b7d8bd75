"""Ring of 10 Gaussians (radius 1, variance 0.005), 10 particles: modes found and quality.

For each method: modes found per run (mean over runs, with a 95% interval), the share of particles
within 3 standard deviations of a mode, and seconds per run. Methods: iid Heun; Particle Guidance
with the ring's preset (``ParticleGuidance()``: on x0, narrow RBF, force projected off the score);
the same without the projection (the plain PG update); SVGD repulsion with its preset.

    python benchmarks/bench_ring.py [--runs 100] [--steps 32]
"""

import argparse
import time

import torch

import steerdiff as sd


def evaluate(model, guidance, runs, steps):
    modes, inside = [], []
    t0 = time.perf_counter()
    for seed in range(runs):
        x = sd.sample(model, 10, seed=seed, steps=steps, guidance=guidance)
        k = model.assign(x)
        modes.append(len(set(k.tolist())))
        inside.append(float(((x.double() - model.means[k]).norm(dim=1) <= 3 * model.std).double().mean()))
    m = torch.tensor(modes, dtype=torch.float64)
    half = 1.96 * float(m.std()) / runs**0.5
    return float(m.mean()), half, sum(inside) / runs, (time.perf_counter() - t0) / runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--steps", type=int, default=32)
    a = ap.parse_args()
    ring = sd.ring()
    methods = {
        "iid": [],
        "pg (preset)": [sd.ParticleGuidance()],
        "pg without projection": [sd.ParticleGuidance(project=False)],
        "repulsive (preset)": [sd.Repulsion()],
    }
    print(
        f"ring: 10 modes, radius 1, variance 0.005; 10 particles; Heun {a.steps} levels; {a.runs} runs (seeds 0..{a.runs - 1})"
    )
    for name, guidance in methods.items():
        mean, half, inside, sec = evaluate(ring, guidance, a.runs, a.steps)
        print(f"{name:24s} modes {mean:.2f} ± {half:.2f}   within 3 std {100 * inside:.1f}%   {sec * 1000:.0f} ms/run")


if __name__ == "__main__":
    main()
