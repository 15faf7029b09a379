"""One thread per worker process, for the native thread pools too.

With ``--jobs N`` the runner starts N worker processes and each is meant to use one core. The
environment variables that say so (``OMP_NUM_THREADS`` and friends) are read by a native library
when it is *loaded*, and the workers are forked from a forkserver that has already loaded numpy
and scipy, whose OpenBLAS pools were sized to every core then. So two workers each ran two BLAS
threads on two cores: measured on the intrusive group (40 utterances, 2 workers), 16.4 s of
worker time instead of 12.9 s. :func:`use_one_thread` sets the variables for libraries loaded
later (torch, onnxruntime, CTranslate2 read them) and resizes the pools already loaded
(threadpoolctl). A value the user set in the environment is kept.

BLAS thread counts also change numbers, not only speed: :func:`one_blas_thread` is the context
the runner scores under in every mode.
"""
from __future__ import annotations

import os

#: read by OpenMP runtimes, OpenBLAS, MKL, BLIS and numexpr when they load
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def use_one_thread() -> int | None:
    """Make this process's native thread pools single-threaded (see the module docstring).
    Returns the thread count given to the pools already loaded (None: threadpoolctl absent)."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    try:
        limit = max(1, int(os.environ["OPENBLAS_NUM_THREADS"]))
    except ValueError:
        limit = 1
    threadpool_limits(limits=limit)
    return limit


def blas_pools_loaded():
    """The BLAS pools this process has loaded (threadpoolctl; empty without it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [p for p in threadpool_info() if p.get("user_api") == "blas"]


def one_blas_thread():
    """Context: every BLAS pool loaded now runs one thread until the block ends (restored
    after). Scoring runs under it in every mode (several workers, one worker, in process), so a
    number never depends on ``--jobs``, isolation or the machine's core count through a BLAS
    call's summation order: Whisper's features go through numpy's matrix products, and a last-bit
    change of them can change a beam search's transcript (seen: 3 of 40 VCTK utterances)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
