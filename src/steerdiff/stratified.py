"""Old import path: ``steerdiff.stratified`` is ``steerdiff.particles.stratified`` (this module object is replaced by it)."""

# steerdiff-shim: old import path
import sys

from steerdiff.particles import stratified as _module

sys.modules[__name__] = _module
