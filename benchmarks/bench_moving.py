"""Moving digits: diverse futures from frame-conditional models (issue: moving digits).

circle (8 directions, batches of 8 from centred held-out digits): distinct directions per batch and
quality L2 for deterministic (Heun), stochastic (Heun with churn) and Particle Guidance.
horizontal (p(right) = 0.7, >= 400 predictions per method, conditioned on the digit arriving at the
centre, where the direction is drawn): estimated p(right) with its 95% interval,
the share of particle pairs in a batch that disagree in direction, and L2, for deterministic,
stochastic, PG, prior-preserving PG and stratified selection (from 4 x 8 iid draws); for horizontal also
the model's own p(right) from the 32 deterministic draws per condition that stratified selection
chooses from (1,600 predictions).

    python benchmarks/bench_moving.py [--circle circle] [--horizontal horizontal] [--batches 50]

Every method runs through `steerdiff evaluate --task conditional` with the same seeds.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from steerdiff.cli import main as cli

CHURN = ["--s-churn", "10"]
STRATIFIED = ["--method", "stratified", "--candidates", "4"]  # as many draws as pg-prior's 32-sample pilot


def run(model: str, dataset: str, batches: int, extra: list[str], tmp: Path, name: str) -> dict:
    out = tmp / f"{dataset}-{name}.json"
    args = [
        "evaluate",
        "--task",
        "conditional",
        "--model",
        model,
        "--dataset",
        dataset,
        "--n",
        "8",
        "--batches",
        str(batches),
        "--seed",
        "0",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]
    assert cli(args) == 0, args
    return json.loads(out.read_text())


def disagreement(rows) -> float:
    """Share of particle pairs within a batch whose directions differ."""
    rates = []
    for r in rows:
        d = np.asarray(r["directions"])
        n = len(d)
        same = sum(int((d == v).sum()) * (int((d == v).sum()) - 1) for v in np.unique(d))
        rates.append(1 - same / (n * (n - 1)))
    return float(np.mean(rates))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--circle", default="circle", help="frame-conditional circle model (default: shipped)")
    ap.add_argument("--horizontal", default="horizontal", help="frame-conditional horizontal model (default: shipped)")
    ap.add_argument("--batches", type=int, default=50, help="batches of 8 per method (default 50: 400 predictions)")
    ap.add_argument("--pg", default="", help="extra PG options, e.g. '--strength 30 --window 0.5,80'")
    ap.add_argument("--skip", default="", help="comma list of tasks to skip (circle, horizontal)")
    ap.add_argument(
        "--methods",
        default="deterministic,pool,stochastic,pg,pg-prior,stratified",
        help="comma list of methods to run (pool: deterministic, 32 per condition: the model's own p(right) "
        "from 4x the predictions, the very draws stratified selection chooses from)",
    )
    a = ap.parse_args()
    pg = ["--method", "pg", *a.pg.split()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "circle" not in a.skip:
            print(f"circle, 8 directions, {a.batches} batches of 8 from centred held-out digits")
            base = None
            for name, extra in (("deterministic", []), ("stochastic", CHURN), ("pg", pg), ("stratified", STRATIFIED)):
                if name not in a.methods.split(","):
                    continue
                agg = run(a.circle, "circle", a.batches, extra, tmp, name)["aggregate"]
                base = base or agg["l2"]["mean"]
                print(
                    f"  {name:14s} distinct {agg['distinct']['mean']:.2f} (95% CI {agg['distinct']['ci95'][0]:.2f}-"
                    f"{agg['distinct']['ci95'][1]:.2f})  L2 {agg['l2']['mean']:.4f} ({agg['l2']['mean'] / base:.2f}x iid)  "
                    f"IoU {agg['iou']['mean']:.3f}"
                )
        if "horizontal" not in a.skip:
            print(
                f"horizontal, p(right) 0.7, {a.batches * 8} predictions per method, the digit arriving at the centre "
                "(alternately from the left and the right)"
            )
            for name, extra in (
                ("deterministic", []),
                ("pool", ["--n", "32"]),
                ("stochastic", CHURN),
                ("pg", pg),
                ("pg-prior", [*pg, "--prior-samples", "32"]),
                ("stratified", STRATIFIED),
            ):
                if name not in a.methods.split(","):
                    continue
                res = run(a.horizontal, "horizontal", a.batches, extra, tmp, name)
                pr = res["p_right"]
                print(
                    f"  {name:14s} p(right) {pr['p_right']:.3f} (95% CI {pr['ci95'][0]:.3f}-{pr['ci95'][1]:.3f})  "
                    f"pairs disagreeing {disagreement(res['batches']):.3f}  L2 {res['aggregate']['l2']['mean']:.4f}"
                )


if __name__ == "__main__":
    main()
