"""Evaluation: metrics, feature networks, ``evaluate``, ``report`` and the MNIST quality report.

Modules:

- ``metrics``: was ``steerdiff.metrics``
- ``features``: was ``steerdiff.features``
- ``evaluate``: was ``steerdiff.evaluate``
- ``report``: was ``steerdiff.report``
- ``quality``: was ``steerdiff.quality``
- ``reference``: the class-balanced reference set of ``steerdiff reference``
"""
