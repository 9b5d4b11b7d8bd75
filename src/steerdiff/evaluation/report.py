"""``steerdiff report``: a strength sweep (optionally against a second setting) written as image grids,
plots, one JSON and a self-contained ``index.html``.

For every strength (and every value of ``vs``), ``batches`` batches of ``n`` particles are drawn with
seeds ``seed .. seed + batches - 1`` (the same seeds everywhere, so strength 0 is the iid baseline)
and evaluated by :func:`steerdiff.evaluate.evaluate_batches`.
"""

from __future__ import annotations

import html
import json
import math
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import atomic_directory, write_json_atomic
from ..core.errors import check
from ..io import save_samples
from .evaluate import evaluate_batches

FRONTIER_METHODS = ("iid", "pg", "repulsive", "stratified", "cfg", "interval", "cads", "spell", "dpp", "diverse")
SAMPLER_PARAMS = {"churn": "s_churn", "s_churn": "s_churn", "steps": "steps", "sampler": "sampler"}


def parse_vs(text: str | None) -> tuple[str, list] | None:
    """``"PARAM:V1,V2,..."`` -> ``(PARAM, [values])``, numbers converted where they parse."""
    if not text:
        return None
    check(":" in text, f"--vs {text!r}: use PARAM:V1,V2 (e.g. kernel:rbf,dot or churn:0,10,40)")
    name, vals = text.split(":", 1)

    def conv(v):
        try:
            return int(v) if v.isdigit() else float(v)
        except ValueError:
            return v

    values = [conv(v) for v in vals.split(",") if v]
    check(values, f"--vs {text!r}: give at least one value")
    from dataclasses import fields

    from ..particles.pg import _ParticleTerm

    known = sorted(set(SAMPLER_PARAMS) | {f.name for f in fields(_ParticleTerm)} - {"archive", "prior"} | {"method"})
    check(name in known, f"--vs {name!r}: not a setting to sweep; use one of {', '.join(known)}")
    numbers = [v for v in values if not isinstance(v, str)]
    check(all(math.isfinite(v) for v in numbers), f"--vs {text!r}: the values must be finite")
    if name == "method":
        bad = [v for v in values if v not in FRONTIER_METHODS]
        check(
            not bad,
            f"--vs {text!r}: {', '.join(map(str, bad))}: not a method; use some of {', '.join(FRONTIER_METHODS)}",
        )
        check(len(set(values)) == len(values), f"--vs {text!r}: each method once")
    if name == "steps":
        check(all(isinstance(v, int) and v >= 1 for v in values), f"--vs {text!r}: steps are positive integers")
    if name in ("churn", "s_churn", "bandwidth_scale", "strength", "clip", "subset"):
        check(len(numbers) == len(values) and all(v >= 0 for v in numbers), f"--vs {text!r}: {name} takes numbers >= 0")
    return name, values


def _term(method: str, strength: float, params: dict):
    from ..particles.pg import ParticleGuidance, Repulsion

    if strength == 0:
        return []
    return [(ParticleGuidance if method == "pg" else Repulsion)(strength=strength, **params)]


def _plot_tradeoff(rows, path: Path, quality: str | None, diversity: str) -> None:
    """Diversity against quality (``quality`` names the x axis), or against strength where the rows have no
    quality value (``quality`` None: no classifier and no real data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["vs"], []).append(r)
    for vs, rs in groups.items():
        q = [r["quality"] if quality else r["strength"] for r in rs]
        d = [r["metrics"]["aggregate"][diversity] for r in rs]
        ax.errorbar(
            q,
            [x["mean"] for x in d],
            yerr=[[x["mean"] - x["ci95"][0] for x in d], [x["ci95"][1] - x["mean"] for x in d]],
            marker="o",
            capsize=3,
            label="" if vs is None else str(vs),
        )
        for r, qq, dd in zip(rs, q, d, strict=False):
            ax.annotate(f"{r['strength']:g}", (qq, dd["mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(quality or "strength")
    ax.set_ylabel(f"{diversity} per batch (mean, 95% CI)")
    ax.set_title("diversity against quality (labels: strength)" if quality else "diversity against strength")
    if len(groups) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_heatmap(rows, strengths, vs_name, vs_values, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.full((len(vs_values), len(strengths)), np.nan)
    for r in rows:
        v = (
            r["metrics"]["aggregate"].get(metric, {}).get("mean")
            if metric in r["metrics"]["aggregate"]
            else r["metrics"]["overall"].get(metric)
        )
        grid[vs_values.index(r["vs"]), strengths.index(r["strength"])] = np.nan if v is None else v
    fig, ax = plt.subplots(figsize=(1 + 0.9 * len(strengths), 1 + 0.5 * len(vs_values)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(strengths)), [f"{s:g}" for s in strengths])
    ax.set_yticks(range(len(vs_values)), [str(v) for v in vs_values])
    ax.set_xlabel("strength")
    ax.set_ylabel(vs_name)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_title(metric)
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_features(rows, feats, real_feats, path: Path) -> None:
    """PCA of sample features (coloured by strength) over the real data's (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allf = (
        torch.cat([real_feats] + feats).double().numpy()
        if real_feats is not None
        else torch.cat(feats).double().numpy()
    )
    mean = allf.mean(0)
    _, _, vt = np.linalg.svd(allf - mean, full_matrices=False)
    proj = lambda f: (f.double().numpy() - mean) @ vt[:2].T
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if real_feats is not None:
        p = proj(real_feats)
        ax.scatter(p[:, 0], p[:, 1], s=4, c="0.8", label="real")
    cmap = plt.get_cmap("plasma")
    for k, (r, f) in enumerate(zip(rows, feats, strict=False)):
        p = proj(f)
        label = f"s={r['strength']:g}" + ("" if r["vs"] is None else f", {r['vs']}")
        ax.scatter(p[:, 0], p[:, 1], s=9, color=cmap(k / max(1, len(rows) - 1)), label=label)
    ax.legend(fontsize=6, markerscale=1.5)
    ax.set_title("features (PCA): samples over real data")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_IMAGE_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.length > 0 && imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images-ok', ok ? 'yes' : 'no');
  document.body.setAttribute('data-image-count', String(imgs.length));
});
</script>"""


def _html(title: str, config: dict, rows, images: list[tuple[str, str]], plots: list[str]) -> str:
    esc = html.escape
    metric_names = sorted(
        {m for r in rows for m in r["metrics"]["aggregate"] if r["metrics"]["aggregate"][m]["mean"] is not None}
    )
    head = "".join(f"<th>{esc(m)}</th>" for m in metric_names)
    body = ""
    for r in rows:
        cells = "".join(
            f"<td>{r['metrics']['aggregate'][m]['mean']:.3f} <small>[{r['metrics']['aggregate'][m]['ci95'][0]:.3f}, "
            f"{r['metrics']['aggregate'][m]['ci95'][1]:.3f}]</small></td>"
            for m in metric_names
        )
        fd = r["metrics"]["overall"].get("frechet")
        fci = (r.get("frechet") or {}).get("ci95")
        fd_cell = (
            "" if fd is None else f"{fd:.1f}" + ("" if fci is None else f" <small>[{fci[0]:.1f}, {fci[1]:.1f}]</small>")
        )
        strength = "" if r["strength"] is None else f"{r['strength']:g}"
        body += (
            f"<tr><td>{strength}</td><td>{esc(str(r['vs']))}</td>{cells}"
            f"<td>{fd_cell}</td><td>{r['seconds_per_batch']:.2f}</td></tr>"
        )
    figs = "".join(
        f'<figure><img src="{esc(p)}" alt="{esc(p)}"><figcaption>{esc(p)}</figcaption></figure>' for p in plots
    )
    grids = "".join(
        f'<figure><img src="{esc(p)}" alt="{esc(c)}"><figcaption>{esc(c)}</figcaption></figure>' for p, c in images
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}} figure{{display:inline-block;margin:8px}}
img{{image-rendering:pixelated;max-width:520px}} small{{color:#666}}</style></head>
<body><h1>{esc(title)}</h1>
<p>Settings: <code>{esc(json.dumps(config, sort_keys=True))}</code></p>
<h2>Metrics (mean over batches, 95% interval)</h2>
<table><tr><th>strength</th><th>vs</th>{head}<th>Fréchet</th><th>s/batch</th></tr>{body}</table>
<h2>Plots</h2>{figs}
<h2>Samples (rows: batches; same seeds in every grid)</h2>{grids}
<p>Numbers: <a href="report.json">report.json</a>.</p>
{_IMAGE_CHECK}
</body></html>
"""


def run_report(
    model,
    out_dir,
    *,
    method: str = "pg",
    strengths=(0.0, 10.0, 30.0, 100.0, 300.0),
    n: int = 10,
    batches: int = 8,
    seed: int = 0,
    vs: tuple[str, list] | None = None,
    params: dict | None = None,
    sample_kwargs: dict | None = None,
    features=None,
    classifier=None,
    real=None,
    grid_batches: int = 4,
    progress: bool = True,
    force: bool = False,
) -> dict:
    """Sweep ``strengths`` (x ``vs`` values) and write the report directory ``out_dir`` atomically
    (``out_dir`` must be missing, empty or an earlier report; anything else only with ``force``)."""
    import time

    from ..core.api import sample

    check(method in ("pg", "repulsive"), f"method {method!r}: use pg or repulsive")
    from ..checkpoint import check_output_dir

    check_output_dir(out_dir, ("report",), force=force)
    check(len(strengths) >= 1 and n >= 2 and batches >= 1, "need at least one strength, n >= 2 and one batch")
    strengths = [float(s) for s in strengths]
    params, sample_kwargs = dict(params or {}), dict(sample_kwargs or {})
    vs_name, vs_values = vs if vs else (None, [None])
    real_feats = features(real) if (features is not None and real is not None) else None
    rows, feats, pictures = [], [], []
    configs = [(v, s) for v in vs_values for s in strengths]
    bar = tqdm(configs, desc=f"report {method}", disable=not progress, unit="setting")
    with atomic_directory(out_dir) as tmp:
        for v, s in bar:
            p, kw = dict(params), dict(sample_kwargs)
            if vs_name is not None:
                (kw if vs_name in SAMPLER_PARAMS else p)[SAMPLER_PARAMS.get(vs_name, vs_name)] = v
            t0 = time.perf_counter()
            xs = [sample(model, n, seed=seed + b, guidance=_term(method, s, p), **kw) for b in range(batches)]
            sec = (time.perf_counter() - t0) / batches
            metrics = evaluate_batches(xs, features, real_feats, classifier, [seed + b for b in range(batches)])
            quality = metrics["overall"].get("mean_confidence", metrics["overall"].get("frechet"))
            row = {"strength": s, "vs": v, "seconds_per_batch": sec, "quality": quality, "metrics": metrics}
            rows.append(row)
            feats.append(features(torch.cat(xs)))
            name = f"grid_s{s:g}" + ("" if v is None else f"_{vs_name}{v}") + ".png"
            save_samples(torch.cat(xs[:grid_batches]), tmp / name, nrow=n)
            pictures.append((name, f"strength {s:g}" + ("" if v is None else f", {vs_name}={v}")))
        has_classes = rows[0]["metrics"]["overall"].get("mean_confidence") is not None
        diversity = "distinct_classes" if has_classes else "vendi"
        plots = ["tradeoff.png", "features.png"]
        axis = "mean confidence" if has_classes else ("Fréchet distance" if rows[0]["quality"] is not None else None)
        _plot_tradeoff(rows, tmp / "tradeoff.png", axis, diversity)
        _plot_features(rows, feats, real_feats, tmp / "features.png")
        if vs_name is not None:
            for metric in (diversity, "mean_confidence" if has_classes else "in_batch_similarity"):
                _plot_heatmap(rows, strengths, vs_name, vs_values, metric, tmp / f"heatmap_{metric}.png")
                plots.append(f"heatmap_{metric}.png")
        config = {
            "model": getattr(model, "name", None),
            "method": method,
            "strengths": strengths,
            "n": n,
            "batches": batches,
            "seed": seed,
            "vs": vs_name,
            "vs_values": vs_values,
            "params": params,
            "sample_kwargs": sample_kwargs,
        }
        result = {"schema": "steerdiff-report/1", "config": config, "rows": rows}
        write_json_atomic(tmp / "report.json", result)
        (tmp / "index.html").write_text(
            _html(f"steerdiff report: {config['model']} {method}", config, rows, pictures, plots)
        )
    return result


def frechet_bootstrap(batch_feats: list[torch.Tensor], real_feats: torch.Tensor, resamples: int = 200, seed: int = 0):
    """Fréchet distance of the pooled batches to ``real_feats`` and a 95% percentile-bootstrap interval
    over batches (batches drawn with replacement, ``resamples`` times; generator seeded by ``seed``)."""
    from .metrics import frechet_distance

    value = frechet_distance(torch.cat(batch_feats), real_feats)
    if len(batch_feats) < 2:
        return {"value": value, "ci95": [value, value], "how": "one batch: no interval"}
    boot = [
        frechet_distance(torch.cat([batch_feats[i] for i in pick]), real_feats)
        for pick in _batch_resamples(len(batch_feats), resamples, seed)
    ]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "value": value,
        "ci95": [float(lo), float(hi)],
        "how": f"percentile bootstrap over batches ({resamples} resamples)",
    }


def _batch_resamples(n: int, resamples: int, seed: int):
    """``resamples`` index arrays of ``n`` batches drawn with replacement (generator seeded by ``seed``)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(resamples)]


def frechet_ratio_bootstrap(
    batch_feats: list[torch.Tensor],
    base_feats: list[torch.Tensor],
    real_feats: torch.Tensor,
    resamples: int = 200,
    seed: int = 0,
):
    """Ratio of two methods' Fréchet distances to ``real_feats`` with a paired 95% bootstrap interval.

    Batch ``i`` of both methods shares its seed (and condition), so each resample draws the same batch
    indices for both: the interval reflects how much the ratio depends on which seeds were drawn. A
    resample repeats batches, which biases both distances upward and their ratio toward 1, so the
    interval is the ratio +- 1.96 bootstrap standard deviations (normal interval), not the percentiles.

    Args:
        batch_feats: the method's features per batch, each ``(n_i, F)``.
        base_feats: the baseline's (e.g. iid) features per batch, the same number of batches.
        real_feats: ``(M, F)`` features of the real data.
        resamples: bootstrap resamples.
        seed: seed of the resampling generator.

    Returns:
        ``{"value": ratio of the pooled distances, "ci95": [lo, hi], "how": ...}``.
    """
    from .metrics import frechet_distance

    check(len(batch_feats) == len(base_feats), "the method and the baseline need the same number of batches")
    value = frechet_distance(torch.cat(batch_feats), real_feats) / frechet_distance(torch.cat(base_feats), real_feats)
    if len(batch_feats) < 2:
        return {"value": value, "ci95": [value, value], "how": "one batch: no interval"}
    boot = [
        frechet_distance(torch.cat([batch_feats[i] for i in pick]), real_feats)
        / frechet_distance(torch.cat([base_feats[i] for i in pick]), real_feats)
        for pick in _batch_resamples(len(batch_feats), resamples, seed)
    ]
    half = 1.96 * float(np.std(boot, ddof=1))
    return {
        "value": value,
        "ci95": [value - half, value + half],
        "how": f"paired normal bootstrap over batches, value +- 1.96 sd of {resamples} resamples",
    }


def _plot_frontier(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        f, v = r["frechet"], r["vendi"]
        line = ax.errorbar(
            [f["value"]],
            [v["mean"]],
            yerr=[[v["mean"] - v["ci95"][0]], [v["ci95"][1] - v["mean"]]],
            marker="o",
            capsize=3,
            label=r["method"],
        )
        # The bootstrap interval of a small-sample Fréchet distance need not contain the pooled value
        # (the distance is biased upwards), so it is drawn as its own segment, not as +- error bars.
        ax.plot(f["ci95"], [v["mean"], v["mean"]], color=line[0].get_color(), lw=1, marker="|")
        ax.annotate(r["method"], (f["value"], v["mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("Fréchet distance to real digits (bootstrap 95% interval)")
    ax.set_ylabel("Vendi per batch (mean, 95% t-interval)")
    ax.set_title("diversity against Fréchet distance, per method")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_frontier(
    model,
    out_dir,
    *,
    methods,
    draw,
    n: int,
    batches: int,
    seed: int,
    features,
    real,
    config: dict | None = None,
    grid_batches: int = 4,
    resamples: int = 200,
    progress: bool = True,
    force: bool = False,
) -> dict:
    """``report --vs method:...``: for every method, ``batches`` batches of ``n`` drawn by ``draw(method,
    seed)`` with seeds ``seed .. seed + batches - 1`` (the same seeds and steps for every method); per method
    the within-batch Vendi score (mean and Student-t interval over batches, in ``features``) and the
    Fréchet distance of all its samples to ``real`` (with :func:`frechet_bootstrap`'s interval), plotted
    as ``frontier.png`` and written to ``report.json`` / ``index.html`` in ``out_dir`` (atomically)."""
    import time

    from ..checkpoint import check_output_dir

    check_output_dir(out_dir, ("report",), force=force)
    check(len(methods) >= 1 and n >= 2 and batches >= 1, "need at least one method, n >= 2 and one batch")
    real_feats = features(real)
    seeds = [seed + b for b in range(batches)]
    rows, pictures = [], []
    with atomic_directory(out_dir) as tmp:
        for m in tqdm(methods, desc="report methods", disable=not progress, unit="method"):
            t0 = time.perf_counter()
            xs = [draw(m, s) for s in seeds]
            sec = (time.perf_counter() - t0) / batches
            metrics = evaluate_batches(xs, features, real_feats, None, seeds)
            fd = frechet_bootstrap([features(x) for x in xs], real_feats, resamples=resamples, seed=seed)
            rows.append(
                {
                    "method": m,
                    "vs": m,
                    "strength": None,
                    "seconds_per_batch": sec,
                    "quality": fd["value"],
                    "vendi": metrics["aggregate"]["vendi"],
                    "frechet": fd,
                    "metrics": metrics,
                }
            )
            name = f"grid_method_{m}.png"
            save_samples(torch.cat(xs[:grid_batches]), tmp / name, nrow=n)
            pictures.append((name, f"method {m}"))
        _plot_frontier(rows, tmp / "frontier.png")
        config = {
            "model": getattr(model, "name", None),
            **(config or {}),
            "n": n,
            "batches": batches,
            "seed": seed,
            "vs": "method",
            "vs_values": list(methods),
            "real": len(real),
        }
        result = {"schema": "steerdiff-report/1", "config": config, "rows": rows}
        write_json_atomic(tmp / "report.json", result)
        (tmp / "index.html").write_text(
            _html(
                f"steerdiff report: {config['model']} diversity-Fréchet frontier",
                config,
                rows,
                pictures,
                ["frontier.png"],
            )
        )
    return result


def _loaded(model, device: str):
    """``(denoiser, name)`` of a denoiser, shipped model name or checkpoint directory."""
    if isinstance(model, (str, PathLike)):
        from ..models import load

        return load(model, device=device), str(model)
    return model, getattr(model, "name", None) or type(model).__name__


def frontier_options(
    method: str,
    *,
    model: str = "mnist",
    n: int = 10,
    device: str = "cpu",
    embedding: str | None = None,
    kernel: str | None = None,
    on: str | None = None,
    class_label: str | int | None = None,
    cfg_scale: float | None = None,
    cfg_interval: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
):
    """The sampling options of one method of the frontier (``report --vs method:...``): what
    ``steerdiff sample --method METHOD`` would use with the same model, n, label, guidance, sampler and
    steps; ``embedding`` / ``kernel`` / ``on`` go to pg and repulsive only.

    Args:
        method: a name of :data:`FRONTIER_METHODS`.
        model: shipped model name or checkpoint directory (named in messages).
        n: particles per batch.
        device: torch device.
        embedding: pg / repulsive: the particle embedding (None: the model's preset).
        kernel: pg / repulsive: the kernel (None: the preset).
        on: pg / repulsive: ``"x"`` or ``"x0"`` (None: the preset).
        class_label: class-conditional models: the label every method draws, or ``"cycle"``.
        cfg_scale: classifier-free guidance scale.
        cfg_interval: ``"LO,HI"``: the guidance interval of ``interval``.
        sampler: sampler name (None: the preset).
        steps: noise levels (None: the preset).

    Returns:
        a :class:`~steerdiff.particles.draw.SamplingOptions` (quiet).
    """
    from ..particles.draw import SamplingOptions

    check(method in FRONTIER_METHODS, f"method {method!r}: use one of {', '.join(FRONTIER_METHODS)}")
    particle = {"embedding": embedding, "kernel": kernel, "on": on} if method in ("pg", "repulsive") else {}
    return SamplingOptions(
        model=model,
        method=method,
        n=n,
        device=device,
        quiet=True,
        class_label=class_label,
        cfg_scale=cfg_scale,
        cfg_interval=cfg_interval,
        sampler=sampler,
        steps=steps,
        **particle,
    )


def method_frontier(
    out_dir,
    methods,
    *,
    model="mnist",
    n: int = 10,
    batches: int = 8,
    seed: int = 0,
    embedding: str | None = None,
    kernel: str | None = None,
    on: str | None = None,
    class_label: str | int | None = None,
    cfg_scale: float | None = None,
    cfg_interval: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    features: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    force: bool = False,
) -> dict:
    """The diversity-against-Fréchet frontier of ``steerdiff report --vs method:M1,M2,...``: every method
    drawn as ``steerdiff sample --method M`` would (:func:`frontier_options`, :func:`steerdiff.particles.draw.draw`),
    each set up (and refusing what it cannot do) before any sampling, then measured by :func:`run_frontier`
    against held-out real MNIST digits (of ``class_label``'s class when one is given).

    Args:
        out_dir: report directory to write (atomically; see :func:`run_frontier`).
        methods: names of :data:`FRONTIER_METHODS`, each once.
        model: a denoiser, shipped model name or checkpoint directory drawing ``(1, 28, 28)`` digits.
        n: particles per batch.
        batches: batches per method (seeds ``seed .. seed + batches - 1``).
        seed: random seed of the first batch.
        embedding: pg / repulsive: the particle embedding (None: the preset).
        kernel: pg / repulsive: the kernel (None: the preset).
        on: pg / repulsive: ``"x"`` or ``"x0"``.
        class_label: the label every method draws (class-conditional models), or ``"cycle"``.
        cfg_scale: classifier-free guidance scale.
        cfg_interval: ``"LO,HI"``: the guidance interval of ``interval``.
        sampler: sampler name (None: the preset).
        steps: noise levels (None: the preset).
        features: feature network (None: ``mnist-evaluator``).
        device: torch device.
        progress: show progress bars.
        force: replace what ``out_dir`` holds even when it is not an earlier report.

    Returns:
        the report's JSON as a dict.
    """
    from ..core.errors import SteerdiffError
    from ..data import load_mnist
    from ..particles.draw import check_kept_memory, draw, option_flag, prepare
    from .features import load_features

    methods = list(methods)
    bad = [m for m in methods if m not in FRONTIER_METHODS]
    check(not bad, f"{', '.join(map(str, bad))}: not a method; use some of {', '.join(FRONTIER_METHODS)}")
    check(len(set(methods)) == len(methods), f"methods {methods}: each method once")
    particle = {"embedding": embedding, "kernel": kernel, "on": on}
    given = [option_flag(k) for k, v in particle.items() if v is not None]
    check(
        not given or any(m in ("pg", "repulsive") for m in methods),
        f"{', '.join(given)}: with --vs method:... only pg and repulsive take them; drop them",
    )
    den, name = _loaded(model, device)
    digits = tuple(den.sample_shape) == (1, 28, 28)
    check(digits, "--vs method:... measures Fréchet distance to real MNIST digits: use a 28x28 digit model")
    check_kept_memory(den, n * batches * len(methods), "--n x --batches x methods")
    setting = {
        "class_label": class_label,
        "cfg_scale": cfg_scale,
        "cfg_interval": cfg_interval,
        "sampler": sampler,
        "steps": steps,
    }
    options = {}
    for m in methods:  # every method sets up (and refuses what it cannot do) before any sampling
        try:
            options[m] = frontier_options(m, model=name, n=n, device=device, **particle, **setting)
            wrapped, cond, _, _, guidance, _, _ = prepare(den, options[m], seed)
            for term in guidance:  # bind now what sampling would bind, so a refusal comes before any work
                bound = term.bind(wrapped) if hasattr(term, "bind") else term
                check(
                    getattr(bound, "kernel", None) != "label" or cond.get("class_labels") is None,
                    "the label kernel (this model's pg preset) chooses each particle's class itself: drop "
                    "--class-label, or give another --kernel (e.g. rbf)",
                )
        except SteerdiffError as e:
            raise SteerdiffError(f"--vs method:{m}: {e}") from None
    real = load_mnist("heldout")
    images = real.images
    if class_label is not None and str(class_label) != "cycle":
        images = images[real.labels == int(class_label)]
    return run_frontier(
        den,
        out_dir,
        methods=methods,
        draw=lambda m, s: draw(den, options[m], s).x,
        n=n,
        batches=batches,
        seed=seed,
        features=load_features(features or "mnist-evaluator"),
        real=images,
        config=setting,
        progress=progress,
        force=force,
    )


def write_report(
    out_dir,
    *,
    model="mnist",
    method: str = "pg",
    strengths=None,
    vs: str | None = None,
    n: int = 10,
    batches: int = 8,
    seed: int = 0,
    embedding: str | None = None,
    kernel: str | None = None,
    on: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    features=None,
    real: torch.Tensor | None = None,
    class_label: str | int | None = None,
    cfg_scale: float | None = None,
    cfg_interval: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    force: bool = False,
) -> dict:
    """``steerdiff report``: a strength sweep of ``method`` (optionally against a second setting ``vs``)
    written by :func:`run_report`, or with ``vs="method:M1,M2,..."`` the frontier of
    :func:`method_frontier`. Every option is checked (and every setting's particle term bound) before any
    sampling.

    Args:
        out_dir: report directory to write (missing, empty or an earlier report; anything else only with
            ``force``).
        model: a denoiser, shipped model name or checkpoint directory.
        method: ``pg`` or ``repulsive``.
        strengths: the strengths to sweep (dimensionless, >= 0; 0 is iid sampling): numbers, or a
            comma-separated string; None: ``0,0.5,1,2`` for the label kernel, else ``0,10,30,100,300``.
        vs: ``"PARAM:V1,V2,..."`` (see :func:`parse_vs`): a second sweep over a particle or sampler setting,
            or ``"method:M1,M2,..."`` for the frontier.
        n: particles per batch.
        batches: batches per setting (seeds ``seed .. seed + batches - 1`` everywhere).
        seed: random seed of the first batch.
        embedding: particle embedding (None: the model's preset).
        kernel: kernel (None: the preset).
        on: ``"x"`` or ``"x0"`` (None: the preset).
        sampler: sampler name (None: the preset).
        steps: noise levels (None: the preset).
        features: feature network: a name or path (:func:`~steerdiff.evaluation.features.load_features`) or a
            callable ``(B, C, H, W) -> (B, F)``; None: ``mnist-evaluator`` (required for models that do not
            draw ``(1, 28, 28)`` digits).
        real: ``(N, C, H, W)`` real images in [-1, 1] for the Fréchet distance of the strength sweep (None:
            held-out MNIST for digit models).
        class_label: frontier only: the label every method draws.
        cfg_scale: frontier only: classifier-free guidance scale.
        cfg_interval: frontier only: ``"LO,HI"``, the guidance interval of ``interval``.
        device: torch device.
        progress: show progress bars.
        force: replace what ``out_dir`` holds even when it is not an earlier report.

    Returns:
        the report's JSON as a dict (``report.json`` in ``out_dir``).
    """
    from ..checkpoint import check_output_dir
    from ..core.errors import SteerdiffError
    from ..data import load_mnist
    from ..particles.draw import check_kept_memory, option_flag
    from ..train.classifier import load_classifier
    from .features import load_features

    check_output_dir(out_dir, ("report",), force=force)  # before any work
    common = {"n": n, "batches": batches, "seed": seed, "embedding": embedding, "kernel": kernel, "on": on}
    common |= {"sampler": sampler, "steps": steps, "features": features, "device": device}
    if vs is not None and vs.split(":", 1)[0] == "method":
        parsed = parse_vs(vs)
        assert parsed is not None
        check(
            strengths is None,
            "--strengths: with --vs method:... every method runs at its recorded preset; drop it",
        )
        return method_frontier(
            out_dir,
            parsed[1],
            model=model,
            class_label=class_label,
            cfg_scale=cfg_scale,
            cfg_interval=cfg_interval,
            progress=progress,
            force=force,
            **common,
        )
    setting = {"class_label": class_label, "cfg_scale": cfg_scale, "cfg_interval": cfg_interval}
    given = [option_flag(k) for k, v in setting.items() if v is not None]
    check(not given, f"{', '.join(given)}: only --vs method:M1,M2,... uses them; add it or drop them")
    den, _ = _loaded(model, device)
    if strengths is None:
        from ..particles.pg import particle_preset

        strengths = "0,0.5,1,2" if (kernel or particle_preset(den, method)["kernel"]) == "label" else "0,10,30,100,300"
    try:
        values = (
            [float(v) for v in strengths.split(",") if v] if isinstance(strengths, str) else list(map(float, strengths))
        )
    except ValueError:
        raise SteerdiffError(f"--strengths {strengths!r}: use comma-separated numbers, e.g. 0,10,100") from None
    check(
        values and all(math.isfinite(v) and v >= 0 for v in values),
        f"--strengths {strengths!r}: give finite strengths >= 0 (0 is iid sampling)",
    )
    digits = tuple(den.sample_shape) == (1, 28, 28)
    check(digits or features, "this model does not make 28x28 digits: pass --features")
    check_kept_memory(den, n * batches * len(values), "--n x --batches x strengths")
    params = {k: v for k, v in (("embedding", embedding), ("kernel", kernel), ("on", on)) if v is not None}
    kw = {k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None}
    parsed = parse_vs(vs)
    for v in parsed[1] if parsed else [None]:  # every setting's particle term binds, before any sampling
        p = dict(params)
        if parsed and parsed[0] not in SAMPLER_PARAMS:
            p[parsed[0]] = v
        try:
            _term(method, 1.0, p)[0].bind(den)
        except TypeError as e:
            raise SteerdiffError(f"--vs {vs!r}: {e}") from None
        if parsed and parsed[0] == "sampler":
            from ..core.sampling import get_sampler

            get_sampler(v)
    return run_report(
        den,
        out_dir,
        method=method,
        strengths=values,
        n=n,
        batches=batches,
        seed=seed,
        vs=parsed,
        params=params,
        sample_kwargs=kw,
        features=load_features(features or "mnist-evaluator"),
        classifier=load_classifier("mnist-evaluator") if digits else None,
        real=real if real is not None else (load_mnist("heldout").images if digits else None),
        progress=progress,
        force=force,
    )
