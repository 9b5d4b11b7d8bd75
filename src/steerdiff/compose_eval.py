"""Old import path: ``steerdiff.compose_eval`` is ``steerdiff.compose.evaluate`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.compose import evaluate as _module

sys.modules[__name__] = _module
