"""``resyn-bench report RUN... --out DIR``: tables, plots and an HTML report of several runs."""
from __future__ import annotations

import argparse
import json

from resyn_bench.cli.common import check_out_dir, print_paths
from resyn_bench.errors import UsageError

EPILOG_REPORT = """examples:
  resyn-bench report runs/demo-copy runs/demo-world --out report/
  resyn-bench report runs/lj-* runs/vctk-* --out paper/ --layout paper --layout vc --ci siunitx
  resyn-bench report runs/* --out rep/ --layout my_table.toml --format md,csv --no-plots

Runs are given in table order; the first run on each dataset is the baseline of the paired
tests (give the ground truth, e.g. copy, first). A run's experiment is its manifest's
config.experiment (resynthesis, vc, f0_flat, codec); bitrates come from the system's streams.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="tables (Markdown, LaTeX, CSV), plots and an HTML "
                                             "report collating several runs",
                              epilog=EPILOG_REPORT,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(p)
    p.set_defaults(handler=run)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN")
    p.add_argument("--out", required=True,
                   help="report folder (tables, plots/, report.html, summary.json)")
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


def parse_renames(items) -> dict[str, str]:
    renames = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise UsageError(f"--rename expects OLD=NEW, got {item!r}")
        renames[old.strip()] = new.strip()
    return renames


def run(args: argparse.Namespace) -> int:
    from resyn_bench.reports.report import write_report

    check_out_dir(args.out)
    paths = write_report(args.run_dirs, args.out, stat=args.stat, layouts=args.layout,
                         formats=args.format.split(","), ci=args.ci, audio=args.audio,
                         plots=args.plots, rename=parse_renames(args.rename))
    print_paths(paths)
    written = json.loads(paths["index"].read_text(encoding="utf-8"))["files"]
    print(f"{len(written)} files written, listed in {paths['index']}")
    return 0
