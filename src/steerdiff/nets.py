"""Old import path: ``steerdiff.nets`` is ``steerdiff.train.nets`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.train import nets as _module

sys.modules[__name__] = _module
