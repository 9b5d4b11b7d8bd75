"""Old import path: ``steerdiff.features`` is ``steerdiff.evaluation.features`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.evaluation import features as _module

sys.modules[__name__] = _module
