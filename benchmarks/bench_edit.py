"""h-space edits on held-out ColorMNIST digits (issue: semantic editing).

green: on N held-out red digits, the share that become green (more ink in G than R), the share that
keep their digit (MNIST evaluator on the inked channel), and the L1 to the ground truth (the source
moved to the green channel) against the unedited reconstruction's. thick: L1 to the source dilated
by one pixel (plus footprint: the attribute's target), edited against unedited, and the ink. Edits run at their calibrated strength.
Linearity: the attribute score (green ink share; ink) over strengths -1..1. Homogeneity: the global
(averaged) direction's success (green: became green; thick: closer to the ground truth than the
unedited reconstruction) over the per-image edit's. Prints the intervals and plots the curves they
were chosen from. An edit that does not ship is skipped unless a trained directory is given.

    python benchmarks/bench_edit.py [--n 200] [--only green,thick] [--green DIR] [--plot docs/edit_curves.png]
"""

import argparse

import torch

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.compose_eval import ink
from steerdiff.edit import apply_edit, attribute_data, conf_sigmas, dilate, invert, load_edit, to_green
from steerdiff.errors import SteerdiffError
from steerdiff.quality import classify


def held_out(model, attribute, n, seed=0, edit=None):
    """``n`` held-out source digits, their labels and inverted states, and the edit's schedule."""
    conf = load_edit(edit or attribute)[1]
    src, _, labels = attribute_data(attribute, "heldout")
    pick = torch.randperm(len(src), generator=torch.Generator().manual_seed(seed))[:n]
    sig = conf_sigmas(model, conf)
    return src[pick], labels[pick], invert(model, src[pick], sig), sig


def run(model, attribute, xT, sig, strength=None, glob=False, seed=0, edit=None):
    """Edit the inverted states ``xT``; ``strength`` None: the edit's calibrated default."""
    delta, conf = load_edit(edit or attribute, averaged=glob)
    return apply_edit(model, xT, sig, delta, conf, strength=strength, seed=seed), conf


def green_share(x):
    i = ink(x)
    return i[:, 1] / (i[:, 0] + i[:, 1]).clamp(min=1e-6)


def thickness(x):
    """Ink per image (sum over channels of the [0, 1] ink means x 784): the thick edit's score."""
    return ink(x).sum(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--green", default="green", help="green edit: shipped name or a train-edit directory")
    ap.add_argument("--thick", default="thick", help="thick edit: shipped name or a train-edit directory")
    ap.add_argument("--only", default="green,thick")
    a = ap.parse_args()
    model = sd.load("colormnist")
    ev = load_classifier("mnist-evaluator")

    def kept(x, labels):
        return float((classify(ev, x[:, :2].amax(1, keepdim=True))[0].argmax(1) == labels).float().mean())

    confs = {}
    for attr in a.only.split(","):
        edit = {"green": a.green, "thick": a.thick}[attr]
        try:
            x0, labels, xT, sig = held_out(model, attr, a.n, edit=edit)
        except SteerdiffError as e:
            print(f"{attr}: skipped ({e})")
            continue
        rec, conf = run(model, attr, xT, sig, 0.0, edit=edit)
        confs[attr] = conf
        out, _ = run(model, attr, xT, sig, edit=edit)
        gt = to_green(x0) if attr == "green" else dilate(x0, "plus")  # the attribute's target
        c = conf.get("strength", 1.0)
        print(
            f"{attr}, {a.n} held-out digits, strength {c:g}: intervals sigma_edit {conf['intervals']['sigma_edit']:.3g}, "
            f"sigma_boost {conf['intervals']['sigma_boost']:.3g}"
        )
        l1_edit, l1_rec = (out - gt).abs().flatten(1).mean(1), (rec - gt).abs().flatten(1).mean(1)
        if attr == "green":
            success = green_share(out) > 0.5
            print(
                f"  became green {float(success.float().mean()):.1%}; kept their digit {kept(out, labels):.1%} "
                f"(unedited reconstruction {kept(rec, labels):.1%})"
            )
        else:
            success = l1_edit < l1_rec
            print(
                f"  ink {float(thickness(out).mean()):.1f} vs source {float(thickness(x0).mean()):.1f} and dilated "
                f"{float(thickness(gt).mean()):.1f}; kept their digit {kept(out, labels):.1%} "
                f"(unedited reconstruction {kept(rec, labels):.1%})"
            )
        print(
            f"  L1 to the ground truth {float(l1_edit.mean()):.4f} (unedited reconstruction {float(l1_rec.mean()):.4f}, "
            f"source itself {float((x0 - gt).abs().mean()):.4f}); closer than unedited: {float(success.float().mean()):.1%}"
        )
        score = green_share if attr == "green" else thickness
        m = min(a.n, 50)
        scores = [
            float(score(run(model, attr, xT[:m], sig, s, edit=edit)[0]).mean()) for s in (-1.0, -0.5, 0.0, 0.5, 1.0)
        ]
        print(
            f"  linearity: {'green ink share' if attr == 'green' else 'ink'} at strength -1, -0.5, 0, 0.5, 1: "
            f"{[round(v, 3) for v in scores]} (non-decreasing: {all(y >= x - 1e-6 for x, y in zip(scores, scores[1:], strict=False))})"
        )
        gout, _ = run(model, attr, xT, sig, c, glob=True, edit=edit)
        l1_glob = (gout - gt).abs().flatten(1).mean(1)
        gsuccess = green_share(gout) > 0.5 if attr == "green" else l1_glob < l1_rec
        ratio = float(gsuccess.float().mean()) / max(float(success.float().mean()), 1e-9)
        print(
            f"  homogeneity: global direction success {float(gsuccess.float().mean()):.1%} = {ratio:.2f} of the "
            f"per-image edit's; L1 to the ground truth {float(l1_glob.mean()):.4f}"
        )
    if a.plot and confs:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(confs), figsize=(4.5 * len(confs), 3.2), squeeze=False)
        for ax, (name, c) in zip(axes[0], confs.items(), strict=False):
            cu = c["curves"]
            ax.semilogx(cu["sigmas"], cu["xi_norm"], label="editing strength xi (normalised)")
            ax.semilogx(cu["sigmas"], cu["gamma_norm"], label="quality deficiency gamma (normalised)")
            ax.axvline(c["intervals"]["sigma_edit"], color="k", ls="--", lw=1, label="sigma_edit")
            ax.axvline(c["intervals"]["sigma_boost"], color="gray", ls=":", lw=1, label="sigma_boost")
            ax.set_title(name)
            ax.set_xlabel("sigma")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
        print(f"curves plotted to {a.plot}")


if __name__ == "__main__":
    main()
