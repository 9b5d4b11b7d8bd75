"""Can h-space express an edit at all? (issue: semantic editing)

For held-out ColorMNIST digits on their inversion paths, at several noise levels, optimise a free
per-image delta-h (no network, no sharing: the most an h-space edit can do at that level) so that
the edited prediction matches the edited image (green: ink moved to the green channel; thick:
dilated by one pixel). Prints the L1 reached against the unedited prediction's L1 to the edited
image (where it starts) and to the source (the prediction's own error, the floor): an attribute that
h-space can carry closes most of the gap to the floor.

    python benchmarks/bench_hspace_reach.py [--n 8] [--iters 200] [--sigma-top 80 --levels 0,10,20]
"""

import argparse

import torch

import steerdiff as sd
from steerdiff.edit import HSpace, attribute_data, dilate, edit_sigmas, invert, to_green


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument(
        "--sigma-top", type=float, default=10.0, help="invert up to this noise level (default 10, as edits do)"
    )
    ap.add_argument("--levels", default="10,25,40,50", help="indices (of 60 levels, highest first) to optimise at")
    ap.add_argument("--only", default="green,thick")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = sd.load("colormnist")
    sig = edit_sigmas(model, 60, a.sigma_top)
    levels = sig[:-1].tolist()
    hs = HSpace(model)
    for attr, edit in (("green", to_green), ("thick", dilate)):
        if attr not in a.only.split(","):
            continue
        src = attribute_data(attr, "heldout")[0]
        x0 = src[torch.randperm(len(src), generator=torch.Generator().manual_seed(0))[: a.n]]
        target = edit(x0)
        _, path = invert(model, x0, sig, return_path=True)
        print(f"{attr}: per-image free delta-h, {a.iters} Adam steps, L1 of the prediction")
        for k in map(int, a.levels.split(",")):
            s, x = levels[k], path[k]
            with torch.no_grad():
                d = model(x, s)
            dh = torch.zeros((len(x), *hs.shape(x, s)), requires_grad=True)
            opt = torch.optim.Adam([dh], lr=0.05)
            for _ in range(a.iters):
                with hs.capture(lambda h: dh.to(h.dtype)):  # noqa: B023 (called inside this iteration)
                    loss = (model(x, s) - target).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            start, floor = float((d - target).abs().mean()), float((d - x0).abs().mean())
            reached = float(loss.detach())
            print(
                f"  sigma {s:6.3f}: unedited {start:.3f} -> reached {reached:.3f} (floor {floor:.3f}): "
                f"{(start - reached) / max(start - floor, 1e-9):.0%} of the gap closed",
                flush=True,
            )


if __name__ == "__main__":
    main()
