"""Old import path: ``steerdiff.denoisers`` is ``steerdiff.core.denoisers`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import denoisers as _module

sys.modules[__name__] = _module
