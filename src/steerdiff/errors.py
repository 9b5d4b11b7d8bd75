"""Old import path: ``steerdiff.errors`` is ``steerdiff.core.errors`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import errors as _module

sys.modules[__name__] = _module
