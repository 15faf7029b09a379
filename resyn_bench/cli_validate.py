"""``resyn-bench validate RUN [--repair]``: check a run folder's files, quarantine damaged lines.

Checks the manifest (readable, a run manifest, every field of the run-file schema of
:mod:`resyn_bench.runfiles`; a run of a newer schema is named as such), every line of ``records.jsonl`` (see
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

from resyn_bench.store import MANIFEST, OUTPUTS, QUARANTINE, RECORDS, RecordsError, scan_records


def configure_validate_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("Check a run folder: the manifest, every line of records.jsonl, the outputs "
                     "the records name, leftover temporary files. Exit 0 clean (or repaired), "
                     "1 problems found, 2 not readable.")
    p.epilog = ("examples:\n  resyn-bench validate runs/demo-world\n"
                "  resyn-bench validate runs/demo-world --repair")
    p.add_argument("run_dir", metavar="RUN", help="run folder (holds manifest.json, records.jsonl)")
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


def run_validate(args) -> int:
    from resyn_bench.runfolder import RunFolderError, RunLock

    run_dir = Path(args.run_dir)
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
