"""Benchmark: cost of crash isolation (supervised worker processes) against the in-process path.

Evaluates one system on the demo corpus (20 utterances) with each metric selection twice, with
isolation (the default) and with --no-isolation, in alternating order, without the reference
cache (both do the same work), and prints both wall times, the ratio, and whether every number
is identical.

Usage: python tests/bench/bench_isolation.py [--system world] [--metrics pitch,fast] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="world")
    ap.add_argument("--metrics", default="pitch,fast", help="selections to time, separated by ','")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="resyn-bench-isolation-"))
    os.environ.setdefault("RESYN_BENCH_HOME", str(work / "home"))
    from resyn_bench.datasets import load_dataset
    from resyn_bench.runner import RunConfig, run
    from resyn_bench.store import read_records

    load_dataset("demo")  # build the demo corpus outside the timings
    print(f"{args.system} on demo (limit {args.limit}), --jobs {args.jobs}, no reference cache")
    print(f"{'metrics':10s}{'isolated s':>12s}{'in-process s':>14s}{'ratio':>8s}  numbers")
    try:
        for metrics in args.metrics.split(","):
            times = {True: [], False: []}
            numbers = {}
            for rep in range(args.repeat):
                for isolate in ((True, False) if rep % 2 == 0 else (False, True)):
                    out = work / f"{metrics}-{isolate}-{rep}"
                    cfg = RunConfig(system=args.system, dataset="demo", out=str(out), metrics=metrics,
                                    limit=args.limit, use_cache=False, isolate=isolate, jobs=args.jobs)
                    t = time.perf_counter()
                    run(cfg, progress=False)
                    times[isolate].append(time.perf_counter() - t)
                    numbers[isolate] = {r["utt_id"]: r["metrics"] for r in read_records(out)}
            a, b = min(times[True]), min(times[False])
            same = "identical" if numbers[True] == numbers[False] else "DIFFERENT"
            print(f"{metrics:10s}{a:12.2f}{b:14.2f}{a / b:8.3f}  {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
