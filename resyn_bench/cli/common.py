"""Helpers shared by the ``resyn-bench`` commands: folder checks, ``-m`` metric options,
``--max-failed`` and the end-of-run report of ``run``, ``score`` and ``demo``.

They end with :func:`report_outcome`: how many utterances were scored, how many failed and the
top reasons, and exit status 3 when nothing was scored or more than ``--max-failed`` failed
(see :mod:`resyn_bench.run_outcome`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resyn_bench.errors import UsageError
from resyn_bench.run_outcome import DEFAULT_MAX_FAILED, EXIT_FAILED, assess


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
        raise UsageError(f"{option} {path} is an existing file, not a folder; give a folder "
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


def sanitize(name: str) -> str:
    """A system or dataset name as a folder name (``runs/<dataset>-<system>``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_")


def print_paths(paths) -> None:
    for kind, path in paths.items():
        print(f"{kind + ':':24s}{path}")
