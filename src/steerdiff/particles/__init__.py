"""Particle methods: Particle Guidance and repulsion, kernels, embeddings, stratified and
prior-keeping batches, and the fixed-prompt diversity methods.

Modules:

- ``pg``: was ``steerdiff.particles``
- ``kernels``: was ``steerdiff.kernels``
- ``embeddings``: was ``steerdiff.embeddings``
- ``stratified``: was ``steerdiff.stratified``
- ``diversity``: was ``steerdiff.diversity``
- ``fixed_condition``: was ``steerdiff.fixed_condition``
"""

# steerdiff.particles was one module: every name it defined (private ones too) stays importable from here
from .pg import (  # noqa: F401
    DEFAULTS,
    Archive,
    ParticleGuidance,
    Pilot,
    Repulsion,
    _kernel_matrix,
    _ParticleTerm,
    _Recording,
    particle_preset,
    project_off_score,
)

__all__ = ["DEFAULTS", "particle_preset", "ParticleGuidance", "Repulsion", "Archive", "Pilot"]
