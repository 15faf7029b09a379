"""``resyn-bench score RUN --metrics ...`` and the end-of-run report shared with ``run``.

``score`` adds metric groups to a finished run: it reads the run's manifest (system, dataset,
options), never runs the system again, and scores only the groups (or group settings) whose
records the run does not hold yet. ``resyn-bench run`` with the same ``--out`` and extra
``--metrics`` does the same (and also synthesizes utterances still missing).

Both end with :func:`report_outcome`: how many utterances were scored, how many failed and the
top reasons, and exit status 3 when nothing was scored or more than ``--max-failed`` failed
(see :mod:`resyn_bench.run_outcome`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resyn_bench.run_outcome import DEFAULT_MAX_FAILED, EXIT_FAILED, assess

SCORE_EPILOG = """examples:
  resyn-bench score runs/demo-world --metrics intrusive        # add PESQ/STOI/MCD
  resyn-bench score runs/demo-world --metrics f0 --f0-preset yaapt   # f0 again, other preset
  resyn-bench score runs/lj-hubert100 --metrics asr -m asr.backend=whisper

Only groups (or group settings) the run has no records for are computed, on the outputs stored
in the run; earlier groups and earlier settings keep their own records. The system is not run:
utterances without a stored output are reported (`resyn-bench run` with the same --out makes
them). Exit status: 0, 2 (bad command), 3 (nothing scored or more than --max-failed failed).
"""


def max_failed_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def add_max_failed_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-failed", type=max_failed_fraction, default=DEFAULT_MAX_FAILED,
                   metavar="FRACTION",
                   help=f"exit with status {EXIT_FAILED} when more than this fraction of the "
                        f"utterances failed (synthesis, all metrics, any one metric group, or a "
                        f"split entry not in the dataset), or when nothing was scored "
                        f"(default {DEFAULT_MAX_FAILED:g})")


def check_out_dir(path: str | Path, option: str = "--out") -> None:
    """A run/report folder argument naming an existing file: one clear error (exit 2)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is an existing file, not a folder; give a folder "
                         "path (it is created if missing)")


def metric_options_from_args(pairs) -> dict[str, dict]:
    """``-m GROUP.KEY=VALUE`` pairs -> {group: {key: value}}; an unknown group is an error with
    a did-you-mean (unknown keys are checked when the group is built)."""
    from resyn_bench.registry import METRIC_GROUPS, RegistryError, _suggest

    out: dict[str, dict] = {}
    for key, value in pairs:
        group, dot, name = key.partition(".")
        if not dot or not name:
            raise SystemExit(f"error: metric options are GROUP.KEY=VALUE, got {key!r}")
        if group not in METRIC_GROUPS:
            raise RegistryError(f"-m {key}: unknown metric group {group!r}.{_suggest(group, METRIC_GROUPS)}")
        out.setdefault(group, {})[name] = value
    return out


def report_outcome(result, max_failed: float, out=None) -> int:
    """Print the failure summary of a finished run; the exit status (0 or EXIT_FAILED)."""
    out = out or sys.stdout
    outcome = assess(result.records, result.work_ids, result.dataset_info)
    for line in outcome.lines():
        print(line, file=out)
    problem = outcome.verdict(max_failed)
    if problem:
        print(f"error: {problem}; the figures of {result.run_dir} are not comparable "
              f"(exit {EXIT_FAILED}; `resyn-bench summary {result.run_dir} --utterances` lists "
              "each failure, --max-failed sets the tolerance)", file=sys.stderr)
        return EXIT_FAILED
    return 0


def configure_score_parser(p: argparse.ArgumentParser) -> None:
    from resyn_bench.cli_args import parse_option

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
    from resyn_bench.cli import DEVICE_HELP, JOBS_HELP, jobs_arg

    p.add_argument("--jobs", type=jobs_arg, default="auto", help=JOBS_HELP)
    p.add_argument("--device", default=None, metavar="cuda|cpu", help=DEVICE_HELP)
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="do not read or write the reference-analysis cache")
    add_max_failed_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_score(args: argparse.Namespace) -> int:
    import dataclasses

    from resyn_bench.runner import RunConfig, RunError, run
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
                          "use_cache": args.use_cache, "jobs": args.jobs,
                          "device": args.device})
    result = run(config, progress=not args.quiet, score_only=True)
    print(f"{result.run_dir}: {result.n_metric_parts} metric parts scored on stored outputs "
          f"({result.wall_s:.1f} s)")
    status = report_outcome(result, args.max_failed)
    print(f"next: resyn-bench summary {result.run_dir}")
    return status
