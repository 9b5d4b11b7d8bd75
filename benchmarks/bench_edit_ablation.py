"""The delta-h architecture ablation of the Asyrp reproduction, on the ``thick`` edit (issue #16).

Every delta network is trained by the earlier shipped recipe (``train_calibrated_edit``: 256 pairs
with the square 3x3 dilation as target, the per-level paired loss, 300 steps, seed 0, the measured
editing interval, its strength calibrated by pixel L1 alone, now on 256 pairs where the tables in
docs/benchmarks.md, measured at commit d4c75ce, used 32) and judged on the 100 test digits of
``bench_edit_keep.py`` (the first 100 held-out ColorMNIST digits of the seed-0 permutation) at its
calibrated strength and at a common strength, by :func:`steerdiff.edit.evaluate.evaluate_edit`:
stroke width, digit kept by the shipped evaluator and the independent ``mnist-evaluator2``, colour
kept, Fréchet distance to real digits. The shipped ``conv`` edit and its global (averaged) direction
(trained on the final edited image since issue #16) are judged as they ship. ``--only`` runs the rows whose name contains it (to split the run).

    python benchmarks/bench_edit_ablation.py --out edit_ablation.json   # about 45 minutes on one CPU core
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from bench_edit_targets import judge, square_dilate  # the same judged measures (this folder is on sys.path)

from steerdiff import load
from steerdiff.edit import apply_edit, attribute_data, conf_sigmas, invert, load_edit
from steerdiff.edit.workflow import train_calibrated_edit

VARIANTS = {  # name: train_calibrated_edit options (None: the shipped edit); save_global adds the averaged direction's row
    "conv (shipped)": None,
    "conv": {"kind": "conv", "save_global": True},
    "pixel attention, 4 heads": {"kind": "pixel", "heads": 4},
    "channel attention": {"kind": "channel"},
    "pixel + channel attention": {"kind": "pixel-channel", "heads": 4},
    "transformer, 1 head, ffn 256": {"kind": "transformer", "heads": 1, "ffn_dim": 256},
    "transformer, 4 heads, ffn 256": {"kind": "transformer", "heads": 4, "ffn_dim": 256},
    "transformer, 8 heads, ffn 256": {"kind": "transformer", "heads": 8, "ffn_dim": 256},
    "transformer, 4 heads, ffn 64": {"kind": "transformer", "heads": 4, "ffn_dim": 64},
    "transformer, 4 heads, ffn 1024": {"kind": "transformer", "heads": 4, "ffn_dim": 1024},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strength", type=float, default=0.25, help="the common strength (default 0.25)")
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--only", default="", help="run only the rows whose name contains this")
    ap.add_argument("--out", default="edit_ablation.json")
    a = ap.parse_args()
    t0 = time.time()
    model = load("colormnist")
    src, _, labels = attribute_data("thick", "heldout")
    perm = torch.randperm(len(src), generator=torch.Generator().manual_seed(0))
    x0, y0 = src[perm[: a.n_test]], labels[perm[: a.n_test]]
    rows = []
    for name, opts in VARIANTS.items():
        if a.only not in name:
            continue
        t1 = time.time()
        if opts is None:
            edits = [(name, *load_edit("thick")), (f"{name}, global direction", *load_edit("thick", averaged=True))]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                edits = [
                    (
                        name,
                        *train_calibrated_edit(
                            model, "thick", seed=0, targets=square_dilate, keep_rate=None, out=f"{tmp}/edit", **opts
                        ),
                    )
                ]
                if opts.get("save_global"):
                    edits.append((f"{name}, global direction", *load_edit(f"{tmp}/edit", averaged=True)))
        for row_name, delta, conf in edits:
            params = sum(p.numel() for p in delta.parameters())
            sig = conf_sigmas(model, conf)
            xT = invert(model, x0, sig)
            for st in sorted({float(conf["strength"]), a.strength}):
                row = judge(x0, apply_edit(model, xT, sig, delta, conf, strength=st, seed=0), y0)
                calibrated = st == conf["strength"]
                rows.append({"name": row_name, "params": params, "strength": st, "calibrated": calibrated, **row})
                rows[-1]["seconds"] = time.time() - t1
                print(json.dumps(rows[-1]), flush=True)
    with open(a.out, "w") as f:
        json.dump({"rows": rows, "seconds": time.time() - t0}, f, indent=1)


if __name__ == "__main__":
    main()
