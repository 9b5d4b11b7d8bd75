"""The guidance-term protocol (issue 15): ``GuidanceTerm`` documents and enforces the hooks, every shipped
term subclasses it, ``ParticleGuidance(kernel="label")`` is ``LabelGuidance``, and a user's own term
(subclass, plain callable, or an object of the earlier duck-typed form) works with ``sample``."""

import dataclasses
import inspect
import itertools

import pytest
import torch

import steerdiff as sd
from steerdiff.errors import SteerdiffError
from steerdiff.guidance import FunctionTerm, GuidanceTerm, GuideContext
from steerdiff.particles import LabelGuidance, ParticleGuidance, Repulsion
from steerdiff.particles.diversity import SPELL, DPPGuidance, EntropyGuidance
from steerdiff.particles.kernels import get_kernel
from test_particles import _class_gmm


class PottsByHand(GuidanceTerm):
    """The label method written out independently: each of the ``n == K`` particles takes the class of
    the permutation that maximises ``sum_i log p_i(c_i)`` (brute force over every permutation), and the
    term is ``(D(x | c) - D(x)) / sigma^2``; at weight 1 the base call under ``c`` replaces the base call."""

    needs_base = True
    swaps_base = True

    def __init__(self, probs, strength):
        self.probs, self.strength = probs, strength

    def weight_at(self, sigma):
        return self.strength

    def base_cond(self, x, sigma, cond):
        logp = self.probs(x, sigma).double().clamp(min=1e-300).log()
        n = len(x)
        best = max(itertools.permutations(range(n)), key=lambda c: float(logp[torch.arange(n), list(c)].sum()))
        return {**cond, "class_labels": torch.tensor(best)}

    def guide(self, ctx):
        x = ctx.x.detach()
        d_c = ctx.base(x, ctx.sigma, **self.base_cond(x, ctx.sigma, ctx.cond))
        return (d_c - ctx.denoised.detach()) / ctx.sigma.reshape(-1, 1) ** 2


def test_every_hook_is_declared_and_documented_on_the_base_class():
    for hook in ("bind", "weight_at", "guide", "base_cond"):
        doc = inspect.getdoc(getattr(GuidanceTerm, hook))
        assert doc and len(doc) > 40, f"GuidanceTerm.{hook} is undocumented"
    for flag in ("needs_x0", "needs_base", "swaps_base"):
        assert getattr(GuidanceTerm, flag) is False
        assert f"``{flag}``" in GuidanceTerm.__doc__
    assert "Args:" in inspect.getdoc(GuidanceTerm.bind) and "Args:" in inspect.getdoc(GuidanceTerm.guide)
    for cls in (ParticleGuidance, Repulsion, LabelGuidance, SPELL, DPPGuidance, EntropyGuidance, FunctionTerm):
        assert issubclass(cls, GuidanceTerm), cls


def test_docstrings_of_the_particle_terms_list_every_argument():
    for cls in (ParticleGuidance, Repulsion):
        doc = inspect.getdoc(cls)
        args = doc[doc.index("Args:") :]
        for name in [f.name for f in dataclasses.fields(cls)] + (["share_score"] if cls is Repulsion else []):
            assert f"\n    {name}:" in args, f"{cls.__name__} does not document {name}"


def test_the_base_class_enforces_the_hooks():
    class NoGuide(GuidanceTerm):
        pass

    with pytest.raises(TypeError, match="guide"):
        NoGuide()

    class SwapsWithoutCondition(GuidanceTerm):
        swaps_base = True

        def guide(self, ctx):
            return torch.zeros_like(ctx.x)

    with pytest.raises(SteerdiffError, match="base_cond"):
        sd.guided(sd.ring(), SwapsWithoutCondition())

    class BindsToNothing(GuidanceTerm):
        def bind(self, denoiser):
            return None

        def guide(self, ctx):
            return torch.zeros_like(ctx.x)

    with pytest.raises(SteerdiffError, match="return a GuidanceTerm"):
        sd.guided(sd.ring(), BindsToNothing())
    with pytest.raises(SteerdiffError, match="must be callable"):
        sd.guided(sd.ring(), "rbf")


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_label_guidance_is_the_old_label_kernel_and_a_users_own_term(strength):
    """``ParticleGuidance(kernel="label")`` binds to ``LabelGuidance`` with its settings; both sample
    bit for bit what the Potts method written out independently (a user's GuidanceTerm) samples, at
    strength 1 (one network call under the assigned labels) and below it (the difference of two calls)."""
    m = _class_gmm()
    old = ParticleGuidance(embedding=m.probs, kernel="label", on="x", strength=strength)
    bound = sd.guided(m, old).terms[0]
    assert type(bound) is LabelGuidance and bound.strength == strength and bound.on == "x"
    assert bound.kernel == "label" and bound.window == (m.sigma_min, m.sigma_max)
    by_hand = sd.sample(m, 5, seed=2, steps=10, guidance=[PottsByHand(m.probs, strength)])
    assert torch.equal(sd.sample(m, 5, seed=2, steps=10, guidance=[old]), by_hand)
    new = LabelGuidance(embedding=m.probs, strength=strength)
    assert torch.equal(sd.sample(m, 5, seed=2, steps=10, guidance=[new]), by_hand)
    assert not torch.equal(by_hand, sd.sample(m, 5, seed=2, steps=10))


def test_label_guidance_resolves_its_settings_from_the_preset_once():
    m = _class_gmm()
    probs = m.probs
    m.preset = {"particles": {"pg": {"kernel": "label", "embedding": probs, "strength": 0.75, "window": [0.1, 9]}}}
    t = LabelGuidance()
    bound = t.bind(m)
    assert (bound.embedding, bound.strength, bound.window, bound.weight) == (probs, 0.75, (0.1, 9), "constant")
    assert t.embedding is None and t.strength is None  # bind leaves the term itself unset
    assert type(ParticleGuidance().bind(m)) is LabelGuidance  # the model's pg preset is the label method
    m.preset = {"particles": {"pg": {"kernel": "rbf", "embedding": "identity", "strength": 30.0}}}
    resolved = LabelGuidance().resolve(m)  # a gradient-kernel preset says nothing about the label method
    assert (resolved.embedding, resolved.strength) == ("classifier-probs", 1.0)
    assert type(ParticleGuidance().bind(m)) is ParticleGuidance


def test_label_is_not_a_kernel():
    with pytest.raises(SteerdiffError, match="LabelGuidance"):
        get_kernel("label")
    with pytest.raises(SteerdiffError, match="Repulsion needs a differentiable kernel"):
        sd.guided(_class_gmm(), Repulsion(kernel="label"))
    with pytest.raises(SteerdiffError, match="class-conditional model"):
        sd.guided(sd.ring(), LabelGuidance(embedding="identity"))


def test_a_users_term_in_every_form_gives_the_same_samples():
    """A pull toward the origin, ``g = -x / (2 sigma^2)`` (``D' = D - x / 2``), as a GuidanceTerm subclass with a window, as a plain callable,
    and as an object of the earlier duck-typed protocol: the same bytes; outside its window the term
    is bit-identical to no guidance, and inside it samples move toward the origin."""
    m = sd.ring()

    class Pull(GuidanceTerm):
        def __init__(self, window=(0.0, 100.0)):
            self.window = window

        def weight_at(self, sigma):
            return 1.0 if self.window[0] <= sigma <= self.window[1] else 0.0

        def guide(self, ctx: GuideContext):
            return -0.5 * ctx.x.detach() / ctx.sigma.reshape(-1, 1) ** 2

    class Duck:
        def weight_at(self, sigma):
            return 1.0

        def guide(self, ctx):
            return -0.5 * ctx.x.detach() / ctx.sigma.reshape(-1, 1) ** 2

    def pull(x, sigma, **cond):
        return -0.5 * x / sigma.reshape(-1, 1) ** 2

    plain = sd.sample(m, 6, seed=4, steps=8)
    ours = sd.sample(m, 6, seed=4, steps=8, guidance=[Pull()])
    assert torch.equal(sd.sample(m, 6, seed=4, steps=8, guidance=[pull]), ours)
    assert torch.equal(sd.sample(m, 6, seed=4, steps=8, guidance=[Duck()]), ours)
    assert torch.equal(sd.sample(m, 6, seed=4, steps=8, guidance=[Pull(window=(200.0, 300.0))]), plain)
    assert float(ours.norm(dim=1).mean()) < 0.9 * float(plain.norm(dim=1).mean())
