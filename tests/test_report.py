"""The HTML report: written atomically, and it opens in headless Chromium with every image loaded."""
import json
import os
import shutil
import subprocess

import pytest
import torch

from steerdiff.errors import SteerdiffError
from steerdiff.features import load_features
from steerdiff.report import parse_vs, run_report
from steerdiff.toy import GaussianMixtureDenoiser


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("Chromium not installed (apt-get install chromium); CI runs this test")
    return exe


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    torch.manual_seed(0)
    means = torch.rand(6, 1, 6, 6) * 2 - 1             # six 6x6 "images": an exact image denoiser
    model = GaussianMixtureDenoiser(means, std=0.1, preset={"sampler": "heun", "steps": 8})
    real = model.sample_exact(60, torch.Generator().manual_seed(1)).float().clamp(-1, 1)
    out = tmp_path_factory.mktemp("rep") / "report"
    run_report(model, out, strengths=[0, 5], n=6, batches=2, vs=("bandwidth_scale", [0.3, 1.0]),
               params={"on": "x0"}, features=load_features(lambda x: x.flatten(1)), real=real, progress=False)
    return out


def test_report_contents(report_dir):
    names = sorted(p.name for p in report_dir.iterdir())
    assert {"index.html", "report.json", "tradeoff.png", "features.png", "heatmap_vendi.png"} <= set(names)
    assert len([n for n in names if n.startswith("grid_")]) == 4
    rep = json.loads((report_dir / "report.json").read_text())
    assert rep["schema"] == "steerdiff-report/1" and len(rep["rows"]) == 4
    assert {r["vs"] for r in rep["rows"]} == {0.3, 1.0}


def test_report_opens_in_headless_chromium(report_dir, tmp_path):
    exe = chromium()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
           (report_dir / "index.html").as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert "<table>" in dom and "tradeoff.png" in dom and "features.png" in dom
    assert 'data-images-ok="yes"' in dom, "an image of the report did not load"
    n_images = len([p for p in report_dir.iterdir() if p.suffix == ".png"])
    assert f'data-image-count="{n_images}"' in dom


def test_bad_sweeps():
    with pytest.raises(SteerdiffError, match="PARAM:V1,V2"):
        parse_vs("kernel")
    assert parse_vs("churn:0,10") == ("churn", [0, 10])
    assert parse_vs("kernel:rbf,dot") == ("kernel", ["rbf", "dot"])
