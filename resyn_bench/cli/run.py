"""``resyn-bench run``: evaluate a system on a dataset, or every run of a study file.

The run options are derived from :class:`resyn_bench.run_config.RunConfig` (see
:mod:`resyn_bench.cli.run_options`); a study file (``--config``, :mod:`resyn_bench.study`)
spells the same options as TOML keys, and options given on the command line override it.
"""
from __future__ import annotations

import argparse

from resyn_bench.cli.common import add_max_failed_argument, check_out_dir, report_outcome

EPILOG_RUN = """examples:
  resyn-bench run --system copy --dataset demo
  resyn-bench run --system world --dataset vctk --data-root VCTK-Corpus-0.92 --limit 50 --jobs 2
  resyn-bench run --system world -o f0_method=dio -o mcep_dims=40 --dataset demo --out runs/world-mcep40
  resyn-bench run --system outputs:/data/gen --outputs-pattern '{stem}_gen.wav' --dataset manifest \\
      --data-root corpus/manifest.tsv --f0-preset yaapt
  resyn-bench run --config docs/examples/table1_ljspeech.toml --limit 20   # a study file

An existing run directory is resumed: finished utterances are skipped (failed ones too, unless
--retry-failed). Per-utterance records go to OUT/records.jsonl, provenance to OUT/manifest.json,
output audio to OUT/outputs/. Metric groups are additive: more --metrics on an existing run (or
`resyn-bench score OUT --metrics ...`) scores only the new groups on the stored outputs.

A study file (--config, TOML) lists the runs of one table: [defaults], one [[run]] per run
with RunConfig keys (system, dataset, data_root, metrics, system_options, ...), an optional
[report]; see the README. Options on the command line override the file in every run.

Exit status: 0; 2 bad command; 3 nothing scored, or more than --max-failed (default 0.1) of the
utterances failed; 130 interrupted.
"""


def register(subparsers) -> None:
    from resyn_bench.cli.run_options import add_run_options
    from resyn_bench.run_config import _seconds, field_default, run_options, spec

    p = subparsers.add_parser("run", help="evaluate a system on a dataset", epilog=EPILOG_RUN,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.toml",
                   help="a study file: the runs of one table (systems, datasets, metrics, "
                        "options); options given here override its values")
    # options a study file may set read None when not given (the file's value then stands);
    # the per-invocation switches (--resume, ...) get their defaults
    add_run_options(p, defaults={f.name: field_default(f) for f in run_options()
                                 if not spec(f).study})
    p.add_argument("--outputs-pattern", help="for outputs:DIR: file name pattern with {utt_id}, "
                                             "{speaker}, {stem}, e.g. '{stem}_gen.wav'")
    p.add_argument("--conversions", metavar="LIST",
                   help="for outputs:DIR: another tool's voice conversions, a .tsv/.csv/.jsonl "
                        "list with the columns output (file in DIR, or id), source (utterance id "
                        "of the dataset), target (speaker), optional target_ref (recordings of a "
                        "target outside the dataset), f0_edit (flat, shift:+N, scale:X) and bytes "
                        "(transmitted size: a measured bitrate); each row is evaluated as the "
                        "conversion SOURCE__to_TARGET (implies --experiment vc, or f0_<kind> when "
                        "the rows ask for F0 edits)")
    p.add_argument("--shard-wait", type=_seconds, default=None, metavar="SECONDS",
                   help="under torchrun: how long rank 0 waits for the other shards (default "
                        "48 h; 0 = no limit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_max_failed_argument(p)
    p.set_defaults(handler=run, parser=p)


def _command_line_values(args: argparse.Namespace) -> dict:
    from resyn_bench.cli.run_options import given_values

    values = given_values(args)
    for extra in ("outputs_pattern", "conversions"):
        if getattr(args, extra, None):
            values[extra] = getattr(args, extra)
    return values


def configs_from_args(args: argparse.Namespace):
    """(the study or None, the RunConfig of every run) of a ``run`` command line."""
    from resyn_bench import study as studies

    given = _command_line_values(args)
    if args.config:
        study = studies.load_study(args.config, given)
        return study, study.configs
    missing = [flag for name, flag in (("system", "--system"), ("dataset", "--dataset"))
               if name not in given]
    if missing:
        args.parser.error(f"the following arguments are required: {', '.join(missing)} "
                          "(or --config FILE.toml)")
    return None, [studies.run_config(given)]


def run(args: argparse.Namespace) -> int:
    from resyn_bench.sharding import resolve_shard

    study, configs = configs_from_args(args)
    for config in configs:
        check_out_dir(config.out)
    # --shard (or torchrun / a SLURM array): this process evaluates one shard of every run
    shard = resolve_shard(args.shard)
    if study is not None and study.title:
        print(study.title)
    status = 0
    for i, config in enumerate(configs, 1):
        if study is not None:
            print(f"[{i}/{len(configs)}] {config.system} on {config.dataset} -> {config.out}")
        if shard is not None:   # one shard into OUT/shards/ (torchrun: rank 0 then merges)
            status = max(status, run_one_shard(config, shard, args))
            continue
        status = max(status, run_one(config, args))
    if study is not None and study.report is not None:
        status = max(status, write_study_report(study, configs))
    return status


def run_one_shard(config, shard, args: argparse.Namespace) -> int:
    from resyn_bench.sharding import DEFAULT_WAIT_S, run_shard

    return run_shard(config, *shard, progress=not args.quiet, max_failed=args.max_failed,
                     wait_s=DEFAULT_WAIT_S if args.shard_wait is None
                     else args.shard_wait or 365 * 86400.0)


def run_one(config, args: argparse.Namespace) -> int:
    from resyn_bench.reports.collate import format_losses, utterance_losses
    from resyn_bench.runner import run as run_benchmark

    result = run_benchmark(config, progress=not args.quiet)
    print(f"{result.run_dir}: {result.n_processed} evaluated ({result.n_failed} failed), "
          f"{result.n_done_before} already done, {result.n_total} in the dataset; "
          f"{result.n_metric_parts} metric parts scored; {result.wall_s:.1f} s")
    status = report_outcome(result, args.max_failed)
    lost = format_losses(utterance_losses(list((result.records or {}).values())))
    if lost:  # what each part (the system, each metric group) lost, and why
        print(f"lost utterances: {lost} (--retry-failed redoes them)")
    print(f"next: resyn-bench summary {result.run_dir}")
    return status


def write_study_report(study, configs) -> int:
    from resyn_bench.cli.common import print_paths
    from resyn_bench.cli.report import parse_renames
    from resyn_bench.reports.report import write_report

    opts = dict(study.report)
    out = opts.pop("out")
    check_out_dir(out, option=f"{study.path} [report] out")
    layouts = opts.pop("layout", None)
    formats = opts.pop("format", "md,tex,csv,html")
    rename = opts.pop("rename", {}) or {}
    paths = write_report([c.out for c in configs], out,
                         layouts=[layouts] if isinstance(layouts, str) else layouts,
                         formats=formats.split(",") if isinstance(formats, str) else formats,
                         rename=parse_renames(f"{k}={v}" for k, v in rename.items()), **opts)
    print_paths(paths)
    return 0
