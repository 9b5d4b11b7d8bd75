import numpy as np
import pytest
import torch
from scipy import linalg

from steerdiff.errors import SteerdiffError
from steerdiff.metrics import (
    frechet_distance,
    in_batch_similarity,
    kid,
    mode_count,
    near_copy_rate,
    pairwise_distances,
    prdc,
    vendi_score,
)


def scipy_fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    b = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 1.0
    assert abs(frechet_distance(a, b) - scipy_fid(a, b)) < 1e-6 * max(1, scipy_fid(a, b))
    assert frechet_distance(a, a) < 1e-8


def test_frechet_distance_of_known_gaussians():
    # N(0, I) vs N(m, 4 I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200000, 3))
    b = rng.normal(size=(200000, 3)) * 2 + np.array([1.0, 0.0, 2.0])
    assert abs(frechet_distance(a, b) - 8.0) < 0.1


def test_frechet_rejects_bad_shapes():
    with pytest.raises(SteerdiffError, match="feature dims"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_mode_count_and_near_copy():
    assert mode_count([0, 1, 1, 3]) == 3 and mode_count([0, 1, 1, 3], min_count=2) == 1
    train = torch.randn(200, 1, 4, 4)
    held = torch.randn(100, 1, 4, 4)
    copies = train[:50] + 1e-3
    assert near_copy_rate(copies, train, held)["near_copy_rate"] == 1.0
    # fresh draws of the training distribution (not the held-out set that sets the threshold) land below
    # the 5% quantile about 5% of the time: binomial + quantile noise ~0.009 with 1,000 / 2,000 draws
    g = torch.Generator().manual_seed(0)
    train, held, fresh = (torch.randn(n, 1, 4, 4, generator=g) for n in (200, 1000, 2000))
    assert near_copy_rate(fresh, train, held)["near_copy_rate"] == pytest.approx(0.05, abs=0.03)
    # by hand: one training point at 0, held-out distances 1..20 (5% quantile, linear interpolation:
    # 1 + 0.05 * 19 = 1.95), samples at distances 0.5, 1.5, 2.5, 3: two of four are nearer
    one = lambda v: torch.tensor(v, dtype=torch.float64).reshape(-1, 1, 1, 1)  # noqa: E731
    r = near_copy_rate(one([0.5, -1.5, 2.5, 3.0]), one([0.0]), one(list(range(1, 21))))
    assert r["threshold"] == pytest.approx(1.95) and r["near_copy_rate"] == 0.5


def test_prdc_matches_the_prdc_package():
    import prdc as prdc_pkg  # a test extra (pip install -e ".[test]"): fail, don't skip, when it is missing

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(300, 6)), rng.normal(size=(250, 6)) * 1.3 + 0.2
    ref = prdc_pkg.compute_prdc(real, fake, nearest_k=5)
    ours = prdc(real, fake, k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-9), key


def test_vendi_known_answers():
    assert vendi_score(np.ones((7, 4))) == pytest.approx(1.0)
    assert vendi_score(np.eye(5) * 3.0) == pytest.approx(5.0)
    assert vendi_score(np.eye(5), q=2) == pytest.approx(5.0) and vendi_score(np.eye(5), q=np.inf) == pytest.approx(5.0)
    two = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    assert vendi_score(two) == pytest.approx(2.0)
    # q changes the answer when eigenvalues are unequal
    three = np.array([[1.0, 0], [1.0, 0], [1.0, 0], [0, 1.0]])
    assert vendi_score(three, q=1) != pytest.approx(vendi_score(three, q=2))


def test_kid_against_a_direct_computation():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    k = lambda x, y: (x @ y.T / 3 + 1) ** 3
    m = 30
    direct = []
    rs = np.random.default_rng(7)
    for _ in range(4):
        x, y = a[rs.choice(40, m, replace=False)], b[rs.choice(30, m, replace=False)]
        xx = sum(k(x[i : i + 1], x[j : j + 1])[0, 0] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(y[i : i + 1], y[j : j + 1])[0, 0] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(x[i : i + 1], y[j : j + 1])[0, 0] for i in range(m) for j in range(m)) / (m * m)
        direct.append(xx + yy - 2 * xy)
    assert kid(a, b, subsets=4, subset_size=30, seed=7)["mean"] == pytest.approx(np.mean(direct), rel=1e-9)
    same = kid(rng.normal(size=(500, 3)), rng.normal(size=(500, 3)), subsets=20, subset_size=200)
    shifted = kid(rng.normal(size=(500, 3)), rng.normal(size=(500, 3)) + 0.5, subsets=20, subset_size=200)
    assert abs(same["mean"]) < 3 * same["std"] + 1e-3 and shifted["mean"] > 10 * abs(same["mean"])


def test_similarity_and_pairwise():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    assert in_batch_similarity(x) == pytest.approx((0 + 1 + 0) / 3)
    d = pairwise_distances(x, top=1)
    assert d["closest"] == [(0, 2, pytest.approx(2.0))] and d["farthest"] == [(1, 2, pytest.approx(13**0.5))]


def test_torchscript_features_still_load(tmp_path):
    import warnings

    from steerdiff.features import load_features

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(torch.nn.Flatten()).save(str(tmp_path / "f.pt"))
    x = torch.rand(3, 1, 4, 4)
    torch.testing.assert_close(load_features(tmp_path / "f.pt", "01")(x * 2 - 1), x.flatten(1))
    with pytest.raises(SteerdiffError, match="unknown feature network"):
        load_features(tmp_path / "missing.pt")


def test_reference_distances_prefer_the_matching_set():
    from steerdiff.metrics import reference_distances

    torch.manual_seed(0)
    ref = torch.rand(80, 1, 12, 12) * 2 - 1
    near = (ref + 0.05 * torch.randn_like(ref)).clamp(-1, 1)
    far = torch.full((80, 1, 12, 12), -1.0)
    far[:, :, :6, :6] = torch.rand(80, 1, 6, 6)
    flat = lambda x: x.flatten(1)
    d_near, d_far = reference_distances(near, ref, flat), reference_distances(far, ref, flat)
    for k in ("global", "location", "style"):
        assert d_near[k] < d_far[k], k
    with pytest.raises(SteerdiffError, match="differ in shape"):
        reference_distances(near[:, :, :6], ref)


def test_evaluate_input_errors(tmp_path):
    from steerdiff.evaluate import read_images

    (tmp_path / "empty").mkdir()
    with pytest.raises(SteerdiffError, match="no .png"):
        read_images(tmp_path / "empty")
    np.save(tmp_path / "flat.npy", np.zeros((4, 10)))
    with pytest.raises(SteerdiffError, match=r"expected \(N, C, H, W\)"):
        read_images(tmp_path / "flat.npy")
    with pytest.raises(SteerdiffError, match="at least 2 samples"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_evaluate_rows_equal_direct_metric_calls():
    """evaluate_batches' per-batch rows, aggregate and overall numbers against the metric functions
    called directly on each batch (and a Student-t interval with t from a table)."""
    from steerdiff.evaluate import evaluate_batches

    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(n, 1, 4, 4, generator=g) * 2 - 1 for n in (5, 6, 7)]
    real = torch.rand(40, 1, 4, 4, generator=g) * 2 - 1
    feats = lambda x: x.flatten(1)[:, :6]  # noqa: E731
    w = torch.randn(16, 3, generator=g)
    clf = lambda x: x.flatten(1) @ w * 3  # noqa: E731 - logits of a fixed linear classifier
    out = evaluate_batches(batches, feats, feats(real), clf, seeds=[4, 5, 6], k=3)
    for b, (row, x) in enumerate(zip(out["batches"], batches, strict=True)):
        p = torch.softmax(clf(x), 1)
        assert row["index"] == b and row["seed"] == 4 + b and row["n"] == len(x)
        assert row["distinct_classes"] == len(set(p.argmax(1).tolist()))
        assert row["mean_confidence"] == pytest.approx(float(p.max(1).values.mean()))
        f = feats(x).double().numpy()
        assert row["vendi"] == pytest.approx(vendi_score(f), rel=1e-12)
        assert row["in_batch_similarity"] == pytest.approx(in_batch_similarity(f), rel=1e-12)
        dist = np.linalg.norm(f[:, None] - f[None], axis=-1)[np.triu_indices(len(f), 1)]
        assert row["pairwise_mean"] == pytest.approx(dist.mean(), rel=1e-9)
    v = np.array([r["vendi"] for r in out["batches"]])
    half = 4.302652729911275 * v.std(ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    agg = out["aggregate"]["vendi"]
    assert agg["n_batches"] == 3 and agg["mean"] == pytest.approx(v.mean())
    assert agg["ci95"] == pytest.approx([v.mean() - half, v.mean() + half], rel=1e-9)
    allf = feats(torch.cat(batches))
    ov = out["overall"]
    assert ov["n"] == 18 and ov["vendi"] == pytest.approx(vendi_score(allf))
    assert ov["frechet"] == pytest.approx(frechet_distance(allf, feats(real)))
    assert ov["prdc"] == pytest.approx(prdc(feats(real), allf, k=3))
    probs = torch.softmax(clf(torch.cat(batches)), 1)
    assert ov["class_fractions"] == pytest.approx(
        (np.bincount(probs.argmax(1).numpy(), minlength=3) / 18).tolist(), abs=1e-4
    )
