"""The MNIST quality report of a model's samples, judged by the shipped evaluator, and a model's own
quality table against its data (:func:`model_quality`, ``steerdiff quality``)."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..core.errors import check
from ..data import load_mnist
from ..train.classifier import classify, load_classifier
from .metrics import frechet_distance, near_copy_rate


def mnist_quality(samples: torch.Tensor, evaluator=None, reference_n: int = 1000) -> dict:
    """Quality numbers of MNIST samples ``(N, 1, 28, 28)`` in ``[-1, 1]``:

    - ``mean_confidence``: mean top-class probability under the evaluator;
    - ``class_fractions``: share of samples per predicted class;
    - ``frechet_heldout``: Fréchet distance (evaluator features) to the 1,000 held-out digits, and
      ``frechet_train_vs_heldout`` for scale (``reference_n`` training digits, default 1,000, against
      the held-out ones: compare at equal sizes, small-sample Fréchet distances are biased upwards);
    - ``near_copy_rate``: see :func:`steerdiff.metrics.near_copy_rate`.
    """
    evaluator = evaluator or load_classifier("mnist-evaluator")
    train, held = load_mnist("train"), load_mnist("heldout")
    probs, feats = classify(evaluator, samples)
    _, held_feats = classify(evaluator, held.images)
    subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[
        :reference_n
    ]  # stratified order: shuffle
    _, train_feats = classify(evaluator, train.images[subset])
    pred = probs.argmax(1)
    return {
        "n": len(samples),
        "mean_confidence": float(probs.max(1).values.mean()),
        "class_fractions": (np.bincount(pred.numpy(), minlength=probs.shape[1]) / len(samples)).round(4).tolist(),
        "frechet_heldout": frechet_distance(feats, held_feats),
        "frechet_train_vs_heldout": frechet_distance(train_feats, held_feats),
        **near_copy_rate(samples, train.images, held.images),
    }


# ------------------------------------------------------------------------ a model's own quality table
SCHEMA = "steerdiff-quality/1"
MAX_N = 100_000
# the goals of issue #18 ("shipped models at data quality")
GOALS = {
    "confidence": 0.97,
    "class_share": (0.08, 0.12),
    "frechet_ratio": 1.25,
    "near_copy": 0.05,
    "label_carried": 0.97,
    "own_set": 0.97,
    "p_right_tolerance": 0.03,
    "circle_allowed": 0.95,
    "circle_frequency_tolerance": 0.05,
}


def _row(metric: str, value, text: str, goal: str = "", passed: bool | None = None) -> dict:
    """One line of the table: ``passed`` None for an informational line without a goal."""
    return {
        "metric": metric,
        "value": value,
        "text": text,
        "goal": goal,
        "pass": None if passed is None else bool(passed),
    }


def _draw(model, n: int, seed: int, cond: dict | None, batch_size: int, bar) -> torch.Tensor:
    """``n`` samples in chunks (sample ``i`` from noise stream ``(seed, i)``, as one ``sample`` call);
    per-sample condition tensors ``(n, ...)`` are cut with the chunks."""
    from ..core.api import sample

    outs = []
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        c = {k: v[lo:hi] for k, v in cond.items()} if cond else None
        outs.append(sample(model, hi - lo, seed=seed, start_index=lo, cond=c).cpu())
        bar.update(hi - lo)
    return torch.cat(outs)


def _plan(name: str, set_guidance: float, device) -> tuple[str, object]:
    """``(kind, what)``: kind ``mnist`` (what: the denoiser), ``sets`` (what: ``[(set, denoiser)]``) or
    ``circle`` / ``horizontal`` (what: the denoiser)."""
    from ..core.errors import SteerdiffError
    from ..data import COLOR_SETS, SET_ORDER, SHORT_NAMES, SUBDIGIT_SETS
    from ..models import SHIPPED, _set_model, load

    if not isinstance(name, (str, os.PathLike)):  # a denoiser object: MNIST digits or a frame model
        check(
            callable(name) and hasattr(name, "sample_shape"),
            f"model must be a name, a path or a denoiser, got {name!r}",
        )
        check(set_guidance == 0, "set_guidance is for the ColorMNIST set models (pass their name)")
        dataset = (getattr(name, "config", None) or {}).get("dataset")
        if getattr(name, "cond_frames", 0):
            check(
                dataset in ("circle", "horizontal"),
                "a frame-conditional denoiser needs config['dataset'] circle or horizontal",
            )
            return dataset, name
        check(
            tuple(name.sample_shape) == (1, 28, 28),
            f"a denoiser of shape {tuple(name.sample_shape)}: the table "
            "takes 1x28x28 digit models, or ColorMNIST sets by name",
        )
        return "mnist", name
    key = SHORT_NAMES.get(str(name), str(name))
    check(key != "ring", "--model ring is the analytic toy: its samples are exact, there is no quality table for it")
    is_set = key in SET_ORDER or key == "colormnist-sets"
    check(
        set_guidance == 0 or is_set or key not in SHIPPED,
        f"set_guidance is for the ColorMNIST set models ({', '.join(SET_ORDER)}, colormnist-sets), not {name}",
    )
    # the set network: the sets it composes (the all-digit set holds every red or green digit, so its
    # own-set rate is 1 by construction)
    composed = [s for s in SET_ORDER if s != "colormnist"]
    if key in ("colormnist", "colormnist-sets"):
        base = load("colormnist-sets", device=device)
        return "sets", [(s, _set_model(base, s, set_guidance)) for s in composed]
    if key in composed:
        return "sets", [(key, load(key, device=device, set_guidance=set_guidance))]
    if key in SUBDIGIT_SETS:
        check(set_guidance == 0, f"set_guidance is for the ColorMNIST set models, not the sub-digit set {key}")
        return "sets", [(key, load(key, device=device))]
    model = load(name, device=device)
    conf = getattr(model, "config", {}) or {}
    dataset = conf.get("dataset") or conf.get("train", {}).get("dataset")
    if dataset == "colormnist-sets":
        return "sets", [(s, _set_model(model, s, set_guidance)) for s in composed]
    check(set_guidance == 0, f"set_guidance is for the ColorMNIST set models, not {name} (dataset {dataset})")
    if dataset in COLOR_SETS:  # a network trained on one set
        return "sets", [(dataset, model)]
    if getattr(model, "cond_frames", 0):
        check(
            dataset in ("circle", "horizontal"),
            f"{name}: frame-conditional on dataset {dataset!r}; the quality table "
            "knows the rules of circle and horizontal",
        )
        return dataset, model
    if tuple(model.sample_shape) == (1, 28, 28) and dataset in (None, "mnist"):
        return "mnist", model
    raise SteerdiffError(
        f"{name}: no quality table for dataset {dataset!r} (sample shape {tuple(model.sample_shape)}): "
        "the table covers MNIST digit models, ColorMNIST and sub-digit sets, and the circle / "
        "horizontal frame models"
    )


def model_quality(
    name="mnist",
    n: int = 1000,
    seed: int = 0,
    *,
    set_guidance: float = 0.0,
    batch_size: int = 250,
    device: str = "cpu",
    progress: bool = False,
    evaluator=None,
) -> dict:
    """The quality table of a shipped model (or checkpoint directory, or denoiser object) ``name``,
    judged against its own data (issue #18's goals). Returns ``{"schema", "model", "kind", "n", "seed", "set_guidance", "rows",
    "metrics", "passed", "seconds"}``; each row is ``{"metric", "value", "text", "goal", "pass"}``
    (``pass`` None on lines without a goal); :func:`format_table` prints it.

    - MNIST models (``mnist``; ``mnist-cond`` and other label-requiring models get labels
      0, 1, ..., 9 in turn and add the label-carried rate): mean evaluator confidence, per-class share
      and its min / max, Fréchet distance (evaluator features) to the 1,000 held-out digits with the
      same-size train-vs-held-out reference and their ratio, near-copy rate against the training set;
    - ColorMNIST set models (``M1`` ... ``MN3``, or ``colormnist`` / ``colormnist-sets``: the five sets
      of the set network; its all-digit set scores 1 by construction) and sub-digit sets: per set,
      the share of samples that are one of the set's (digit, colour) classes, by :func:`steerdiff.compose_eval.color_digit_classes`;
    - ``horizontal``: ``n`` predictions, each from its own held-out digit arriving at the centre
      (alternately from the left and the right), p(right) with its 95% interval against the
      dataset's p_right; ``circle``: ``n`` predictions from centred held-out digits, the share moving
      in a direction the dataset allows (:func:`steerdiff.sequences.direction_metrics`) and the
      direction frequencies against the dataset's.

    ``n`` is per set for set models. Sample ``i`` uses noise stream ``(seed, i)``.
    """
    import numbers
    import time

    from tqdm.auto import tqdm

    check(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) and 2 <= n <= MAX_N,
        f"n must be an integer in 2..{MAX_N}, got {n!r}",
    )
    check(isinstance(seed, numbers.Integral) and not isinstance(seed, bool), f"seed must be an integer, got {seed!r}")
    check(
        isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool) and batch_size >= 1,
        f"batch_size must be a positive integer, got {batch_size!r}",
    )
    check(
        isinstance(set_guidance, numbers.Real) and np.isfinite(set_guidance) and set_guidance >= 0,
        f"set_guidance must be a finite number >= 0, got {set_guidance!r}",
    )
    t0 = time.perf_counter()
    kind, what = _plan(name, float(set_guidance), device)
    evaluator = evaluator or load_classifier("mnist-evaluator")
    total = n * (len(what) if kind == "sets" else 1)
    with tqdm(total=total, desc="quality", unit="sample", disable=not progress) as bar:
        if kind == "mnist":
            rows, metrics = _mnist_table(what, n, seed, batch_size, bar, evaluator)
        elif kind == "sets":
            rows, metrics = _sets_table(what, n, seed, batch_size, bar, evaluator)
        else:
            rows, metrics = _frames_table(kind, what, n, seed, batch_size, bar)
    label = str(name) if isinstance(name, (str, os.PathLike)) else getattr(name, "name", type(name).__name__)
    return {
        "schema": SCHEMA,
        "model": label,
        "kind": kind,
        "n": n,
        "seed": seed,
        "set_guidance": float(set_guidance),
        "rows": rows,
        "metrics": metrics,
        "passed": all(r["pass"] for r in rows if r["pass"] is not None),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def mnist_rows(q: dict, labels: torch.Tensor | None = None, predicted: torch.Tensor | None = None) -> list[dict]:
    """The table rows of :func:`mnist_quality`'s numbers ``q`` (plus the label-carried rate when the
    requested ``labels`` and the evaluator's ``predicted`` classes are given)."""
    g = GOALS
    lo, hi = g["class_share"]
    shares = q["class_fractions"]
    cmin, cmax = int(np.argmin(shares)), int(np.argmax(shares))
    ratio = q["frechet_heldout"] / max(q["frechet_train_vs_heldout"], 1e-12)
    rows = [
        _row(
            "evaluator confidence (mean)",
            q["mean_confidence"],
            f"{q['mean_confidence']:.3f}",
            f">= {g['confidence']}",
            q["mean_confidence"] >= g["confidence"],
        ),
        _row("class shares (digits 0-9)", shares, " ".join(f"{100 * s:.1f}" for s in shares) + " %", "", None),
        _row(
            "class balance: min / max share",
            [shares[cmin], shares[cmax]],
            f"{100 * shares[cmin]:.1f}% (digit {cmin}) / {100 * shares[cmax]:.1f}% (digit {cmax})",
            f"every class {100 * lo:.0f}-{100 * hi:.0f}%",
            lo <= shares[cmin] and shares[cmax] <= hi,
        ),
        _row(
            "Frechet distance to held-out (evaluator)",
            [q["frechet_heldout"], q["frechet_train_vs_heldout"], ratio],
            f"{q['frechet_heldout']:.1f} (train vs held-out {q['frechet_train_vs_heldout']:.1f}; {ratio:.2f}x)",
            f"<= {g['frechet_ratio']}x reference",
            ratio <= g["frechet_ratio"],
        ),
        _row(
            "near-copy rate (vs training set)",
            q["near_copy_rate"],
            f"{100 * q['near_copy_rate']:.1f}%",
            f"<= {100 * g['near_copy']:.0f}%",
            q["near_copy_rate"] <= g["near_copy"],
        ),
    ]
    if labels is not None:
        carried = float((predicted == labels).double().mean())
        q["label_carried"] = carried
        rows.append(
            _row(
                "label carried (evaluator = requested)",
                carried,
                f"{100 * carried:.1f}%",
                f">= {100 * g['label_carried']:.0f}%",
                carried >= g["label_carried"],
            )
        )
    return rows


def _mnist_table(model, n, seed, batch_size, bar, evaluator):
    from ..data import load_mnist

    labels = None
    cond = None
    if getattr(model, "require_labels", False):  # class-conditional requests: 0, 1, ..., 9 in turn
        labels = torch.arange(n) % model.num_classes
        cond = {"class_labels": labels}
    x = _draw(model, n, seed, cond, batch_size, bar)
    q = mnist_quality(x, evaluator, reference_n=min(n, len(load_mnist("train").images)))
    predicted = classify(evaluator, x)[0].argmax(1) if labels is not None else None
    return mnist_rows(q, labels, predicted), q


def set_rows(set_name: str, classes: torch.Tensor) -> tuple[dict, dict]:
    """The row and numbers of one set: the share of ``classes`` (from ``color_digit_classes``) the set holds."""
    from ..compose.evaluate import class_histogram, class_weights, total_variation

    w = class_weights(set_name)
    own = float((w[classes] > 0).double().mean())
    hist = class_histogram(classes, len(w))
    m = {"own_set_rate": own, "tv_to_set": total_variation(hist, w), "class_fractions": hist.round(decimals=4).tolist()}
    return _row(
        f"{set_name}: own digits and colours",
        own,
        f"{100 * own:.1f}% (TV to the set's classes {m['tv_to_set']:.3f})",
        f">= {100 * GOALS['own_set']:.0f}%",
        own >= GOALS["own_set"],
    ), m


def _sets_table(sets, n, seed, batch_size, bar, evaluator):
    from ..compose.evaluate import color_digit_classes

    rows, metrics = [], {}
    for set_name, model in sets:
        classes = color_digit_classes(_draw(model, n, seed, None, batch_size, bar), evaluator)
        row, metrics[set_name] = set_rows(set_name, classes)
        rows.append(row)
    return rows, metrics


def horizontal_conditions(n: int, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frames (n, k, 32, 32), from_left (n,))``: condition ``i`` is held-out digit ``(seed + i) mod 1000``
    arriving at the centre column, from the left when ``seed + i`` is even."""
    from ..data import load_mnist
    from ..sequences.moving import arriving_at_centre

    held = load_mnist("heldout").images
    idx = (seed + torch.arange(n)) % len(held)
    left = (seed + torch.arange(n)) % 2 == 0
    frames = torch.empty(n, k, 32, 32)
    for flag in (True, False):
        sel = left == flag
        if bool(sel.any()):
            frames[sel] = arriving_at_centre(held[idx[sel]], k, from_left=flag)
    return frames, left


def circle_conditions(n: int, seed: int = 0) -> torch.Tensor:
    """``(n, 1, 32, 32)``: held-out digit ``(seed + i) mod 1000`` centred (where a circle move starts)."""
    from ..data import load_mnist
    from ..sequences.moving import moving_digits

    held = load_mnist("heldout").images
    return moving_digits("circle", held[(seed + torch.arange(n)) % len(held)], length=1)["frames"]


def circle_targets(n_directions: int, p_first: float | None = None) -> list[float]:
    """The dataset's probability of each of the 8 direction indices (0 = right, counter-clockwise)."""
    from ..sequences.moving import allowed_directions

    allowed = sorted(allowed_directions(n_directions))
    p = [0.0] * 8
    for j, d in enumerate(allowed):
        p[d] = 1.0 / n_directions if p_first is None else p_first if j == 0 else (1 - p_first) / (n_directions - 1)
    return p


def horizontal_rows(x: torch.Tensor, last: torch.Tensor, left: torch.Tensor, p0: float) -> tuple[list[dict], dict]:
    """Rows and numbers of horizontal predictions ``x`` from their last condition frames ``last``."""
    from ..sequences.evaluate import horizontal_directions
    from ..sequences.moving import direction_metrics, p_right

    dirs = horizontal_directions(x, last)
    pr = p_right(dirs.tolist(), p0=p0)
    by_rule = direction_metrics(x, last, 2, step=2)["accuracy"]
    from_left = float((dirs[left] > 0).double().mean()) if bool(left.any()) else float("nan")
    from_right = float((dirs[~left] > 0).double().mean()) if bool((~left).any()) else float("nan")
    tol = GOALS["p_right_tolerance"]
    ok = abs(pr["p_right"] - p0) <= tol and pr["ci95"][0] <= p0 <= pr["ci95"][1]
    rows = [
        _row(
            "p(right)",
            pr["p_right"],
            f"{pr['p_right']:.3f} (95% CI {pr['ci95'][0]:.3f}-{pr['ci95'][1]:.3f}; n {pr['n']})",
            f"within {tol} of {p0}, CI holds it",
            ok,
        ),
        _row(
            "p(right) arriving from the left / right",
            [from_left, from_right],
            f"{from_left:.3f} / {from_right:.3f}",
            f"both {p0} by the rule",
            None,
        ),
        _row("moves one step left or right", by_rule, f"{100 * by_rule:.1f}%", "", None),
    ]
    return rows, {
        "p_right": pr,
        "p_right_from_left": from_left,
        "p_right_from_right": from_right,
        "rule_accuracy": by_rule,
    }


def circle_rows(
    x: torch.Tensor, last: torch.Tensor, n_directions: int, p_first: float | None = None
) -> tuple[list[dict], dict]:
    """Rows and numbers of circle predictions ``x`` from their (centred) condition frames ``last``."""
    from ..sequences.moving import direction_metrics

    m = direction_metrics(x, last, n_directions)
    d = np.asarray(m["directions"])
    freq = [float((d == j).mean()) for j in range(8)]
    stayed = float((d == -1).mean())
    target = circle_targets(n_directions, p_first)
    dev = max([abs(f - t) for f, t in zip(freq, target, strict=True)] + [stayed])
    tol = GOALS["circle_frequency_tolerance"]
    rows = [
        _row(
            "moves in an allowed direction",
            m["accuracy"],
            f"{100 * m['accuracy']:.1f}% ({n_directions} directions)",
            f">= {100 * GOALS['circle_allowed']:.0f}%",
            m["accuracy"] >= GOALS["circle_allowed"],
        ),
        _row(
            "direction frequencies (0=right, ccw; stayed)",
            freq + [stayed],
            " ".join(f"{f:.3f}" for f in freq) + f"; {stayed:.3f}",
            "",
            None,
        ),
        _row(
            "direction frequencies vs dataset (max |diff|)",
            dev,
            f"{dev:.3f} (dataset: " + " ".join(f"{t:.3f}" for t in target) + ")",
            f"<= {tol} each",
            dev <= tol,
        ),
    ]
    return rows, {
        "accuracy": m["accuracy"],
        "frequencies": freq,
        "stayed": stayed,
        "dataset_frequencies": target,
        "max_frequency_difference": dev,
        "l2": m["l2"],
        "iou": m["iou"],
    }


def _frames_table(kind, model, n, seed, batch_size, bar):
    train = model.config.get("train", {})
    if kind == "horizontal":
        frames, left = horizontal_conditions(n, model.cond_frames, seed)
        x = _draw(model, n, seed, {"frames": frames}, batch_size, bar)
        return horizontal_rows(x, frames[:, -1:], left, float(train.get("p_right", 0.7)))
    frames = circle_conditions(n, seed)[:, -model.cond_frames :]
    x = _draw(model, n, seed, {"frames": frames}, batch_size, bar)
    return circle_rows(x, frames[:, -1:], int(train.get("n_directions", 8)), train.get("p_first"))


def format_table(result: dict) -> str:
    """The quality table as text: one line per row with its goal and PASS / FAIL."""
    rows = result["rows"]
    w1 = max(len(r["metric"]) for r in rows)
    w2 = max(len(r["text"]) for r in rows)
    w3 = max(len(r["goal"]) for r in rows) + 5
    head = (
        f"quality of {result['model']} ({result['kind']}, n {result['n']}"
        + (" per set" if result["kind"] == "sets" else "")
        + f", seed {result['seed']}"
        + (f", set guidance {result['set_guidance']:g}" if result["set_guidance"] else "")
        + ")"
    )
    lines = [head]
    for r in rows:
        verdict = "" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        lines.append(
            f"  {r['metric']:<{w1}}  {r['text']:<{w2}}  {('goal ' + r['goal']) if r['goal'] else '':<{w3}}  {verdict}".rstrip()
        )
    goals = [r for r in rows if r["pass"] is not None]
    lines.append(f"  {sum(r['pass'] for r in goals)} of {len(goals)} goals met")
    return "\n".join(lines)
