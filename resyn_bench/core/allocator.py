"""Keep freed heap memory for reuse inside worker processes (glibc's ``mallopt``).

Pitch trackers and model runtimes allocate and free large arrays for every utterance. With
glibc's defaults every array above the (dynamic) mmap threshold is a fresh ``mmap`` and its
pages are faulted in again each time; WORLD's Harvest spends about a sixth of its time in the
kernel doing that (measured: 8 utterances, 1.8 s of 10 s system time; with the settings below
0.05 s, and the same peak RSS). Raising the mmap threshold and the trim threshold keeps such
buffers in the heap, where the next utterance reuses them. Numbers do not change: only where
the allocator takes memory from.

The cost is memory a worker keeps after a peak: at most :data:`TRIM_THRESHOLD` of free heap
top, and blocks below :data:`MMAP_THRESHOLD` that are not returned early. Only worker
processes call this; it is a no-op where glibc is absent (macOS, musl) or
``RESYN_BENCH_MALLOC=default`` is set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

#: allocations below this come from the heap (glibc's own ceiling for the setting is 32 MiB)
MMAP_THRESHOLD = 32 * 2**20
#: free memory at the top of the heap is returned to the system only above this
TRIM_THRESHOLD = 256 * 2**20
_M_TRIM_THRESHOLD = -1   # glibc malloc.h
_M_MMAP_THRESHOLD = -3

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the thresholds to this process once; True when glibc accepted them."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("RESYN_BENCH_MALLOC", "").lower() == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
