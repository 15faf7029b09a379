"""core/threads.py: worker processes run their native thread pools on one thread."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("threadpoolctl")

_PROBE = """
import json
import numpy  # loads OpenBLAS, sized from the environment as it is now
from threadpoolctl import threadpool_info
from resyn_bench.core.threads import use_one_thread
before = max(p["num_threads"] for p in threadpool_info())
given = use_one_thread()
after = [p["num_threads"] for p in threadpool_info()]
print(json.dumps({"before": before, "given": given, "after": after,
                  "omp": __import__("os").environ.get("OMP_NUM_THREADS")}))
"""


def _probe(**env_changes) -> dict:
    import json

    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_NUM_THREADS")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True, env=env).stdout
    return json.loads(out)


def test_pools_loaded_before_are_resized_to_one_thread():
    got = _probe()
    if (os.cpu_count() or 1) > 1:
        assert got["before"] > 1          # what a forked worker inherited before the fix
    assert got["given"] == 1
    assert got["after"] and all(n == 1 for n in got["after"])
    assert got["omp"] == "1"              # for libraries loaded later (torch, onnxruntime)


def test_a_thread_count_the_user_set_is_kept():
    got = _probe(OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    assert got["given"] == 2 and got["omp"] == "2"


@pytest.mark.parametrize("jobs,isolate", [(2, True), (1, True), (1, False), (2, False)])
def test_scoring_runs_one_blas_thread_in_every_mode(tiny_corpus, tmp_path, home, monkeypatch,
                                                    jobs, isolate):
    # the runner process sized its pools to every core; scoring must not use that, in workers
    # or in process, or numbers would depend on --jobs (a BLAS sum's order)
    from resyn_bench import registry
    from resyn_bench.runner import RunConfig, run

    monkeypatch.setitem(registry.METRIC_GROUPS, "boom",
                        registry.Entry("boom", "crash_plugins:boom_group", "test"))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    log = tmp_path / "threads.txt"
    cfg = RunConfig(system="copy", dataset="manifest", data_root=str(tiny_corpus),
                    out=str(tmp_path / "run"), metrics="boom", jobs=jobs, isolate=isolate,
                    f0_preset="dio",
                    metric_options={"boom": {"threads_log": str(log)}})
    run(cfg, progress=False)
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len(lines) == 6
    assert {n for _, n in lines} == {"1"}


def test_the_limit_is_undone_after_the_block():
    import numpy  # noqa: F401

    from resyn_bench.core.threads import blas_pools_loaded, one_blas_thread

    before = [p["num_threads"] for p in blas_pools_loaded()]
    with one_blas_thread():
        assert all(p["num_threads"] == 1 for p in blas_pools_loaded())
    assert [p["num_threads"] for p in blas_pools_loaded()] == before
