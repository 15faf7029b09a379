"""The core layer: infrastructure every other package may use, which uses none of them.

One home each for atomic file writes (:mod:`.atomic`), file hashes (:mod:`.hashing`), installed
package versions (:mod:`.versions`), "did you mean" hints (:mod:`.suggest`), the errors shared by
the layers above (:mod:`.errors`), the bitrate of discrete streams (:mod:`.bitrate`) and the
workers' allocator and thread settings (:mod:`.allocator`, :mod:`.threads`). Modules
here import only the standard library (numpy/torch only inside functions where needed) and other
``resyn_bench.core`` modules; ``tests/core/test_layering.py`` checks that, and the rest of the
layering (``resyn_bench.dsp`` builds on core only, ``resyn_bench.nn`` below systems and metrics,
which do not import each other; reports import neither systems nor torch).
"""
