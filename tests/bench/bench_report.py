"""Benchmark: rendering a report of 3 systems x N utterances (default 1000) from stored runs.

Writes deterministic runs (tests/golden/fixture_runs.py: 4 speakers; groups f0, asr, spk,
dnsmos by default) and times each stage of ``write_report``: collation (reading records,
pooling, bootstrap CIs: 1000 replicates), the paired tests, every table (paper, vc, codec, all x
md/tex/csv), the plots, the HTML report. Prints seconds per stage and the total; the target is
under 10 s for 3 x 1000.

Usage: python tests/bench/bench_report.py [--utts 1000] [--groups f0,asr,spk,dnsmos] [--no-plots]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utts", type=int, default=1000)
    ap.add_argument("--groups", default="f0,asr,spk,dnsmos")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    args = ap.parse_args()

    from golden.fixture_runs import build_bench_runs

    from resyn_bench.reports.collate import summarize_run
    from resyn_bench.reports.layouts import resolve_layouts
    from resyn_bench.reports.tables import (
        SignificanceCache,
        build_table,
        render_csv,
        render_latex,
        render_markdown,
    )

    work = Path(tempfile.mkdtemp(prefix="resyn-bench-report-"))
    runs = build_bench_runs(work / "runs", args.utts, tuple(args.groups.split(",")))
    out = work / "report"
    out.mkdir()
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    summaries = [summarize_run(r) for r in runs]
    times["collate (records, pooling, CIs)"] = time.perf_counter() - t0

    t = time.perf_counter()
    sig = SignificanceCache(summaries)
    sig.get("auto")
    times["paired tests"] = time.perf_counter() - t

    t = time.perf_counter()
    n_tables = 0
    for layout in resolve_layouts(None):
        table = build_table(summaries, layout, sig=sig)
        if table.empty:
            continue
        n_tables += 1
        (out / f"{layout.name}.md").write_text(render_markdown(table))
        (out / f"{layout.name}.tex").write_text(render_latex(table))
        (out / f"{layout.name}.csv").write_text(render_csv(table))
    times[f"tables ({n_tables} layouts x md/tex/csv)"] = time.perf_counter() - t

    if args.plots:
        from resyn_bench.reports.plots import write_plots

        t = time.perf_counter()
        written = write_plots(summaries, out / "plots")
        times[f"plots ({len(written)} files)"] = time.perf_counter() - t

    try:
        from resyn_bench.reports.html import write_html
    except ImportError:
        write_html = None
    if write_html is not None:
        t = time.perf_counter()
        write_html(summaries, out / "report.html", sig=sig.get("auto"))
        times["html"] = time.perf_counter() - t
    total = time.perf_counter() - t0

    print(f"report of {len(runs)} systems x {args.utts} utterances, groups {args.groups}")
    for stage, sec in times.items():
        print(f"  {stage:40s}{sec:7.2f} s")
    print(f"  {'total':40s}{total:7.2f} s   (target < 10 s)")
    print(f"output: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
