"""Diversity terms: SPELL (sparse repellency), the DPP log-determinant and the order-2 kernel entropy."""

import math

import numpy as np
import pytest
import torch

import steerdiff as sd
from steerdiff import sampling
from steerdiff.diversity import SPELL, DPPGuidance, EntropyGuidance, HerdingGuidance, term
from steerdiff.errors import SteerdiffError
from steerdiff.guidance import GuideContext
from steerdiff.particles import Archive
from steerdiff.seeding import PerSampleNoise, randn_per_sample, sample_generators


def _spell_numpy(x0, refs, r, skip_self):
    """The SPELL correction by a plain loop in float64 numpy (independent of the library's vectorised code)."""
    out = np.zeros_like(x0)
    for i in range(len(x0)):
        for j in range(len(refs)):
            if skip_self and i == j:
                continue
            d = np.linalg.norm(x0[i] - refs[j])
            if 0 < d < r:
                out[i] += (r - d) * (x0[i] - refs[j]) / d
    return out


def _ctx(m, x, sigma, need_graph=False):
    xg = x.detach().requires_grad_(need_graph)
    s = torch.full((len(x),), float(sigma), dtype=x.dtype)
    with torch.enable_grad():
        d = m(xg, s)
    return GuideContext(xg, s, d, {}, m)


def _permuted_sample(m, guidance, perm, steps=12, seed=0):
    """A sample of the particles ``perm`` (each with its own noise stream), to compare with ``a[perm]``."""
    sig = sd.get_sigmas_karras(steps, m.sigma_min, m.sigma_max)
    gens = sample_generators(seed, perm.tolist())
    shape = tuple(m.sample_shape)
    x = randn_per_sample(gens, shape) * sig[0]
    return sampling.sample_euler_ancestral(sd.guided(m, *guidance), x, sig, noise_sampler=PerSampleNoise(gens, shape))


# ------------------------------------------------------------------------------------------------ SPELL


def test_spell_correction_matches_the_formula():
    torch.manual_seed(0)
    m = sd.ring()
    x0 = torch.randn(6, 2, dtype=torch.float64) * 0.4
    arch = torch.randn(3, 2, dtype=torch.float64) * 0.4
    prot = torch.randn(2, 2, dtype=torch.float64) * 0.4
    t = SPELL(radius=0.5, archive=arch, protected=prot, protected_radius=0.3).bind(m)
    expected = (
        _spell_numpy(x0.numpy(), x0.numpy(), 0.5, True)
        + _spell_numpy(x0.numpy(), arch.numpy(), 0.5, False)
        + _spell_numpy(x0.numpy(), prot.numpy(), 0.3, False)
    )
    assert np.abs(expected).max() > 0.1  # the draw does overlap
    np.testing.assert_allclose(t.correction(x0).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_spell_pushes_a_close_pair_out_of_each_others_ball():
    """Two particles closer than r: one correction (through the guided denoiser) leaves them >= r apart
    (each to the boundary of the other's ball: 2 r - d)."""
    m = sd.ring()
    torch.manual_seed(1)
    x = torch.tensor([[0.9, 0.3], [1.0, 0.35]], dtype=torch.float64)
    for sigma in (0.05, 0.3, 2.0):
        d0 = m(x, torch.full((2,), sigma, dtype=torch.float64))
        dist0 = float((d0[0] - d0[1]).norm())
        r = dist0 + 0.4
        den = sd.guided(m, SPELL(radius=r))
        base, delta = den.split(x, sigma)
        corrected = base + delta
        dist = float((corrected[0] - corrected[1]).norm())
        assert dist >= r * (1 - 1e-9) and dist == pytest.approx(2 * r - dist0, rel=1e-9)
        # the push is radial: along the line through the two estimates
        u = (d0[0] - d0[1]) / dist0
        assert float((delta[0] - (delta[0] @ u) * u).norm()) < 1e-9


def test_spell_is_exactly_zero_without_overlap_and_at_strength_zero():
    m = sd.ring()
    plain = sd.sample(m, 6, seed=3, steps=10)
    tiny = sd.sample(m, 6, seed=3, steps=10, guidance=[SPELL(radius=1e-9)])
    zero = sd.sample(m, 6, seed=3, steps=10, guidance=[SPELL(radius=0.5, strength=0.0)])
    outside = sd.sample(m, 6, seed=3, steps=10, guidance=[SPELL(radius=0.5, window=(100.0, 200.0))])
    assert torch.equal(plain, tiny) and torch.equal(plain, zero) and torch.equal(plain, outside)
    on = sd.sample(m, 6, seed=3, steps=10, guidance=[SPELL(radius=0.5)])
    assert not torch.equal(plain, on)
    # sparse: estimates that are far apart give an all-zero correction
    t = SPELL(radius=0.5).bind(m)
    assert not t.correction(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])).any()


def test_spell_is_permutation_equivariant():
    m = sd.ring()
    torch.manual_seed(0)
    x0 = torch.randn(7, 2, dtype=torch.float64) * 0.3
    perm = torch.tensor([3, 0, 6, 4, 1, 5, 2])
    t = SPELL(radius=0.6).bind(m)
    torch.testing.assert_close(t.correction(x0[perm]), t.correction(x0)[perm], rtol=1e-12, atol=1e-12)
    g = [SPELL(radius=0.4)]
    a = sd.sample(m, 7, seed=0, steps=12, sampler="euler_ancestral", guidance=g)
    torch.testing.assert_close(_permuted_sample(m, g, perm), a[perm], rtol=1e-5, atol=1e-6)


def test_spell_protected_set_shields_modes_and_archive_repels():
    """Protected = the means of 5 of the 10 ring modes (a near-copy shield): samples avoid them."""
    m = sd.ring()
    shielded = m.means[:5].float()
    iid = torch.cat([sd.sample(m, 10, seed=s, steps=24) for s in range(4)])
    prot = torch.cat(
        [
            sd.sample(m, 10, seed=s, steps=24, guidance=[SPELL(radius=0.0, protected=shielded, protected_radius=0.6)])
            for s in range(4)
        ]
    )
    near = lambda b: int((torch.cdist(b.double(), shielded.double()).min(1).values < 0.3).sum())  # noqa: E731
    assert near(iid) >= 12 and near(prot) == 0, (near(iid), near(prot))
    # an Archive of earlier samples works the same way
    first = sd.sample(m, 10, seed=100, steps=24)
    t = SPELL(radius=0.3, archive=Archive(first[:1])).bind(m)
    x0 = first[:1] + 0.01
    assert float((x0 + t.correction(x0) - first[:1]).norm()) == pytest.approx(0.3, rel=1e-5)


def test_spell_with_an_embedding_pulls_the_correction_back():
    m = sd.ring()
    x0 = torch.tensor([[0.0, 0.0], [0.1, 0.0]], dtype=torch.float64)
    t = SPELL(radius=0.5, embedding=lambda x: 2 * x).bind(m)
    # f = 2 x: f-distance 0.2, push (0.5 - 0.2) in f units, pulled back by J^T = 2
    torch.testing.assert_close(t.correction(x0), torch.tensor([[-0.6, 0.0], [0.6, 0.0]], dtype=torch.float64))
    with pytest.raises(SteerdiffError, match="needs radius="):
        sd.guided(m, SPELL(embedding="ro3"))


def test_spell_default_radius_is_relative_to_the_data_scale():
    m = sd.load("mnist")
    t = SPELL().bind(m)
    assert t.radius == pytest.approx(0.7 * math.sqrt(2 * 784) * 0.5)
    assert SPELL(radius_scale=0.5).bind(m).radius == pytest.approx(t.radius / 0.7 * 0.5)


# ------------------------------------------------------------------------------------------------ DPP / entropy


def _rbf_numpy(x, h):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / h)


def _median_h(x):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    n = len(x)
    return np.median(d2[~np.eye(n, dtype=bool)]) / math.log(n + 1)


def _fd(fn, x, eps=1e-6):
    z = x.ravel().copy()
    out = np.zeros_like(z)
    for a in range(z.size):
        up, dn = z.copy(), z.copy()
        up[a] += eps
        dn[a] -= eps
        out[a] = (fn(up.reshape(x.shape)) - fn(dn.reshape(x.shape))) / (2 * eps)
    return out.reshape(x.shape)


def _logdet_np(x, h, eps):
    return np.linalg.slogdet(_rbf_numpy(x, h) + eps * np.eye(len(x)))[1]


def _entropy_np(x, h):
    return -np.log(_rbf_numpy(x, h).mean())


@pytest.mark.parametrize(
    "cls, value", [(DPPGuidance, lambda x, h: _logdet_np(x, h, 1e-3)), (EntropyGuidance, _entropy_np)]
)
@pytest.mark.parametrize("bandwidth", [0.8, "median"])
def test_potential_gradient_matches_numpy_finite_differences(cls, value, bandwidth):
    """On the noisy sample (on='x'): the term's gradient against central differences of a float64 numpy
    formula; the median bandwidth is held at its value at the point (it is detached)."""
    m = sd.ring()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2)) * 0.7
    h = bandwidth if bandwidth != "median" else _median_h(x)
    t = cls(on="x", bandwidth=bandwidth).bind(m)
    g = t.guide(_ctx(m, torch.from_numpy(x), 0.5)).numpy()
    np.testing.assert_allclose(g, _fd(lambda z: value(z, h), x), rtol=1e-5, atol=1e-7)


def _ring_denoise_np(m, sigma):
    """The exact denoiser of the ring mixture ``m`` at ``sigma``, written out in float64 numpy."""
    mu, s2, w = m.means.numpy(), m.std**2, m.weights.numpy()

    def denoise(x):
        d2 = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
        logits = np.log(w)[None] - d2 / (2 * (s2 + sigma**2))
        r = np.exp(logits - logits.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        mm = r @ mu
        return mm + s2 / (s2 + sigma**2) * (x - mm)

    return denoise


@pytest.mark.parametrize(
    "cls, value", [(DPPGuidance, lambda x, h: _logdet_np(x, h, 1e-3)), (EntropyGuidance, _entropy_np)]
)
def test_x0_potential_gradient_goes_through_the_denoiser(cls, value):
    """on='x0': the gradient of V(D(x)) with D the exact ring denoiser written out in numpy."""
    m = sd.ring()
    sigma = 0.4
    denoise = _ring_denoise_np(m, sigma)

    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 2)) * 0.8
    t = cls(on="x0", bandwidth=0.5).bind(m)
    g = t.guide(_ctx(m, torch.from_numpy(x), sigma, need_graph=True)).numpy()
    np.testing.assert_allclose(g, _fd(lambda z: value(denoise(z), 0.5), x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DPPGuidance(on="x0"),
        lambda: EntropyGuidance(on="x0"),
        lambda: EntropyGuidance(on="x0", features=64),
        lambda: HerdingGuidance(reference=sd.ring().means),
        lambda: HerdingGuidance(reference=sd.ring().means, jacobian="gaussian"),
    ],
)
def test_potentials_off_are_bit_identical_and_equivariant(make):
    m = sd.ring()
    plain = sd.sample(m, 6, seed=3, steps=10)
    zero, outside, on = make(), make(), make()
    zero.strength, outside.window = 0.0, (100.0, 200.0)
    assert torch.equal(plain, sd.sample(m, 6, seed=3, steps=10, guidance=[zero]))
    assert torch.equal(plain, sd.sample(m, 6, seed=3, steps=10, guidance=[outside]))
    on.strength = 2.0
    assert not torch.equal(plain, sd.sample(m, 6, seed=3, steps=10, guidance=[on]))
    perm = torch.tensor([3, 0, 5, 4, 1, 2])
    a = sd.sample(m, 6, seed=0, steps=12, sampler="euler_ancestral", guidance=[on])
    torch.testing.assert_close(_permuted_sample(m, [on], perm), a[perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "cls, value", [(DPPGuidance, lambda x, h: _logdet_np(x, h, 1e-3)), (EntropyGuidance, _entropy_np)]
)
def test_a_small_step_along_the_term_raises_the_potential(cls, value):
    m = sd.ring()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 2)) * 0.3
    t = cls(on="x", bandwidth=0.3).bind(m)
    g = t.guide(_ctx(m, torch.from_numpy(x), 0.5)).numpy()
    v0 = value(x, 0.3)
    step = 1e-4 / np.abs(g).max()
    v1 = value(x + step * g, 0.3)
    assert v1 > v0 and v1 - v0 == pytest.approx(step * (g**2).sum(), rel=1e-2)


def _herding_np(x, refs, h):
    """-(n MMD^2 - const) with the RBF kernel of bandwidth h, by plain loops in float64 numpy."""
    k = lambda a, b: math.exp(-((a - b) ** 2).sum() / h)  # noqa: E731
    n = len(x)
    batch = sum(k(x[i], x[j]) for i in range(n) for j in range(n)) / n
    cross = sum(k(x[i], r) for i in range(n) for r in refs) / len(refs)
    return -(batch - 2 * cross)


def test_herding_gradient_goes_through_the_denoiser_with_the_references_bandwidth():
    """on x0: the gradient of V(D(x)) with D the exact ring denoiser, V written out in numpy, h the
    median squared distance among the reference points (times bandwidth_scale)."""
    m = sd.ring()
    sigma = 0.4
    denoise = _ring_denoise_np(m, sigma)

    rng = np.random.default_rng(4)
    refs = rng.normal(size=(7, 2))
    d2 = ((refs[:, None] - refs[None]) ** 2).sum(-1)
    h = 0.5 * np.median(d2[~np.eye(7, dtype=bool)])
    x = rng.normal(size=(5, 2)) * 0.8
    t = HerdingGuidance(reference=torch.from_numpy(refs), bandwidth_scale=0.5).bind(m)
    g = t.guide(_ctx(m, torch.from_numpy(x), sigma, need_graph=True)).numpy()
    np.testing.assert_allclose(g, _fd(lambda z: _herding_np(denoise(z), refs, h), x), rtol=1e-5, atol=1e-7)
    # features given directly are the same term
    t2 = HerdingGuidance(reference_features=torch.from_numpy(refs), bandwidth_scale=0.5).bind(m)
    torch.testing.assert_close(t2.guide(_ctx(m, torch.from_numpy(x), sigma, need_graph=True)), torch.from_numpy(g))


def test_herding_attracts_to_the_reference_where_a_repulsion_pushes_outward():
    """A lone particle (no batch-mates to repel) beside a reference cloud: herding pulls it toward the
    cloud; with two particles at one reference point, the one nearer the other reference moves to it."""
    m = sd.ring()
    refs = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    t = HerdingGuidance(reference=refs, jacobian="gaussian").bind(m)  # forces on x0, times c_skip > 0
    x0 = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    ctx = GuideContext(x0.clone(), torch.full((1,), 1e-3, dtype=torch.float64), x0.clone(), {}, m)
    assert float(t.guide(ctx)[0, 1]) < 0  # toward the references' line y = 0
    pair = torch.tensor([[-1.0, 0.0], [-0.8, 0.0]], dtype=torch.float64)
    ctx = GuideContext(pair.clone(), torch.full((2,), 1e-3, dtype=torch.float64), pair.clone(), {}, m)
    assert float(t.guide(ctx)[1, 0]) > 0  # the second particle heads for the uncovered reference at +1


def test_random_fourier_entropy_approximates_the_exact_gradient():
    m = sd.ring()
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(12, 2)) * 0.5)
    exact = EntropyGuidance(on="x", bandwidth=0.5).bind(m).guide(_ctx(m, x, 0.5))
    approx = EntropyGuidance(on="x", bandwidth=0.5, features=8192, seed=1).bind(m).guide(_ctx(m, x, 0.5))
    cos = float((exact * approx).sum() / (exact.norm() * approx.norm()))
    assert cos > 0.95 and float(approx.norm() / exact.norm()) == pytest.approx(1.0, abs=0.15)


def test_terms_spread_ring_particles_over_modes():
    """10 particles on the 10-mode ring, 8 runs: every term covers more modes than iid sampling."""
    m = sd.ring()
    cover = lambda g: (
        sum(
            len(set(m.assign(sd.sample(m, 10, seed=s, steps=24, guidance=g)).tolist()))  # noqa: E731
            for s in range(8)
        )
        / 8
    )
    iid = cover([])
    for g in (
        [SPELL(radius=0.6, window=(0.05, 20.0))],
        [DPPGuidance(window=(0.1, 20.0), bandwidth_scale=0.3)],
        [EntropyGuidance(window=(0.1, 20.0), bandwidth_scale=0.3, strength=4.0)],
        [
            HerdingGuidance(
                reference=sd.sample(m, 200, seed=99, steps=24), window=(0.1, 20.0), strength=16.0, bandwidth_scale=0.1
            )
        ],
    ):
        assert cover(g) > iid + 1.0, (g, cover(g), iid)


def test_term_factory_and_errors():
    m = sd.ring()
    assert isinstance(term("spell", strength=2.0, window=(0.1, 1.0)), SPELL)
    assert isinstance(term("dpp", embedding="identity"), DPPGuidance)
    assert isinstance(term("entropy", features=32), EntropyGuidance)
    with pytest.raises(SteerdiffError, match="unknown diversity term"):
        term("vendi")
    with pytest.raises(SteerdiffError, match="radius must be a number >= 0"):
        SPELL(radius=-1.0)
    with pytest.raises(SteerdiffError, match="on='y'"):
        sd.guided(m, DPPGuidance(on="y"))
    with pytest.raises(SteerdiffError, match="unknown weight schedule"):
        sd.guided(m, EntropyGuidance(weight="linear"))
    with pytest.raises(SteerdiffError, match="eps must be positive"):
        DPPGuidance(eps=0.0)
    assert isinstance(term("herding", reference=m.means), HerdingGuidance)
    with pytest.raises(SteerdiffError, match="herding needs a reference set"):
        HerdingGuidance()
    with pytest.raises(SteerdiffError, match="herding needs a reference set"):
        HerdingGuidance(reference=m.means, reference_features=m.means)
    with pytest.raises(SteerdiffError, match="at least 2 items"):
        sd.guided(m, HerdingGuidance(reference=m.means[:1]))
    with pytest.raises(SteerdiffError, match="bandwidth_scale must be a positive number"):
        sd.guided(m, HerdingGuidance(reference=m.means, bandwidth_scale=0.0))


def test_terms_on_a_pipelines_latents(tmp_path):
    """On a tiny Stable-Diffusion-style pipeline: in steerdiff's loop and as an unchanged pipeline's callback."""
    from steerdiff.pipelines import from_pipeline, particle_callback, tiny_pipeline

    pipe = tiny_pipeline(tmp_path)
    den = from_pipeline(pipe, "a red cat", guidance_scale=3.0)
    iid = sd.sample(den, 4, seed=0, steps=8, clip=False)
    closest = lambda x: float(torch.pdist(x.flatten(1)).min())  # noqa: E731
    r = 1.5 * closest(iid)
    spell = sd.sample(den, 4, seed=0, steps=8, clip=False, guidance=[SPELL(radius=r)])
    assert closest(spell) > closest(iid)
    dpp = sd.sample(den, 4, seed=0, steps=8, clip=False, guidance=[DPPGuidance(strength=3.0)])
    assert not torch.equal(dpp, iid) and bool(torch.isfinite(dpp).all())
    lat0 = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = {
        "num_inference_steps": 6,
        "guidance_scale": 3.0,
        "height": 16,
        "width": 16,
        "output_type": "latent",
        "num_images_per_prompt": 4,
    }
    plain = pipe("a red cat", latents=lat0.clone(), **kw).images
    off = pipe(
        "a red cat",
        latents=lat0.clone(),
        callback_on_step_end=particle_callback(den, SPELL(radius=r, strength=0.0)),
        **kw,
    ).images
    torch.testing.assert_close(off, plain)
    pushed = pipe(
        "a red cat",
        latents=lat0.clone(),
        callback_on_step_end=particle_callback(den, SPELL(radius=1.5 * closest(plain))),
        **kw,
    ).images
    assert closest(pushed) > closest(plain)


@pytest.mark.parametrize("cls", [DPPGuidance, EntropyGuidance])
def test_projected_force_is_orthogonal_to_the_score(cls):
    m = sd.ring()
    torch.manual_seed(4)
    x = torch.randn(6, 2, dtype=torch.float64) * 0.8
    ctx = _ctx(m, x, 0.4, need_graph=True)
    free = cls(bandwidth=0.5).bind(m).guide(ctx)
    proj = cls(bandwidth=0.5, project=True).bind(m).guide(ctx)
    score = ctx.score
    assert float((proj * score).sum(1).abs().max()) < 1e-9 * float(proj.norm() * score.norm())
    # what is left is the free force minus its component along the score
    along = (free * score).sum(1, keepdim=True) / (score**2).sum(1, keepdim=True)
    torch.testing.assert_close(proj, free - along * score)
