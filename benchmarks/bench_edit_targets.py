"""Does a gentler training target or another editing interval let ``thick`` keep the digit? (issue #16)

Two parts, both judged by :func:`steerdiff.edit.evaluate.evaluate_edit` (stroke width, digit kept by
the shipped evaluator and the independent ``mnist-evaluator2``; neither judge trains anything here):

1. **Target ceilings**: candidate pixel thickenings of 300 held-out ColorMNIST digits (the first 300
   of the seed-0 permutation, which holds the 100 test digits of ``bench_edit_keep.py``): the best an
   edit distilled from that target could reach.
2. **Edits trained on them**: the earlier shipped recipe (``train_calibrated_edit``, 256 pairs, conv delta,
   seed 0, per-level paired loss, strength calibrated by pixel L1 alone: ``keep_rate=None``, now on
   256 pairs where the docs' tables, measured at commit d4c75ce, used 32) with the cross-shaped
   dilation as target (300 and 3,000 steps), and with the earlier square target but a low editing interval (inverted to sigma 3, edited down to 0.5); each judged on
   the 100 test digits at several strengths. The edits shipped are in ``bench_edit_keep.py``.

    python benchmarks/bench_edit_targets.py --out edit_targets.json     # about 25 minutes on one CPU core
    python benchmarks/bench_edit_targets.py --targets-only --out t.json   # part 1 and the thinning targets
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import torch.nn.functional as F

from steerdiff import load
from steerdiff.edit import apply_edit, attribute_data, conf_sigmas, dilate, fade_edges, invert
from steerdiff.edit.evaluate import evaluate_edit
from steerdiff.edit.workflow import train_calibrated_edit


def cross_dilate(x: torch.Tensor) -> torch.Tensor:
    """Strokes thickened by one pixel with the 4-neighbour (plus-shaped) structuring element: unlike
    the 3x3 square it does not fill diagonal gaps, so fewer loops close (now the ``thick`` target)."""
    return dilate(x, "plus")


def square_dilate(x: torch.Tensor) -> torch.Tensor:
    """Strokes thickened by one pixel with the 3x3 square (the ``thick`` target before issue #16)."""
    return dilate(x, "square")


def blur_thicken(x: torch.Tensor, gain: float) -> torch.Tensor:
    """The source or a ``gain``-amplified 3x3 binomial blur of its ink, whichever is brighter."""
    k = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]])
    k = (k / k.sum()).view(1, 1, 3, 3).repeat(x.shape[1], 1, 1, 1)
    b = F.conv2d((x + 1) / 2, k, padding=1, groups=x.shape[1])
    return torch.maximum(x, (b * gain).clamp(0, 1) * 2 - 1)


TARGETS = {
    "square 3x3 dilation (earlier shipped target)": square_dilate,
    "cross dilation": cross_dilate,
    "2x2 dilation": lambda x: F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=-1), 2, stride=1),
    "blur x2": lambda x: blur_thicken(x, 2.0),
    "blur x3": lambda x: blur_thicken(x, 3.0),
}
THIN_TARGETS = {
    "plus erosion": lambda x: -dilate(-x, "plus"),
    "half-way to the plus erosion (fade_edges)": fade_edges,
}
VARIANTS = {  # name: (target, steps, sigma_top, sigma_edit)
    "cross target, 300 steps": (cross_dilate, 300, 10.0, None),
    "cross target, 3,000 steps": (cross_dilate, 3000, 10.0, None),
    "square target, interval [0.5, 3]": (square_dilate, 300, 3.0, 0.5),
}


def judge(x0, edited, labels, attribute="thick") -> dict:
    r = evaluate_edit(x0, edited, labels, attribute=attribute)
    return {
        "success": r["success"],
        "width_ratio": r["stroke_width"]["ratio_mean"],
        "kept_evaluator": r["digit_kept"]["mnist-evaluator"]["vs_source"],
        "kept_evaluator2": r["digit_kept"]["mnist-evaluator2"]["vs_source"],
        "kept_by_both": r["kept_by_all"],
        "frechet": r["frechet"]["edited_to_real"],
        "colour_kept": r.get("colour_kept"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strengths", default="0.25,0.5,0.75,1,-0.5")
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--out", default="edit_targets.json")
    ap.add_argument("--targets-only", action="store_true", help="judge the pixel targets only (seconds)")
    a = ap.parse_args()
    strengths = [float(v) for v in a.strengths.split(",")]
    t0 = time.time()
    src, _, labels = attribute_data("thick", "heldout")
    perm = torch.randperm(len(src), generator=torch.Generator().manual_seed(0))
    rows = []
    x, y = src[perm[:300]], labels[perm[:300]]
    for name, fn in TARGETS.items():
        rows.append({"part": "target", "name": name, **judge(x, fn(x), y)})
        print(json.dumps(rows[-1]), flush=True)
    for name, fn in THIN_TARGETS.items():  # backward targets of a two-sided thick (judged as thinning)
        rows.append({"part": "thin target", "name": name, **judge(x, fn(x), y, "thin")})
        print(json.dumps(rows[-1]), flush=True)
    if a.targets_only:
        return
    model = load("colormnist")
    x0, y0 = src[perm[: a.n_test]], labels[perm[: a.n_test]]
    for name, (fn, steps, top, s_edit) in VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:  # the earlier shipped recipe (pixel-L1 calibration), another target
            delta, conf = train_calibrated_edit(
                model,
                "thick",
                steps=steps,
                sigma_top=top,
                sigma_edit=s_edit,
                seed=0,
                targets=fn,
                keep_rate=None,
                out=f"{tmp}/edit",
                force=True,
            )
        sig = conf_sigmas(model, conf)
        xT = invert(model, x0, sig)
        for st in strengths:
            e = apply_edit(model, xT, sig, delta, conf, strength=st, seed=0)
            row = judge(x0, e, y0, "thick" if st >= 0 else "thin")
            rows.append(
                {
                    "part": "edit",
                    "name": name,
                    "strength": st,
                    "calibrated": conf["strength"],
                    "strength_l1": conf["strength_l1"],
                    **row,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    with open(a.out, "w") as f:
        json.dump({"rows": rows, "seconds": time.time() - t0}, f, indent=1)


if __name__ == "__main__":
    main()
