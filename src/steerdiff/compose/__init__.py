"""Composition: mixtures, compositional sculpting, AND/NOT, joint classifiers and their evaluation.

Modules:

- ``sculpt``: was ``steerdiff.compose``
- ``joint``: was ``steerdiff.joint``
- ``evaluate``: was ``steerdiff.compose_eval``
"""

# steerdiff.compose was one module: every name it defined (private ones too) stays importable from here
from .sculpt import (  # noqa: F401
    Composition,
    Conjunction,
    ExactLabelPosterior,
    Mixture,
    _common_base,
    _exact_classifier,
    _marginal,
    compose,
    conjunction,
    mixture,
)

__all__ = ["Mixture", "Composition", "compose", "mixture", "ExactLabelPosterior", "Conjunction", "conjunction"]
