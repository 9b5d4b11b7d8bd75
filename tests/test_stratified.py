"""Stratified selection: the model's own mode frequencies with more disagreement than iid."""

import pytest
import torch

import steerdiff as sd
from steerdiff.errors import SteerdiffError
from steerdiff.stratified import chain_order, stratified_sample, systematic_pick


def test_systematic_pick_keeps_every_position_with_probability_n_over_m():
    counts = torch.zeros(24)
    for s in range(600):
        counts[systematic_pick(24, 6, torch.Generator().manual_seed(s))] += 1
    # each offset in 0..3 picks 6 distinct positions; over the 4 offsets every position exactly once
    picks = {tuple(systematic_pick(24, 6, torch.Generator().manual_seed(s)).tolist()) for s in range(200)}
    assert len(picks) == 4 and sorted(sum(picks, ())) == list(range(24))
    assert float((counts / 600 - 0.25).abs().max()) < 0.07


def test_chain_order_keeps_clusters_contiguous():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    label = torch.randint(3, (30,), generator=g)
    feats = centres[label] + 0.1 * torch.randn(30, 2, generator=g)
    runs = label[chain_order(feats)].tolist()
    changes = sum(a != b for a, b in zip(runs, runs[1:], strict=False))
    assert changes == len(set(runs)) - 1
    assert sorted(chain_order(feats).tolist()) == list(range(30))


def test_stratified_keeps_the_prior_and_raises_disagreement():
    """Two modes of mass 0.7 / 0.3, batches of 8: stratified selection from 4 x 8 draws keeps
    p = 0.7 (every candidate is kept with probability 1/4), and its pairs disagree about as often as
    the best batches can while keeping 0.7 (5 or 6 of 8: 0.43-0.54), more than iid pairs (0.42)."""
    m = sd.GaussianMixtureDenoiser(torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), 0.3, [0.7, 0.3])

    def stats(batches):
        right = (torch.stack(batches)[..., 0] > 0).double()
        k = right.sum(1)
        return float(right.mean()), float((k * (8 - k) / 28).mean())

    p_iid, dis_iid = stats([sd.sample(m, 8, seed=b, steps=16) for b in range(150)])
    p_st, dis_st = stats([stratified_sample(m, 8, candidates=4, seed=b, steps=16) for b in range(150)])
    assert abs(p_st - 0.7) < 0.04 and abs(p_st - p_iid) < 0.04
    assert dis_st > dis_iid + 0.03


def test_stratified_with_one_candidate_is_iid_and_errors_are_clear():
    m = sd.ring()
    assert torch.equal(stratified_sample(m, 5, candidates=1, seed=3, steps=8), sd.sample(m, 5, seed=3, steps=8))
    a = stratified_sample(m, 5, candidates=3, seed=3, steps=8)
    assert torch.equal(a, stratified_sample(m, 5, candidates=3, seed=3, steps=8))
    with pytest.raises(SteerdiffError, match="candidates"):
        stratified_sample(m, 5, candidates=0, seed=0)
    with pytest.raises(SteerdiffError, match="seed"):
        stratified_sample(m, 5, candidates=2)


@pytest.mark.parametrize(
    "means, n, k",
    [
        ([[2.0, 0.0], [-2.0, 0.0]], 8, 4),
        ([[3.0, 0.0], [-1.5, 2.6], [-1.5, -2.6]], 9, 3),
    ],
)
def test_stratified_counts_are_floor_or_ceil_of_the_pools_share(means, n, k):
    """Separated modes are contiguous stretches of the chain, so systematic picks keep floor or ceil of
    n * (the mode's share of the k * n candidates). The pool is recomputed here by sd.sample (the same
    streams), so the oracle does not use the selection code."""
    m = sd.GaussianMixtureDenoiser(torch.tensor(means), 0.2, None, preset={})
    for seed in range(25):
        pool = sd.sample(m, k * n, seed=seed, steps=12)
        kept = stratified_sample(m, n, candidates=k, seed=seed, steps=12, embedding="identity")
        for mode in range(len(means)):
            share = n * float((m.assign(pool) == mode).double().mean())
            count = int((m.assign(kept) == mode).sum())
            assert share - 1 < count < share + 1 or count == share, (seed, mode, share, count)
        # every kept sample is one of the candidates
        assert float((kept[:, None] - pool[None]).abs().amax(-1).min(1).values.max()) == 0.0
