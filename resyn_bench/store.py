"""Run directory: per-utterance records (the source of truth) and the run manifest.

Layout::

    RUN/manifest.json     config, versions, git hash, system/metric settings, resampling, timings
    RUN/records.jsonl     one JSON object per utterance, appended atomically
    RUN/outputs/          the system's output audio (``<utt_id>.wav``), unless disabled

Each utterance is written as parts (its synthesis, then one part per metric group), so metric
groups can be scored one at a time and a resumed run redoes only the missing parts.
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
    """Append-only event log of a run. Each line is one *part* of one utterance's result:

    - ``{"part": "synthesis", "utt_id", ...}``: reference checks + the system's output;
    - ``{"part": "metric", "group": "f0", "utt_id", "status", "values", "counts", "extra"}``.

    ``load()`` merges the parts into one record per utterance (see :func:`merge_events`).
    """

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

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # only possible for a torn line; repair() removes those
        return out

    def load(self, groups: Iterable[str] | dict[str, str | None] | None = None
             ) -> dict[str, dict[str, Any]]:
        """Merged records. ``groups`` names the metric groups wanted; given as names, each
        group's record key (its settings, see :func:`metric_key`) comes from the run's manifest
        when it has one, so parts scored under other settings of the same group stay apart."""
        keys = groups if isinstance(groups, dict) else None
        legacy: dict[str, str] = {}
        if groups is not None and keys is None and (self.run_dir / MANIFEST).is_file():
            try:
                manifest = read_manifest(self.run_dir)
            except (OSError, ValueError):
                manifest = {}
            # a manifest written before records were keyed has one setting per group: any part
            entries = manifest.get("metrics") or {}
            keys = {g: (entries.get(g) or {}).get("key") for g in groups}
            legacy = dict(manifest.get("legacy_metric_keys") or {})
        return merge_events(self.events(), groups if keys is None else keys, legacy)

    def append(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_clean(record), ensure_ascii=False, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def metric_key(group: str, entry: dict[str, Any]) -> str:
    """The record key of a metric group under given settings: ``group@<12 hex>``, a hash of
    the manifest entry's settings, options and analysis rate (after a JSON round trip, so a
    key computed from a stored manifest equals the one computed when scoring)."""
    import hashlib

    basis = {k: entry.get(k) for k in ("settings", "options", "analysis_sample_rate")}
    text = json.dumps(json.loads(json.dumps(_clean(basis), sort_keys=True)), sort_keys=True)
    return f"{group}@{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def manifest_metric_keys(manifest: dict[str, Any]) -> dict[str, str]:
    """{group: record key} of the groups a manifest lists (computed for manifests written
    before records were keyed)."""
    return {g: (e.get("key") or metric_key(g, e)) for g, e in (manifest.get("metrics") or {}).items()}


def event_key(event: dict[str, Any], legacy: dict[str, str] | None = None) -> str | None:
    """The settings key of a metric part; parts written before keys existed take the key of
    the settings their run had (``legacy``: group -> key), or None when unknown."""
    return event.get("key") or (legacy or {}).get(event.get("group"))


def merge_events(events: Iterable[dict[str, Any]],
                 groups: Iterable[str] | dict[str, str | None] | None = None,
                 legacy: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """One record per utterance from its parts (a later part of the same kind replaces an
    earlier one: that is how ``--retry-failed`` re-does work without rewriting the log).

    The merged record holds the synthesis fields, ``metrics`` (full keys, e.g. "f0.gpe"),
    ``counts`` (namespaced, "f0.n_frames"), ``extra[group]``, ``errors[group]``,
    ``skipped[group]``, ``scores[group]`` (the raw metric part) and an overall ``status``:
    failed (synthesis failed, or every metric failed), partial (some metric failed),
    incomplete (a group in ``groups`` has no part yet), ok.

    ``groups`` as a dict {group: key}: only metric parts of those groups whose settings key
    (:func:`event_key`) is the given one count (key None: any part of the group); groups not
    in it are left out. As a list: parts of any settings.
    """
    keys = groups if isinstance(groups, dict) else None
    synth: dict[str, dict[str, Any]] = {}
    parts: dict[str, dict[str, dict[str, Any]]] = {}
    order: list[str] = []
    for ev in events:
        uid = ev.get("utt_id")
        if uid is None:
            continue
        if uid not in synth and uid not in parts:
            order.append(uid)
        if ev.get("part", "synthesis") == "synthesis":
            synth[uid] = ev
        elif keys is not None and (ev.get("group") not in keys or (
                keys[ev["group"]] is not None and event_key(ev, legacy) != keys[ev["group"]])):
            continue
        else:
            parts.setdefault(uid, {})[ev["group"]] = ev
    wanted = list(groups) if groups is not None else None
    merged: dict[str, dict[str, Any]] = {}
    for uid in order:
        base = dict(synth.get(uid, {"utt_id": uid, "status": "incomplete"}))
        base.pop("part", None)
        rec = {**base, "metrics": {}, "counts": {}, "extra": dict(base.get("extra") or {}),
               "errors": {}, "skipped": {}, "scores": {}, "cache": {}}
        for group, ev in parts.get(uid, {}).items():
            rec["scores"][group] = ev
            if ev.get("cache"):
                rec["cache"][group] = ev["cache"]
            status = ev.get("status")
            if status == "failed":
                rec["errors"][group] = ev.get("reason")
            elif status == "skipped":
                rec["skipped"][group] = ev.get("reason")
            else:
                rec["metrics"].update(ev.get("values") or {})
                rec["counts"].update({f"{group}.{k}": v for k, v in (ev.get("counts") or {}).items()})
                if ev.get("extra"):
                    rec["extra"][group] = ev["extra"]
        if base.get("status") == "ok":
            n_ok = sum(ev.get("status") == "ok" for ev in parts.get(uid, {}).values())
            if rec["errors"] and n_ok == 0 and not rec["skipped"]:
                rec.update(status="failed", stage="metrics",
                           reason="; ".join(f"{g}: {r}" for g, r in rec["errors"].items()))
            elif rec["errors"]:
                rec["status"] = "partial"
            elif wanted is not None and any(g not in parts.get(uid, {}) for g in wanted):
                rec["status"] = "incomplete"
        merged[uid] = rec
    return merged


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


def read_records(run_dir: str | Path, groups: Iterable[str] | None = None) -> list[dict[str, Any]]:
    return list(RecordStore(run_dir).load(groups).values())
