"""Old import path: ``steerdiff.metrics`` is ``steerdiff.evaluation.metrics`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.evaluation import metrics as _module

sys.modules[__name__] = _module
