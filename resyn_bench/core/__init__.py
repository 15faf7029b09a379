"""The core layer: infrastructure every other package may use, which uses none of them.

One home each for atomic file writes (:mod:`.atomic`), file hashes (:mod:`.hashing`), installed
package versions (:mod:`.versions`) and "did you mean" hints (:mod:`.suggest`). Modules here
import only the standard library (numpy/torch only inside functions where needed) and other
``resyn_bench.core`` modules; ``tests/core/test_layering.py`` checks that, and the rest of the
layering (systems and metrics do not import each other, reports import neither systems nor torch,
``resyn_bench.dsp`` builds on core only).
"""
