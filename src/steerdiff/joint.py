"""Old import path: ``steerdiff.joint`` is ``steerdiff.compose.joint`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.compose import joint as _module

sys.modules[__name__] = _module
