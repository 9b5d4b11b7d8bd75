"""Old import path: ``steerdiff.training`` is ``steerdiff.train.training`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.train import training as _module

sys.modules[__name__] = _module
