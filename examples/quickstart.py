"""Quickstart: load the shipped MNIST model, sample with two samplers, sample by class, and
check a sampler against the exact denoiser of a Gaussian mixture.

    python examples/quickstart.py            # writes examples_out/*.png
"""

from pathlib import Path

import torch

import steerdiff as sd
from steerdiff.io import save_samples

out = Path("examples_out")
model = sd.load("mnist")  # a denoiser D(x, sigma) -> x0_hat
print(model)  # sigma range, sigma_data, sample shape

x = sd.sample(model, 16, seed=0)  # the model's preset: Heun, 18 levels
save_samples(x, out / "heun.png")

sigmas = sd.get_sigmas_karras(40, model.sigma_min, model.sigma_max)  # 41 values, last 0
noise = torch.randn(16, *model.sample_shape, generator=torch.Generator().manual_seed(0))
x = sd.sampling.sample_euler_ancestral(model, noise * sigmas[0], sigmas)  # k-diffusion's signature
save_samples(x.clamp(-1, 1), out / "euler_ancestral.png")

cond = sd.load("mnist-cond")  # the same network, class-conditional
x = sd.sample(cond, 20, seed=0, cond={"class_labels": torch.arange(20) % 10})
save_samples(x, out / "by_class.png", nrow=10)

ring = sd.ring()  # 10 Gaussians on a circle: an exact denoiser
x = sd.sample(ring, 2000, sampler="dpmpp_2m", steps=32, seed=0)
print("ring mode counts (200 expected each):", torch.bincount(ring.assign(x), minlength=10).tolist())
print("wrote", sorted(p.name for p in out.glob("*.png")))
