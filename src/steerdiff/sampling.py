"""Old import path: ``steerdiff.sampling`` is ``steerdiff.core.sampling`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import sampling as _module

sys.modules[__name__] = _module
