"""``resyn-bench score RUN --metrics ...``: add metric groups to a finished run.

It reads the run's manifest (system, dataset, options), never runs the system again, and scores
only the groups (or group settings) whose records the run does not hold yet. ``resyn-bench run``
with the same ``--out`` and extra ``--metrics`` does the same (and also synthesizes utterances
still missing). Both end with :func:`resyn_bench.cli.common.report_outcome`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from resyn_bench.cli.common import add_max_failed_argument, report_outcome

SCORE_EPILOG = """examples:
  resyn-bench score runs/demo-world --metrics intrusive        # add PESQ/STOI/MCD
  resyn-bench score runs/demo-world --metrics f0 --f0-preset yaapt   # f0 again, other preset
  resyn-bench score runs/lj-hubert100 --metrics asr -m asr.backend=whisper

Only groups (or group settings) the run has no records for are computed, on the outputs stored
in the run; earlier groups and earlier settings keep their own records. The system is not run:
utterances without a stored output are reported (`resyn-bench run` with the same --out makes
them). Exit status: 0, 2 (bad command), 3 (nothing scored or more than --max-failed failed).
"""


#: the RunConfig fields ``score`` sets (the others come from the run's manifest)
SCORE_OPTIONS = ("metrics", "f0_preset", "metric_options", "retry_failed", "jobs", "use_cache",
                 "device")


def configure_parser(p: argparse.ArgumentParser) -> None:
    from resyn_bench.cli.run_options import add_run_options

    p.description = ("Add metric groups to a finished run: score only the groups (or group "
                     "settings) it has no records for, on its stored outputs.")
    p.epilog = SCORE_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", metavar="RUN", help="an existing run folder")
    # RunConfig's options (resyn_bench.run_config), with the help of adding to a run
    add_run_options(p, SCORE_OPTIONS, required=("metrics",),
                    defaults=True,
                    helps={"metrics": "metric groups or suites to add, comma-separated (see "
                                      "`resyn-bench ls metrics`)",
                           "f0_preset": "pitch extractor preset of the f0 group",
                           "metric_options": "metric option, e.g. -m asr.backend=whisper",
                           "retry_failed": "score failed metric parts again"})
    add_max_failed_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from resyn_bench.cli.run_options import given_values
    from resyn_bench.runfiles import read_manifest
    from resyn_bench.runner import RunConfig, RunError
    from resyn_bench.runner import run as run_benchmark

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a run folder")
    stored = read_manifest(run_dir).config.to_json()
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    base = {k: v for k, v in stored.items() if k in fields}
    if "system" not in base or "dataset" not in base:
        raise RunError(f"{run_dir}/manifest.json has no system/dataset config; not a resyn-bench run")
    # the run's own settings, with the metric selection and the switches of this command
    config = RunConfig(**{**base, "out": str(run_dir), "f0_preset": None, "metric_options": {},
                          **given_values(args, SCORE_OPTIONS),
                          "resume": True, "overwrite": False})
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
