"""``steerdiff report``."""

from __future__ import annotations

from ..evaluation.report import write_report

# report's options that write_report takes by the same name
OPTIONS = ("model", "method", "strengths", "vs", "n", "batches", "seed", "embedding", "kernel", "on", "sampler")
OPTIONS += ("steps", "features", "class_label", "cfg_scale", "cfg_interval", "device", "force")


def cmd_report(a) -> int:
    write_report(a.out, progress=not a.quiet, **{k: getattr(a, k) for k in OPTIONS})
    print(f"report in {a.out}/index.html")
    return 0
