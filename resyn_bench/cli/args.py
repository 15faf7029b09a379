"""Argument helpers shared by every ``resyn-bench`` sub-command (standard library only)."""
from __future__ import annotations

import argparse
import json

from resyn_bench.run_config import SPLIT_HELP

#: the RunConfig fields that name the data; the same options in every command that reads a dataset
DATASET_FIELDS = ("dataset", "data_root", "split", "limit", "dataset_options")


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with the value read as JSON when it parses (numbers, true/false/null,
    quoted strings), else kept as the raw string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def add_dataset_args(p: argparse.ArgumentParser, split_help: str = SPLIT_HELP) -> None:
    """``--dataset --data-root --split --limit -d``: the same meaning in every command (declared
    on :class:`resyn_bench.run_config.RunConfig`); ``--dataset`` is required."""
    from resyn_bench.cli.run_options import add_run_options

    add_run_options(p, DATASET_FIELDS, helps={"split": split_help}, required=("dataset",),
                    defaults=True)
