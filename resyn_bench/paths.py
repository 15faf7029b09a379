"""Where resyn-bench keeps its per-user files (built corpora, caches)."""
from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the per-user folder.
HOME_ENV = "RESYN_BENCH_HOME"


def resyn_bench_home() -> Path:
    """``$RESYN_BENCH_HOME`` if set (and non-empty), else ``~/.cache/resyn-bench``.

    The folder is not created here; writers create what they need."""
    value = os.environ.get(HOME_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    return Path.home() / ".cache" / "resyn-bench"
