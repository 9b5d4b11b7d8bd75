"""Training throughput (images/s) of the network presets at batch 64 on this machine.

python benchmarks/bench_training.py [--steps 20] [--presets lean small]
"""

import argparse
import tempfile

from steerdiff.training import TrainConfig, train


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--presets", nargs="+", default=["lean", "small"])
    a = ap.parse_args()
    for preset in a.presets:
        with tempfile.TemporaryDirectory() as d:
            warm = train(
                TrainConfig(net=preset, steps=3, class_conditional=True, p_uncond=0.5, checkpoint_every=10**9),
                f"{d}/warm",
                progress=False,
            )
            res = train(
                TrainConfig(net=preset, steps=a.steps, class_conditional=True, p_uncond=0.5, checkpoint_every=10**9),
                f"{d}/run",
                progress=False,
            )
        print(
            f"{preset}: {res['images_per_s']:.1f} images/s, {64 / res['images_per_s']:.3f} s per batch-64 step "
            f"(includes one checkpoint write; warm-up run {warm['images_per_s']:.1f} img/s)"
        )


if __name__ == "__main__":
    main()
