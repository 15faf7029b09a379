"""Exceptions shared by the layers above core."""
from __future__ import annotations


class MetricError(RuntimeError):
    """A metric - or the signal analysis under it (pitch tracking, ...) - could not be computed
    for one utterance (recorded, never scored as 0/1).

    Defined here so that :mod:`resyn_bench.dsp` raises the same class as the metric groups
    (``resyn_bench.metrics.base`` re-exports it); the class name is what run records show."""


__all__ = ["MetricError"]
