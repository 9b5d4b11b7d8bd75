"""Cost of one Particle Guidance evaluation for large particle sets: the full O(N^2) kernel against the
random-subset kernel (``subset=16``), identity features of 28x28 images (784-d), on the exact
mixture denoiser. Each setting runs in a fresh process; prints seconds per guided evaluation (mean
of 3 after a warm-up) and peak resident memory.

    python benchmarks/bench_particles_scale.py [--sizes 10 100 1000 5000]
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
import steerdiff as sd
from steerdiff.toy import GaussianMixtureDenoiser
n, subset = int(sys.argv[1]), (None if sys.argv[2] == "none" else int(sys.argv[2]))
torch.manual_seed(0)
m = GaussianMixtureDenoiser(torch.rand(10, 1, 28, 28) * 2 - 1, std=0.2)
x = torch.randn(n, 1, 28, 28)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
g = sd.guided(m, sd.ParticleGuidance(on="x", embedding="identity", subset=subset))
g(x[:20], 1.0)  # warm-up: first-call initialisation of the kernels involved
t0 = time.perf_counter()
for _ in range(3):
    out = g(x, 1.0)
sec = (time.perf_counter() - t0) / 3
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": sec, "peak_mib": peak / 1024, "added_mib": (peak - before) / 1024}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 5000])
    ap.add_argument("--subset", type=int, default=16)
    a = ap.parse_args()
    for n in a.sizes:
        row = []
        for subset in ("none", str(a.subset)):
            r = json.loads(
                subprocess.run(
                    [sys.executable, "-c", CHILD, str(n), subset], capture_output=True, text=True, check=True
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            label = "full" if subset == "none" else f"subset={subset}"
            row.append(f"{label}: {r['seconds']:.3f} s, +{r['added_mib']:.0f} MiB (peak {r['peak_mib']:.0f} MiB)")
        print(f"N={n:5d}  " + "   ".join(row))


if __name__ == "__main__":
    main()
