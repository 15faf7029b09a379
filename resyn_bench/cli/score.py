"""``resyn-bench score RUN --metrics ...``: add metric groups to a finished run.

It reads the run's manifest (system, dataset, options), never runs the system again, and scores
only the groups (or group settings) whose records the run does not hold yet. ``resyn-bench run``
with the same ``--out`` and extra ``--metrics`` does the same (and also synthesizes utterances
still missing). Both end with :func:`resyn_bench.cli.common.report_outcome`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from resyn_bench.cli.common import add_max_failed_argument, metric_options_from_args, report_outcome

SCORE_EPILOG = """examples:
  resyn-bench score runs/demo-world --metrics intrusive        # add PESQ/STOI/MCD
  resyn-bench score runs/demo-world --metrics f0 --f0-preset yaapt   # f0 again, other preset
  resyn-bench score runs/lj-hubert100 --metrics asr -m asr.backend=whisper

Only groups (or group settings) the run has no records for are computed, on the outputs stored
in the run; earlier groups and earlier settings keep their own records. The system is not run:
utterances without a stored output are reported (`resyn-bench run` with the same --out makes
them). Exit status: 0, 2 (bad command), 3 (nothing scored or more than --max-failed failed).
"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    from resyn_bench.cli.args import parse_option

    p.description = ("Add metric groups to a finished run: score only the groups (or group "
                     "settings) it has no records for, on its stored outputs.")
    p.epilog = SCORE_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", metavar="RUN", help="an existing run folder")
    p.add_argument("--metrics", required=True,
                   help="metric groups or suites to add, comma-separated (see `resyn-bench ls metrics`)")
    p.add_argument("--f0-preset", help="pitch extractor preset of the f0 group")
    p.add_argument("-m", "--metric-option", action="append", type=parse_option, default=[],
                   metavar="GROUP.KEY=VALUE", help="metric option, e.g. -m asr.backend=whisper")
    p.add_argument("--retry-failed", action="store_true", help="score failed metric parts again")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="do not read or write the reference-analysis cache")
    add_max_failed_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from resyn_bench.runner import RunConfig, RunError
    from resyn_bench.runner import run as run_benchmark
    from resyn_bench.store import read_manifest

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a run folder")
    stored = dict(read_manifest(run_dir).get("config") or {})
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    base = {k: v for k, v in stored.items() if k in fields}
    if "system" not in base or "dataset" not in base:
        raise RunError(f"{run_dir}/manifest.json has no system/dataset config; not a resyn-bench run")
    config = RunConfig(**{**base, "out": str(run_dir), "metrics": args.metrics,
                          "f0_preset": args.f0_preset,
                          "metric_options": metric_options_from_args(args.metric_option),
                          "resume": True, "overwrite": False, "retry_failed": args.retry_failed,
                          "use_cache": args.use_cache, "jobs": args.jobs})
    result = run_benchmark(config, progress=not args.quiet, score_only=True)
    print(f"{result.run_dir}: {result.n_metric_parts} metric parts scored on stored outputs "
          f"({result.wall_s:.1f} s)")
    status = report_outcome(result, args.max_failed)
    print(f"next: resyn-bench summary {result.run_dir}")
    return status


def register(subparsers) -> None:
    p = subparsers.add_parser("score", help="add metric groups to a finished run (scores only "
                                            "what it lacks)")
    configure_parser(p)
    p.set_defaults(handler=run)
