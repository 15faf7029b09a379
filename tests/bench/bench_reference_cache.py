"""Benchmark: cost of evaluating a second system on a dataset with a warm reference cache.

Prints, side by side in one run, the wall time of
  1. system A (`copy`) on a cold reference cache,
  2. system B (the saved outputs of `world`, via outputs:DIR) on the warm cache,
  3. system A again on the warm cache,
and the ratios to (1). Goal: ratio 2/1 <= 0.55. Also shows WORLD itself cold vs warm, where the
system's own synthesis cost is part of both runs.

Usage: python tests/bench/bench_reference_cache.py [--dataset-root DIR] [--preset P] [--limit N]
Uses ../shared/corpora/vctk_autovc_16k when present (real speech), else the demo corpus.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_VCTK = REPO.parent / "shared" / "corpora" / "vctk_autovc_16k"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset-root", default=str(SHARED_VCTK) if SHARED_VCTK.exists() else None)
    ap.add_argument("--preset", default=None, help="pitch preset (default: the package default)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--metrics", default="pitch", help="metric groups/suite (default: pitch)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="resyn-bench-cache-"))
    os.environ["RESYN_BENCH_HOME"] = str(work / "home")
    from resyn_bench.metrics.f0 import DEFAULT_PRESET
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_records

    dataset = "manifest" if args.dataset_root else "demo"
    preset = args.preset or DEFAULT_PRESET

    def timed(system, out, cache_dir, **kw):
        cfg = RunConfig(system=system, dataset=dataset, data_root=args.dataset_root, out=str(work / out),
                        limit=args.limit, f0_preset=preset, metrics=args.metrics,
                        cache_dir=str(work / cache_dir), **kw)
        t = time.perf_counter()
        result = run(cfg, progress=False)
        return time.perf_counter() - t, result

    try:
        # untimed preparation: WORLD outputs to be evaluated as "another tool's outputs", and
        # the demo corpus build / first imports, so no run pays for them
        timed("world", "prep", "cache-prep")
        outputs = work / "prep" / "outputs"
        t_cold, res = timed("copy", "a-cold", "cache")
        t_second, _ = timed(f"outputs:{outputs}", "b-warm", "cache")
        t_same, _ = timed("copy", "a-warm", "cache")
        t_world_cold, _ = timed("world", "w-cold", "cache-world")
        t_world_warm, _ = timed("world", "w-warm", "cache-world")
        audio_s = sum(r.get("duration_s") or 0.0 for r in read_records(work / "a-cold"))
        print(f"dataset: {args.dataset_root or 'demo'} ({res.n_total} utterances, {audio_s:.1f} s of audio), "
              f"metrics {args.metrics}, F0 preset {preset}, jobs 1, {os.cpu_count()} CPUs")
        print(f"{'run':<44}{'wall s':>9}{'ratio':>8}")
        rows = [("1. copy, cold reference cache", t_cold, 1.0),
                ("2. second system (world outputs), warm cache", t_second, t_second / t_cold),
                ("3. copy again, warm cache", t_same, t_same / t_cold),
                ("4. world incl. synthesis, cold cache", t_world_cold, 1.0),
                ("5. world incl. synthesis, warm cache", t_world_warm, t_world_warm / t_world_cold)]
        for name, secs, ratio in rows:
            print(f"{name:<44}{secs:>9.2f}{ratio:>8.2f}")
        verdict = "meets" if t_second / t_cold <= 0.55 else "misses"
        print(f"second-system ratio {t_second / t_cold:.2f} {verdict} the goal (<= 0.55)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
