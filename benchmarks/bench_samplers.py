"""steerdiff's samplers against diffusers' scheduler loops: same UNet, same network evaluations.

Prints images/s of each side and the ratio steerdiff / diffusers (goal >= 1.0), measured side by
side in one run (interleaved repeats, best of each).

    python benchmarks/bench_samplers.py [--model mnist] [--n 64] [--repeats 3]
"""

import argparse
import time

import torch
from diffusers import DDIMScheduler, EDMEulerScheduler

import steerdiff as sd
from steerdiff import sampling
from steerdiff.schedules_ddpm import ddpm_alphas_cumprod


def best_times(fns, repeats):
    """Best wall time of each function, the functions interleaved within every repeat (fair under load)."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return [min(t) for t in times]


@torch.no_grad()
def diffusers_edm_euler(unet, x, steps, time_scale, labels):
    sch = EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5)
    sch.set_timesteps(steps)
    x = x * sch.init_noise_sigma
    for t in sch.timesteps:
        out = unet(sch.scale_model_input(x, t), t * time_scale, class_labels=labels).sample
        x = sch.step(out, t, x).prev_sample
    return x


@torch.no_grad()
def diffusers_ddim(unet, x, steps, labels):
    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", set_alpha_to_one=True, clip_sample=False)
    sch.set_timesteps(steps)
    for t in sch.timesteps:
        x = sch.step(unet(x, t, class_labels=labels).sample, t, x, eta=0.0).prev_sample
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    model = sd.load(a.model)
    unet, labels = model.net, torch.full((a.n,), model.null_label) if model.null_label is not None else None
    x = torch.randn(a.n, *model.sample_shape, generator=torch.Generator().manual_seed(0))
    rows = []

    # Heun with 18 levels = 35 network evaluations; diffusers' EDM Euler with 35 steps = 35 evaluations.
    sig18 = sd.get_sigmas_karras(18, model.sigma_min, model.sigma_max)
    sig35 = sd.get_sigmas_karras(35, model.sigma_min, model.sigma_max)
    heun, euler, theirs = best_times(
        [
            lambda: sampling.sample_heun(model, x * sig18[0], sig18),
            lambda: sampling.sample_euler(model, x * sig35[0], sig35),
            lambda: diffusers_edm_euler(unet, x, 35, model.time_scale, labels),
        ],
        a.repeats,
    )
    rows.append(("steerdiff heun 18 (35 NFE) vs diffusers EDMEulerScheduler 35 (35 NFE)", heun, theirs))
    rows.append(("steerdiff euler 35 vs diffusers EDMEulerScheduler 35", euler, theirs))

    # DDIM: the same UNet behind the discrete adapter (timing only: the network is EDM-trained).
    ddpm = sd.DiscreteDenoiser(
        unet,
        ddpm_alphas_cumprod(1000),
        sample_shape=model.sample_shape,
        num_classes=model.num_classes,
        null_label=model.null_label,
    )
    sch = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", set_alpha_to_one=True, clip_sample=False)
    sig = sd.sigmas_from_scheduler(sch, 50)
    ours, theirs = best_times(
        [
            lambda: sampling.sample_ddim(ddpm, x * (1 + sig[0] ** 2).sqrt(), sig),
            lambda: diffusers_ddim(unet, x, 50, labels),
        ],
        a.repeats,
    )
    rows.append(("steerdiff ddim 50 vs diffusers DDIMScheduler 50", ours, theirs))

    print(
        f"model {a.model}, batch {a.n}, torch threads {torch.get_num_threads()}, best of {a.repeats} interleaved repeats"
    )
    for name, t_ours, t_theirs in rows:
        print(
            f"{name}: steerdiff {a.n / t_ours:.1f} img/s, diffusers {a.n / t_theirs:.1f} img/s, "
            f"ratio {t_theirs / t_ours:.3f}"
        )


if __name__ == "__main__":
    main()
