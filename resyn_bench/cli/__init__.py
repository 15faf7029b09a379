"""The ``resyn-bench`` command line.

One module per command in this package, each exposing ``register(subparsers)`` (adds its
parser and sets ``handler``) and ``run(args) -> int`` (the exit status). The modules import
nothing heavy at import time: torch and the models load only when a command runs.

:func:`main` holds the one error policy of every command:

- a project error (:class:`resyn_bench.errors.UserError`: bad option, missing file or model,
  damaged run folder) and a file-system error (``OSError``: read-only or missing folder, disk
  full) -> one line on stderr, exit status 2;
- anything else is a bug -> its traceback and a line asking to report it, exit status 1;
- ``--traceback`` shows the traceback of every error;
- Ctrl-C -> 130; a reader gone away (``| head``) -> 141, quietly. Commands return their own
  statuses (3: too many failed utterances, see :mod:`resyn_bench.run_outcome`).
"""
from __future__ import annotations

import argparse
import importlib
import sys

EPILOG_MAIN = """examples:
  resyn-bench demo                                   # copy + world on the embedded real-speech demo
  resyn-bench ls systems
  resyn-bench run --system world --dataset manifest --data-root ../shared/corpora/vctk_againvc_48k
  resyn-bench run --system outputs:gen/ --outputs-pattern '{stem}_gen.wav' --dataset ljspeech \\
      --data-root LJSpeech-1.1 --split test.txt
  resyn-bench run --config docs/examples/table1_ljspeech.toml  # a study file
  resyn-bench summary runs/demo-world
  resyn-bench report runs/demo-copy runs/demo-world --out report/

Errors the user can fix are one line (exit 2); --traceback shows where any error came from.
"""

#: the command modules of this package, in the order ``resyn-bench --help`` lists them
COMMAND_MODULES = ("run", "summary", "report", "ls", "demo", "train", "score", "f0_stats",
                   "fetch", "validate", "encode", "disentangle", "merge", "codec")

BUG_LINE = ("this is a bug in resyn-bench, please report it with the command line above "
            "(and the traceback)")


def build_parser() -> argparse.ArgumentParser:
    from resyn_bench import __version__

    parser = argparse.ArgumentParser(
        prog="resyn-bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate speech resynthesis systems: intonation, content, speaker, quality.",
        epilog=EPILOG_MAIN)
    parser.add_argument("--version", action="version", version=f"resyn-bench {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the traceback of every error (also after the command)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for p in _leaf_parsers(parser):
        # `resyn-bench run ... --traceback` works too; SUPPRESS keeps the main flag's value
        p.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser):
    """Every parser of a command (not the main parser, not a group such as ``train``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                children = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
                yield from (_leaf_parsers(p) if children else (p,))


def command_name(args: argparse.Namespace) -> str:
    sub = getattr(args, "subcommand", None)
    return f"{args.command} {sub}" if sub else str(args.command)


def main(argv: list[str] | None = None) -> int:
    import logging

    from resyn_bench.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="resyn-bench: %(message)s")
    try:
        rc = args.handler(args)
        # flush here, not at interpreter exit, so that a reader gone away (`| head`) is caught
        # below instead of printing "Exception ignored ... BrokenPipeError"
        sys.stdout.flush()
        return rc
    except BrokenPipeError:   # before OSError: it is one
        # the reader went away (`resyn-bench summary RUN | head`): stop quietly; send what is
        # left in the buffer to /dev/null so that the flush at exit does not raise again
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("interrupted; finished utterances are saved - run the same command again to resume",
              file=sys.stderr)
        return 130
    except (UserError, OSError) as exc:
        # OSError: a file system problem (read-only or missing folder, disk full) is the user's
        # to fix, reported in one line like the project's own errors
        if args.traceback:
            _print_traceback()
        print(f"resyn-bench {command_name(args)}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except Exception:
        _print_traceback()
        print(f"resyn-bench {command_name(args)}: {BUG_LINE}", file=sys.stderr)
        return 1


def _print_traceback() -> None:
    import traceback

    traceback.print_exc(file=sys.stderr)
