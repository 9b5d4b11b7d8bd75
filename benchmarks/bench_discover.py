"""Training-free h-space directions against the trained ``thick`` edit, judged the same way (issue #16).

Finds the top ``--k`` principal directions of h (``--method jacobian``: the directions of h the
denoised prediction is most sensitive to) over ``--images`` held-out ColorMNIST digits
(``steerdiff edit --discover``), then edits ``--n`` other held-out digits (seed ``--seed``) with each
direction at each of ``--strengths`` and with the shipped ``thick`` edit at its calibrated strength and
its negative, and judges every batch with ``steerdiff.edit.evaluate.evaluate_edit`` (nothing here was
tuned on these judges): stroke-width ratio, digit kept by the shipped evaluator and by the
independently trained ``mnist-evaluator2`` (and by both), colour kept, mean pixel change away from
the source's ink (``l1_outside``), Fréchet distance of the edits to real digits (sources': the last line).

    python benchmarks/bench_discover.py --k 4 --n 100 --strengths=-1,-0.5,0.5,1
    python benchmarks/bench_discover.py --method jacobian --k 4 --n 100 --strengths=-1,-0.5,0.5,1
    python benchmarks/bench_discover.py --only-reconstruction                    # the baseline row alone
"""

import argparse
import time

import steerdiff as sd
from steerdiff.edit import apply_edit, conf_sigmas, invert, load_edit
from steerdiff.edit.discover import discover_directions
from steerdiff.edit.evaluate import evaluate_edit
from steerdiff.edit.workflow import heldout_images


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--images", type=int, default=128, help="held-out digits the directions come from")
    ap.add_argument("--n", type=int, default=100, help="held-out digits edited per row")
    ap.add_argument("--strengths", default="-1,-0.5,0.5,1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="pca", choices=["pca", "jacobian"], help="how the directions are found")
    ap.add_argument("--only-reconstruction", action="store_true", help="only the no-edit baseline row")
    a = ap.parse_args()
    model = sd.load("colormnist")
    t0 = time.perf_counter()
    found = (
        []
        if a.only_reconstruction
        else discover_directions(model, heldout_images(model, a.images, a.seed)[0], a.k, method=a.method, seed=a.seed)
    )
    if found:
        print(f"discovered {a.k} {a.method} directions from {a.images} digits in {time.perf_counter() - t0:.0f} s")
    x0, labels = heldout_images(model, a.n, a.seed + 1)  # a separate draw from the directions' images
    thick, tconf = load_edit("thick")
    rows = [("reconstruction (no edit)", thick, tconf, 0.0)] + [
        (
            f"{c['attribute']} ({100 * c['discovered']['explained_variance']:.1f}% of var"
            + (f", gain {c['discovered']['gain']:.3g})" if "gain" in c["discovered"] else ")"),
            d,
            c,
            float(s),
        )
        for d, c in found
        for s in a.strengths.split(",")
    ]
    rows += (
        []
        if a.only_reconstruction
        else [
            ("thick (trained)", thick, tconf, tconf["strength"]),
            ("thick (trained)", thick, tconf, -tconf["strength"]),
        ]
    )
    print(
        "\n| direction | strength | stroke width ratio | kept (evaluator) | kept (evaluator2) | kept by both "
        "| colour kept | l1 outside ink | Fréchet |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    starts, source_fd = {}, None
    for name, delta, conf, s in rows:
        sig = conf_sigmas(model, conf)
        key = (conf.get("edit_steps", 60), conf.get("sigma_top", 10.0))
        if key not in starts:
            starts[key] = invert(model, x0, sig)
        edited = apply_edit(model, starts[key], sig, delta, conf, strength=s, seed=a.seed)
        r = evaluate_edit(x0, edited, labels, attribute="thick" if s >= 0 or "thick" not in name else "thin")
        k = r["digit_kept"]
        source_fd = r["frechet"]["source_to_real"]
        print(
            f"| {name} | {s:g} | {r['stroke_width']['ratio_mean']:.2f} | {100 * k['mnist-evaluator']['vs_source']:.0f}% "
            f"| {100 * k['mnist-evaluator2']['vs_source']:.0f}% | {100 * r['kept_by_all']:.0f}% | "
            f"{100 * r['colour_kept']:.0f}% | {r['l1_outside']:.3f} | {r['frechet']['edited_to_real']:.1f} |",
            flush=True,
        )
    print(f"\nsources' Fréchet distance to real digits: {source_fd:.1f}")


if __name__ == "__main__":
    main()
