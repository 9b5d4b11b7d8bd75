"""Per-sample noise: a sample depends on (seed, index) only."""

import torch

import steerdiff as sd
from steerdiff.seeding import sample_generators, stream_seed


def test_streams_are_distinct_and_stable():
    assert stream_seed("sample", 0, 1) == stream_seed("sample", 0, 1)
    seeds = {stream_seed("sample", s, i) for s in range(3) for i in range(1000)}
    assert len(seeds) == 3000


def test_sample_independent_of_batch_size_and_chunking():
    m = sd.ring()
    for sampler in ("heun", "euler_ancestral", "pc"):
        full = (
            sd.sample(m, 12, seed=7, sampler=sampler, steps=16, s_churn=1.0)
            if sampler == "heun"
            else sd.sample(m, 12, seed=7, sampler=sampler, steps=16)
        )
        kw = {"s_churn": 1.0} if sampler == "heun" else {}
        chunked = sd.sample(m, 12, seed=7, sampler=sampler, steps=16, batch_size=5, **kw)
        first = sd.sample(m, 4, seed=7, sampler=sampler, steps=16, **kw)
        tail = sd.sample(m, 3, seed=7, sampler=sampler, steps=16, start_index=9, **kw)
        torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(first, full[:4], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(tail, full[9:], rtol=1e-6, atol=1e-6)


def test_seeds_share_no_samples():
    m = sd.ring()
    a = sd.sample(m, 50, seed=0, steps=8)
    b = sd.sample(m, 50, seed=1, steps=8)
    assert float(torch.cdist(a, b).min()) > 1e-4
    torch.testing.assert_close(a, sd.sample(m, 50, seed=0, steps=8))


def test_generators_give_independent_draws():
    gens = sample_generators(0, range(2))
    a, b = torch.randn(1000, generator=gens[0]), torch.randn(1000, generator=gens[1])
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.15


class _LabelledMixture(sd.GaussianMixtureDenoiser):
    """Exact mixture whose ``class_labels`` (a per-sample ``(B,)`` tensor) select one component's exact denoiser."""

    def denoise(self, x, sigma, class_labels=None, **cond):
        if class_labels is None:
            return super().denoise(x, sigma)
        var, s2 = self.std**2, sigma.reshape(-1, 1).to(x.dtype) ** 2
        return (var * x + s2 * self.means.to(x.dtype)[class_labels]) / (var + s2)


def test_chunked_sampling_slices_per_sample_conditions():
    """``batch_size`` with a per-sample ``cond``: each chunk must get its own labels. The oracle: sample
    i ends on component labels[i] (exact conditional denoiser), and chunking changes nothing, with and
    without a guidance term (two chunking paths: chunks of streams, and chunked network calls)."""
    m = _LabelledMixture(torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0], [0.0, -3.0]]), 0.1, preset={})
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 2, 1])
    cond = {"class_labels": labels}
    full = sd.sample(m, 10, seed=2, steps=16, cond=cond)
    assert m.assign(full).tolist() == labels.tolist()
    torch.testing.assert_close(sd.sample(m, 10, seed=2, steps=16, cond=cond, batch_size=3), full, rtol=0, atol=1e-12)
    pg = [sd.ParticleGuidance(on="x", strength=0.5, window=(0.05, 5.0))]
    guided = sd.sample(m, 10, seed=2, steps=16, cond=cond, guidance=pg)
    assert m.assign(guided).tolist() == labels.tolist()
    torch.testing.assert_close(
        sd.sample(m, 10, seed=2, steps=16, cond=cond, guidance=pg, batch_size=3), guided, rtol=1e-6, atol=1e-6
    )
