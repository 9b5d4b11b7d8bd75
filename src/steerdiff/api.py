"""Old import path: ``steerdiff.api`` is ``steerdiff.core.api`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import api as _module

sys.modules[__name__] = _module
