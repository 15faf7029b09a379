"""Benchmark: cost of crash isolation (supervised worker processes) against the in-process path.

Runs `resyn-bench run` on the demo corpus (20 utterances) for each metric selection, with
isolation (the default) and with --no-isolation, each in a fresh process (so neither inherits
the other's imported libraries), in alternating order, without the reference cache (both do the
same work). Prints both wall times (best of --repeat), their ratio, and how many values differ
and by how much (pystoi's ESTOI differs in the last bit from run to run even in one mode).

Usage: python tests/bench/bench_isolation.py [--system world] [--metrics pitch,fast] [--repeat 1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _values(run_dir: Path) -> dict[tuple[str, str], float | None]:
    out = {}
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        ev = json.loads(line)
        for key, value in (ev.get("values") or {}).items():
            out[ev["utt_id"], key] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="world")
    ap.add_argument("--metrics", default="pitch,fast", help="selections to time, separated by ','")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="resyn-bench-isolation-"))
    env = dict(os.environ)
    env.setdefault("RESYN_BENCH_HOME", str(work / "home"))
    cli = [sys.executable, "-c", "import sys; from resyn_bench.cli import main; sys.exit(main())"]
    subprocess.run(cli + ["run", "--system", "copy", "--dataset", "demo", "--limit", "1",
                          "--metrics", "pitch", "--quiet", "--out", str(work / "warm")],
                   env=env, check=True, stdout=subprocess.DEVNULL)  # builds the demo corpus
    print(f"{args.system} on demo (limit {args.limit}), --jobs {args.jobs}, no reference cache, "
          f"wall time of the whole command (best of {args.repeat})")
    print(f"{'metrics':10s}{'isolated s':>12s}{'in-process s':>14s}{'ratio':>8s}  values differing")
    try:
        for metrics in args.metrics.split(","):
            times: dict[bool, list[float]] = {True: [], False: []}
            values = {}
            for rep in range(args.repeat):
                for isolate in ((True, False) if rep % 2 == 0 else (False, True)):
                    out = work / f"{metrics}-{isolate}-{rep}"
                    cmd = cli + ["run", "--system", args.system, "--dataset", "demo", "--limit",
                                 str(args.limit), "--metrics", metrics, "--no-cache", "--quiet",
                                 "--jobs", str(args.jobs), "--out", str(out)]
                    if not isolate:
                        cmd.append("--no-isolation")
                    t = time.perf_counter()
                    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                    times[isolate].append(time.perf_counter() - t)
                    values[isolate] = _values(out)
            a, b = min(times[True]), min(times[False])
            diff = {k: (values[True].get(k), v) for k, v in values[False].items()
                    if values[True].get(k) != v}
            worst = max((abs(x - y) / max(abs(y), 1e-300) for x, y in diff.values()
                         if x is not None and y is not None), default=0.0)
            keys = sorted({k[1] for k in diff})
            note = (f"{len(diff)} of {len(values[False])} (max rel. {worst:.1e}: {', '.join(keys)})"
                    if diff else f"none of {len(values[False])}")
            print(f"{metrics:10s}{a:12.2f}{b:14.2f}{a / b:8.3f}  {note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
