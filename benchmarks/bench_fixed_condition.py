"""Diverse batches at a fixed condition on mnist-cond: within-class diversity against fidelity.

Conditional table (``--scales``, default 1 and 3): for every class in ``--classes``, ``--batches``
batches of 10 with the class label fixed; batch ``b`` of class ``c`` uses seed ``1000 c + b`` for
every method (the same seeds and the same number of network evaluations per step). Per method:

- Vendi score per batch (cosine kernel, q = 1) in the shipped evaluator's features and in a fixed
  random CNN embedding (``cnn64``: ``steerdiff.embeddings.RandomCNN(64)``, seed 0; a feature space
  no method here guides in);
- class fidelity: the fraction of samples the evaluator assigns to the requested class, and the same
  fraction by a second judge, ``mnist-evaluator2`` (a LeNet-style classifier of another architecture and
  seed, on the same samples): the shipped evaluator is also the feature space of the Vendi and Fréchet
  columns, so the second judge checks fidelity with a network nothing here was tuned against;
- Fréchet distance (evaluator features) of all samples to the held-out real digits of the same
  classes, its ratio to iid's with a paired bootstrap 95% interval over batches (the same batches
  of both methods resampled together; the interval shows how much the ratio depends on the seeds
  drawn), and precision / recall (k = 5) against them;
- wall time relative to iid at the same scale.

Unconditional table (``--uncond-batches``): the label-free ``mnist`` request (no class labels at
all): distinct digits per batch of 10, mean evaluator confidence, Fréchet distance to all held-out
digits, wall time.

The evaluator judges; no method is guided by it (particle terms use ``mnist-noisy``, a different
network).

    python benchmarks/bench_fixed_condition.py --batches 2 --classes 0-9 --scales 1,3     # the main rows
    python benchmarks/bench_fixed_condition.py --only cond --scales 3 --methods "spell;dpp"  # chosen rows
    python benchmarks/bench_fixed_condition.py --methods all                              # the whole sweep (long)
"""

import argparse
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

import steerdiff as sd
from steerdiff.classifier import load_classifier
from steerdiff.core.errors import check
from steerdiff.core.guidance import GuidanceTerm
from steerdiff.data import load_mnist
from steerdiff.embeddings import RandomCNN
from steerdiff.evaluation.report import frechet_ratio_bootstrap
from steerdiff.fixed_condition import cover_sample, diverse_sample, fixed_condition
from steerdiff.metrics import frechet_distance, prdc, vendi_score
from steerdiff.particles.diversity import herding_reference
from steerdiff.particles.noise import initial_noise
from steerdiff.quality import classify
from steerdiff.stratified import stratified_sample

REPULSION = {
    "method": "repulsive",
    "embedding": "classifier",
    "kernel": "rbf",
    "on": "x",
    "strength": 30.0,
    "project": True,
    "window": (0.5, 80.0),
}
# name -> (method, options); interval / CADS settings are swept in the first rows
CONDITIONAL = {
    "iid": ("iid", {}),
    "interval (0.3, 5]": ("interval", {"interval": (0.3, 5.0)}),
    "interval (0.3, 2]": ("interval", {"interval": (0.3, 2.0)}),
    "cads s=0.25": ("cads", {"noise_scale": 0.25}),
    "cads s=0.5": ("cads", {"noise_scale": 0.5}),
    "cads s=0.25 + interval (0.3, 5]": ("cads", {"noise_scale": 0.25, "interval": (0.3, 5.0)}),
    "repulsion, mnist-noisy features on x, proj": (
        "repulsive",
        {
            "embedding": "classifier",
            "kernel": "rbf",
            "on": "x",
            "strength": 30.0,
            "project": True,
            "window": (0.5, 80.0),
        },
    ),
    "pg, mnist-noisy features on x0, proj": (
        "pg",
        {
            "embedding": "classifier",
            "kernel": "rbf",
            "on": "x0",
            "strength": 10.0,
            "project": True,
            "window": (0.5, 80.0),
        },
    ),
    "cads s=0.5 tau (0.5, 0.8)": ("cads", {"noise_scale": 0.5, "tau": (0.5, 0.8)}),
    "interval (0.3, 3]": ("interval", {"interval": (0.3, 3.0)}),
    "cads s=0.25 + interval (0.3, 3]": ("cads", {"noise_scale": 0.25, "interval": (0.3, 3.0)}),
    "cads s=0.25 + repulsion": ("cads", {"noise_scale": 0.25, "plus": dict(REPULSION)}),
    "cads s=0.25 + interval (0.3, 5] + repulsion": (
        "cads",
        {"noise_scale": 0.25, "interval": (0.3, 5.0), "plus": dict(REPULSION)},
    ),
    "interval (0.3, 10]": ("interval", {"interval": (0.3, 10.0)}),
    "interval (0.3, 10] + repulsion": ("interval", {"interval": (0.3, 10.0), "plus": dict(REPULSION)}),
    "interval (0.3, 5] + repulsion": ("interval", {"interval": (0.3, 5.0), "plus": dict(REPULSION)}),
    "repulsion x2 (strength 60)": (
        "repulsive",
        {**{k: v for k, v in REPULSION.items() if k != "method"}, "strength": 60.0},
    ),
    "cads s=0.25 + repulsion x2 (strength 60)": (
        "cads",
        {"noise_scale": 0.25, "plus": {**REPULSION, "strength": 60.0}},
    ),
    "repulsion 60, window (0.3, 5]": (
        "repulsive",
        {**{k: v for k, v in REPULSION.items() if k != "method"}, "strength": 60.0, "window": (0.3, 5.0)},
    ),
    "repulsion 100, window (0.3, 5]": (
        "repulsive",
        {**{k: v for k, v in REPULSION.items() if k != "method"}, "strength": 100.0, "window": (0.3, 5.0)},
    ),
    "repulsion 45": ("repulsive", {**{k: v for k, v in REPULSION.items() if k != "method"}, "strength": 45.0}),
    "repulsion 10": ("repulsive", {**{k: v for k, v in REPULSION.items() if k != "method"}, "strength": 10.0}),
    "stratified 4 x 10, mnist-noisy features": ("stratified", {"candidates": 4, "embedding": "classifier"}),
    "spell": ("spell", {}),
    "dpp": ("dpp", {}),
    "spell r 0.9": ("spell", {"radius_scale": 0.9}),
    "spell r 0.6": ("spell", {"radius_scale": 0.6}),
    "spell r 0.4": ("spell", {"radius_scale": 0.4}),
    "dpp strength 2": ("dpp", {"strength": 2.0}),
    "dpp strength 3": ("dpp", {"strength": 3.0}),
    "dpp strength 4": ("dpp", {"strength": 4.0}),
    "cads s=0.25 + dpp strength 2": ("cads", {"noise_scale": 0.25, "plus": {"method": "dpp", "strength": 2.0}}),
    "dpp strength 4 + cfg 1.5 in (0.3, 5]": ("dpp", {"strength": 4.0, "scale": 1.5, "interval": (0.3, 5.0)}),
    "dpp strength 4 + cfg 2 in (0.3, 5]": ("dpp", {"strength": 4.0, "scale": 2.0, "interval": (0.3, 5.0)}),
    "dpp strength 5 + cfg 2 in (0.3, 5]": ("dpp", {"strength": 5.0, "scale": 2.0, "interval": (0.3, 5.0)}),
    "dpp strength 4 + cfg 1.5 in (1, 20]": ("dpp", {"strength": 4.0, "scale": 1.5, "interval": (1.0, 20.0)}),
    "dpp strength 4 + cfg 1.5": ("dpp", {"strength": 4.0, "scale": 1.5}),
    "dpp strength 8 + cfg 1.5 in (0.3, 5]": ("dpp", {"strength": 8.0, "scale": 1.5, "interval": (0.3, 5.0)}),
    "dpp strength 6 + cfg 1.25 in (0.3, 5]": ("dpp", {"strength": 6.0, "scale": 1.25, "interval": (0.3, 5.0)}),
    "dpp strength 4 + cfg 1.5 in (0.3, 2]": ("dpp", {"strength": 4.0, "scale": 1.5, "interval": (0.3, 2.0)}),
    "dpp strength 8 + cfg 1.5 in (0.3, 2]": ("dpp", {"strength": 8.0, "scale": 1.5, "interval": (0.3, 2.0)}),
    "dpp strength 6 + cfg 2 in (0.3, 2]": ("dpp", {"strength": 6.0, "scale": 2.0, "interval": (0.3, 2.0)}),
    "dpp strength 10 + cfg 1.5 in (0.3, 5]": ("dpp", {"strength": 10.0, "scale": 1.5, "interval": (0.3, 5.0)}),
    "dpp strength 9 + cfg 1.5 in (0.3, 5]": ("dpp", {"strength": 9.0, "scale": 1.5, "interval": (0.3, 5.0)}),
    "diverse (preset)": ("diverse", {}),
}
# the DPP potential without the denoiser's Jacobian (jacobian="gaussian": no backward pass), alone and with
# a small CFG in a sigma interval
for _s in (8, 16, 32, 64, 128, 192, 256, 384, 512):
    _g = {"strength": float(_s), "jacobian": "gaussian"}
    CONDITIONAL[f"dpp-g strength {_s}"] = ("dpp", _g)
    CONDITIONAL[f"dpp-g strength {_s} + cfg 1.5 in (0.3, 5]"] = ("dpp", {**_g, "scale": 1.5, "interval": (0.3, 5.0)})
    CONDITIONAL[f"dpp-g strength {_s} + cfg 1.5 in (0.3, 2]"] = ("dpp", {**_g, "scale": 1.5, "interval": (0.3, 2.0)})
for _s in (256, 512, 1024):
    for _w in ((0.002, 1.0), (0.002, 3.0), (1.0, 10.0), (3.0, 80.0)):
        CONDITIONAL[f"dpp-g strength {_s}, window ({_w[0]:g}, {_w[1]:g}]"] = (
            "dpp",
            {"strength": float(_s), "jacobian": "gaussian", "window": _w},
        )
for _s in (192, 384, 768):
    _g = {"strength": float(_s), "jacobian": "gaussian"}
    CONDITIONAL[f"dpp-g strength {_s}, projected"] = ("dpp", {**_g, "project": True})
    CONDITIONAL[f"dpp-g strength {_s}, bandwidth x0.5"] = ("dpp", {**_g, "bandwidth_scale": 0.5})
    CONDITIONAL[f"dpp-g strength {_s}, bandwidth x2"] = ("dpp", {**_g, "bandwidth_scale": 2.0})
    CONDITIONAL[f"entropy-g strength {_s}"] = ("entropy", _g)
for _s in (1536, 3072, 6144):
    _g = {"strength": float(_s), "jacobian": "gaussian"}
    CONDITIONAL[f"dpp-g strength {_s}, bandwidth x0.5"] = ("dpp", {**_g, "bandwidth_scale": 0.5})
    CONDITIONAL[f"dpp-g strength {_s}, bandwidth x0.25"] = ("dpp", {**_g, "bandwidth_scale": 0.25})
for _s in (384, 512):
    for _w, _iv in ((2.0, (1.0, 3.0)), (3.0, (1.0, 2.0)), (2.0, (3.0, 6.0)), (3.0, (3.0, 4.0)), (2.0, (6.0, 15.0))):
        CONDITIONAL[f"dpp-g strength {_s} + cfg {_w:g} in ({_iv[0]:g}, {_iv[1]:g}]"] = (
            "dpp",
            {"strength": float(_s), "jacobian": "gaussian", "scale": _w, "interval": _iv},
        )
for _s in (768, 1024, 1536):
    for _w, _iv in ((2.0, (3.0, 6.0)), (1.5, (3.0, 6.0)), (1.5, (1.0, 6.0))):
        CONDITIONAL[f"dpp-g strength {_s} + cfg {_w:g} in ({_iv[0]:g}, {_iv[1]:g}]"] = (
            "dpp",
            {"strength": float(_s), "jacobian": "gaussian", "scale": _w, "interval": _iv},
        )
for _s in (512, 1024, 2048, 2560, 3072, 4096):
    for _win in ((6.0, 80.0), (3.0, 80.0)):
        for _w, _iv in ((2.0, (3.0, 6.0)), (1.5, (3.0, 6.0))):
            CONDITIONAL[
                f"dpp-g strength {_s}, window ({_win[0]:g}, {_win[1]:g}] + cfg {_w:g} in ({_iv[0]:g}, {_iv[1]:g}]"
            ] = (
                "dpp",
                {"strength": float(_s), "jacobian": "gaussian", "window": _win, "scale": _w, "interval": _iv},
            )


class ClassifierGuidance(GuidanceTerm):
    """Classifier guidance (Dhariwal & Nichol 2021) by the noise-conditional ``mnist-noisy`` (neither
    judge) for sigma in ``(lo, hi]``: ``scale * grad_x log p(y | x, sigma)``. ``y`` is the request's
    class label, or with ``assign=True`` (no label: the label-free table) an assignment of the batch to
    distinct classes (each class at most ``ceil(n / 10)`` times when the batch outnumbers them) that
    maximises the summed log-probability, solved again at every call. CPU only, like the bench."""

    def __init__(self, scale: float, window=(0.0, float("inf")), assign: bool = False):
        self.scale, self.window, self.assign = scale, window, assign
        self.clf = load_classifier("mnist-noisy").requires_grad_(False)

    def weight_at(self, sigma):
        return self.scale if self.window[0] < sigma <= self.window[1] else 0.0

    def guide(self, ctx):
        with torch.enable_grad():
            x = ctx.x.detach().requires_grad_(True)
            logp = torch.log_softmax(self.clf(x, ctx.sigma), 1)
            n, k = logp.shape
            if self.assign:
                rows, cols = linear_sum_assignment(-logp.detach().repeat(1, -(-n // k)).numpy())
                y = torch.as_tensor(cols % k)  # rows come back in order, one per sample
            else:
                y = torch.as_tensor(ctx.cond["class_labels"]).expand(n)
            (g,) = torch.autograd.grad(logp[torch.arange(n), y].sum(), x)
        return g


class ReferenceMMD(GuidanceTerm):
    """Kernel herding toward the data (bench-only): ``-strength * n * MMD^2`` between the batch and
    ``refs`` training digits, both noised to the current sigma, in the features ``phi(x, sigma)`` of
    the noisy sample (default ``mnist-noisy``'s class probabilities, neither judge), for sigma in
    ``(lo, hi]``. Its gradient repels each particle from its batch-mates and attracts it to the
    reference cloud with the same kernel, so the batch spreads the way the noised data are spread
    rather than outward (a repulsion alone pushes the batch off the data). The references are noised
    with a generator seeded by sigma and their features cached per sigma, so every batch of a run
    meets the same reference cloud at a level. RBF kernel, bandwidth: the median squared distance
    among the references' features (times ``bandwidth_scale``). ``on="x0"``: the same on the denoised
    estimates against the clean references, the force on ``x`` taken as ``c_skip(sigma)`` times the
    force on ``x0`` (no backward pass through the denoiser, as ``jacobian="gaussian"``)."""

    def __init__(
        self,
        strength,
        window=(0.0, float("inf")),
        refs=256,
        embedding="classifier-probs",
        bandwidth_scale=1.0,
        labelled=False,
        on="x",
        pool=None,
    ):
        from steerdiff.particles.embeddings import get_embedding

        self.on, self.needs_base = on, on == "x0"
        self.strength, self.window, self.bandwidth_scale = float(strength), window, float(bandwidth_scale)
        self.phi = get_embedding(embedding)
        if pool is None:  # the training digits
            train = load_mnist("train")
            self.pool = (train.images, train.labels)
        elif isinstance(pool, tuple):  # the model's own draws per class: (images, the labels they were drawn with)
            self.pool = pool
        else:  # a tensor of the model's own earlier samples: no data, no labels
            check(not labelled, "a pool of samples has no labels")
            self.pool = (pool, None)
        g = torch.Generator().manual_seed(12345)
        self.refs, self.labelled, self._cache = int(refs), labelled, {}
        self._pick = torch.randperm(len(self.pool[0]), generator=g)

    def weight_at(self, sigma):
        return self.strength if self.window[0] < sigma <= self.window[1] else 0.0

    def _ref_features(self, sigma, label):
        sigma = 0.0 if self.on == "x0" else sigma
        key = (round(float(sigma), 6), label)
        if key not in self._cache:
            images, labels = self.pool
            idx = self._pick if label is None else self._pick[labels[self._pick] == label]
            r = images[idx[: self.refs]]
            g = torch.Generator().manual_seed(
                int(1e6 * float(sigma)) % (2**31) + (0 if label is None else 7 * label + 1)
            )
            rn = r + float(sigma) * torch.randn(r.shape, generator=g)
            with torch.no_grad():
                f = self.phi(rn, torch.full((len(rn),), float(sigma))).flatten(1).double()
            d2 = torch.cdist(f, f).pow(2)
            h = self.bandwidth_scale * d2[~torch.eye(len(f), dtype=torch.bool)].median().clamp(min=1e-12)
            self._cache[key] = (f, h)
        return self._cache[key]

    def guide(self, ctx):
        sigma = float(ctx.sigma.flatten()[0])
        label = int(torch.as_tensor(ctx.cond["class_labels"]).flatten()[0]) if self.labelled else None
        fr, h = self._ref_features(sigma, label)
        with torch.enable_grad():
            x = (ctx.denoised if self.on == "x0" else ctx.x).detach().requires_grad_(True)
            f = self.phi(x, ctx.sigma * (self.on == "x")).flatten(1).double()
            n = len(f)
            kbb = torch.exp(-torch.cdist(f, f).pow(2) / h)
            kbr = torch.exp(-torch.cdist(f, fr).pow(2) / h)
            v = -(kbb.sum() / n - 2 * kbr.mean(1).sum())  # -n MMD^2 + const
            (g,) = torch.autograd.grad(v, x)
        c_skip = 0.25 / (sigma**2 + 0.25) if self.on == "x0" else 1.0  # sigma_data 0.5
        return (c_skip * g).to(ctx.x.dtype)


# classifier guidance (bench-only: "cg" options), alone and under SPELL or a narrow CFG interval; measured
# 2026-12-05 on the table's seeds, then on fresh ones (docs: "Classifier guidance at scale 1")
for _s, _w in ((1.0, None), (2.0, None), (4.0, None), (2.0, (2.0, 10.0)), (4.0, (3.0, 6.0))):
    _cg = {"scale": _s} if _w is None else {"scale": _s, "window": _w}
    _tag = f"classifier guidance {_s:g}" + ("" if _w is None else f" in ({_w[0]:g}, {_w[1]:g}]")
    CONDITIONAL[_tag] = ("iid", {"cg": _cg})
    for _r in (0.6, 0.75, 0.9):
        CONDITIONAL[f"spell r {_r} + {_tag}"] = ("spell", {"radius_scale": _r, "cg": _cg})
CONDITIONAL["spell r 0.75"] = ("spell", {"radius_scale": 0.75})
for _r in (0.7, 0.75, 0.8):
    CONDITIONAL[f"spell r {_r} + cfg 2 in (3, 6]"] = (
        "spell",
        {"radius_scale": _r, "scale": 2.0, "interval": (3.0, 6.0)},
    )
CONDITIONAL["spell r 0.75 + cfg 1.5 in (2, 10]"] = (
    "spell",
    {"radius_scale": 0.75, "scale": 1.5, "interval": (2.0, 10.0)},
)


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _blur(x, sigma=None):
    """A 5-tap binomial blur of each channel, flattened: a push through it is smooth."""
    k = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(x)[None, None].repeat(x.shape[1], 1, 1, 1)
    return torch.nn.functional.conv2d(x, k, padding=2, groups=x.shape[1]).flatten(1)


for _s in (1024, 2048, 3072, 4096, 5120, 6144, 8192):
    for _emb in ("blur",):
        _o = {"strength": float(_s), "jacobian": "gaussian", "window": (6.0, 80.0), "embedding": _blur}
        CONDITIONAL[f"dpp-g {_emb} strength {_s}, window (6, 80] + cfg 2 in (3, 6]"] = (
            "dpp",
            {**_o, "scale": 2.0, "interval": (3.0, 6.0)},
        )
        CONDITIONAL[f"entropy-g strength {_s}, window (6, 80] + cfg 2 in (3, 6]"] = (
            "entropy",
            {**_o, "embedding": "identity", "scale": 2.0, "interval": (3.0, 6.0)},
        )
for _s in (192, 256, 384, 512, 768, 1024):
    for _m in ("dpp", "entropy"):
        for _win in (None, (0.002, 6.0)):
            _o = {"strength": float(_s), "jacobian": "gaussian", "scale": 2.0, "interval": (3.0, 6.0)}
            _name = f"{_m}-g strength {_s}" + ("" if _win is None else f", window ({_win[0]:g}, {_win[1]:g}]")
            CONDITIONAL[_name + " + cfg 2 in (3, 6]"] = (_m, _o if _win is None else {**_o, "window": _win})
for _s in (2048, 2560, 3072, 3584, 4096):
    for _win in ((6.0, 80.0), (10.0, 80.0)):
        for _w in (1.5, 2.0, 2.5):
            _o = {"strength": float(_s), "jacobian": "gaussian", "window": _win, "scale": _w, "interval": (3.0, 6.0)}
            CONDITIONAL.setdefault(
                f"entropy-g strength {_s}, window ({_win[0]:g}, {_win[1]:g}] + cfg {_w:g} in (3, 6]", ("entropy", _o)
            )
for _s in (8, 16, 32, 64):
    CONDITIONAL[f"dpp strength {_s}, window (6, 80] + cfg 1.5 in (3, 6]"] = (
        "dpp",
        {"strength": float(_s), "window": (6.0, 80.0), "scale": 1.5, "interval": (3.0, 6.0)},
    )
_E = {"strength": 2560.0, "jacobian": "gaussian", "window": (6.0, 80.0), "scale": 1.5, "interval": (3.0, 6.0)}
for _b in ("", ":2", ":4", ":7"):
    CONDITIONAL[f"simplex noise{_b}"] = ("iid", {"init_noise": "simplex" + _b})
CONDITIONAL["diverse (preset) + simplex noise"] = ("diverse", {"init_noise": "simplex"})
for _s in (1536, 2048, 2304, 2560):
    CONDITIONAL[f"entropy-g {_s}, window (6, 80] + cfg 1.5 in (3, 6] + simplex noise"] = (
        "entropy",
        {**_E, "strength": float(_s), "init_noise": "simplex"},
    )
UNCONDITIONAL = {
    "iid": ("iid", {}),
    "repulsion, mnist-noisy probs on x, proj (repulsive preset)": ("repulsive", {}),
    "pg dot kernel on x, proj": (
        "pg",
        {
            "kernel": "dot",
            "embedding": "classifier-probs",
            "on": "x",
            "strength": 30.0,
            "window": (0.5, 80.0),
            "project": True,
        },
    ),
    "stratified 2 x 10, mnist-noisy probs": ("stratified", {"candidates": 2, "embedding": "classifier-probs"}),
    "stratified 4 x 10, mnist-noisy probs": ("stratified", {"candidates": 4, "embedding": "classifier-probs"}),
    "cover 3 x 10, mnist-noisy labels": ("cover", {"candidates": 3}),
    "cover 4 x 10, mnist-noisy labels": ("cover", {"candidates": 4}),
    "pg dot kernel on x, proj, window (2, 80)": (
        "pg",
        {
            "kernel": "dot",
            "embedding": "classifier-probs",
            "on": "x",
            "strength": 30.0,
            "window": (2.0, 80.0),
            "project": True,
        },
    ),
    "spell": ("spell", {}),
    "dpp": ("dpp", {}),
    "diverse (preset)": ("diverse", {}),
}
for _s in (2048, 4096, 8192):
    for _m in ("dpp", "entropy"):
        UNCONDITIONAL[f"{_m}-g strength {_s}, window (6, 80]"] = (
            _m,
            {"strength": float(_s), "jacobian": "gaussian", "window": (6.0, 80.0)},
        )
for _s in (128, 256, 512):
    for _win in ((1.0, 80.0), (3.0, 80.0)):
        UNCONDITIONAL[f"dpp-g mnist-noisy probs strength {_s}, window ({_win[0]:g}, {_win[1]:g}]"] = (
            "dpp",
            {"strength": float(_s), "jacobian": "gaussian", "embedding": "classifier-probs", "window": _win},
        )
for _s in (4, 16, 64, 128, 256):
    for _m in ("dpp", "entropy"):
        UNCONDITIONAL[f"{_m}-g mnist-noisy probs strength {_s}"] = (
            _m,
            {"strength": float(_s), "jacobian": "gaussian", "embedding": "classifier-probs"},
        )

UNCONDITIONAL["simplex noise"] = ("iid", {"init_noise": "simplex"})
UNCONDITIONAL["cover 3 x 10 + simplex noise"] = ("cover", {"candidates": 3, "init_noise": "simplex"})
UNCONDITIONAL["cover 2 x 10 + simplex noise"] = ("cover", {"candidates": 2, "init_noise": "simplex"})
for _s in (32, 48, 64, 80, 96):
    UNCONDITIONAL[f"dpp-g mnist-noisy probs strength {_s} + simplex noise"] = (
        "dpp",
        {"strength": float(_s), "jacobian": "gaussian", "embedding": "classifier-probs", "init_noise": "simplex"},
    )

for _s, _w in (
    (2.0, (2.0, 10.0)),
    (4.0, (3.0, 6.0)),
    (8.0, (3.0, 6.0)),
    (8.0, (3.0, 10.0)),
    (16.0, (3.0, 6.0)),
    (16.0, (3.0, 10.0)),
    (32.0, (3.0, 6.0)),
    (2.0, (1.0, 80.0)),
):
    UNCONDITIONAL[f"assigned classifier guidance {_s:g} in ({_w[0]:g}, {_w[1]:g}]"] = (
        "iid",
        {"cg": {"scale": _s, "window": _w, "assign": True}},
    )

# kernel herding toward noised training digits (bench-only: "mmd" options)
for _s in (4.0, 16.0, 64.0, 256.0, 1024.0):
    for _w in (None, (1.0, 80.0), (3.0, 80.0)):
        _o = {"strength": _s} if _w is None else {"strength": _s, "window": _w}
        _tag = f"reference mmd {_s:g}" + ("" if _w is None else f", window ({_w[0]:g}, {_w[1]:g}]")
        UNCONDITIONAL[_tag] = ("iid", {"mmd": _o})
        UNCONDITIONAL[_tag + ", on x0"] = ("iid", {"mmd": {**_o, "on": "x0"}})
        # within a class the class probabilities are all alike: mnist-noisy's features instead
        CONDITIONAL[_tag + ", mnist-noisy features"] = (
            "iid",
            {"mmd": {**_o, "labelled": True, "embedding": "noisy-digit-cnn"}},
        )


for _s in (512.0, 1024.0, 2048.0):
    for _b in (1.0, 0.5, 0.25):
        _o = {"strength": _s, "on": "x0", "bandwidth_scale": _b}
        _tag = f"reference mmd {_s:g}, on x0" + ("" if _b == 1.0 else f", bandwidth x{_b:g}")
        UNCONDITIONAL[_tag] = ("iid", {"mmd": _o})
        UNCONDITIONAL[_tag + " + simplex noise"] = ("iid", {"mmd": _o, "init_noise": "simplex"})
# the same toward 256 of the model's own iid draws instead of training digits (seed 9000, streams 0..255:
# not the bench's seeds), drawn once per run (SELF_POOL)
for _s in (256.0, 512.0, 1024.0):
    for _b in (1.0, 0.5):
        _o = {"strength": _s, "on": "x0", "bandwidth_scale": _b, "pool": "self"}
        _tag = f"self-reference mmd {_s:g}, on x0" + ("" if _b == 1.0 else f", bandwidth x{_b:g}")
        UNCONDITIONAL[_tag] = ("iid", {"mmd": _o})
for _s in (768.0, 1024.0, 1536.0, 2048.0):
    for _w in ((1.0, 80.0), (2.0, 80.0)):
        _o = {"strength": _s, "on": "x0", "window": _w}
        _tag = f"reference mmd {_s:g}, on x0, window ({_w[0]:g}, {_w[1]:g}]"
        UNCONDITIONAL[_tag + " + simplex noise"] = ("iid", {"mmd": _o, "init_noise": "simplex"})
    UNCONDITIONAL[f"reference mmd {_s:g}, on x0 + simplex noise"] = (
        "iid",
        {"mmd": {"strength": _s, "on": "x0"}, "init_noise": "simplex"},
    )
    UNCONDITIONAL[f"self-reference mmd {_s:g}, on x0 + simplex noise"] = (
        "iid",
        {"mmd": {"strength": _s, "on": "x0", "pool": "self"}, "init_noise": "simplex"},
    )
UNCONDITIONAL["self-reference mmd 512, on x0 + simplex noise"] = (
    "iid",
    {"mmd": {"strength": 512.0, "on": "x0", "pool": "self"}, "init_noise": "simplex"},
)
for _s in (64.0, 256.0, 1024.0):
    CONDITIONAL[f"reference mmd {_s:g}, on x0, mnist-noisy features"] = (
        "iid",
        {"mmd": {"strength": _s, "on": "x0", "labelled": True, "embedding": "noisy-digit-cnn"}},
    )


# the library's HerdingGuidance toward 256 of the model's own draws (seed 9000), alone and under assigned
# classifier guidance
def _herding(strength: float, **extra) -> tuple[str, dict]:
    opts = {"strength": strength, "embedding": "classifier-probs", "jacobian": "gaussian"}
    return "herding", {**opts, "reference_features": "self", "init_noise": "simplex", **extra}


for _s in (768.0, 1024.0):
    UNCONDITIONAL[f"herding {_s:g} (own 256 draws) + simplex noise"] = _herding(_s)
for _s, _c in ((512.0, 8.0), (768.0, 8.0), (1024.0, 4.0), (768.0, 4.0)):
    UNCONDITIONAL[
        f"herding {_s:g} (own 256 draws) + simplex noise + assigned classifier guidance {_c:g} in (3, 10]"
    ] = _herding(_s, cg={"scale": _c, "window": (3.0, 10.0), "assign": True})
# SPELL for the spread, herding toward the class's training digits for the Fréchet distance (bench-only)
for _r in (0.75, 0.9):
    for _s in (64.0, 256.0, 1024.0):
        CONDITIONAL[f"spell r {_r} + reference mmd {_s:g}, on x0, mnist-noisy features"] = (
            "spell",
            {
                "radius_scale": _r,
                "mmd": {"strength": _s, "on": "x0", "labelled": True, "embedding": "noisy-digit-cnn"},
            },
        )
for _r, _s in ((0.75, 256.0), (0.75, 1024.0), (0.9, 512.0)):
    CONDITIONAL[f"spell r {_r} + self-reference mmd {_s:g}, on x0, mnist-noisy features"] = (
        "spell",
        {
            "radius_scale": _r,
            "mmd": {"strength": _s, "on": "x0", "labelled": True, "embedding": "noisy-digit-cnn", "pool": "self"},
        },
    )
# the rows a plain run prints (names above); --methods all runs the whole sweep
MAIN = [
    "interval (0.3, 5]",
    "cads s=0.25",
    "cads s=0.25 + interval (0.3, 5]",
    "repulsion, mnist-noisy features on x, proj",
    "spell r 0.9",
    "dpp strength 4",
    "cover 4 x 10, mnist-noisy labels",
    "pg dot kernel on x, proj",
    "diverse (preset)",
]


def parse_classes(s: str) -> list[int]:
    if "-" in s:
        lo, hi = s.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(c) for c in s.split(",")]


def available(method: str) -> bool:
    if method not in ("spell", "dpp"):
        return True
    try:
        from steerdiff import diversity  # noqa: F401
    except ImportError:
        return False
    return True


def distinct_per_batch(probs, n):
    """``(N / n,)`` float64: how many different argmax classes each batch of ``n`` rows of ``probs`` holds."""
    return torch.tensor(
        [len(set(probs[i : i + n].argmax(1).tolist())) for i in range(0, len(probs), n)], dtype=torch.float64
    )


def ratio(row, base, real):
    """``1.27x [1.05, 1.49]``: the row's Fréchet distance over iid's on the same seeds, with a paired
    bootstrap 95% interval over batches (the iid row itself: ``1.00x``)."""
    if row is base:
        return "1.00x"
    r = frechet_ratio_bootstrap(row["batches"], base["batches"], real)
    return f"{r['value']:.2f}x [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"


SELF_POOL: dict = {}  # the label-free model's own reference draws, made once per run


def run(model, method, opts, n, seeds_labels, scale, labelled):
    """Samples ``(N, 1, 28, 28)`` and seconds per batch (``opts["init_noise"]``: ``--init-noise``'s value)."""
    opts = dict(opts)
    noise = {"initial_noise": initial_noise(opts.pop("init_noise"))} if "init_noise" in opts else {}
    cg = [ClassifierGuidance(**opts.pop("cg"))] if "cg" in opts else []
    if opts.get("reference_features") == "self":  # the library term toward the model's own draws
        if "features" not in SELF_POOL:
            SELF_POOL["features"] = herding_reference(model, 256, seed=9000)
        opts["reference_features"] = SELF_POOL["features"]
    if "mmd" in opts and opts["mmd"].get("pool") == "self" and not labelled:
        if "mnist" not in SELF_POOL:
            SELF_POOL["mnist"] = sd.sample(model, 256, seed=9000)
        opts["mmd"] = {**opts["mmd"], "pool": SELF_POOL["mnist"]}
    if "mmd" in opts and opts["mmd"].get("pool") == "self" and labelled:  # 64 own draws per class, scale 1
        if "mnist-cond" not in SELF_POOL:
            draws = [sd.sample(model, 64, seed=9000 + c, cond={"class_labels": c}) for c in range(10)]
            SELF_POOL["mnist-cond"] = (torch.cat(draws), torch.arange(10).repeat_interleave(64))
        opts["mmd"] = {**opts["mmd"], "pool": SELF_POOL["mnist-cond"]}
    cg += [ReferenceMMD(**opts.pop("mmd"))] if "mmd" in opts else []
    assert not cg or method not in ("diverse", "stratified", "cover"), f"cg rows apply to guided methods, not {method}"
    xs, t0 = [], time.perf_counter()
    for seed, label in seeds_labels:
        cond = {"class_labels": label} if labelled else {}  # an int: every draw (and candidate) of the batch
        if method == "diverse":
            xs.append(diverse_sample(model, n, seed=seed, cond=cond, scale=scale if labelled else None, **noise))
            continue
        if method in ("stratified", "cover"):
            den, _ = fixed_condition(model, "iid", scale=scale, labelled=labelled)
            select = stratified_sample if method == "stratified" else cover_sample
            xs.append(select(den, n, seed=seed, cond=cond, **opts, **noise))
            continue
        den, terms = fixed_condition(model, method, scale=scale, seed=seed, options=opts, labelled=labelled)
        xs.append(sd.sample(den, n, seed=seed, cond=cond, guidance=terms + cg, **noise))
    return torch.cat(xs), (time.perf_counter() - t0) / len(seeds_labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=2, help="batches of 10 per class (default 2)")
    ap.add_argument("--classes", default="0-9", help="classes, e.g. 0-9 or 1,7 (default 0-9)")
    ap.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        help="batch b of class c uses seed 1000 c + offset + b (label-free batch b: offset + b): an offset of 100 "
        "gives fresh seeds to confirm a pick",
    )
    ap.add_argument("--scales", default="1,3", help="cfg scales (default 1,3)")
    ap.add_argument(
        "--uncond-batches", type=int, default=20, help="batches of 10 for the label-free table (default 20)"
    )
    ap.add_argument("--only", choices=["cond", "uncond"], default=None)
    ap.add_argument(
        "--methods",
        default=None,
        help="semicolon-separated substrings of method names to run ('=NAME': that name exactly; iid always "
        "runs); 'all' for the whole sweep (long); default: the main rows (MAIN)",
    )
    a = ap.parse_args()
    n = 10
    if a.methods is None:
        keep = lambda name: name == "iid" or name in MAIN  # noqa: E731
    else:
        keep = (
            lambda name: (  # noqa: E731
                a.methods == "all"
                or name == "iid"
                or any(name == s[1:] if s.startswith("=") else s in name for s in a.methods.split(";"))
            )
        )
    evaluator = load_classifier("mnist-evaluator")
    judge2 = load_classifier("mnist-evaluator2")
    cnn = RandomCNN(64, seed=0)
    held = load_mnist("heldout")
    hp, hf = classify(evaluator, held.images)
    if a.only != "uncond":
        model = sd.load("mnist-cond")
        classes = parse_classes(a.classes)
        seeds_labels = [(1000 * c + a.seed_offset + b, c) for c in classes for b in range(a.batches)]
        real = hf[torch.isin(held.labels, torch.tensor(classes))]
        for scale in [float(s) for s in a.scales.split(",")]:
            print(
                f"\n## cfg scale {scale:g}: mnist-cond, classes {a.classes}, {a.batches} batches of {n} per class "
                f"({len(seeds_labels) * n} samples per method)\n"
            )
            print(
                "| method | Vendi (evaluator) | Vendi (cnn64) | fidelity | fidelity (evaluator2) | Fréchet | precision "
                "| recall | time |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            base = None
            for name, (method, opts) in CONDITIONAL.items():
                if not keep(name) or not available(method) or (method == "interval" and scale == 1.0):
                    continue
                x, sec = run(model, method, opts, n, seeds_labels, scale, True)
                p, f = classify(evaluator, x)
                g = cnn(x).detach()
                labels = torch.tensor([c for _, c in seeds_labels]).repeat_interleave(n)
                v_e = np.mean([vendi_score(f[i : i + n]) for i in range(0, len(f), n)])
                v_c = np.mean([vendi_score(g[i : i + n]) for i in range(0, len(g), n)])
                fid = float((p.argmax(1) == labels).float().mean())
                fid2 = float((classify(judge2, x)[0].argmax(1) == labels).float().mean())
                fd = frechet_distance(f, real)
                pr = prdc(real, f, k=5)
                row = dict(v_e=v_e, v_c=v_c, fid=fid, fd=fd, sec=sec, batches=list(f.split(n)))
                base = base or row
                print(
                    f"| {name} | {v_e:.3f} ({v_e / base['v_e']:.2f}x) | {v_c:.3f} ({v_c / base['v_c']:.2f}x) | "
                    f"{100 * fid:.1f}% | {100 * fid2:.1f}% | {fd:.1f} ({ratio(row, base, real)}) | {pr['precision']:.2f} | "
                    f"{pr['recall']:.2f} | {sec / base['sec']:.2f}x |",
                    flush=True,
                )
    if a.only != "cond":
        model = sd.load("mnist")
        seeds_labels = [(a.seed_offset + b, None) for b in range(a.uncond_batches)]
        print(
            f"\n## unconditional (no class labels): mnist, {a.uncond_batches} batches of {n}, seeds from {a.seed_offset}\n"
        )
        print("| method | distinct digits per 10 | distinct (evaluator2) | confidence | Fréchet | time |")
        print("|---|---|---|---|---|---|")
        base = None
        for name, (method, opts) in UNCONDITIONAL.items():
            if not keep(name) or not available(method):
                continue
            x, sec = run(model, method, opts, n, seeds_labels, 1.0, False)
            p, f = classify(evaluator, x)
            d = distinct_per_batch(p, n)
            d2 = float(distinct_per_batch(classify(judge2, x)[0], n).mean())
            conf = float(p.max(1).values.mean())
            fd = frechet_distance(f, hf)
            row = dict(conf=conf, fd=fd, sec=sec, batches=list(f.split(n)))
            base = base or row
            ci = 1.96 * float(d.std()) / len(d) ** 0.5
            print(
                f"| {name} | {float(d.mean()):.2f} ± {ci:.2f} | {d2:.2f} | {conf:.3f} ({conf / base['conf']:.3f}x) | "
                f"{fd:.1f} ({ratio(row, base, hf)}) | {sec / base['sec']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
