"""An edit's strength x editing interval, judged on held-out digits (issue #16).

Written to ask whether the earlier ``thick`` could keep the digit without retraining; it now also
gives the strength sweep of the shipped edit. The edit (``--edit``, weights unchanged) is re-run at several strengths and lower ends of its editing
interval (``sigma_edit``: a narrower interval starts editing later, at higher noise only) on held-out
ColorMNIST digits, and judged by :func:`steerdiff.edit_eval.evaluate_edit` (stroke width, digit kept
by the shipped evaluator and the independent ``mnist-evaluator2``; neither was used to train the
edit). A setting is chosen on a validation set (held-out digits 100..100+N of the seed-0
permutation) and reported on the test set: the first 100 of that permutation, the digits
``steerdiff edit --attribute thick --n 100 --seed 0`` edits.

    python benchmarks/bench_edit_keep.py --device cuda --out edit_keep.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from steerdiff import load
from steerdiff.edit import apply_edit, attribute_data, conf_sigmas, invert, load_edit
from steerdiff.edit_eval import evaluate_edit

STRENGTHS = (0.25, 0.4, 0.5, 0.6, 0.75, 1.0)
SIGMA_EDITS = (2.05, 2.52, 3.07, 3.74, 4.52)  # nearest levels of the edit's 60-level schedule are used


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--out", default="edit_keep.json")
    ap.add_argument("--strengths", default=",".join(map(str, STRENGTHS)))
    ap.add_argument(
        "--sigma-edits",
        default=",".join(map(str, SIGMA_EDITS)),
        help="lower ends of the editing interval to try, or 'own' for the edit's recorded one",
    )
    ap.add_argument("--edit", default="thick", help="the edit: a shipped name or an edit directory (default thick)")
    a = ap.parse_args()
    strengths = tuple(float(v) for v in a.strengths.split(","))
    t0 = time.time()
    model = load("colormnist", device=a.device)
    delta, conf = load_edit(a.edit)
    own = a.sigma_edits == "own"
    sigma_edits = (conf["intervals"]["sigma_edit"],) if own else tuple(float(v) for v in a.sigma_edits.split(","))
    delta = delta.to(a.device)
    src, _, labels = attribute_data("thick", "heldout")
    perm = torch.randperm(len(src), generator=torch.Generator().manual_seed(0))
    splits = {"test": perm[: a.n_test], "val": perm[a.n_test : a.n_test + a.n_val]}
    splits = {k: v for k, v in splits.items() if len(v)}
    sig = conf_sigmas(model, conf)
    levels = sig[:-1]
    rows = []
    for split, idx in splits.items():
        x0 = src[idx].to(a.device)
        xT = invert(model, x0, sig)
        for se in sigma_edits:
            s_edit = se if own else float(levels[(levels - se).abs().argmin()])
            for st in strengths + ((-0.5, -0.75, -1.0) if se == sigma_edits[0] else ()):
                c = {
                    **conf,
                    "intervals": {
                        **conf["intervals"],
                        "sigma_edit": s_edit,
                        "sigma_boost": conf["intervals"]["sigma_boost"]
                        if own
                        else min(conf["intervals"]["sigma_boost"], s_edit),
                    },
                }
                e = apply_edit(model, xT, sig, delta, c, strength=st, seed=0)
                r = evaluate_edit(x0.cpu(), e.cpu(), labels[idx], attribute="thick" if st >= 0 else "thin")
                row = {
                    "split": split,
                    "sigma_edit": s_edit,
                    "strength": st,
                    "success": r["success"],
                    "kept_evaluator": r["digit_kept"]["mnist-evaluator"]["vs_source"],
                    "kept_evaluator2": r["digit_kept"]["mnist-evaluator2"]["vs_source"],
                    "kept_by_all": r["kept_by_all"],
                    "success_and_kept": r["success_and_kept"],
                    "width_ratio": r["stroke_width"]["ratio_mean"],
                    "directional": r["directional"]["mean_cosine"],
                    "frechet": r["frechet"]["edited_to_real"],
                    "l1_outside": r["l1_outside"],
                    "colour_kept": r.get("colour_kept"),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    val = [r for r in rows if r["split"] == "val" and r["strength"] > 0]  # strength 0: the plain reconstruction
    ok = [r for r in val if r["success"] >= 0.9 and r["kept_by_all"] >= 0.9]
    out = {"rows": rows, "seconds": time.time() - t0}
    if val:  # --n-val 0: the test rows alone, nothing chosen
        best = max(ok or val, key=lambda r: (r["success_and_kept"], r["kept_by_all"]))
        test = next(
            r
            for r in rows
            if r["split"] == "test" and r["sigma_edit"] == best["sigma_edit"] and r["strength"] == best["strength"]
        )
        out |= {"chosen_on_val": best, "test_of_chosen": test, "both_goals_on_val": bool(ok)}
        print("chosen on val:", json.dumps(best))
        print("its test:", json.dumps(test))
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
