""""Did you mean ...?" hints for unknown names: the one home for ``difflib.get_close_matches``.

Every lookup of a user-typed name (a system, a dataset, an option, a preset, a checkpoint) that
fails ends its error with the closest known names, so a typo costs one reading of the message.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


def close_matches(name: object, choices: Iterable[str], *, n: int = 1,
                  cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``name`` (best first; difflib's ratio >=
    ``cutoff``)."""
    return difflib.get_close_matches(str(name), list(choices), n=n, cutoff=cutoff)


def did_you_mean(name: object, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6,
                 joiner: str = ", ", parenthesised: bool = False,
                 show: Callable[[str], str] | None = None) -> str:
    """The hint to append to an error about the unknown ``name``, or ``""`` when nothing is close.

    ``" Did you mean 'abc'?"`` by default (a sentence of its own); ``" (did you mean 'abc'?)"``
    with ``parenthesised``. Several matches are joined by ``joiner`` (``", "`` or ``" or "``);
    ``show`` maps a match to the name printed (an alias to its canonical name)."""
    close = close_matches(name, choices, n=n, cutoff=cutoff)
    if not close:
        return ""
    names = []
    for c in close:
        shown = show(c) if show is not None else c
        if shown not in names:
            names.append(shown)
    listed = joiner.join(repr(c) for c in names)
    return f" (did you mean {listed}?)" if parenthesised else f" Did you mean {listed}?"


__all__ = ["close_matches", "did_you_mean"]
