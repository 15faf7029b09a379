"""``resyn-bench summary RUN``: print a run's aggregate table (or JSON)."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("summary", help="print a run's aggregate table",
                              epilog="example:\n  resyn-bench summary runs/demo-world --json",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--utterances", action="store_true", help="also list per-utterance values")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from resyn_bench.reports.collate import summarize_run
    from resyn_bench.reports.report import format_summary

    summary = summarize_run(args.run_dir)
    if args.json:
        from resyn_bench.reports.report import terminal_safe_json

        print(terminal_safe_json(json.dumps(summary.to_dict(with_records=args.utterances),
                                            indent=2, ensure_ascii=False)))
    else:
        print(format_summary(summary, utterances=args.utterances))
    return 0
