"""``resyn-bench disentangle``: voice conversion + F0 edits of speaker-conditioned systems.

The options and the study are :mod:`resyn_bench.disentangle`'s (``configure_parser``,
``run_command``); this module wires them into the command line.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("disentangle", help="voice conversion + F0 edits of "
                                                  "speaker-conditioned systems: how much content, "
                                                  "speaker and pitch each stream carries (one row "
                                                  "per system)",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    from resyn_bench.disentangle import configure_parser

    configure_parser(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from resyn_bench.disentangle import run_command

    return run_command(args)
