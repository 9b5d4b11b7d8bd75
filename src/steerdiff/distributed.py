"""Old import path: ``steerdiff.distributed`` is ``steerdiff.core.distributed`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import distributed as _module

sys.modules[__name__] = _module
