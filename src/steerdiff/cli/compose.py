"""``steerdiff compose``."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import check
from .options import _flag
from .sample import _draw


def cmd_compose(a) -> int:
    from ..compose.joint import load_joint_classifier, shipped_joint_classifier
    from ..compose.sculpt import compose
    from ..io import SAMPLE_SUFFIXES, save_samples
    from ..models import load

    check(a.n >= 1, f"--n must be at least 1, got {a.n}")
    check(
        Path(a.out).suffix.lower() in SAMPLE_SUFFIXES, f"--out {a.out}: use a suffix among {', '.join(SAMPLE_SUFFIXES)}"
    )
    check(len(a.base) >= 2, f"--base: give at least 2 base models, got {len(a.base)}")
    clf = load_joint_classifier(a.classifier) if a.classifier else shipped_joint_classifier(a.base)
    key = ",".join(map(str, a.y))
    scale = (
        a.guidance_scale if a.guidance_scale is not None else clf.config.get("default_guidance_scale", {}).get(key, 1.0)
    )
    w = a.set_guidance if a.set_guidance is not None else clf.config.get("default_set_guidance", 0.0)
    check(w >= 0, f"--set-guidance must be >= 0, got {w}")
    bases = [load(b, device=a.device, set_guidance=w) for b in a.base]
    given = [_flag(k) for k in ("cond", "class_label") if getattr(a, k) is not None]
    check(not given, f"{', '.join(given)}: a composition is conditioned by --y (and its bases); drop them")
    a.model = "composition"
    comp = compose(bases, clf.to(a.device), y=tuple(a.y), guidance_scale=scale)
    x, extra, archive = _draw(a, a.seed, model=comp)
    save_samples(x, a.out, **extra)
    if archive is not None:
        archive.add(x).save(a.archive)
    print(
        f"wrote {a.n} samples {tuple(x.shape[1:])} of y={tuple(a.y)} (guidance scale {scale:g}"
        f"{f', set guidance {w:g}' if w else ''}) to {a.out}"
    )
    return 0
