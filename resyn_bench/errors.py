"""The project's exception base classes, at their public path: :class:`UserError` (what the
command line reports in one line, exit 2), :class:`UsageError`, :class:`MissingDependencyError`.
They live in :mod:`resyn_bench.core.errors` so that every layer can raise them."""
from __future__ import annotations

from resyn_bench.core.errors import MissingDependencyError, UsageError, UserError

__all__ = ["UserError", "UsageError", "MissingDependencyError"]
