"""SPELL / DPP / entropy guidance on mnist-cond at a fixed class label: within-class diversity and fidelity.

For each class label and seed, a batch of ``--n`` samples (Heun, the model's 18 steps, same seeds for
every method) at ``class_labels = c``; per batch the Vendi score (order 1, cosine kernel) of the shipped
evaluator's 128-d features (``steerdiff.features.load_features("mnist-evaluator")``), the class fidelity
(share of samples whose evaluator argmax is ``c``), the evaluator's mean confidence in ``c`` and the
smallest pixel distance between two samples of the batch. Reported: means over all batches, and the
near-copy rate of all samples pooled (:func:`steerdiff.metrics.near_copy_rate`: closer to a training
digit than 95% of held-out digits are; held-out data scores 0.05). "shield" is SPELL with no
repellency in the batch and the 4,000 training digits as the protected set, at the near-copy radius.

    python benchmarks/bench_diversity_mnist.py [--classes 1 3 7] [--seeds 0 1 2] [--n 10] [--cfg-scale 1]
        [--only NAME ...]
"""

import argparse
import time

import torch

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.data import load_mnist
from steerdiff.diversity import SPELL, DPPGuidance, EntropyGuidance
from steerdiff.features import load_features
from steerdiff.metrics import near_copy_rate, vendi_score


def methods() -> dict:
    w = (0.1, 80.0)
    out = {"iid": []}
    for rs in (0.7, 0.8, 0.9, 1.0):
        out[f"spell r={rs:g}x"] = [SPELL(radius_scale=rs)]
    out["spell r=0.9x, sigma<=5"] = [SPELL(radius_scale=0.9, window=(0.0, 5.0))]
    for rs, lo in ((0.5, 0.5), (0.6, 0.5), (0.7, 0.5), (0.8, 0.5), (0.8, 1.0), (1.0, 1.0), (1.2, 1.0)):
        out[f"spell r={rs:g}x, sigma>={lo:g}"] = [SPELL(radius_scale=rs, window=(lo, 80.0))]
    for s in (1.0, 3.0, 10.0, 30.0):
        out[f"dpp x0 strength {s:g}"] = [DPPGuidance(strength=s, window=w)]
    for s in (3.0, 10.0):
        out[f"dpp classifier strength {s:g}"] = [DPPGuidance(strength=s, window=w, embedding="classifier")]
    for s in (3.0, 10.0, 30.0, 100.0):
        out[f"entropy x0 strength {s:g}"] = [EntropyGuidance(strength=s, window=w)]
    for s in (30.0, 100.0):
        out[f"entropy x0 project strength {s:g}"] = [EntropyGuidance(strength=s, window=w, project=True)]
    for s in (10.0, 30.0):
        out[f"dpp x0 project strength {s:g}"] = [DPPGuidance(strength=s, window=w, project=True)]
    # the near-copy shield: the 4,000 training digits as a protected set, radius = the near-copy threshold
    out["shield (train digits)"] = "shield"
    out["pg x0 strength 10"] = [
        sd.ParticleGuidance(strength=10.0, on="x0", embedding="identity", kernel="rbf", window=w)
    ]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, nargs="+", default=[1, 3, 7])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--only", nargs="*", default=None, help="method names (as printed) to run")
    ap.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale under every method")
    a = ap.parse_args()
    model = sd.load("mnist-cond")
    model = model if a.cfg_scale == 1.0 else sd.cfg(model, a.cfg_scale)
    train, held = load_mnist("train"), load_mnist("heldout")
    threshold = near_copy_rate(held.images[:1], train.images, held.images)["threshold"]
    feats = load_features("mnist-evaluator")
    ev = load_classifier("mnist-evaluator")
    print(
        f"mnist-cond, classes {a.classes}, seeds {a.seeds}, batches of {a.n}, heun 18 steps, cfg scale {a.cfg_scale:g}"
    )
    print(
        f"  {'method':30s} {'vendi':>6s} {'fidelity':>8s} {'conf':>6s} {'min dist':>8s} {'near-copy':>9s} {'s/batch':>7s}"
    )
    for name, g in methods().items():
        if a.only and name not in a.only:
            continue
        if g == "shield":
            g = [SPELL(radius=0.0, protected=train.images, protected_radius=threshold)]
        v, fid, conf, mind, xs, t0 = [], [], [], [], [], time.time()
        for c in a.classes:
            for s in a.seeds:
                x = sd.sample(model, a.n, seed=1000 * c + s, cond={"class_labels": torch.full((a.n,), c)}, guidance=g)
                xs.append(x)
                f = feats(x)
                with torch.no_grad():
                    p = ev.head(f).softmax(1)
                v.append(vendi_score(f))
                fid.append(float((p.argmax(1) == c).double().mean()))
                conf.append(float(p[:, c].mean()))
                d = torch.cdist(x.flatten(1).double(), x.flatten(1).double())
                mind.append(float(d[~torch.eye(a.n, dtype=torch.bool)].min()))
        k = len(v)
        copies = near_copy_rate(torch.cat(xs), train.images, held.images)["near_copy_rate"]
        print(
            f"  {name:30s} {sum(v) / k:6.3f} {sum(fid) / k:8.3f} {sum(conf) / k:6.3f} {sum(mind) / k:8.2f} "
            f"{copies:9.3f} {(time.time() - t0) / k:7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
