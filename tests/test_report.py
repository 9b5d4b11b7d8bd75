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
    """Chromium is a system package, not a pip extra: CI (and STEERDIFF_REQUIRE_CHROMIUM=1) fails without
    it; elsewhere the browser test skips with the fix, while test_report_html_references_every_image checks
    the same promise (every image of the page is there and decodes) without a browser."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("CI") or os.environ.get("STEERDIFF_REQUIRE_CHROMIUM") == "1":
            pytest.fail(
                "Chromium is not installed: .ci/run installs Debian's chromium package (apt-get install chromium)"
            )
        pytest.skip("Chromium not installed (apt-get install chromium); CI runs this test")
    return exe


def _report_model():
    g = torch.Generator().manual_seed(0)
    means = torch.rand(6, 1, 6, 6, generator=g) * 2 - 1  # six 6x6 "images": an exact image denoiser
    model = GaussianMixtureDenoiser(means, std=0.1, preset={"sampler": "heun", "steps": 8})
    real = model.sample_exact(60, torch.Generator().manual_seed(1)).float().clamp(-1, 1)
    return model, real


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    model, real = _report_model()
    out = tmp_path_factory.mktemp("rep") / "report"
    run_report(
        model,
        out,
        strengths=[0, 5],
        n=6,
        batches=2,
        vs=("bandwidth_scale", [0.3, 1.0]),
        params={"on": "x0"},
        features=load_features(lambda x: x.flatten(1)),
        real=real,
        progress=False,
    )
    return out


def test_report_contents(report_dir):
    import numpy as np
    from PIL import Image

    import steerdiff as sd
    from steerdiff.metrics import frechet_distance, pairwise_distances, vendi_score

    names = sorted(p.name for p in report_dir.iterdir())
    assert {"index.html", "report.json", "tradeoff.png", "features.png", "heatmap_vendi.png"} <= set(names)
    assert len([n for n in names if n.startswith("grid_")]) == 4
    rep = json.loads((report_dir / "report.json").read_text())
    assert rep["schema"] == "steerdiff-report/1" and len(rep["rows"]) == 4
    assert {r["vs"] for r in rep["rows"]} == {0.3, 1.0}
    rows = {(r["strength"], r["vs"]): r["metrics"] for r in rep["rows"]}
    # strength 0 is iid sampling with seeds 0, 1 (whatever the bandwidth): its numbers are the metrics of
    # sd.sample's draws, computed here directly
    model, real = _report_model()
    iid = [sd.sample(model, 6, seed=b) for b in range(2)]
    for vs in (0.3, 1.0):
        m = rows[(0.0, vs)]
        for b, x in enumerate(iid):
            assert m["batches"][b]["vendi"] == pytest.approx(vendi_score(x.flatten(1)), rel=1e-9)
            assert m["batches"][b]["pairwise_mean"] == pytest.approx(pairwise_distances(x.flatten(1))["mean"], rel=1e-9)
        assert m["overall"]["frechet"] == pytest.approx(
            frechet_distance(torch.cat(iid).flatten(1), real.flatten(1)), rel=1e-9
        )
    # guidance is on at strength 5, and the swept bandwidth reaches the term
    v = {k: [b["vendi"] for b in m["batches"]] for k, m in rows.items()}
    assert v[(5.0, 0.3)] != v[(0.0, 0.3)] and v[(5.0, 0.3)] != v[(5.0, 1.0)]
    # the strength-0 grid shows those samples: 6 per row, 6x6 images scaled 10x, 2-pixel padding
    png = np.asarray(Image.open(report_dir / "grid_s0_bandwidth_scale0.3.png").convert("RGB"))
    for k, x in enumerate(torch.cat(iid)[:8]):
        top, left = 2 + (k // 6) * 62, 2 + (k % 6) * 62
        np.testing.assert_array_equal(
            png[top : top + 60 : 10, left : left + 60 : 10, 0].astype(int),
            np.round((x[0].numpy().astype(np.float64) + 1) * 127.5).astype(int),
        )


def test_report_html_references_every_image(report_dir):
    """Without a browser: every <img> of index.html names a file of the report that decodes as an image,
    and every picture of the report is on the page."""
    import re

    from PIL import Image

    html = (report_dir / "index.html").read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    pngs = {p.name for p in report_dir.iterdir() if p.suffix == ".png"}
    assert set(srcs) == pngs
    for src in srcs:
        with Image.open(report_dir / src) as im:
            im.verify()


def test_report_opens_in_headless_chromium(report_dir, tmp_path):
    exe = chromium()
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        (report_dir / "index.html").as_uri(),
    ]
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


def test_report_method_frontier(tmp_path):
    """``report --vs method:...``: per method the JSON's Vendi and Fréchet numbers are those of the
    batches sd.sample draws with the sample command's own method set-up (same seeds, same steps)."""
    import numpy as np

    import steerdiff as sd
    from steerdiff.cli import build_parser, main, validate_args
    from steerdiff.data import load_mnist
    from steerdiff.metrics import frechet_distance, vendi_score
    from steerdiff.models import load
    from steerdiff.particles.fixed_condition import from_args

    out = tmp_path / "frontier"
    common = ["--model", "mnist-cond", "--class-label", "3", "--cfg-scale", "2", "--steps", "3", "--n", "4"]
    argv = ["report", *common, "--vs", "method:iid,cads", "--batches", "2", "--seed", "5", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert (out / "frontier.png").stat().st_size > 0 and "frontier.png" in (out / "index.html").read_text()
    assert [r["method"] for r in rep["rows"]] == ["iid", "cads"]
    features = load_features("mnist-evaluator")
    real = load_mnist("heldout")
    real_feats = features(real.images[real.labels == 3])
    model = load("mnist-cond")
    for row in rep["rows"]:
        a = build_parser().parse_args(["sample", *common, "--method", row["method"], "--out", "x.npy"])
        validate_args(a)
        feats = []
        for seed in (5, 6):
            cond = {"class_labels": torch.full((4,), 3)}
            den, terms, select = from_args(a, model, cond, seed, [])
            assert select is None
            x = sd.sample(den, 4, steps=3, seed=seed, cond=cond, guidance=terms, progress=False)
            feats.append(features(x))
        vendi = [vendi_score(f) for f in feats]
        assert [b["vendi"] for b in row["metrics"]["batches"]] == pytest.approx(vendi, rel=1e-6)
        assert row["vendi"]["mean"] == pytest.approx(float(np.mean(vendi)), rel=1e-6)
        assert row["vendi"]["ci95"][0] <= row["vendi"]["mean"] <= row["vendi"]["ci95"][1]
        fd = frechet_distance(torch.cat(feats), real_feats)
        assert row["frechet"]["value"] == pytest.approx(fd, rel=1e-6)
        assert row["frechet"]["ci95"][0] <= row["frechet"]["ci95"][1]


def test_report_method_frontier_refuses_label_methods_without_label(tmp_path, capsys):
    from steerdiff.cli import main

    assert main(["report", "--model", "mnist", "--vs", "method:iid,cads", "--out", str(tmp_path / "r")]) == 2
    assert "--method cads guides toward a class" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_frontier_plot_draws_a_frechet_interval_that_misses_the_point(tmp_path):
    """A percentile-bootstrap interval can lie wholly above the pooled Fréchet distance; the plot must
    still be drawn (matplotlib refuses negative error-bar lengths)."""
    from steerdiff.evaluation.report import _plot_frontier

    rows = [
        {"method": "iid", "frechet": {"value": 50.0, "ci95": [55.0, 70.0]}, "vendi": {"mean": 1.5, "ci95": [1.4, 1.6]}},
        {
            "method": "spell",
            "frechet": {"value": 40.0, "ci95": [35.0, 45.0]},
            "vendi": {"mean": 2.0, "ci95": [1.9, 2.1]},
        },
    ]
    _plot_frontier(rows, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").stat().st_size > 1000


def test_frechet_ratio_bootstrap_is_paired_and_detects_a_shift():
    """Identical batches give a ratio of exactly 1 in every resample (the batches are resampled in
    pairs); a mean shift of the method's features gives a ratio whose whole interval lies above 1."""
    from steerdiff.evaluation.metrics import frechet_distance
    from steerdiff.evaluation.report import frechet_bootstrap, frechet_ratio_bootstrap

    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 4, generator=g, dtype=torch.float64)
    base = [torch.randn(10, 4, generator=g, dtype=torch.float64) for _ in range(30)]
    same = frechet_ratio_bootstrap(base, base, real, resamples=50)
    assert same["value"] == 1.0 and same["ci95"] == [1.0, 1.0]
    shifted = [b + 1.0 for b in base]
    r = frechet_ratio_bootstrap(shifted, base, real, resamples=50)
    expected = frechet_distance(torch.cat(shifted), real) / frechet_distance(torch.cat(base), real)
    assert r["value"] == pytest.approx(expected)
    assert 1.0 < r["ci95"][0] < r["value"] < r["ci95"][1]
    # the refactor of the resampling kept frechet_bootstrap's interval (the same generator draws)
    import numpy as np

    rng = np.random.default_rng(0)
    boot = [frechet_distance(torch.cat([base[i] for i in rng.integers(0, 30, 30)]), real) for _ in range(20)]
    assert frechet_bootstrap(base, real, resamples=20)["ci95"] == pytest.approx(list(np.percentile(boot, [2.5, 97.5])))
    with pytest.raises(SteerdiffError, match="same number of batches"):
        frechet_ratio_bootstrap(shifted[:3], base, real)
