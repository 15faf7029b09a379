"""core/allocator.py: worker processes keep freed heap memory instead of re-faulting it."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# 200 rounds of four 4 MiB work arrays, allocated, touched and freed together (the pattern of a
# pitch tracker's per-utterance buffers); print the minor page faults
_PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from resyn_bench.core.allocator import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
    np.ones(1)  # numpy's own start-up allocations before the count
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        arrays = [np.empty(4 * 2**20 // 8) for _ in range(4)]
        for a in arrays:
            a.fill(1.0)
        del arrays, a
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str, env=None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    return out[0], int(out[1])


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    _, default = _faults("default")
    applied, tuned = _faults("tuned")
    assert applied == "True"
    # default glibc: the freed 16 MiB heap top is above its (dynamic) trim threshold, so it is
    # returned and faulted in again every round: ~4096 faults per round
    assert default > 200 * 500, default
    assert tuned < default / 20, (tuned, default)


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_the_environment_can_switch_it_off():
    import os

    env = {**os.environ, "RESYN_BENCH_MALLOC": "default"}
    applied, faults = _faults("tuned", env)
    assert applied == "False"
    assert faults > 200 * 500


def test_it_is_applied_once_and_answers_the_same_afterwards():
    from resyn_bench.core import allocator

    first = allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() is first
