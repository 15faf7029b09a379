"""The ``resyn-bench`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from resyn_bench.cli_args import add_dataset_args as _add_dataset_args
from resyn_bench.cli_args import parse_option as _parse_option

EPILOG_MAIN = """examples:
  resyn-bench demo                                   # copy + world on the embedded real-speech demo
  resyn-bench ls systems
  resyn-bench run --system world --dataset manifest --data-root ../shared/corpora/vctk_againvc_48k
  resyn-bench run --system outputs:gen/ --outputs-pattern '{stem}_gen.wav' --dataset ljspeech \\
      --data-root LJSpeech-1.1 --split test.txt
  resyn-bench summary runs/demo-world
  resyn-bench report runs/demo-copy runs/demo-world --out report/
"""

EPILOG_REPORT = """examples:
  resyn-bench report runs/demo-copy runs/demo-world --out report/
  resyn-bench report runs/lj-* runs/vctk-* --out paper/ --layout paper --layout vc --ci siunitx
  resyn-bench report runs/* --out rep/ --layout my_table.toml --format md,csv --no-plots

Runs are given in table order; the first run on each dataset is the baseline of the paired
tests (give the ground truth, e.g. copy, first). A run's experiment is its manifest's
config.experiment (resynthesis, vc, f0_flat, codec); bitrates come from the system's streams.
"""

EPILOG_RUN = """examples:
  resyn-bench run --system copy --dataset demo
  resyn-bench run --system world --dataset vctk --data-root VCTK-Corpus-0.92 --limit 50 --jobs 2
  resyn-bench run --system world -o f0_method=dio -o mcep_dims=40 --dataset demo --out runs/world-mcep40
  resyn-bench run --system outputs:/data/gen --outputs-pattern '{stem}_gen.wav' --dataset manifest \\
      --data-root corpus/manifest.tsv --f0-preset yaapt

An existing run directory is resumed: finished utterances are skipped (failed ones too, unless
--retry-failed). Per-utterance records go to OUT/records.jsonl, provenance to OUT/manifest.json,
output audio to OUT/outputs/. Metric groups are additive: more --metrics on an existing run (or
`resyn-bench score OUT --metrics ...`) scores only the new groups on the stored outputs.

Exit status: 0; 2 bad command; 3 nothing scored, or more than --max-failed (default 0.1) of the
utterances failed; 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    from resyn_bench import __version__

    parser = argparse.ArgumentParser(
        prog="resyn-bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate speech resynthesis systems: intonation, content, speaker, quality.",
        epilog=EPILOG_MAIN)
    parser.add_argument("--version", action="version", version=f"resyn-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="evaluate a system on a dataset", epilog=EPILOG_RUN,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", required=True, help="system name, or outputs:DIR")
    _add_dataset_args(p)
    p.add_argument("--out", help="run directory (default: runs/<dataset>-<system>)")
    p.add_argument("--metrics", default="fast", help="metric groups or suites, comma-separated "
                                                     "(default: fast; see `resyn-bench ls metrics`)")
    p.add_argument("--f0-preset", help="pitch extractor preset (see `resyn-bench ls presets`)")
    p.add_argument("-m", "--metric-option", action="append", type=_parse_option, default=[],
                   metavar="GROUP.KEY=VALUE",
                   help="metric option, e.g. -m asr.backend=whisper -m asr.model=/path/base.en.pt")
    p.add_argument("-o", "--option", action="append", type=_parse_option, default=[],
                   metavar="KEY=VALUE", help="system option, e.g. -o f0_method=dio (repeatable)")
    p.add_argument("--outputs-pattern", help="for outputs:DIR: file name pattern with {utt_id}, "
                                             "{speaker}, {stem}, e.g. '{stem}_gen.wav'")
    p.add_argument("--experiment", default=None,
                   help="what the run measures, for the report tables: resynthesis (default; vc "
                        "with --vc-targets), "
                        "vc (voice conversion, e.g. -o speaker=p226), f0_flat (F0 manipulation, "
                        "e.g. -o f0_edit=flat), codec")
    p.add_argument("--label", help="row label in reports (default: system name and options)")
    p.add_argument("--vc-targets", type=int, default=0, metavar="N",
                   help="voice conversion as in the paper: convert every utterance to N target "
                        "speakers of the system (random, seeded per utterance; ids "
                        "UTT__to_TARGET); implies --experiment vc")
    p.add_argument("--vc-seed", type=int, default=0, help="seed of the target choice (default 0)")
    p.add_argument("--conversions", metavar="LIST",
                   help="for outputs:DIR: another tool's voice conversions, a .tsv/.csv/.jsonl "
                        "list with the columns output (file in DIR, or id), source (utterance id "
                        "of the dataset), target (speaker); each row is evaluated as the "
                        "conversion SOURCE__to_TARGET (implies --experiment vc)")
    p.add_argument("--jobs", type=jobs_arg, default="auto", help=JOBS_HELP)
    p.add_argument("--utt-timeout", type=_timeout, default=None, metavar="SECONDS",
                   help="time one utterance may take in the system or one metric group before "
                        "its worker is killed and the utterance recorded as timed out (default: "
                        "max(60, 10 x its duration) s; 0 = no limit)")
    p.add_argument("--device", default=None, metavar="cuda|cpu", help=DEVICE_HELP)
    p.add_argument("--no-isolation", dest="isolate", action="store_false",
                   help="run the system and metrics in this process instead of supervised "
                        "worker processes (debugging; a native crash then ends the run)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an existing run directory, skipping finished utterances "
                        "(default); --no-resume refuses to touch one")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing run in --out and start again")
    p.add_argument("--retry-failed", action="store_true", help="re-evaluate failed utterances")
    p.add_argument("--max-duration", type=float, default=None, metavar="SECONDS",
                   help="fail utterances (reference or output) longer than this, checked from "
                        "the file header before decoding (default 600; 0 = no limit)")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="do not read or write the reference-analysis cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from resyn_bench.cli_score import add_max_failed_argument

    add_max_failed_argument(p)

    p = sub.add_parser("summary", help="print a run's aggregate table",
                       epilog="example:\n  resyn-bench summary runs/demo-world --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--utterances", action="store_true", help="also list per-utterance values")

    p = sub.add_parser("report", help="tables (Markdown, LaTeX, CSV), plots and an HTML report "
                                      "collating several runs",
                       epilog=EPILOG_REPORT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN")
    p.add_argument("--out", required=True, help="report folder (tables, plots/, report.html, "
                                                "summary.json)")
    p.add_argument("--stat", choices=("auto", "mean", "pooled"), default="auto",
                   help="auto (default: each metric's convention - WER/PER pooled over the "
                        "corpus, F0 errors as utterance means), mean, or pooled")
    p.add_argument("--layout", action="append", metavar="NAME|FILE",
                   help="table layout, repeatable: paper (Table 1), vc (Table 2: voice "
                        "conversion + F0 manipulation), codec (bitrate + quality), all, or a "
                        ".json/.toml layout file (default: all four; empty ones are skipped)")
    p.add_argument("--format", default="md,tex,csv,html", metavar="LIST",
                   help="comma-separated outputs among md, tex, csv, html (default: all)")
    p.add_argument("--ci", choices=("pm", "siunitx", "none"), default="pm",
                   help="confidence intervals in tables: 'value ± half-width' (pm, default), "
                        "siunitx S columns (LaTeX needs \\usepackage{siunitx}), or none")
    p.add_argument("--audio", choices=("link", "embed"), default="link",
                   help="HTML report audio: link to the run files (default) or embed them")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="skip the figures (plots/*.png, *.pdf)")
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="row label OLD (as the tables show it, or a run folder's name) becomes "
                        "NEW; repeatable. `run --label` sets a label when the run is made")

    p = sub.add_parser("ls", help="list datasets, systems, metrics or pitch presets",
                       epilog="example:\n  resyn-bench ls systems",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("datasets", "systems", "metrics", "presets"))

    p = sub.add_parser("demo", help="evaluate copy and world on the embedded real-speech demo corpus, write a report",
                       epilog="example:\n  resyn-bench demo --out demo_runs",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_runs", help="folder for the runs and the report")
    p.add_argument("--systems", default="copy,world", help="comma-separated systems")
    p.add_argument("--f0-preset", help="pitch extractor preset")
    p.add_argument("--metrics", default="all", help="metric groups or suites (default: all)")
    p.add_argument("--jobs", type=jobs_arg, default="auto", help=JOBS_HELP)
    p.add_argument("--limit", type=int, help="only the first N utterances (a quick look)")
    p.add_argument("--quiet", action="store_true")

    _add_model_commands(sub)
    return parser


#: commands implemented in their own modules: (command, sub-command) -> (module, configure, run).
#: The modules import nothing heavy at import time; torch loads only when a command runs.
MODEL_COMMANDS = {
    ("train", "vocoder"): ("resyn_bench.cli_train", "configure_train_vocoder_parser",
                           "run_train_vocoder",
                           "train a unit HiFi-GAN vocoder (presets: hubert100-vctk, ..., tiny)"),
    ("train", "f0-quantizer"): ("resyn_bench.cli_train", "configure_train_f0_quantizer_parser",
                                "run_train_f0_quantizer",
                                "train the F0 quantizer (VQ-VAE on speaker-normalised F0)"),
    ("train", "kmeans"): ("resyn_bench.cli_units", "configure_train_kmeans_parser",
                          "run_train_kmeans", "train a k-means unit quantizer on encoder features"),
    ("score", None): ("resyn_bench.cli_score", "configure_score_parser", "run_score",
                      "add metric groups to a finished run (scores only what it lacks)"),
    ("f0-stats", None): ("resyn_bench.cli_data", "configure_f0_stats_parser", "run_f0_stats",
                         "per-speaker F0 mean/std (for F0 normalisation) of a dataset"),
    ("fetch", None): ("resyn_bench.cli_units", "configure_fetch_parser", "run_fetch",
                      "download catalogue checkpoints (HuBERT, k-means, vocoders) and test sets, verify them"),
    ("validate", None): ("resyn_bench.cli_validate", "configure_validate_parser", "run_validate",
                         "check a run folder's records and manifest; --repair quarantines bad lines"),
    ("encode", None): ("resyn_bench.cli_units", "configure_encode_parser", "run_encode",
                       "extract discrete units of a dataset into a unit file"),
    ("disentangle", None): ("resyn_bench.disentangle", "configure_parser", "run_command",
                            "voice conversion + F0 edits of speaker-conditioned systems: how much "
                            "content, speaker and pitch each stream carries (one row per system)"),
    ("codec", None): ("resyn_bench.codec_study", "configure_codec_parser", "run_codec",
                      "bitrate of unit streams: raw, entropy, run-length, Huffman (+ runs' "
                      "measured codec bitrates)"),
}


def _add_model_commands(sub) -> None:
    import importlib

    groups: dict[str, object] = {}
    for (command, subcommand), (module, configure, _run, help_text) in MODEL_COMMANDS.items():
        if subcommand is None:
            p = sub.add_parser(command, help=help_text,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        else:
            if command not in groups:
                g = sub.add_parser(command, help="train a vocoder, an F0 quantizer or a k-means",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
                groups[command] = g.add_subparsers(dest="subcommand", required=True, metavar="WHAT")
            p = groups[command].add_parser(subcommand, help=help_text,
                                           formatter_class=argparse.RawDescriptionHelpFormatter)
        getattr(importlib.import_module(module), configure)(p)
        p.set_defaults(model_command=(command, subcommand))


def jobs_arg(text: str) -> int:
    """``--jobs N`` or ``--jobs auto`` (one worker per usable CPU, at most 4)."""
    from resyn_bench.runner import parse_jobs

    try:
        return parse_jobs(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


DEVICE_HELP = ("device of every model-backed metric and system (Whisper/wav2vec2 ASR, speaker "
               "embeddings, MOS models, unit encoders, vocoders): cuda, cuda:N or cpu (default: "
               "cuda when torch sees a GPU, else cpu); -m GROUP.device= / -o device= override it")
JOBS_HELP = ("worker processes, or 'auto' (default): one per usable CPU, at most 4; the numbers "
             "do not depend on it")


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (0 = no limit), got {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (0 = no limit), got {text!r}")
    return value


def _sanitize(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_")


def cmd_run(args) -> int:
    from resyn_bench.runner import RunConfig, run

    options = dict(args.option)
    if args.outputs_pattern:
        if not args.system.startswith("outputs:"):
            raise SystemExit("error: --outputs-pattern applies only to outputs:DIR systems")
        options["pattern"] = args.outputs_pattern
    if args.conversions:
        if not args.system.startswith("outputs:"):
            raise SystemExit("error: --conversions applies only to outputs:DIR systems")
        options["conversions"] = str(Path(args.conversions).expanduser().resolve())
    from resyn_bench.cli_score import check_out_dir, metric_options_from_args, report_outcome

    metric_options = metric_options_from_args(args.metric_option)
    out = args.out or str(Path("runs") / f"{_sanitize(args.dataset)}-{_sanitize(args.system)}")
    check_out_dir(out)
    config = RunConfig(system=args.system, dataset=args.dataset, out=out, data_root=args.data_root,
                       split=args.split, limit=args.limit, metrics=args.metrics,
                       dataset_options=dict(args.dataset_option), metric_options=metric_options,
                       f0_preset=args.f0_preset, system_options=options, resume=args.resume,
                       overwrite=args.overwrite, retry_failed=args.retry_failed,
                       use_cache=args.use_cache, jobs=args.jobs, isolate=args.isolate,
                       device=args.device,
                       utt_timeout=args.utt_timeout,
                       experiment=args.experiment or ("vc" if args.vc_targets or args.conversions
                                                      else "resynthesis"),
                       label=args.label, vc_targets=args.vc_targets, vc_seed=args.vc_seed)
    if args.max_duration is not None:
        if args.max_duration < 0:
            raise SystemExit("error: --max-duration must be >= 0 (0 = no limit)")
        config.max_duration = args.max_duration or None
    if args.overwrite and not args.resume:
        raise SystemExit("error: --overwrite and --no-resume contradict each other")
    result = run(config, progress=not args.quiet)
    print(f"{result.run_dir}: {result.n_processed} evaluated ({result.n_failed} failed), "
          f"{result.n_done_before} already done, {result.n_total} in the dataset; "
          f"{result.n_metric_parts} metric parts scored; {result.wall_s:.1f} s")
    status = report_outcome(result, args.max_failed)
    from resyn_bench.reports.collate import format_losses, utterance_losses

    lost = format_losses(utterance_losses(list((result.records or {}).values())))
    if lost:  # what each part (the system, each metric group) lost, and why
        print(f"lost utterances: {lost} (--retry-failed redoes them)")
    print(f"next: resyn-bench summary {result.run_dir}")
    return status


def cmd_summary(args) -> int:
    from resyn_bench.reports.collate import summarize_run
    from resyn_bench.reports.report import format_summary

    summary = summarize_run(args.run_dir)
    if args.json:
        from resyn_bench.reports.report import terminal_safe_json

        print(terminal_safe_json(json.dumps(summary.to_dict(with_records=args.utterances),
                                            indent=2, ensure_ascii=False)))
    else:
        print(format_summary(summary, utterances=args.utterances))
    return 0


def cmd_report(args) -> int:
    from resyn_bench.cli_score import check_out_dir
    from resyn_bench.reports.report import write_report

    check_out_dir(args.out)
    renames = {}
    for item in args.rename:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"--rename expects OLD=NEW, got {item!r}")
        renames[old.strip()] = new.strip()
    paths = write_report(args.run_dirs, args.out, stat=args.stat, layouts=args.layout,
                         formats=args.format.split(","), ci=args.ci, audio=args.audio,
                         plots=args.plots, rename=renames)
    _print_paths(paths)
    import json

    written = json.loads(paths["index"].read_text(encoding="utf-8"))["files"]
    print(f"{len(written)} files written, listed in {paths['index']}")
    return 0


def _print_paths(paths) -> None:
    for kind, path in paths.items():
        print(f"{kind + ':':24s}{path}")


def cmd_ls(args) -> int:
    from resyn_bench import registry

    if args.what == "systems":
        from resyn_bench.named_systems import ALIASES, NAMED_SYSTEMS

        for name, entry in registry.all_systems().items():
            if name in NAMED_SYSTEMS or name in ALIASES:
                continue
            shown = f"{name}:{entry.takes_argument}" if entry.takes_argument else name
            print(f"{shown:16s}{entry.description}")
        print("\nnamed unit systems (encoder, layer, quantizer, vocabulary, vocoder); "
              "bitrate = units + F0 codes:")
        header = f"{'name':26s}{'units':22s}{'streams':24s}{'bps':>7s}  status"
        print(header)
        print("-" * len(header))
        for name, ns in NAMED_SYSTEMS.items():
            layer = f" L{ns.layer}" if ns.layer is not None else ""
            units = f"{ns.encoder}{layer} k={ns.vocab_size} {ns.unit_rate:g}Hz"
            streams = "units" + (" + f0 codes" if ns.f0 else "") + (
                " + speaker" if ns.speaker != "none" else "")
            print(f"{name:26s}{units:21s} {streams:24s}{ns.bitrate():7.1f}  {ns.status()}")
        print("aliases: " + ", ".join(f"{a} = {t}" for a, t in ALIASES.items()))
        print("a system that needs files says how to get them when run; "
              "see `resyn-bench fetch --list` and `resyn-bench train --help`")
    elif args.what == "metrics":
        for name, entry in registry.METRIC_GROUPS.items():
            print(f"{name:16s}{entry.description}")
        for suite, groups in registry.METRIC_SUITES.items():
            print(f"{suite:16s}suite: {', '.join(groups)}")
    elif args.what == "datasets":
        from resyn_bench.datasets import list_datasets

        for name, description in list_datasets():
            print(f"{name:16s}{description}")
    else:
        from resyn_bench.metrics.f0 import DEFAULT_PRESET
        from resyn_bench.metrics.pitch import PRESETS

        for name, preset in PRESETS.items():
            mark = " (default)" if name == DEFAULT_PRESET else ""
            print(f"{name:16s}{preset.description}{mark}")
    return 0


def cmd_demo(args) -> int:
    from resyn_bench.reports.report import write_report
    from resyn_bench.runner import RunConfig, run

    out = Path(args.out)
    run_dirs, failed = [], 0
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        run_dir = out / f"demo-{_sanitize(system)}"
        config = RunConfig(system=system, dataset="demo", out=str(run_dir), metrics=args.metrics,
                           f0_preset=args.f0_preset, jobs=args.jobs, limit=args.limit)
        result = run(config, progress=not args.quiet)
        print(f"{system}: {result.n_processed} evaluated, {result.n_done_before} already done, "
              f"{result.n_failed} failed ({result.wall_s:.1f} s)")
        run_dirs.append(run_dir)
        failed += result.n_failed
    paths = write_report(run_dirs, out / "report")
    print()
    if "markdown" in paths:
        print(paths["markdown"].read_text(encoding="utf-8"))
    _print_paths(paths)
    if "copy" in [d.name.removeprefix("demo-") for d in run_dirs]:
        from resyn_bench.demo_speech import wer_by_speaker

        by_spk = wer_by_speaker(out / "demo-copy")
        if by_spk:
            print("\nground truth (copy) WER by speaker: "
                  + ", ".join(f"{spk} {wer:.1f} %" for spk, wer in by_spk.items()))
    # the two things a demo user opens: the HTML report and the paper tables
    print()
    for kind in ("html", "latex", "markdown"):
        if kind in paths:
            print(f"{kind} report: {paths[kind].resolve()}" if kind == "html"
                  else f"{kind} table: {paths[kind].resolve()}")
    if failed:
        # The demo corpus is clean studio speech: any failure means a broken install.
        print(f"error: {failed} demo utterances failed; see `resyn-bench summary` of the runs above",
              file=sys.stderr)
        return 1
    return 0


COMMANDS = {"run": cmd_run, "summary": cmd_summary, "report": cmd_report, "ls": cmd_ls,
            "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    import logging

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="resyn-bench: %(message)s")
    from resyn_bench.audio import AudioError
    from resyn_bench.catalogue import CatalogueError
    from resyn_bench.registry import RegistryError
    from resyn_bench.runner import RunError
    from resyn_bench.safeload import UnsafeCheckpointError

    # OSError: a file system problem (read-only or missing folder, disk full) is the user's to
    # fix, reported in one line
    expected = (RegistryError, RunError, AudioError, OSError, ValueError, ImportError,
                CatalogueError, UnsafeCheckpointError)
    try:
        if getattr(args, "model_command", None):
            import importlib

            module, _configure, run, _help = MODEL_COMMANDS[args.model_command]
            rc = getattr(importlib.import_module(module), run)(args)
        else:
            rc = COMMANDS[args.command](args)
        # flush here, not at interpreter exit, so that a reader gone away (`| head`) is caught
        # below instead of printing "Exception ignored ... BrokenPipeError"
        sys.stdout.flush()
        return rc
    except BrokenPipeError:   # before OSError (expected): it is one
        # the reader went away (`resyn-bench summary RUN | head`): stop quietly; send what is
        # left in the buffer to /dev/null so that the flush at exit does not raise again
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except expected as exc:
        print(f"resyn-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished utterances are saved - run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
