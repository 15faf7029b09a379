"""``resyn-bench codec``: bitrate of unit streams (raw, entropy, run-length, Huffman) and the
measured codec bitrates of runs. The options and the study are :mod:`resyn_bench.codec_study`'s.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("codec", help="bitrate of unit streams: raw, entropy, run-length, "
                                            "Huffman (+ runs' measured codec bitrates)",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    from resyn_bench.codec_study import configure_codec_parser

    configure_codec_parser(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from resyn_bench.codec_study import run_codec

    return run_codec(args)
