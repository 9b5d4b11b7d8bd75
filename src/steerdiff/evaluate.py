"""Old import path: ``steerdiff.evaluate`` is ``steerdiff.evaluation.evaluate`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.evaluation import evaluate as _module

sys.modules[__name__] = _module
