"""``resyn-bench validate PATH``: check a run folder, a study file, a report layout or a
training config before using it.

A file is recognised by its content (``--kind`` names it): a study file (``resyn-bench run
--config``: TOML with ``[[run]]`` tables) is read with its keys, value types and the names of
its systems, datasets and metric groups checked; a report layout (``.json``/``.toml`` of layout
fields, ``resyn-bench report --layout``) is built; a training config (``.json``, reference
format or ours, ``resyn-bench train ... --config``) is parsed and its values checked. Exit 0
valid, 1 problems found (printed, one per line).

A run folder: checks the manifest (readable, a run manifest, every field of the run-file
schema of :mod:`resyn_bench.runfiles`; a run of a newer schema is named as such), every line of
``records.jsonl`` (see
:func:`resyn_bench.store.scan_records`), that the outputs the records name exist, and leftover
temporary files. ``--repair`` (under the run lock, so never during a run) moves every damaged or
torn line to ``records.quarantine.jsonl`` - one JSON object per line with the line number, the
reason, the text and the exact bytes (base64) - and rewrites ``records.jsonl`` without them;
nothing is deleted. A resumed run then redoes the parts that were moved out.

Exit status: 0 when the folder is clean (or was repaired), 1 when problems were found, 2 when it
is not a run folder or cannot be read.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

from resyn_bench.errors import UsageError
from resyn_bench.store import MANIFEST, OUTPUTS, QUARANTINE, RECORDS, RecordsError, scan_records

KINDS = ("run", "study", "layout", "training")


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("Check a run folder (the manifest, every line of records.jsonl, the outputs "
                     "the records name, leftover temporary files), a study file, a report "
                     "layout or a training config. Exit 0 clean (or repaired), 1 problems "
                     "found, 2 not readable.")
    p.epilog = ("examples:\n  resyn-bench validate runs/demo-world\n"
                "  resyn-bench validate runs/demo-world --repair\n"
                "  resyn-bench validate docs/examples/table1_ljspeech.toml  # a study file\n"
                "  resyn-bench validate my_table.toml --kind layout\n"
                "  resyn-bench validate ckpt/hubert100_vctk/config.json # a training config")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", metavar="PATH",
                   help="run folder (holds manifest.json, records.jsonl), or a study, layout "
                        "or training config file")
    p.add_argument("--kind", choices=KINDS,
                   help="what PATH is (default: a folder is a run; a file is recognised by its "
                        "content)")
    p.add_argument("--repair", action="store_true",
                   help=f"move damaged lines to {QUARANTINE} (never deleted) and rewrite "
                        f"{RECORDS} without them")


def _printable(text: str) -> str:
    from resyn_bench.reports.report import terminal_safe

    return terminal_safe(text)


def validate_run(run_dir: str | Path) -> tuple[list[str], list]:
    """(problems as messages, the record-line problems) of ``run_dir``."""
    from resyn_bench.runfolder import _TEMP, is_run_manifest

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder")
    messages: list[str] = []
    manifest = run_dir / MANIFEST
    if not manifest.exists():
        messages.append(f"{manifest}: missing (not a run folder, or a run that never started)")
    elif not is_run_manifest(manifest):
        messages.append(f"{manifest}: damaged or not a resyn-bench run manifest")
    else:   # every field against the run-file schema (resyn_bench.runfiles)
        from resyn_bench.runfiles import RunFileError, read_manifest

        try:
            read_manifest(run_dir)
        except RunFileError as exc:
            messages.append(str(exc))
    records = run_dir / RECORDS
    events, problems = scan_records(records)
    for p in problems:
        what = "torn (skipped and redone on resume)" if p.torn else "damaged"
        messages.append(f"{records} line {p.lineno}: {what}: {p.reason}")
    for ev in events:
        path = ev.get("output_path")
        if ev.get("part", "synthesis") == "synthesis" and ev.get("status") == "ok" and path:
            full = Path(path) if os.path.isabs(path) else run_dir / path
            if not full.is_file():
                messages.append(f"{records}: output of {ev['utt_id']!r} is missing ({full}); "
                                "rerun with --retry-failed after removing that record, or "
                                "--overwrite")
    for folder in (run_dir, run_dir / OUTPUTS):
        if folder.is_dir():
            for name in sorted(os.listdir(folder)):
                if _TEMP.fullmatch(name):
                    messages.append(f"{folder / name}: leftover temporary file (the next run "
                                    "removes it)")
    return messages, problems


def repair_records(run_dir: str | Path, problems) -> Path:
    """Move the problem lines to the quarantine file; rewrite the log without them."""
    from resyn_bench.core.atomic import append_line, write_file_atomic

    run_dir = Path(run_dir)
    records = run_dir / RECORDS
    bad = {p.lineno: p for p in problems}
    lines = records.read_bytes().split(b"\n")
    quarantine = run_dir / QUARANTINE
    for p in problems:
        entry = {"file": RECORDS, "line": p.lineno, "reason": p.reason,
                 "text": p.raw.decode("utf-8", errors="backslashreplace"),
                 "bytes_base64": base64.b64encode(p.raw).decode("ascii")}
        append_line(quarantine, (json.dumps(entry, ensure_ascii=True) + "\n").encode("ascii"))
    kept = [line for i, line in enumerate(lines, 1) if i not in bad and line.strip()]
    write_file_atomic(records, b"".join(line + b"\n" for line in kept))
    return quarantine


def detect_kind(path: Path) -> str:
    """run (a folder), study, layout or training: what a validate PATH is."""
    if path.is_dir():
        return "run"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = _read_table(path)
    if "run" in data or "defaults" in data:
        return "study"
    from dataclasses import fields

    from resyn_bench.reports.layouts import Layout

    layout_keys = {f.name for f in fields(Layout)} | {"extends"}
    if set(data) <= layout_keys:
        return "layout"
    return "training" if path.suffix.lower() == ".json" else "study"


def _parse(path: Path):
    """The JSON (.json) or TOML (other) content of ``path``; a UsageError when unparseable."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"not valid JSON: {exc}") from None
    from resyn_bench.study import _tomllib

    tomllib = _tomllib(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"not valid TOML: {exc}") from None


def _read_table(path: Path) -> dict:
    try:
        data = _parse(path)
    except UsageError:   # not parseable: the kind's own reader says why
        return {}
    return data if isinstance(data, dict) else {}


def validate_file(path: Path, kind: str) -> str:
    """Check a study, layout or training config file: a one-line description when valid; a
    UserError naming the problem otherwise."""
    if kind == "study":
        from resyn_bench.study import load_study

        study = load_study(path)
        runs = "; ".join(f"{c.system} on {c.dataset} -> {c.out}" for c in study.configs)
        report = f", report -> {study.report['out']}" if study.report else ""
        return f"study file, {len(study.configs)} runs: {runs}{report}"
    if kind == "layout":
        from resyn_bench.reports.layouts import load_layout

        _parse(path)   # a syntax error in the file's own words, before the layout reader
        layout = load_layout(path)
        return f"report layout {layout.name!r}, {len(layout.columns)} columns"
    from resyn_bench.systems.vocoder.config import load_config

    cfg = load_config(path)
    return f"{cfg.kind} training config"


def run(args) -> int:
    from resyn_bench.errors import UserError
    from resyn_bench.runfolder import RunFolderError, RunLock

    run_dir = Path(args.run_dir)
    kind = args.kind or detect_kind(run_dir)
    if kind != "run":
        if args.repair:
            raise UsageError("--repair applies to run folders only")
        if not run_dir.is_file():
            raise FileNotFoundError(f"{run_dir} is not a file")
        try:
            what = validate_file(run_dir, kind)
        except UserError as exc:
            # a bad key or value in the file is what validate is for: report it, exit 1
            print(_printable(f"{run_dir}: {kind}: {exc}"))
            return 1
        print(_printable(f"{run_dir}: ok ({what})"))
        return 0
    try:
        messages, problems = validate_run(run_dir)
    except (OSError, RecordsError) as exc:
        print(f"resyn-bench validate: error: {exc}", file=sys.stderr)
        return 2
    for m in messages:
        print(_printable(m))
    if not messages:
        print(f"{run_dir}: ok")
        return 0
    if not args.repair:
        if problems:
            print(f"{len(problems)} bad lines in {run_dir / RECORDS}; `resyn-bench validate "
                  f"{run_dir} --repair` moves them to {QUARANTINE}")
        return 1
    if not problems:
        print("nothing to repair in the records (the other problems need a run: resume it)")
        return 1
    try:
        with RunLock(run_dir, command=" ".join(sys.argv)):
            # re-read under the lock: the file cannot change now
            _, problems = validate_run(run_dir)
            quarantine = repair_records(run_dir, problems)
    except RunFolderError as exc:
        print(f"resyn-bench validate: error: {exc}", file=sys.stderr)
        return 2
    print(f"moved {len(problems)} lines to {quarantine}; run the same `resyn-bench run` command "
          "again to redo those parts")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check a run folder's records and manifest; "
                                               "--repair quarantines bad lines")
    configure_parser(p)
    p.set_defaults(handler=run)
