"""Every weight file the repository carries (shipped weights and resumable checkpoints) stays within the
60 MB budget of the brief, counted in MiB so the bound is the stricter reading."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MIB = 60


def test_all_weights_fit_the_budget():
    files = [p for d in ("src", "checkpoints") for p in (ROOT / d).rglob("*.safetensors")]
    assert files, "no weight files found: is this a checkout of the repository?"
    total = sum(p.stat().st_size for p in files) / 2**20
    assert total <= BUDGET_MIB, f"weights total {total:.1f} MiB, over the {BUDGET_MIB} MiB budget"
