"""Old import path: ``steerdiff.fixed_condition`` is ``steerdiff.particles.fixed_condition`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.particles import fixed_condition as _module

sys.modules[__name__] = _module
