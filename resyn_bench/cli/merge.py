"""``resyn-bench merge [SHARD_DIR ...] --out RUN``: one run folder from the shards of a sharded
run (:mod:`resyn_bench.sharding`)."""
from __future__ import annotations

import argparse
from pathlib import Path

MERGE_EPILOG = """examples:
  resyn-bench merge --out runs/vctk-world                    # its shards: runs/vctk-world/shards/*
  resyn-bench merge runs/a/shards/shard-0-of-2 runs/b/shard-1-of-2 --out runs/vctk-world

The shards must be complete and come from one command (same system, dataset selection, metric
settings, code version): a difference is named, and missing or incomplete shards are listed by
index. The merged run is an ordinary run folder: `summary`, `report` and `score` read it.
Exit status: 0; 2 (shards that cannot be merged); 3 (more than --max-failed failed).
"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    from resyn_bench.cli.common import add_max_failed_argument

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = "Merge the shards of a sharded run (`run --shard i/N`) into one run folder."
    p.epilog = MERGE_EPILOG
    p.add_argument("shard_dirs", nargs="*", metavar="SHARD_DIR",
                   help="shard run folders (default: OUT/shards/*)")
    p.add_argument("--out", required=True, help="the merged run folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in --out (an earlier merge of the same shards is "
                        "replaced without it)")
    add_max_failed_argument(p)


def run(args: argparse.Namespace) -> int:
    from resyn_bench.cli.common import check_out_dir
    from resyn_bench.sharding import SHARDS_DIR, ShardError, default_shard_dirs, merge_runs, report_merge

    check_out_dir(args.out)
    dirs = [Path(d) for d in args.shard_dirs] or default_shard_dirs(args.out)
    if not dirs:
        raise ShardError(f"no shard folders given, and {Path(args.out) / SHARDS_DIR} holds none")
    return report_merge(merge_runs(dirs, args.out, overwrite=args.overwrite), args.max_failed)


def register(subparsers) -> None:
    p = subparsers.add_parser("merge", help="merge the shards of a sharded run (run --shard i/N) "
                                            "into one run")
    configure_parser(p)
    p.set_defaults(handler=run)
