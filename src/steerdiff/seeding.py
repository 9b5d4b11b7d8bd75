"""Old import path: ``steerdiff.seeding`` is ``steerdiff.core.seeding`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import seeding as _module

sys.modules[__name__] = _module
