"""Benchmark: cost of a full metric suite on a dataset, cold vs warm reference cache.

Runs `copy` with the suite on a cold cache, then again (new run dir) on the warm cache, and a
second system (saved WORLD outputs via outputs:DIR) on the warm cache; prints wall time and the
per-stage/per-group seconds from each run's manifest, side by side, with ratios to the cold run.

Usage: python tests/bench/bench_suite.py [--suite paper] [--dataset-root DIR] [--limit N]
Uses ../shared/corpora/vctk_autovc_16k when present, else the demo corpus.
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
    ap.add_argument("--suite", default="paper")
    ap.add_argument("--dataset-root", default=str(SHARED_VCTK) if SHARED_VCTK.exists() else None)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="resyn-bench-suite-"))
    os.environ["RESYN_BENCH_HOME"] = str(work / "home")
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_manifest, read_records

    dataset = "manifest" if args.dataset_root else "demo"

    def timed(system, out, cache, metrics):
        cfg = RunConfig(system=system, dataset=dataset, data_root=args.dataset_root, out=str(work / out),
                        limit=args.limit, metrics=metrics, cache_dir=str(work / cache))
        t = time.perf_counter()
        run(cfg, progress=False)
        return time.perf_counter() - t, read_manifest(work / out)["sessions"][-1]["stage_s"]

    try:
        timed("world", "prep", "cache-prep", "pitch")          # WORLD outputs + imports, untimed
        cold, cold_s = timed("copy", "cold", "cache", args.suite)
        warm, warm_s = timed("copy", "warm", "cache", args.suite)
        second, second_s = timed(f"outputs:{work / 'prep' / 'outputs'}", "second", "cache", args.suite)
        audio_s = sum(r.get("duration_s") or 0 for r in read_records(work / "cold"))
        print(f"suite {args.suite} on {args.dataset_root or 'demo'}: {audio_s:.1f} s of audio, "
              f"{os.cpu_count()} CPUs, jobs 1")
        print(f"{'run':<40}{'wall s':>9}{'ratio':>8}{'s per audio s':>15}")
        for name, secs in (("copy, cold reference cache", cold), ("copy, warm reference cache", warm),
                           ("second system, warm reference cache", second)):
            print(f"{name:<40}{secs:>9.1f}{secs / cold:>8.2f}{secs / audio_s:>15.3f}")
        print("\nper stage (seconds): cold | warm | second system")
        groups = {k.split(".")[0] for k in cold_s}
        for g in sorted(groups):
            c = sum(v for k, v in cold_s.items() if k.startswith(g + "."))
            w = sum(v for k, v in warm_s.items() if k.startswith(g + "."))
            s2 = sum(v for k, v in second_s.items() if k.startswith(g + "."))
            print(f"  {g:<28}{c:>9.1f}{w:>9.1f}{s2:>9.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
