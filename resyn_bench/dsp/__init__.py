"""Signal processing shared by systems, metrics and reports (pitch tracking today).

Builds on :mod:`resyn_bench.core` only (tests/core/test_layering.py checks it).
"""
