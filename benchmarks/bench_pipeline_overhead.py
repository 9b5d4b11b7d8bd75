"""Per-step overhead of particle terms on a (tiny, random) Stable Diffusion pipeline.

Times DDIM sampling of 8 latent particles through `from_pipeline` (CFG 7.5) without guidance, with
Repulsion in `averagedim` (on x, no extra network call beyond the pipeline's own) and with Particle
Guidance on the denoised estimate (`on="x0"`: one extra vector-Jacobian product through the UNet),
plus the `callback_on_step_end` form on an unchanged `pipe(...)` call. Interleaved repeats, best of 3.

    python benchmarks/bench_pipeline_overhead.py [--steps 20] [--n 8]
"""

import argparse
import tempfile
import time

import torch

import steerdiff as sd
from steerdiff.pipelines import from_pipeline, particle_callback, tiny_pipeline


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pipe = tiny_pipeline(tmp)
    den = from_pipeline(pipe, "a red cat", guidance_scale=7.5)
    rep = sd.Repulsion(embedding="averagedim", strength=100.0, on="x")
    pg = sd.ParticleGuidance(embedding="averagedim", strength=10.0, on="x0")
    lat0 = torch.randn(a.n, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = {
        "num_inference_steps": a.steps,
        "guidance_scale": 7.5,
        "height": 16,
        "width": 16,
        "output_type": "latent",
        "num_images_per_prompt": a.n,
    }
    cases = {
        "steerdiff ddim, iid": lambda: sd.sample(den, a.n, sampler="ddim", steps=a.steps, seed=0, clip=False),
        "steerdiff ddim, Repulsion(averagedim, on x)": lambda: sd.sample(
            den, a.n, sampler="ddim", steps=a.steps, seed=0, clip=False, guidance=[rep]
        ),
        "steerdiff ddim, PG(averagedim, on x0)": lambda: sd.sample(
            den, a.n, sampler="ddim", steps=a.steps, seed=0, clip=False, guidance=[pg]
        ),
        "pipe(...), plain": lambda: pipe("a red cat", latents=lat0.clone(), **kw),
        "pipe(...), particle_callback(Repulsion)": lambda: pipe(
            "a red cat", latents=lat0.clone(), callback_on_step_end=particle_callback(den, rep), **kw
        ),
    }
    best = {k: float("inf") for k in cases}
    for _ in range(3):
        for k, f in cases.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    print(
        f"{a.n} particles, {a.steps} DDIM steps, tiny SD pipeline (UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.2f}M params)"
    )
    base = {"steerdiff": best["steerdiff ddim, iid"], "pipe(...)": best["pipe(...), plain"]}
    for k, v in best.items():
        ref = base["steerdiff" if k.startswith("steerdiff") else "pipe(...)"]
        print(f"  {k:48s} {1000 * v / a.steps:7.1f} ms/step  ({v / ref:.2f}x)")


if __name__ == "__main__":
    main()
