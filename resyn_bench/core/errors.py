"""Exceptions shared by every layer.

The project's exception base class: what the command line reports in one line.

An error the *user* can fix (a bad option, a missing file or model, a damaged run folder, an
unknown name) derives from :class:`UserError`. ``resyn-bench`` prints such an error as one line
on stderr and exits with status 2; any other exception is a bug and is shown with its traceback
(see :func:`resyn_bench.cli.main`). Library callers can catch ``UserError`` for the same
distinction.

The project's error classes keep their historical built-in bases too (``DatasetError`` is still
a ``ValueError``, ``RegistryError`` a ``KeyError``), so ``except ValueError`` in callers keeps
working; only the command line's policy changed.

:class:`MetricError` is here too, so that :mod:`resyn_bench.dsp` raises the same class as the
metric groups (``resyn_bench.metrics.base`` re-exports it); the class name is what run records
show.
"""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix: reported in one line, exit status 2, no traceback."""

    #: exit status of ``resyn-bench`` for this error
    exit_code = 2

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print their message in quotes
        if len(self.args) == 1 and isinstance(self.args[0], str):
            return self.args[0]
        return super().__str__()


class UsageError(UserError, ValueError):
    """A bad command-line value or combination of options (``--rename`` without ``=``, ...)."""


class MissingDependencyError(UserError, ImportError):
    """An optional package a feature needs is not installed; the message names the install."""


class MetricError(UserError, RuntimeError):
    """A metric - or the signal analysis under it (pitch tracking, ...) - could not be computed
    for one utterance (recorded, never scored as 0/1)."""


__all__ = ["UserError", "UsageError", "MissingDependencyError", "MetricError"]
