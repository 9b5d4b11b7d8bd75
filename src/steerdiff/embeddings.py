"""Old import path: ``steerdiff.embeddings`` is ``steerdiff.particles.embeddings`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.particles import embeddings as _module

sys.modules[__name__] = _module
