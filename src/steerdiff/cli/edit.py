"""``steerdiff train-edit``, ``steerdiff edit`` and ``evaluate --task edit``."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import check
from ..edit.workflow import refuse_green
from .options import _flag


def cmd_train_edit(a) -> int:
    from ..edit.workflow import train_calibrated_edit
    from ..train.training import command_line

    same = "images steps loss heads ffn_dim lr recon_weight keep_weight sigma_edit sigma_top".split()
    _, conf = train_calibrated_edit(
        a.model,
        a.attribute,
        kind=a.net,
        seed=a.seed,
        **{k: getattr(a, k) for k in same},
        progress=not a.quiet,
        out=a.out,
        force=a.force,
        save_global=a.global_dir,
        two_sided=a.two_sided,
        command=command_line(),
    )
    i = conf["intervals"]
    msg = f"editing interval sigma >= {i['sigma_edit']:.3g}, quality boosting sigma <= {i['sigma_boost']:.3g}"
    print(f"{msg}, default strength {conf['strength']:g}; edit in {a.out}")
    return 0


def cmd_edit(a) -> int:
    from ..edit.workflow import edit_images
    from ..hub import EDITS

    if a.discover is not None:  # training-free directions instead of an edit
        return cmd_edit_discover(a)
    check(a.discover_method is None, "--discover-method chooses how --discover K finds directions: add --discover K")
    check((a.attribute is None) != (a.edit is None), "give --attribute thick or --edit DIR")
    check(not a.force, "--force is for --discover (an edit writes the --out file, replacing one that exists)")
    refuse_green(a.attribute)
    check(
        a.attribute is None or a.attribute in EDITS,
        f"--attribute {a.attribute!r}: use a shipped edit ({', '.join(EDITS)}), or --edit DIR for a trained one",
    )
    r = edit_images(
        a.edit or a.attribute,
        a.model,
        a.input,
        n=a.n,
        strength=a.strength,
        seed=a.seed,
        boost=not a.no_boost,
        averaged=a.global_dir,
        out=a.out,
    )
    print(f"edited {len(r['source'])} digits ({r['attribute']}, strength {r['strength']:g}) into {a.out}")
    return 0


def cmd_edit_discover(a) -> int:
    """``steerdiff edit --discover K``: :func:`steerdiff.edit.workflow.discover_edits`."""
    from ..edit.workflow import discover_edits
    from ..train.training import command_line

    given = [f for f, v in (("--attribute", a.attribute), ("--edit", a.edit), ("--input", a.input)) if v is not None]
    check(not given, f"--discover finds its own directions: drop {', '.join(given)}")
    check(
        a.strength is None and not a.global_dir, "--discover writes grids at fixed strengths: drop --strength/--global"
    )
    check(a.out is not None and Path(a.out).suffix == "", f"--discover writes a directory: give --out DIR, not {a.out}")
    kw = dict(n=a.n or 128, seed=a.seed, out=a.out, force=a.force, method=a.discover_method or "pca")
    directions = discover_edits(a.model, a.discover, command=command_line(), **kw)
    for _, c in directions:
        d, gain = c["discovered"], c["discovered"].get("gain")
        gain = "" if gain is None else f", prediction gain {gain:.3g} per unit of h"
        print(f"{c['attribute']}: {100 * d['explained_variance']:.1f}% of h's variance{gain}")
    first, k = directions[0][1]["attribute"], len(directions)
    print(
        f"{k} direction{'s' * (k > 1)} in {a.out} (each a grid.png and an edit: steerdiff edit --edit {a.out}/{first})"
    )
    return 0


def _evaluate_edit(a) -> int:
    """``evaluate --task edit``: :func:`steerdiff.edit.evaluate.evaluate_edit_file` of the .npz written
    by ``steerdiff edit``."""
    from ..checkpoint import write_json_atomic
    from ..edit.evaluate import evaluate_edit_file

    check(
        a.samples is not None and a.samples.endswith(".npz"),
        "--task edit judges the .npz written by `steerdiff edit --out e.npz`: give --samples e.npz",
    )
    unused = [
        _flag(k)
        for k in ("pipeline", "class_label", "cond", "sampler", "steps", "features", "real", "reference", "classifier")
        if getattr(a, k, None) is not None
    ] + (["--method"] if a.method != "iid" else [])
    check(
        not unused, f"{', '.join(unused)}: --task edit judges a file with the two shipped digit classifiers; drop them"
    )
    result = evaluate_edit_file(a.samples)
    write_json_atomic(a.out, result)
    kept = ", ".join(f"{k} {v['vs_source']:.3f}" for k, v in result["digit_kept"].items())
    print(
        f"{result['n']} edits ({result['attribute']}): success {result['success']:.3f}, digit kept {kept}, by all "
        f"{result['kept_by_all']:.3f}; wrote {a.out}"
    )
    return 0
