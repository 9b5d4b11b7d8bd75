"""Compositional sculpting on ColorMNIST and MNIST sub-digits (issue: composition).

For each composition and guidance scale: the share of samples in the composition's target class
(judged by colour rule + the MNIST evaluator, neither trained on compositions) and the total-variation
distance of the (digit, colour) histogram to the exact scale-1 target p_mix(c) prod_j q_c(y_j).

    python benchmarks/bench_compose_colormnist.py [--n 100] [--scales 1,3,10] [--only m1m2,mn,sub] [--seeds 0,1,2]
        [--set-guidance 1]
"""

import argparse
import time

import steerdiff as sd
from steerdiff.compose_eval import class_histogram, color_digit_classes, exact_target, total_variation
from steerdiff.joint import shipped_joint_classifier

# name, bases, y, the classes the goal counts, goal share
CASES = [
    ("m1m2", ["M1", "M2"], (1, 2), [10], 0.95, "green 0"),
    ("m1m2", ["M1", "M2"], (1, 1), [0], 0.90, "red 0"),
    ("m1m2", ["M1", "M2"], (2, 2), [11], 0.90, "green 1"),
    ("mn", ["MN1", "MN2", "MN3"], (1, 2, 3), [10], 0.90, "green 0"),
    ("sub", ["mnist-0to5", "mnist-4to9"], (1, 2), [4, 5], 0.90, "fours and fives"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--scales", default="1,3,10")
    ap.add_argument("--steps", type=int, default=None, help="Heun steps (default: the base model's preset)")
    ap.add_argument("--only", default="m1m2,mn,sub")
    ap.add_argument("--seeds", default="0", help="comma list of seeds, each a separate run of --n samples")
    ap.add_argument(
        "--set-guidance",
        type=float,
        default=0.0,
        help="set guidance of the ColorMNIST bases against the all-digit set (0: the plain set models)",
    )
    ap.add_argument("--bases-alone", action="store_true", help="also sample each base alone (its own class histogram)")
    a = ap.parse_args()
    scales = [float(s) for s in a.scales.split(",") if s]
    alone = set()
    for name, bases, y, goal_classes, goal, label in CASES:
        if name not in a.only.split(","):
            continue
        models = [sd.load(b, set_guidance=a.set_guidance if name != "sub" else 0.0) for b in bases]
        clf = shipped_joint_classifier(bases)
        target = exact_target(bases, y)
        print(
            f"{' x '.join(bases)} y={y}: exact scale-1 target "
            f"{ {int(c): round(float(v), 3) for c, v in enumerate(target) if v > 0} }; goal >= {goal:.0%} {label}"
        )
        for b, model in zip(bases, models, strict=False) if a.bases_alone else ():
            if b in alone:
                continue
            alone.add(b)
            hist = class_histogram(
                color_digit_classes(sd.sample(model, a.n, seed=int(a.seeds.split(",")[0]), steps=a.steps)), len(target)
            )
            print(
                f"  {b} alone: classes { {int(c): round(float(v), 2) for c, v in enumerate(hist) if v >= 0.02} }",
                flush=True,
            )
        for s, seed in [(s, seed) for s in scales for seed in map(int, a.seeds.split(","))]:
            t0 = time.perf_counter()
            x = sd.sample(sd.compose(models, clf, y=y, guidance_scale=s), a.n, seed=seed, steps=a.steps, batch_size=50)
            cls = color_digit_classes(x)
            hist = class_histogram(cls, len(target))
            share = float(hist[goal_classes].sum())
            top = {int(c): round(float(v), 2) for c, v in enumerate(hist) if v >= 0.02}
            print(
                f"  scale {s:5.1f} seed {seed}: {label} {share:.1%}  TV to scale-1 target {total_variation(hist, target):.3f}  "
                f"classes {top}  ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
