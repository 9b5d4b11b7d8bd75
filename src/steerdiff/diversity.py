"""Old import path: ``steerdiff.diversity`` is ``steerdiff.particles.diversity`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.particles import diversity as _module

sys.modules[__name__] = _module
