"""``resyn-bench demo``: copy and world on the embedded real-speech demo corpus, and a report.

Its run options (--metrics, --f0-preset, --jobs, --limit) are RunConfig's, derived from the
fields' declarations like those of ``run``; only the defaults differ (all metrics).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resyn_bench.cli.common import print_paths, sanitize

#: the RunConfig fields the demo offers, and the demo's own defaults
DEMO_OPTIONS = ("metrics", "f0_preset", "jobs", "limit")
DEMO_DEFAULTS = {"metrics": "all"}   # --jobs: RunConfig's default (auto)


def register(subparsers) -> None:
    from resyn_bench.cli.run_options import add_run_options

    p = subparsers.add_parser("demo", help="evaluate copy and world on the embedded real-speech "
                                           "demo corpus, write a report",
                              epilog="example:\n  resyn-bench demo --out demo_runs",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_runs", help="folder for the runs and the report")
    p.add_argument("--systems", default="copy,world", help="comma-separated systems")
    add_run_options(p, DEMO_OPTIONS, defaults=DEMO_DEFAULTS,
                    helps={"metrics": "metric groups or suites (default: all)",
                           "limit": "only the first N utterances (a quick look)"})
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from resyn_bench.cli.run_options import given_values
    from resyn_bench.reports.report import write_report
    from resyn_bench.runner import RunConfig
    from resyn_bench.runner import run as run_benchmark

    out = Path(args.out)
    options = given_values(args, DEMO_OPTIONS)
    run_dirs, failed = [], 0
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        run_dir = out / f"demo-{sanitize(system)}"
        config = RunConfig(system=system, dataset="demo", out=str(run_dir), **options)
        result = run_benchmark(config, progress=not args.quiet)
        print(f"{system}: {result.n_processed} evaluated, {result.n_done_before} already done, "
              f"{result.n_failed} failed ({result.wall_s:.1f} s)")
        run_dirs.append(run_dir)
        failed += result.n_failed
    paths = write_report(run_dirs, out / "report")
    print()
    if "markdown" in paths:
        print(paths["markdown"].read_text(encoding="utf-8"))
    print_paths(paths)
    if "copy" in [d.name.removeprefix("demo-") for d in run_dirs]:
        from resyn_bench.demo_speech import wer_by_speaker

        by_spk = wer_by_speaker(out / "demo-copy")
        if by_spk:
            print("\nground truth (copy) WER by speaker: "
                  + ", ".join(f"{spk} {wer:.1f} %" for spk, wer in by_spk.items()))
    # the two things a demo user opens: the HTML report and the paper tables
    print()
    for kind in ("html", "latex", "markdown"):
        if kind in paths:
            print(f"{kind} report: {paths[kind].resolve()}" if kind == "html"
                  else f"{kind} table: {paths[kind].resolve()}")
    if failed:
        # The demo corpus is clean studio speech: any failure means a broken install.
        print(f"error: {failed} demo utterances failed; see `resyn-bench summary` of the runs above",
              file=sys.stderr)
        return 1
    return 0
