"""Old import path: ``steerdiff.schedules_ddpm`` is ``steerdiff.core.schedules_ddpm`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.core import schedules_ddpm as _module

sys.modules[__name__] = _module
