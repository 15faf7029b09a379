"""Run directory: per-utterance records (the source of truth) and the run manifest.

Layout::

    RUN/manifest.json     config, versions, git hash, system/metric settings, resampling, timings
    RUN/records.jsonl     one JSON object per utterance, appended atomically
    RUN/outputs/          the system's output audio (``<utt_id>.wav``), unless disabled

Appends are one ``write`` of a complete line on an ``O_APPEND`` descriptor followed by fsync, so a
killed run loses at most the utterance in flight. On reopening, a torn last line (a kill in the
middle of a write) is cut off, and duplicate ids (which the runner never writes) resolve to the
last record.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

RECORDS = "records.jsonl"
MANIFEST = "manifest.json"
OUTPUTS = "outputs"


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (JSON has no NaN, and a missing value is honest)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _clean(value.item())
    return value


class RecordStore:
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RECORDS

    def repair(self) -> int:
        """Cut a torn trailing line; return the number of bytes removed."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            fh.truncate(keep)
            return len(data) - keep

    def load(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # only possible for a torn line; repair() removes those
                records[rec["utt_id"]] = rec
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_clean(record), ensure_ascii=False, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))


def read_records(run_dir: str | Path) -> list[dict[str, Any]]:
    return list(RecordStore(run_dir).load().values())


def iter_jsonl(lines: Iterable[str]):
    for line in lines:
        if line.strip():
            yield json.loads(line)
