"""``steerdiff compose``."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import check
from ..particles.draw import SamplingOptions, draw
from .options import _flag


def cmd_compose(a) -> int:
    from ..io import SAMPLE_SUFFIXES, save_samples
    from ..models import load_composition

    check(a.n >= 1, f"--n must be at least 1, got {a.n}")
    check(
        Path(a.out).suffix.lower() in SAMPLE_SUFFIXES, f"--out {a.out}: use a suffix among {', '.join(SAMPLE_SUFFIXES)}"
    )
    check(len(a.base) >= 2, f"--base: give at least 2 base models, got {len(a.base)}")
    comp = load_composition(
        a.base,
        tuple(a.y),
        classifier=a.classifier,
        guidance_scale=a.guidance_scale,
        set_guidance=a.set_guidance,
        device=a.device,
    )
    given = [_flag(k) for k in ("cond", "class_label") if getattr(a, k) is not None]
    check(not given, f"{', '.join(given)}: a composition is conditioned by --y (and its bases); drop them")
    a.model = "composition"
    x, extra, archive = draw(comp, SamplingOptions.from_namespace(a), a.seed)
    save_samples(x, a.out, **extra)
    if archive is not None:
        archive.add(x).save(a.archive)
    w = comp.set_guidance
    print(
        f"wrote {a.n} samples {tuple(x.shape[1:])} of y={tuple(a.y)} (guidance scale {comp.scale:g}"
        f"{f', set guidance {w:g}' if w else ''}) to {a.out}"
    )
    return 0
