"""Particle terms: kernel gradients, repulsion geometry, exactness of the VJP, guidance-off identity."""

import pytest
import torch

import steerdiff as sd
from steerdiff import kernels
from steerdiff.errors import SteerdiffError
from steerdiff.guidance import GuideContext, schedule_weight
from steerdiff.particles import Archive, ParticleGuidance, Pilot, Repulsion


def fd_grad(fn, x, eps=1e-6):
    g = torch.zeros_like(x)
    flat = x.view(-1)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + eps
        up = float(fn(x))
        flat[i] = old - eps
        dn = float(fn(x))
        flat[i] = old
        g.view(-1)[i] = (up - dn) / (2 * eps)
    return g


def _kernel_grad_numpy(kernel, f, w, h=0.7):
    """The gradient of ``sum_ij w_ij k(f_i, f_j)`` with respect to ``f``, derived by hand in float64 numpy
    (independent of the torch kernels and of autograd): row ``a`` collects ``k(f_a, .)`` and ``k(., f_a)``."""
    import numpy as np

    f, w = np.asarray(f, dtype=np.float64), np.asarray(w, dtype=np.float64)
    ws = w + w.T
    if kernel == "rbf":  # k = exp(-|f_i - f_j|^2 / h), fixed h
        diff = f[:, None, :] - f[None, :, :]
        k = np.exp(-(diff**2).sum(-1) / h)
        return (ws[..., None] * (-2 / h) * k[..., None] * diff).sum(1)
    if kernel == "cosine":  # k = u_i . u_j, u = f / |f|: d(u . c)/df = (c - (u . c) u) / |f|
        norm = np.linalg.norm(f, axis=1, keepdims=True)
        u = f / norm
        c = ws @ u
        return (c - (u * c).sum(1, keepdims=True) * u) / norm
    if kernel == "dot":  # k = f_i . f_j
        return ws @ f
    if kernel == "iou":  # p = (f + 1) / 2 in (0, 1); k = I / (P_i + P_j - I), I = p_i . p_j
        p = (f + 1) / 2
        inter = p @ p.T
        den = p.sum(1)[:, None] + p.sum(1)[None, :] - inter
        # dk_ij/dp_i = (p_j den - inter (1 - p_j)) / den^2 (and symmetrically for p_j)
        dk = (p[None, :, :] * den[..., None] - inter[..., None] * (1 - p[None, :, :])) / den[..., None] ** 2
        return 0.5 * (ws[..., None] * dk).sum(1)
    raise AssertionError(kernel)


@pytest.mark.parametrize("kernel, kw", [("rbf", {"bandwidth": 0.7}), ("cosine", {}), ("iou", {}), ("dot", {})])
def test_kernel_gradients_match_the_formula(kernel, kw):
    torch.manual_seed(0)
    f = torch.rand(5, 4, dtype=torch.float64) * 1.6 - 0.8
    k = kernels.get_kernel(kernel)
    w = torch.rand(5, 5, dtype=torch.float64)
    fr = f.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((k(fr, **kw) * w).sum(), fr)
    expected = torch.from_numpy(_kernel_grad_numpy(kernel, f.numpy(), w.numpy()))
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    # and the formula itself against central differences of the numpy kernel value (guards the oracle)
    if kernel == "dot":
        return
    import numpy as np

    def value(z):
        z = z.reshape(5, 4)
        if kernel == "rbf":
            kk = np.exp(-((z[:, None] - z[None]) ** 2).sum(-1) / 0.7)
        elif kernel == "cosine":
            u = z / np.linalg.norm(z, axis=1, keepdims=True)
            kk = u @ u.T
        else:
            p = (z + 1) / 2
            kk = (p @ p.T) / (p.sum(1)[:, None] + p.sum(1)[None] - p @ p.T)
        return float((kk * w.numpy()).sum())

    z0, eps = f.numpy().ravel(), 1e-6
    fd = np.array([(value(z0 + eps * e) - value(z0 - eps * e)) / (2 * eps) for e in np.eye(z0.size)]).reshape(5, 4)
    np.testing.assert_allclose(expected.numpy(), fd, rtol=1e-6, atol=1e-8)


def test_rbf_median_bandwidth_is_detached():
    """The gradient equals the analytic RBF gradient at a *fixed* h (no gradient of the median)."""
    torch.manual_seed(1)
    f = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    d2 = kernels.pairwise_sq_dists(f.detach())
    h = kernels.rbf_bandwidth(d2, "median")
    (grad,) = torch.autograd.grad(kernels.rbf(f).sum(), f)
    k = torch.exp(-d2 / h)
    diff = f.detach()[:, None, :] - f.detach()[None, :, :]
    analytic = (-2 / h * k[..., None] * diff).sum(1) * 2  # each pair appears twice in the sum
    torch.testing.assert_close(grad, analytic)


def _mean_pairwise(x):
    return float(torch.pdist(x.flatten(1)).mean())


@pytest.mark.parametrize("term", ["pg", "repulsive"])
@pytest.mark.parametrize(
    "kernel, bandwidth",
    [
        ("rbf", "median"),
        ("rbf", "per-particle"),
        ("rbf", "sigma"),
        ("rbf", 0.5),
        ("cosine", "median"),
        ("iou", "median"),
        ("dot", "median"),
    ],
)
def test_one_repulsion_step_spreads_particles(term, kernel, bandwidth):
    """x + sigma^2 g (the guided step's displacement) has a larger mean pairwise distance than x."""
    torch.manual_seed(2)
    m = sd.ring(preset={})  # library defaults, not the ring's tuned preset
    x = torch.randn(8, 2, dtype=torch.float64) * 0.3 + 0.2
    cls = ParticleGuidance if term == "pg" else Repulsion
    t = cls(on="x", kernel=kernel, bandwidth=bandwidth, strength=1.0).bind(m)
    sigma = torch.full((8,), 0.5, dtype=torch.float64)
    g = t.guide(GuideContext(x.clone(), sigma, m(x, sigma), {}, m))
    assert _mean_pairwise(x + 0.01 * g) > _mean_pairwise(x)


def test_repulsion_with_identity_embedding_is_n_times_pg():
    """For a symmetric kernel on x, SVGD's sum_j grad_{x_j} k(x_j, x_i) = -grad_{x_i} sum_j k(x_i, x_j)."""
    m = sd.ring()
    x = torch.randn(7, 2, dtype=torch.float64)
    a = sd.guided(m, ParticleGuidance(on="x", strength=1.0))(x, 0.8) - m(x, 0.8)
    b = sd.guided(m, Repulsion(on="x", strength=7.0))(x, 0.8) - m(x, 0.8)
    torch.testing.assert_close(a, b)


def test_x0_guidance_is_the_gradient_through_the_denoiser():
    """on='x0': g = -strength * grad_x sum_{i<j} k(D(x)_i, D(x)_j), checked by finite differences."""
    m = sd.ring(preset={})
    torch.manual_seed(3)
    x = torch.randn(4, 2, dtype=torch.float64)
    sigma = torch.full((4,), 0.7, dtype=torch.float64)
    t = ParticleGuidance(on="x0", strength=2.0, bandwidth=0.5).bind(m)

    def potential(z):
        k = kernels.rbf(m(z, sigma), bandwidth=0.5)
        return (k.sum() - k.diagonal().sum()) / 2

    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        g = t.guide(GuideContext(xg, sigma, m(xg, sigma), {}, m))
    # guide() is the unit-strength gradient; the strength enters through the term's weight
    torch.testing.assert_close(g, -fd_grad(potential, x.clone()), rtol=1e-5, atol=1e-7)
    assert t.weight_at(0.7) == 2.0


@pytest.mark.parametrize("sampler", ["heun", "euler_ancestral", "pc"])
def test_guidance_off_is_bit_identical(sampler):
    m = sd.ring()
    plain = sd.sample(m, 6, seed=3, sampler=sampler, steps=10)
    outside = sd.sample(m, 6, seed=3, sampler=sampler, steps=10, guidance=[ParticleGuidance(window=(100.0, 200.0))])
    zero = sd.sample(m, 6, seed=3, sampler=sampler, steps=10, guidance=[ParticleGuidance(strength=0.0)])
    assert torch.equal(plain, outside) and torch.equal(plain, zero)


def test_permuting_particles_with_their_noise_permutes_outputs():
    m = sd.ring()
    perm = torch.tensor([3, 0, 4, 1, 2])
    pg = [ParticleGuidance(on="x0", strength=2.0)]
    a = sd.sample(m, 5, seed=0, steps=12, sampler="euler_ancestral", guidance=pg)
    from steerdiff import sampling
    from steerdiff.seeding import PerSampleNoise, randn_per_sample, sample_generators

    sig = sd.get_sigmas_karras(12, m.sigma_min, m.sigma_max)
    gens = sample_generators(0, perm.tolist())
    x = randn_per_sample(gens, (2,)) * sig[0]
    b = sampling.sample_euler_ancestral(sd.guided(m, *pg), x, sig, noise_sampler=PerSampleNoise(gens, (2,)))
    torch.testing.assert_close(b, a[perm], rtol=1e-5, atol=1e-6)


def test_guidance_spreads_ring_particles_over_modes():
    """10 particles, 20 runs: the density-preserving PG preset finds far more modes than iid."""
    m = sd.ring()
    pg = ParticleGuidance(on="x0", strength=4.0, window=(0.1, 20.0), bandwidth_scale=0.3, project=True)
    iid = [len(set(m.assign(sd.sample(m, 10, seed=s, steps=32)).tolist())) for s in range(20)]
    guided = [len(set(m.assign(sd.sample(m, 10, seed=s, steps=32, guidance=[pg])).tolist())) for s in range(20)]
    assert sum(iid) / 20 < 7.5 and sum(guided) / 20 > 9.3


def test_archive_repels_from_earlier_samples(tmp_path):
    """Against the same PG *without* the archive (same seeds), so an ignored archive fails: over 6 seeds
    the second batch shares far fewer ring modes with the archived first batch (measured 2 against 15)."""
    m = sd.ring()
    kw = dict(on="x0", strength=4.0, window=(0.1, 20.0), bandwidth_scale=0.3, project=True)
    with_archive = without = 0
    for s in range(1, 7):
        first = sd.sample(m, 5, seed=100 + s, steps=24)
        Archive().add(first).save(tmp_path / "a.npy")
        loaded = Archive.load(tmp_path / "a.npy")
        torch.testing.assert_close(loaded.samples, first.float())
        overlap = lambda b: len(set(m.assign(b).tolist()) & set(m.assign(first).tolist()))  # noqa: B023
        with_archive += overlap(sd.sample(m, 5, seed=s, steps=24, guidance=[ParticleGuidance(archive=loaded, **kw)]))
        without += overlap(sd.sample(m, 5, seed=s, steps=24, guidance=[ParticleGuidance(**kw)]))
    assert with_archive * 3 <= without, (with_archive, without)


def test_bad_names_and_blowups_give_clear_errors():
    m = sd.ring()
    with pytest.raises(SteerdiffError, match="unknown embedding 'vgg'.*identity.*cnn16"):
        sd.guided(m, ParticleGuidance(embedding="vgg"))
    with pytest.raises(SteerdiffError, match="unknown kernel 'laplace'.*rbf, cosine, iou, dot"):
        sd.guided(m, ParticleGuidance(kernel="laplace"))
    with pytest.raises(SteerdiffError, match="unknown weight schedule"):
        sd.guided(m, ParticleGuidance(weight="linear"))
    with pytest.raises(SteerdiffError, match=r"non-finite values at (step \d+ )?\(?sigma"):
        sd.sample(m, 4, seed=0, steps=8, guidance=[ParticleGuidance(on="x", strength=float("inf"))])


def test_schedules():
    assert schedule_weight("constant", 0.5, (0.1, 1.0)) == 1.0
    assert schedule_weight("constant", 2.0, (0.1, 1.0)) == 0.0
    assert schedule_weight("sigma", 0.5, (0.1, 1.0)) == 0.5
    assert schedule_weight("cosine", 0.1, (0.1, 1.0)) == pytest.approx(0.0)
    assert schedule_weight("cosine", 0.1**0.5, (0.1, 1.0)) == pytest.approx(1.0)
    assert schedule_weight(lambda s: 3 * s, 0.5, (0.1, 1.0)) == 1.5


def _embedding_numpy(name, x):
    """The documented embeddings written out in numpy (float64) for (n, C, 16, 16) images."""
    import numpy as np
    from scipy.ndimage import correlate

    x = np.asarray(x, dtype=np.float64)
    n, c, hh, ww = x.shape

    def pool(img, k):  # adaptive average pooling: bin i covers [floor(i H / k), ceil((i + 1) H / k))
        b = [(i * hh // k, -(-(i + 1) * hh // k)) for i in range(k)]
        return np.array([[img[r0:r1, c0:c1].mean() for c0, c1 in b] for r0, r1 in b])

    if name == "identity":
        return x.reshape(n, -1)
    if name == "averagedim":
        return x.mean((2, 3))
    if name == "ro3":
        return np.stack([np.concatenate([pool(x[i, ch], 3).ravel() for ch in range(c)]) for i in range(n)])
    if name == "edges":
        sob = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        out = []
        for i in range(n):
            g = x[i].mean(0)
            energy = correlate(g, sob, mode="constant") ** 2 + correlate(g, sob.T, mode="constant") ** 2
            out.append(pool(energy, 7).ravel())
        return np.stack(out)
    return None


@pytest.mark.parametrize("name", ["identity", "averagedim", "ro3", "edges", "cnn16", "cnn64", "cnn16-redraw", "style"])
def test_embeddings_on_images(name):
    from steerdiff.embeddings import get_embedding

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 16, 16, generator=g, dtype=torch.float64, requires_grad=True)
    f = get_embedding(name)(x, torch.ones(3))
    assert f.ndim == 2 and f.shape[0] == 3
    expected = _embedding_numpy(name, x.detach().numpy())
    if expected is not None:  # the formula the docstring promises
        torch.testing.assert_close(f.detach(), torch.from_numpy(expected), rtol=1e-10, atol=1e-10)
    # every embedding is per sample: permuting the batch permutes the features, and a sample's features
    # do not depend on the others (a fresh embedding each time, so redrawn CNNs draw the same weights)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(get_embedding(name)(x.detach()[perm], torch.ones(3)), f.detach()[perm])
    other = x.detach().clone()
    other[1:] = torch.randn(2, 2, 16, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(get_embedding(name)(other, torch.ones(3))[0], f.detach()[0])
    if name == "style":  # the upper triangle of a Gram matrix: positive semi-definite
        w = int((8 * f.shape[1] + 1) ** 0.5 - 1) // 2
        i, j = torch.triu_indices(w, w)
        gram = torch.zeros(3, w, w, dtype=f.dtype)
        gram[:, i, j] = f.detach()
        gram = gram + gram.transpose(1, 2) - torch.diag_embed(gram.diagonal(dim1=1, dim2=2))
        assert float(torch.linalg.eigvalsh(gram).min()) > -1e-9
    f.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_corrector_plan():
    from steerdiff.sampling import parse_plan

    assert parse_plan("repulsive:1-20:2,langevin:0.05-1") == [
        {"kind": "repulsive", "window": (1.0, 20.0), "steps": 2},
        {"kind": "langevin", "window": (0.05, 1.0), "steps": 1},
    ]
    with pytest.raises(SteerdiffError, match="KIND:LO-HI"):
        parse_plan("repulsive:1")
    m = sd.ring()
    with pytest.raises(SteerdiffError, match="corrector plan kind 'jump'"):
        sd.sample(m, 2, sampler="pc", steps=4, plan=[{"kind": "jump", "window": (0, 1)}])
    plain = sd.sample(m, 6, seed=0, sampler="pc", steps=12)
    unused = sd.sample(m, 6, seed=0, sampler="pc", steps=12, plan=parse_plan("repulsive:500-600:3"))
    assert torch.equal(plain, unused)


@pytest.mark.parametrize("kind, count", [("langevin", 2), ("random", 1), ("repulsive", 1), ("repulsive_no_noise", 2)])
def test_corrector_plan_steps_follow_their_formulas(kind, count):
    """One level (sigma 0.7 -> 0) with ``count`` plan steps of ``kind`` and no regular corrector: the
    result is D(x') where x' is x after the documented corrector steps, written out here with the step
    size 2 (snr sigma)^2: langevin x + e s(x) + sqrt(2e) z; random x + sqrt(2e) z; repulsive
    x + e s_rep(x) + sqrt(2e) z with s_rep the score of guided(model, Repulsion()); repulsive_no_noise
    x + e (s_rep(x) - s(x))."""
    m = sd.ring()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64) * 0.7
    zs = [torch.randn(6, 2, generator=g, dtype=torch.float64) for _ in range(count)]
    calls = iter(zs)
    sigma, snr = 0.7, 0.16
    sigmas = torch.tensor([sigma, 0.0], dtype=torch.float64)
    out = sd.sampling.sample_pc(
        m,
        x.clone(),
        sigmas,
        n_corrector=0,
        snr=snr,
        disable=True,
        noise_sampler=lambda *_: next(calls),
        plan=[{"kind": kind, "window": (0.5, 1.0), "steps": count}],
    )
    rep = sd.guided(m, Repulsion())
    score = lambda d, y: (d(y, sigma) - y) / sigma**2  # noqa: E731
    eps = 2 * (snr * sigma) ** 2
    y = x.clone()
    for z in zs:
        if kind == "langevin":
            y = y + eps * score(m, y) + (2 * eps) ** 0.5 * z
        elif kind == "random":
            y = y + (2 * eps) ** 0.5 * z
        elif kind == "repulsive":
            y = y + eps * score(rep, y) + (2 * eps) ** 0.5 * z
        else:
            y = y + eps * (score(rep, y) - score(m, y))
    torch.testing.assert_close(out, m(y, sigma), rtol=1e-9, atol=1e-12)
    assert float((out - m(x, sigma)).abs().max()) > 1e-3  # the plan did move the particles


def _force_ctx(seed=0, sigma=0.5):
    m = sd.ring()
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.8
    s = torch.full((6,), sigma, dtype=torch.float64)
    ctx = GuideContext(x, s, m(x, s), {}, m)
    xg = x.clone().requires_grad_(True)  # the exact score from the mixture's log-density
    (score,) = torch.autograd.grad(m.log_prob(xg, sigma).sum(), xg)
    return m, ctx, score


@pytest.mark.parametrize("cls", [ParticleGuidance, Repulsion])
def test_project_normalize_and_clip_of_the_force(cls):
    """Against the exact score of the mixture (autograd of its log-density, not the denoiser):
    project leaves force . score = 0 and differs from the raw force by a multiple of the score;
    normalize gives |force| = |score| along the raw force; clip caps |force| at clip |score| and
    leaves smaller forces alone."""
    m, ctx, score = _force_ctx()
    kw = dict(on="x", embedding="identity", strength=3.0)
    raw = sd.guided(m, cls(**kw)).terms[0].guide(ctx)
    dot = lambda a, b: (a * b).sum(1)  # noqa: E731
    proj = sd.guided(m, cls(project=True, **kw)).terms[0].guide(ctx)
    torch.testing.assert_close(dot(proj, score), torch.zeros(6, dtype=torch.float64), atol=1e-9, rtol=0)
    c = dot(raw, score) / dot(score, score)
    torch.testing.assert_close(proj, raw - c[:, None] * score, rtol=1e-9, atol=1e-12)
    norm = sd.guided(m, cls(normalize=True, **kw)).terms[0].guide(ctx)
    torch.testing.assert_close(norm.norm(dim=1), score.norm(dim=1), rtol=1e-9, atol=0)
    torch.testing.assert_close(
        norm, raw / raw.norm(dim=1, keepdim=True) * score.norm(dim=1, keepdim=True), rtol=1e-9, atol=1e-12
    )
    ratio = raw.norm(dim=1) / score.norm(dim=1)
    cap = float(ratio.median())  # some particles above the cap, some below
    clipped = sd.guided(m, cls(clip=cap, **kw)).terms[0].guide(ctx)
    assert bool((clipped.norm(dim=1) <= cap * score.norm(dim=1) * (1 + 1e-9)).all())
    over = ratio > cap
    assert 0 < int(over.sum()) < 6
    torch.testing.assert_close(clipped[~over], raw[~over])
    torch.testing.assert_close(clipped[over], raw[over] / ratio[over, None] * cap, rtol=1e-9, atol=1e-12)


def test_redrawn_cnn_changes_per_call_and_is_reproducible():
    from steerdiff.embeddings import get_embedding

    x = torch.randn(2, 1, 8, 8)
    a, b = get_embedding("cnn16-redraw"), get_embedding("cnn16-redraw")
    first, second = a(x), a(x)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(b(x), first)
    fixed = get_embedding("cnn16")
    torch.testing.assert_close(fixed(x), fixed(x))


@pytest.mark.parametrize("kernel", ["rbf", "cosine", "iou", "dot"])
def test_paired_kernels_equal_the_matrix_diagonal(kernel):
    from steerdiff.kernels import get_kernel, paired

    torch.manual_seed(4)
    a, b = torch.rand(6, 5, dtype=torch.float64), torch.rand(6, 5, dtype=torch.float64)
    k = get_kernel(kernel)
    kw = {"bandwidth": 0.8} if kernel == "rbf" else {}
    torch.testing.assert_close(paired(k, a, b, **kw), k(a, b, **kw).diagonal())


def test_subset_estimator_is_unbiased_and_pushes_apart():
    """Averaged over many draws of partners, the subset estimate approaches the full gradient."""
    m = sd.ring(preset={})
    torch.manual_seed(5)
    x = torch.randn(12, 2, dtype=torch.float64)
    sigma = torch.full((12,), 0.5, dtype=torch.float64)
    full = ParticleGuidance(on="x", bandwidth=0.5).bind(m).guide(GuideContext(x, sigma, m(x, sigma), {}, m))
    t = ParticleGuidance(on="x", bandwidth=0.5, subset=4).bind(m)
    draws = torch.stack(
        [
            t.guide(GuideContext(x, torch.full((12,), s, dtype=torch.float64), m(x, sigma), {}, m))
            for s in torch.linspace(0.4, 0.6, 200).tolist()
        ]
    )
    assert float((draws.mean(0) - full).norm() / full.norm()) < 0.15
    one = t.guide(GuideContext(x, sigma, m(x, sigma), {}, m))
    assert float((one - full).norm() / full.norm()) > 0.05  # a single draw is an estimate, not the full sum


def test_prior_preserving_pg_keeps_the_mode_frequencies():
    """Two modes with mass 0.7 / 0.3: plain PG splits batches of 8 about evenly (the edm_mnist
    thesis's p(right) 0.50); attracted to a pilot of the model's own iid trajectories (prior=, the
    MMD potential) it keeps about 0.7 while its pairs still land in different modes more often than
    iid pairs."""
    m = sd.GaussianMixtureDenoiser(torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), 0.3, [0.7, 0.3])
    ref = Pilot(m, 256, seed=12345, steps=24)
    assert ref.samples.shape == (256, 2) and ref.at(1.0)[1].shape == (256, 2)

    def stats(terms):
        x = torch.stack([sd.sample(m, 8, seed=b, steps=24, guidance=terms) for b in range(60)])
        right = (x[..., 0] > 0).double()
        k = right.sum(1)
        return float(right.mean()), float((k * (8 - k) / 28).mean())

    p_iid, dis_iid = stats([])
    p_pg, _ = stats([sd.ParticleGuidance(strength=1.0, on="x0", window=(0.1, 20), project=True)])
    p_prior, dis_prior = stats([sd.ParticleGuidance(strength=1.0, on="x0", window=(0.1, 20), project=True, prior=ref)])
    assert p_pg < 0.58
    assert abs(p_prior - 0.7) < 0.06 and abs(p_prior - p_iid) < 0.06
    assert dis_prior > dis_iid


def test_batch_size_chunks_network_calls_of_a_guided_sample():
    """With guidance, batch_size only splits the network calls: the particles still couple as one set."""
    m = sd.ring()
    a = sd.sample(m, 40, seed=0, guidance=[sd.ParticleGuidance()], steps=8)
    b = sd.sample(m, 40, seed=0, guidance=[sd.ParticleGuidance()], steps=8, batch_size=7)
    torch.testing.assert_close(a, b)


def test_centroid_embedding_follows_a_shift():
    from steerdiff.embeddings import get_embedding

    x = torch.full((1, 1, 32, 32), -1.0)
    x[0, 0, 10:14, 20:24] = 1.0
    shifted = torch.roll(x, shifts=(4, -8), dims=(2, 3))
    c0, c1 = get_embedding("centroid")(x), get_embedding("centroid")(shifted)
    step = 2 / 31  # one pixel in [-1, 1] coordinates
    torch.testing.assert_close(c1 - c0, torch.tensor([[4 * step, -8 * step]]), atol=1e-4, rtol=0)


class _ClassGMM(sd.toy.GaussianMixtureDenoiser):
    """A Gaussian mixture whose components are classes: ``class_labels`` gives the exact denoiser of
    one component, none the exact mixture denoiser (a model trained with label dropout, exactly)."""

    num_classes = 5

    def denoise(self, x, sigma, class_labels=None, **cond):
        if class_labels is None:
            return super().denoise(x, sigma)
        var, s2 = self.std**2, sigma.reshape(-1, 1).to(x.dtype) ** 2
        return (var * x + s2 * self.means.to(x.dtype)[class_labels]) / (var + s2)

    def probs(self, x, sigma):
        return self.log_responsibilities(x, sigma).exp()


def _class_gmm():
    angles = torch.arange(5) * 2 * torch.pi / 5
    return _ClassGMM(torch.stack([angles.cos(), angles.sin()], 1), std=0.05, preset={"sampler": "heun", "steps": 24})


def test_assign_labels_is_the_best_capacitated_assignment():
    """Against brute force over every labelling with each class used at most ceil(n/K) times."""
    import itertools

    torch.manual_seed(0)
    for n, k in ((4, 4), (5, 3), (3, 5)):
        p = torch.rand(n, k, dtype=torch.float64).softmax(1)
        cap = -(-n // k)
        best = max(
            (c for c in itertools.product(range(k), repeat=n) if max(c.count(v) for v in c) <= cap),
            key=lambda c: sum(float(p[i, c[i]].log()) for i in range(n)),
        )
        got = kernels.assign_labels(p)
        assert sum(float(p[i, got[i]].log()) for i in range(n)) == pytest.approx(
            sum(float(p[i, best[i]].log()) for i in range(n))
        )
        assert max(int((got == v).sum()) for v in range(k)) <= cap
        perm = torch.randperm(n)
        torch.testing.assert_close(kernels.assign_labels(p[perm]), got[perm])


def test_label_kernel_gives_distinct_classes_with_exact_conditionals():
    """PG's Potts kernel on labels, sampled through the class conditionals: 5 particles of a 5-class
    mixture land in 5 different components, each sample a draw of its component (within 4 std), so
    the pooled samples hold every component equally often, as the mixture does; iid batches repeat
    components. Strength 0 is bit-identical to iid sampling."""
    m = _class_gmm()
    pg = ParticleGuidance(embedding=m.probs, kernel="label", on="x", strength=1.0)
    distinct_pg, distinct_iid = [], []
    for seed in range(20):
        x = sd.sample(m, 5, seed=seed, guidance=[pg])
        comp = m.assign(x)
        d = (x - m.means[comp].to(x.dtype)).norm(dim=1)
        assert float(d.max()) < 4 * m.std * 2**0.5
        distinct_pg.append(len(set(comp.tolist())))
        distinct_iid.append(len(set(m.assign(sd.sample(m, 5, seed=seed)).tolist())))
    assert min(distinct_pg) == 5
    assert sum(distinct_iid) / 20 < 4.0  # iid: 5 * (1 - (4/5)^5) = 3.36 expected
    off = ParticleGuidance(embedding=m.probs, kernel="label", on="x", strength=0.0)
    assert torch.equal(sd.sample(m, 5, seed=3, guidance=[off]), sd.sample(m, 5, seed=3))


def test_label_kernel_clear_errors():
    m = _class_gmm()
    with pytest.raises(SteerdiffError, match="class-conditional model"):
        sd.guided(sd.ring(preset={}), ParticleGuidance(embedding="identity", kernel="label", on="x"))
    with pytest.raises(SteerdiffError, match="drop"):
        sd.guided(m, ParticleGuidance(embedding=m.probs, kernel="label", on="x", project=True))
    with pytest.raises(SteerdiffError, match="on='x'"):
        sd.guided(m, ParticleGuidance(embedding=m.probs, kernel="label", on="x0"))
    with pytest.raises(SteerdiffError, match="classes"):
        sd.sample(m, 4, seed=0, steps=4, guidance=[ParticleGuidance(embedding="identity", kernel="label", on="x")])
    with pytest.raises(SteerdiffError, match="Repulsion"):
        sd.guided(m, Repulsion(embedding=m.probs, kernel="label", on="x"))
    assert sd.guided(m, ParticleGuidance(embedding=m.probs, kernel="label")).terms[0].on == "x"  # unset: x


def test_label_kernel_is_one_network_call_at_strength_one():
    """Strength 1: the guided estimate is D(x | c) with the assigned labels, from one base call
    (no unconditional call); strength 0.5: D + 0.5 (D(x | c) - D)."""
    m = _class_gmm()
    calls = []
    orig = m.denoise

    def counting(x, sigma, class_labels=None, **cond):
        calls.append(class_labels)
        return orig(x, sigma, class_labels=class_labels, **cond)

    m.denoise = counting
    x, s = torch.randn(5, 2, dtype=torch.float64) * 0.8, torch.full((5,), 0.7, dtype=torch.float64)
    labels = kernels.assign_labels(m.probs(x, s))
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4]
    full = sd.guided(m, ParticleGuidance(embedding=m.probs, kernel="label", strength=1.0))(x, s)
    assert len(calls) == 1 and torch.equal(calls[0], labels)
    torch.testing.assert_close(full, orig(x, s, class_labels=labels))
    half = sd.guided(m, ParticleGuidance(embedding=m.probs, kernel="label", strength=0.5))(x, s)
    torch.testing.assert_close(half, orig(x, s) + 0.5 * (orig(x, s, class_labels=labels) - orig(x, s)))
