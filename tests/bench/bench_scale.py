"""Benchmark: peak memory of a run (and of a sharded run + merge) at two corpus sizes.

Evaluates one system on the synthetic espeak-ng corpus (resyn_bench.demo_corpus: any number of
utterances, built offline once into the bench's own RESYN_BENCH_HOME) at each size, each run in
a fresh process, and prints side by side the wall time, the peak RSS of the resyn-bench process
(getrusage), of its largest worker (the system and metric groups run in supervised workers:
forkserver grandchildren, sampled from /proc every 0.1 s by tests/bench/proctree.py) and of the
whole process tree summed, the ratio of the largest size to the smallest, and the growth per
1000 utterances. With --shards N it also runs the same evaluation as N shards (one after the
other) and merges them, printing the merge's peak RSS and checking that the merged summary
equals the single run's.

Goal: memory flat in the number of utterances (ratio ~1.0; growth per 1000 utterances small
against the baseline, so that 100k utterances fit where 40 do).

Usage: python tests/bench/bench_scale.py [--sizes 40,400] [--system copy] [--metrics f0]
           [--f0-preset dio] [--jobs 1] [--shards 2] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proctree import TreeSampler  # tests/bench/, beside this script


def _child(argv: list[str]) -> int:
    """Run one resyn-bench command in this process; print its peak RSS (MiB) as JSON last."""
    from resyn_bench.cli import main

    t0 = time.perf_counter()
    rc = main(argv)
    wall = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0       # KiB on Linux
    print("BENCH " + json.dumps({"rc": rc, "wall_s": wall, "rss_mib": me}))
    return 0


def _measure(argv: list[str], env: dict[str, str]) -> dict:
    """Run one command in a fresh process: its own peak RSS (getrusage, exact) and, sampled
    from /proc, the largest peak of its workers (forkserver grandchildren) and of the tree."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeSampler(proc.pid, interval=0.1) as tree:
        out, err = proc.communicate()
    lines = [x for x in out.splitlines() if x.startswith("BENCH ")]
    if proc.returncode or not lines:
        sys.stderr.write(out[-3000:] + err[-3000:])
        raise SystemExit(f"resyn-bench {' '.join(argv[:1])} failed (exit {proc.returncode})")
    result = json.loads(lines[-1][6:])
    result["worker_rss_mib"] = tree.peak_descendant / 2**20
    result["tree_rss_mib"] = tree.peak_sum / 2**20
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="40,400", help="utterance counts (default 40,400)")
    ap.add_argument("--system", default="copy")
    ap.add_argument("--metrics", default="f0")
    ap.add_argument("--f0-preset", default="dio")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--shards", type=int, default=2, help="also run N shards + merge (0: no)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="resyn-bench-scale-"))
    env = {**os.environ, "RESYN_BENCH_HOME": str(work / "home")}
    from resyn_bench.demo_corpus import ensure_synthetic_corpus

    rows = []
    try:
        for n in sizes:
            t = time.perf_counter()
            ensure_synthetic_corpus(work / "home", n)
            print(f"synthetic corpus of {n} built in {time.perf_counter() - t:.1f} s", flush=True)
            common = ["run", "--system", args.system, "--dataset", "synthetic", "-d",
                      f"utterances={n}", "--metrics", args.metrics, "--f0-preset",
                      args.f0_preset, "--jobs", str(args.jobs), "--quiet", "--no-cache",
                      "--max-failed", "1"]
            single = work / f"single-{n}"
            row = {"n": n, "single": _measure([*common, "--out", str(single)], env)}
            print(f"{n}: single {row['single']}", flush=True)
            if args.shards > 1:
                sharded = work / f"sharded-{n}"
                row["shards"] = [_measure([*common, "--out", str(sharded), "--shard",
                                           f"{i}/{args.shards}"], env)
                                 for i in range(args.shards)]
                row["merge"] = _measure(["merge", "--out", str(sharded), "--max-failed", "1"], env)
                from resyn_bench.reports.collate import summarize_run

                a = summarize_run(single).to_dict(with_records=True)
                b = summarize_run(sharded).to_dict(with_records=True)
                a.pop("run_dir"), b.pop("run_dir")
                row["merged_equal"] = a == b
                print(f"{n}: shards {row['shards']}, merge {row['merge']}", flush=True)
            rows.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    print(f"\n{args.system} on synthetic, metrics {args.metrics} (f0 preset {args.f0_preset}), "
          f"--jobs {args.jobs}, peak RSS in MiB:")
    head = f"{'utterances':>10} {'wall s':>8} {'run RSS':>8} {'worker RSS':>10} {'tree RSS':>8}"
    if args.shards > 1:
        head += f" {'shard RSS':>9} {'merge RSS':>9} {'merge s':>8} {'merged = single':>15}"
    print(head)
    for r in rows:
        s = r["single"]
        line = (f"{r['n']:>10} {s['wall_s']:>8.1f} {s['rss_mib']:>8.1f} "
                f"{s['worker_rss_mib']:>10.1f} {s['tree_rss_mib']:>8.1f}")
        if "merge" in r:
            line += (f" {max(x['rss_mib'] for x in r['shards']):>9.1f} {r['merge']['rss_mib']:>9.1f}"
                     f" {r['merge']['wall_s']:>8.1f} {str(r['merged_equal']):>15}")
        print(line)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        for key, label in (("rss_mib", "run"), ("worker_rss_mib", "largest worker"),
                           ("tree_rss_mib", "process tree (sum)")):
            ratio = b["single"][key] / a["single"][key]
            per_k = (b["single"][key] - a["single"][key]) / (b["n"] - a["n"]) * 1000
            print(f"{label} peak RSS {b['n']}/{a['n']} utterances: {ratio:.3f}x "
                  f"({per_k:+.1f} MiB per 1000 utterances)")
        if "merge" in a:
            ratio = b["merge"]["rss_mib"] / a["merge"]["rss_mib"]
            print(f"merge peak RSS {b['n']}/{a['n']} utterances: {ratio:.3f}x")
    return 0 if all(r.get("merged_equal", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
