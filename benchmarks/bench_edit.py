"""h-space edits on held-out ColorMNIST digits (issue: semantic editing).

green: on N held-out red digits, the share that become green (more ink in G than R), the share that
keep their digit (MNIST evaluator on the inked channel), and the L1 to the ground truth (the source
moved to the green channel) against the unedited reconstruction's. thick: L1 to the source dilated
by one pixel, edited against unedited. Linearity: the green ink share over strengths -1..1.
Homogeneity: the global (averaged) direction's success over the per-image edit's. Prints the
intervals and plots the curves they were chosen from.

    python benchmarks/bench_edit.py [--n 200] [--plot docs/edit_curves.png]
"""
import argparse

import torch

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.compose_eval import ink
from steerdiff.edit import asymmetric_sample, attribute_data, dilate, edit_sigmas, invert, load_edit, to_green
from steerdiff.quality import classify


def run(model, attribute, n, strength, glob=False, seed=0):
    delta, conf = load_edit(attribute, averaged=glob)
    src, _, labels = attribute_data(attribute, "heldout")
    pick = torch.randperm(len(src), generator=torch.Generator().manual_seed(seed))[:n]
    x0, labels = src[pick], labels[pick]
    sig = edit_sigmas(model, conf.get("edit_steps", 60))
    iv = conf["intervals"]
    xT = invert(model, x0, sig)
    out = asymmetric_sample(model, xT, sig, delta, strength=strength, sigma_edit=iv["sigma_edit"],
                            sigma_boost=iv["sigma_boost"], seed=seed).clamp(-1, 1)
    return x0, labels, out, conf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--plot", default=None)
    a = ap.parse_args()
    model = sd.load("colormnist")
    ev = load_classifier("mnist-evaluator")

    def green_share(x):
        i = ink(x)
        return i[:, 1] / (i[:, 0] + i[:, 1]).clamp(min=1e-6)

    def kept(x, labels):
        return float((classify(ev, x[:, :2].amax(1, keepdim=True))[0].argmax(1) == labels).float().mean())

    x0, labels, rec, conf = run(model, "green", a.n, 0.0)
    _, _, out, _ = run(model, "green", a.n, 1.0)
    success = float((green_share(out) > 0.5).float().mean())
    gt = to_green(x0)
    print(f"green, {a.n} held-out red digits: intervals {conf['intervals']}")
    print(f"  became green {success:.1%}; kept their digit {kept(out, labels):.1%} (unedited reconstruction "
          f"{kept(rec, labels):.1%}); L1 to ground truth {float((out - gt).abs().mean()):.4f} "
          f"(unedited {float((rec - gt).abs().mean()):.4f})")
    scores = []
    for c in (-1.0, -0.5, 0.0, 0.5, 1.0):
        scores.append(float(green_share(run(model, "green", min(a.n, 50), c)[2]).mean()))
    print(f"  linearity: green ink share at strength -1, -0.5, 0, 0.5, 1: {[round(v, 3) for v in scores]} "
          f"(non-decreasing: {all(b >= a_ - 1e-6 for a_, b in zip(scores, scores[1:]))})")
    _, _, gout, _ = run(model, "green", a.n, 1.0, glob=True)
    gsuccess = float((green_share(gout) > 0.5).float().mean())
    print(f"  homogeneity: global direction {gsuccess:.1%} green = {gsuccess / max(success, 1e-9):.2f} of the per-image edit")

    x0, labels, rec, tconf = run(model, "thick", a.n, 0.0)
    _, _, out, _ = run(model, "thick", a.n, 1.0)
    gt = dilate(x0)
    print(f"thick, {a.n} held-out digits: intervals {tconf['intervals']}")
    print(f"  L1 to the dilated source {float((out - gt).abs().mean()):.4f} (unedited {float((rec - gt).abs().mean()):.4f}); "
          f"ink {float(ink(out).sum(1).mean()):.1f} vs source {float(ink(x0).sum(1).mean()):.1f} and dilated "
          f"{float(ink(gt).sum(1).mean()):.1f}; kept their digit {kept(out, labels):.1%}")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, (name, c) in zip(axes, (("green", conf), ("thick", tconf))):
            cu = c["curves"]
            ax.semilogx(cu["sigmas"], cu["xi_norm"], label="editing strength xi (normalised)")
            ax.semilogx(cu["sigmas"], cu["gamma_norm"], label="quality deficiency gamma (normalised)")
            ax.axvline(c["intervals"]["sigma_edit"], color="k", ls="--", lw=1, label="sigma_edit")
            ax.axvline(c["intervals"]["sigma_boost"], color="gray", ls=":", lw=1, label="sigma_boost")
            ax.set_title(name)
            ax.set_xlabel("sigma")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
        print(f"curves plotted to {a.plot}")


if __name__ == "__main__":
    main()
