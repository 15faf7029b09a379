"""Argument helpers shared by every ``resyn-bench`` sub-command (standard library only)."""
from __future__ import annotations

import argparse
import json

SPLIT_HELP = ("file listing the utterances to use (ids, paths, or a unit file such as the "
              "reference repo's test.txt); keeps its order")


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
    """``--dataset --data-root --split --limit -d``: the same meaning in every command."""
    p.add_argument("--dataset", required=True, help="dataset name (see `resyn-bench ls datasets`)")
    p.add_argument("--data-root", help="dataset folder (or manifest TSV for `manifest`)")
    p.add_argument("--split", help=split_help)
    p.add_argument("--limit", type=int, help="use only the first N utterances")
    p.add_argument("-d", "--dataset-option", action="append", type=parse_option, default=[],
                   metavar="KEY=VALUE", help="dataset loader option, e.g. -d mic=mic2 for vctk")
