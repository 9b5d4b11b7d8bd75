"""Prior-preserving diverse batches: stratified selection from the model's own draws.

A particle term changes the joint law of a batch and with it each particle's marginal: Particle
Guidance pulls an unequal binary choice toward an equal split (as the edm_mnist project measured on
a left/right choice). Stratified selection changes only the joint law. Draw ``m = k * n`` iid
candidates, order them along a path through feature space, and keep every ``k``-th from a uniformly
random offset (systematic sampling). Every candidate is kept with probability exactly ``1 / k`` and the candidates are iid, so
the batch's expected empirical distribution is the model's own, mode frequencies included. Samples
that are neighbours in feature space (the same mode) are rarely kept together: a mode of mass ``pi``
gets ``floor`` or ``ceil`` of about ``n pi`` particles instead of a binomial count.

The path is a nearest-neighbour chain that starts at one end of the features' leading principal
axis, so each cluster of features is one contiguous stretch of it. Cost: ``k`` times iid sampling,
with no gradients.
"""

from __future__ import annotations

import torch

from ..core.errors import check
from ..core.seeding import stream_seed
from .embeddings import get_embedding


def chain_order(feats: torch.Tensor) -> torch.Tensor:
    """An ordering ``(m,)`` of the rows of ``feats`` ``(m, d)``: start at the smallest projection on
    the leading principal axis, then repeatedly step to the nearest unvisited row (ties: lowest index)."""
    f = feats.detach().double().flatten(1)
    m = len(f)
    if m <= 2:
        return torch.argsort((f - f.mean(0)).sum(1), stable=True)
    centred = f - f.mean(0)
    axis = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    d2 = torch.cdist(f, f).pow(2)
    order = [int(torch.argmin(centred @ axis))]
    visited = torch.zeros(m, dtype=torch.bool)
    visited[order[0]] = True
    for _ in range(m - 1):
        row = d2[order[-1]].masked_fill(visited, float("inf"))
        nxt = int(torch.argmin(row))
        order.append(nxt)
        visited[nxt] = True
    return torch.tensor(order)


def systematic_pick(m: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Positions ``offset + j * (m / n)`` for ``j < n`` with a uniform offset: each of the ``m``
    positions is picked with probability exactly ``n / m`` (``m`` a multiple of ``n``)."""
    k = m // n
    offset = int(torch.randint(k, (1,), generator=generator))
    return offset + k * torch.arange(n)


def stratified_sample(
    denoiser,
    n: int,
    *,
    candidates: int = 4,
    embedding=None,
    seed: int | None = None,
    cond: dict | None = None,
    start_index: int = 0,
    **sample_kwargs,
) -> torch.Tensor:
    """``n`` samples ``(n, *sample_shape)`` chosen by stratified selection (module docstring) from
    ``candidates * n`` iid draws of :func:`steerdiff.sample` (streams ``start_index ..``), ordered in
    ``embedding`` features of the clean samples (default: the model's Particle Guidance preset's
    embedding, else ``identity``). ``candidates = 1`` is plain iid sampling.

    Tensors of ``cond`` with leading dim ``n`` (``class_labels`` ``(n,)``) are per kept sample: the samples
    that share a condition are selected together from their own ``candidates`` draws each, drawn with that
    condition (one condition for all: one selection over all ``candidates * n`` draws), and output ``i``
    carries condition ``i``."""
    from ..core.api import sample

    check(
        int(candidates) == candidates and candidates >= 1,
        f"candidates must be a positive integer (draws per sample), got {candidates}",
    )
    check(int(n) == n and n >= 1, f"n must be a positive integer, got {n}")
    check(seed is not None, "stratified_sample needs a seed (the offset and the output order are drawn from it)")
    cond = dict(cond or {})
    # the per-sample condition tensors; candidates = 1 is iid sampling with the condition as given
    per_sample = candidates > 1
    rows = {k: v for k, v in cond.items() if per_sample and isinstance(v, torch.Tensor) and v.ndim > 0 and len(v) == n}
    groups: list[list[int]] = []  # the samples of each distinct per-sample condition, in order of first use
    for i in range(n if rows else 0):
        same = [g for g in groups if all(torch.equal(v[g[0]], v[i]) for v in rows.values())]
        if same:
            same[0].append(i)
        else:
            groups.append([i])
    if len(groups) > 1:  # each group from its own noise streams, after the earlier groups' candidates
        out, first = [], start_index
        for g in groups:
            one = {k: v[g] for k, v in rows.items()}
            out.append(
                stratified_sample(
                    denoiser,
                    len(g),
                    candidates=candidates,
                    embedding=embedding,
                    seed=seed,
                    cond=cond | one,
                    start_index=first,
                    **sample_kwargs,
                )
            )
            first += int(candidates) * len(g)
        order = torch.argsort(torch.tensor([i for g in groups for i in g]))
        return torch.cat(out)[order.to(out[0].device)]
    cond |= {k: v[:1].expand(int(candidates) * n, *v.shape[1:]) for k, v in rows.items()}  # one condition for all
    from .pg import particle_preset

    phi = get_embedding(embedding if embedding is not None else particle_preset(denoiser, "pg")["embedding"])
    if hasattr(phi, "check_fits"):  # a classifier embedding: refuse other images before sampling
        phi.check_fits(getattr(denoiser, "sample_shape", None), str(embedding))
    pool = sample(denoiser, int(candidates) * n, seed=seed, cond=cond, start_index=start_index, **sample_kwargs)
    if candidates == 1:
        return pool
    with torch.no_grad():
        feats = phi(pool, torch.zeros(len(pool), device=pool.device)).flatten(1)
    g = torch.Generator().manual_seed(stream_seed("stratified", int(seed), start_index))
    kept = chain_order(feats)[systematic_pick(len(pool), n, g)]
    # a random order, so no output position is tied to one end of the chain
    return pool[kept[torch.randperm(n, generator=g)].to(pool.device)]
