"""Old import path: ``steerdiff.edit_eval`` is ``steerdiff.edit.evaluate`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.edit import evaluate as _module

sys.modules[__name__] = _module
