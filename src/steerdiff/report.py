"""Old import path: ``steerdiff.report`` is ``steerdiff.evaluation.report`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.evaluation import report as _module

sys.modules[__name__] = _module
