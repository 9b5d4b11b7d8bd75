"""Old import path: ``steerdiff.kernels`` is ``steerdiff.particles.kernels`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.particles import kernels as _module

sys.modules[__name__] = _module
