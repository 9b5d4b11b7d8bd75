"""``steerdiff report``."""

from __future__ import annotations

import argparse
import math

from ..core.errors import SteerdiffError, check
from .options import _flag, build_parser, validate_args
from .sample import _check_kept, _draw, _setup


def cmd_report(a) -> int:
    from ..checkpoint import check_output_dir
    from ..data import load_mnist
    from ..evaluation.features import load_features
    from ..evaluation.report import parse_vs, run_report
    from ..models import load
    from ..train.classifier import load_classifier

    check_output_dir(a.out, ("report",), force=a.force)  # before any work
    if a.vs is not None and a.vs.split(":", 1)[0] == "method":
        return _report_frontier(a)
    given = [_flag(k) for k in ("class_label", "cfg_scale", "cfg_interval") if getattr(a, k) is not None]
    check(not given, f"{', '.join(given)}: only --vs method:M1,M2,... uses them; add it or drop them")
    model = load(a.model, device=a.device)
    if a.strengths is None:
        from ..particles.pg import particle_preset

        kernel = a.kernel or particle_preset(model, a.method)["kernel"]
        a.strengths = "0,0.5,1,2" if kernel == "label" else "0,10,30,100,300"
    try:
        strengths = [float(v) for v in a.strengths.split(",") if v]
    except ValueError:
        raise SteerdiffError(f"--strengths {a.strengths!r}: use comma-separated numbers, e.g. 0,10,100") from None

    check(
        strengths and all(math.isfinite(v) and v >= 0 for v in strengths),
        f"--strengths {a.strengths!r}: give finite strengths >= 0 (0 is iid sampling)",
    )
    digits = tuple(model.sample_shape) == (1, 28, 28)
    check(digits or a.features, "this model does not make 28x28 digits: pass --features")
    _check_kept(model, a.n * a.batches * len(strengths), "--n x --batches x strengths")
    params = {k: v for k, v in (("embedding", a.embedding), ("kernel", a.kernel), ("on", a.on)) if v is not None}
    kw = {k: v for k, v in (("sampler", a.sampler), ("steps", a.steps)) if v is not None}
    vs = parse_vs(a.vs)
    from ..evaluation.report import SAMPLER_PARAMS, _term

    for v in vs[1] if vs else [None]:  # every setting's particle term binds, before any sampling
        p = dict(params)
        if vs and vs[0] not in SAMPLER_PARAMS:
            p[vs[0]] = v
        try:
            _term(a.method, 1.0, p)[0].bind(model)
        except TypeError as e:
            raise SteerdiffError(f"--vs {a.vs!r}: {e}") from None
        if vs and vs[0] == "sampler":
            from ..core.sampling import get_sampler

            get_sampler(v)
    run_report(
        model,
        a.out,
        method=a.method,
        strengths=strengths,
        n=a.n,
        batches=a.batches,
        seed=a.seed,
        vs=vs,
        params=params,
        sample_kwargs=kw,
        features=load_features(a.features or "mnist-evaluator"),
        classifier=load_classifier("mnist-evaluator") if digits else None,
        real=load_mnist("heldout").images if digits else None,
        progress=not a.quiet,
        force=a.force,
    )
    print(f"report in {a.out}/index.html")
    return 0


def report_method_args(a, method: str) -> argparse.Namespace:
    """The ``steerdiff sample`` arguments of one method of ``report --vs method:...`` (same model, n,
    seed, label, guidance, sampler and steps; --embedding / --kernel / --on for pg and repulsive),
    parsed and checked by the sample command's own parser."""
    argv = ["sample", "--model", a.model, "--method", method, "--n", str(a.n), "--seed", str(a.seed)]
    argv += ["--device", a.device, "--out", "unused.npy", "--quiet"]
    particle = (("--embedding", a.embedding), ("--kernel", a.kernel), ("--on", a.on))
    for flag, v in particle if method in ("pg", "repulsive") else ():
        if v is not None:
            argv += [flag, v]
    for flag, v in (
        ("--class-label", a.class_label),
        ("--cfg-scale", a.cfg_scale),
        ("--cfg-interval", a.cfg_interval),
        ("--sampler", a.sampler),
        ("--steps", a.steps),
    ):
        if v is not None:
            argv += [flag, repr(v) if isinstance(v, float) else str(v)]
    ns = build_parser().parse_args(argv)
    validate_args(ns)
    return ns


def _report_frontier(a) -> int:
    from ..data import load_mnist
    from ..evaluation.features import load_features
    from ..evaluation.report import parse_vs, run_frontier
    from ..models import load

    vs = parse_vs(a.vs)
    assert vs is not None
    methods = vs[1]
    check(
        a.strengths is None,
        "--strengths: with --vs method:... every method runs at its recorded preset; drop it",
    )
    particle = [_flag(k) for k in ("embedding", "kernel", "on") if getattr(a, k) is not None]
    check(
        not particle or any(m in ("pg", "repulsive") for m in methods),
        f"{', '.join(particle)}: with --vs method:... only pg and repulsive take them; drop them",
    )
    model = load(a.model, device=a.device)
    digits = tuple(model.sample_shape) == (1, 28, 28)
    check(digits, "--vs method:... measures Fréchet distance to real MNIST digits: use a 28x28 digit model")
    _check_kept(model, a.n * a.batches * len(methods), "--n x --batches x methods")
    args = {}
    for m in methods:  # every method sets up (and refuses what it cannot do) before any sampling
        try:
            args[m] = report_method_args(a, m)
            den, cond, _, _, guidance, _, _ = _setup(args[m], a.seed, model)
            for term in guidance:  # bind now what sampling would bind, so a refusal comes before any work
                bound = term.bind(den) if hasattr(term, "bind") else term
                check(
                    getattr(bound, "kernel", None) != "label" or cond.get("class_labels") is None,
                    "the label kernel (this model's pg preset) chooses each particle's class itself: drop "
                    "--class-label, or give another --kernel (e.g. rbf)",
                )
        except SteerdiffError as e:
            raise SteerdiffError(f"--vs method:{m}: {e}") from None
    real = load_mnist("heldout")
    images = real.images
    if a.class_label is not None and a.class_label != "cycle":
        images = images[real.labels == int(a.class_label)]
    run_frontier(
        model,
        a.out,
        methods=methods,
        draw=lambda m, seed: _draw(args[m], seed, model)[0],
        n=a.n,
        batches=a.batches,
        seed=a.seed,
        features=load_features(a.features or "mnist-evaluator"),
        real=images,
        config={
            "class_label": a.class_label,
            "cfg_scale": a.cfg_scale,
            "cfg_interval": a.cfg_interval,
            "sampler": a.sampler,
            "steps": a.steps,
        },
        progress=not a.quiet,
        force=a.force,
    )
    print(f"report in {a.out}/index.html")
    return 0
