"""The protocol and what every idea uses: denoisers, samplers and schedules, ``guided`` and the
guidance-term protocol, ``sample``, per-sample seeding, distributed collectives, analytic toys.
It imports nothing else from steerdiff (tests/test_layout.py checks it).

Modules:

- ``errors``: was ``steerdiff.errors``
- ``denoisers``: was ``steerdiff.denoisers``
- ``sampling``: was ``steerdiff.sampling``
- ``schedules_ddpm``: was ``steerdiff.schedules_ddpm``
- ``guidance``: was ``steerdiff.guidance``
- ``api``: was ``steerdiff.api``
- ``seeding``: was ``steerdiff.seeding``
- ``distributed``: was ``steerdiff.distributed``
- ``toy``: was ``steerdiff.toy``
"""
