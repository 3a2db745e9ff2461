"""Micro-benchmarks (pytest-benchmark) and recipe comparisons; not part of the test suite.

Run with ``tox -e bench`` or ``python -m pytest benchmarks --benchmark-only``; compare two
saved runs with ``pytest-benchmark compare``. ``python benchmarks/compare_recipes.py``
compares bench's training loop with the baseline recipes in ``benchmarks/recipes/``.
"""
