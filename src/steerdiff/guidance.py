"""Old import path: ``steerdiff.guidance`` is ``steerdiff.core.guidance`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import guidance as _module

sys.modules[__name__] = _module
