"""Old import path: ``steerdiff.quality`` is ``steerdiff.evaluation.quality`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.evaluation import quality as _module

sys.modules[__name__] = _module
