"""Helpers the tests share: real processes, ports, load, settings and a fake clock.

Each module holds one kind of part; import from the module itself (``tests.support.redis``,
``tests.support.processes``...). Fixtures live in ``tests/conftest.py``.
"""
