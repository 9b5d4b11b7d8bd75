"""Old import path: ``steerdiff.toy`` is ``steerdiff.core.toy`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import toy as _module

sys.modules[__name__] = _module
