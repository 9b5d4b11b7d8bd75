"""Old import path: ``steerdiff.classifier`` is ``steerdiff.train.classifier`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.train import classifier as _module

sys.modules[__name__] = _module
