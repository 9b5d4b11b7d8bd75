"""Particle methods: Particle Guidance, repulsion and label guidance, kernels, embeddings, stratified and
prior-keeping batches, and the fixed-prompt diversity methods.

Modules:

- ``pg``: was ``steerdiff.particles``
- ``kernels``: was ``steerdiff.kernels``
- ``embeddings``: was ``steerdiff.embeddings``
- ``stratified``: was ``steerdiff.stratified``
- ``diversity``: was ``steerdiff.diversity``
- ``fixed_condition``: was ``steerdiff.fixed_condition``
- ``noise``: simplex initial noise (new)
"""

# steerdiff.particles was one module: every name it defined (private ones too) stays importable from here
from .pg import (  # noqa: F401
    DEFAULTS,
    LABEL_DEFAULTS,
    Archive,
    LabelGuidance,
    ParticleGuidance,
    Pilot,
    Repulsion,
    _check_window,
    _embedding_for,
    _kernel_matrix,
    _ParticleTerm,
    _Recording,
    particle_preset,
    project_off_score,
)

__all__ = ["DEFAULTS", "particle_preset", "ParticleGuidance", "Repulsion", "LabelGuidance", "Archive", "Pilot"]
