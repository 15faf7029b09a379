"""Run directory: per-utterance records (the source of truth) and the run manifest.

Layout::

    RUN/manifest.json     config, versions, git hash, system/metric settings, resampling, timings
    RUN/records.jsonl     one JSON object per *part* of an utterance's result, appended atomically
    RUN/outputs/          the system's output audio (:func:`resyn_bench.runfolder.output_name`
                          of the id); outputs that already are files are pointed at, not copied
    RUN/records.quarantine.jsonl   damaged lines moved aside by ``validate --repair``
    RUN/.resyn-bench.lock, RUN/.resyn-bench.reserve   the run lock and space reserve (runfolder)

Each utterance is written as parts (its synthesis, then one part per metric group and settings
key, :func:`metric_key`), so metric groups can be scored one at a time and a resumed run redoes
only the missing parts. Appends are checked writes of a complete line on an ``O_APPEND``
descriptor followed by fsync (a write that fails part way is cut back), so a killed run loses at
most the part in flight. On reopening, a torn last line (a kill in the middle of a write) is cut
off, a torn line elsewhere (not JSON) is skipped with a warning naming it (its part is redone),
and a later part of the same kind for the same id replaces an earlier one (that is how
``--retry-failed`` redoes work).

Every line is checked when read (:func:`scan_records`): a line that is JSON but not a record
(a list, a number, a metric part without ``group``, a non-string ``utt_id``, non-numeric metric
values) or is not UTF-8 raises :class:`RecordsError` naming the file and line;
``resyn-bench validate RUN --repair`` moves such lines to ``records.quarantine.jsonl``.

The typed definitions of the manifest and the parts, their schema version and the one
``upgrade`` of older runs are in :mod:`resyn_bench.runfiles`.
"""
from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resyn_bench.core.atomic import DiskFull, append_line
from resyn_bench.core.atomic import write_json_atomic as core_write_json_atomic
from resyn_bench.errors import UserError

RECORDS = "records.jsonl"
MANIFEST = "manifest.json"
OUTPUTS = "outputs"
#: where ``resyn-bench validate --repair`` moves damaged record lines (never deleted)
QUARANTINE = "records.quarantine.jsonl"

log_ = logging.getLogger("resyn_bench.store")


class RecordsError(UserError, ValueError):
    """A run file is damaged in a way the suite cannot read past (names the file and line)."""


class RecordsWriteError(UserError, OSError):
    """The record log cannot be written (other than a full disk): the run has to stop."""


@dataclass
class LineProblem:
    lineno: int
    reason: str
    raw: bytes
    torn: bool = False      # not JSON at all: a torn write; skipped and redone, not an error


_STATUSES = {"synthesis": ("ok", "failed"), "metric": ("ok", "failed", "skipped")}


def _is_number(v: Any) -> bool:
    return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))


def record_problem(ev: Any) -> str | None:
    """Why a decoded line is not a record part the suite wrote (None: it is fine)."""
    if not isinstance(ev, dict):
        kind = {list: "a JSON list", str: "a JSON string", bool: "a JSON boolean",
                type(None): "JSON null"}.get(type(ev), "a JSON number")
        return f"{kind}, not a record object"
    uid = ev.get("utt_id")
    if not isinstance(uid, str) or not uid:
        return f"utt_id must be a non-empty string, got {type(uid).__name__} {str(uid)[:60]!r}"
    part = ev.get("part", "synthesis")
    if part not in _STATUSES:
        return f"unknown part {str(part)[:40]!r} (expected synthesis or metric)"
    status = ev.get("status")
    if status is not None and status not in _STATUSES[part]:
        return f"{part} part of {uid[:60]!r}: unknown status {str(status)[:40]!r}"
    if part == "metric":
        if not isinstance(ev.get("group"), str) or not ev["group"]:
            return f"metric part of {uid[:60]!r} has no group name"
        for key in ("values", "counts"):
            value = ev.get(key)
            if value is None:
                continue
            if not isinstance(value, dict):
                return f"metric part {ev['group']!r} of {uid[:60]!r}: {key} is not an object"
            bad = [k for k, v in value.items() if not _is_number(v)]
            if bad:
                return (f"metric part {ev['group']!r} of {uid[:60]!r}: {key}[{bad[0]!r}] is "
                        f"{type(value[bad[0]]).__name__} {str(value[bad[0]])[:40]!r}, not a number")
    else:
        path = ev.get("output_path")
        if path is not None and not isinstance(path, str):
            return f"synthesis part of {uid[:60]!r}: output_path is not a string"
    for key in ("extra", "timings"):
        if ev.get(key) is not None and not isinstance(ev[key], dict):
            return f"{part} part of {uid[:60]!r}: {key} is not an object"
    return None


def scan_records(path: str | Path) -> tuple[list[dict[str, Any]], list[LineProblem]]:
    """Read a record log line by line: (the good parts, the problems with 1-based line numbers).

    A line that is not JSON is a torn write (``torn=True``); everything else in ``problems``
    is damage. A torn *last* line (no newline) is left to :meth:`RecordStore.repair`."""
    path = Path(path)
    if not path.exists():
        return [], []
    data = path.read_bytes()
    lines = data.split(b"\n")
    events: list[dict[str, Any]] = []
    problems: list[LineProblem] = []
    for i, raw in enumerate(lines, 1):
        item = _parse_line(i, raw, last=i == len(lines))  # the last has no newline after it
        if isinstance(item, LineProblem):
            problems.append(item)
        elif item is not None:
            events.append(item)
    return events, problems


def _parse_line(i: int, raw: bytes, last: bool) -> dict[str, Any] | LineProblem | None:
    """One line of a record log (without its newline): the part, a problem, or None (blank)."""
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
        utf8 = None
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace")
        utf8 = f"invalid UTF-8 at byte {exc.start}"
    try:
        ev = json.loads(text)
    except json.JSONDecodeError:
        what = f"not JSON ({utf8})" if utf8 else "torn line (incomplete JSON)"
        return LineProblem(i, what + (" at the end of the file" if last else ""), raw, torn=True)
    except RecursionError:
        return LineProblem(i, "JSON nested too deeply", raw)
    reason = utf8 or record_problem(ev)
    return LineProblem(i, reason, raw) if reason else ev


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """The good parts of a record log, read one line at a time (memory flat in the log's
    length), with the checks of :meth:`RecordStore.events`: a torn line is skipped with a
    warning; damaged lines raise :class:`RecordsError` (naming the first, after the last line
    was read, so the message is the one :meth:`RecordStore.events` gives)."""
    path = Path(path)
    if not path.exists():
        return
    damaged: list[LineProblem] = []
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            last = not raw.endswith(b"\n")
            item = _parse_line(i, raw[:-1] if not last else raw, last)
            if isinstance(item, LineProblem):
                if item.torn:
                    log_.warning("%s line %d: %s; skipped (that part is redone on resume)",
                                 path, item.lineno, item.reason)
                else:
                    damaged.append(item)
            elif item is not None:
                yield item
    if damaged:
        raise RecordsError(damaged_message(path, damaged))


#: what :func:`lean_part` keeps of a part: enough to count outcomes and failures
LEAN_FIELDS = frozenset({"part", "utt_id", "status", "stage", "reason", "error_kind", "speaker",
                         "target_speaker", "output_path", "group", "key", "values", "cache"})


def lean_part(part: dict[str, Any]) -> dict[str, Any]:
    """A record part without its per-utterance details (``extra``: F0 contours, transcripts,
    trial scores; ``counts``, ``timings``, texts and paths): statuses, failure reasons and
    metric values, what counting outcomes needs, at a fraction of the memory."""
    return {k: v for k, v in part.items() if k in LEAN_FIELDS}


def damaged_message(path: Path, problems: list[LineProblem]) -> str:
    first = problems[0]
    more = f" (and {len(problems) - 1} more damaged lines)" if len(problems) > 1 else ""
    return (f"{path} line {first.lineno}: {first.reason}{more}. List them with `resyn-bench "
            f"validate {path.parent}`; `--repair` moves them to {QUARANTINE} (nothing is deleted)")


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
    - ``{"part": "metric", "group": "f0", "key": "f0@<hash>", "utt_id", "status", "values",
      "counts", "extra"}`` (``key``: :func:`metric_key` of the group's settings).

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
        """The record parts, checked line by line. A torn line is skipped with a warning
        naming it (its part is missing, so a resumed run redoes it); any other damaged line
        raises :class:`RecordsError` naming the file and line."""
        events, problems = scan_records(self.path)
        damaged = [p for p in problems if not p.torn]
        if damaged:
            raise RecordsError(damaged_message(self.path, damaged))
        for p in problems:
            log_.warning("%s line %d: %s; skipped (that part is redone on resume)",
                         self.path, p.lineno, p.reason)
        return events

    def load(self, groups: Iterable[str] | dict[str, str | None] | None = None,
             lean: bool = False) -> dict[str, dict[str, Any]]:
        """Merged records. ``groups`` names the metric groups wanted; given as names, each
        group's record key (its settings, see :func:`metric_key`) comes from the run's manifest
        when it has one, so parts scored under other settings of the same group stay apart.
        ``lean``: the log is read line by line and each part loses its details
        (:func:`lean_part`): statuses, failure reasons and metric values only."""
        keys = groups if isinstance(groups, dict) else None
        legacy: dict[str, str] = {}
        if groups is not None and keys is None and (self.run_dir / MANIFEST).is_file():
            from resyn_bench.runfiles import NewerSchemaError, check_schema_version

            try:
                manifest = read_manifest(self.run_dir)
                check_schema_version(manifest, self.run_dir / MANIFEST)
            except NewerSchemaError:
                raise   # a newer layout is not read as if it were this one
            except (OSError, ValueError):
                manifest = {}
            # a manifest written before records were keyed has one setting per group: any part
            entries = manifest.get("metrics") or {}
            keys = {g: (entries.get(g) or {}).get("key") for g in groups}
            legacy = dict(manifest.get("legacy_metric_keys") or {})
        events = map(lean_part, iter_events(self.path)) if lean else self.events()
        return merge_events(events, groups if keys is None else keys, legacy)

    def append(self, record: dict[str, Any]) -> None:
        """Append one part as one complete line (checked write + fsync; raises
        :class:`~resyn_bench.core.atomic.DiskFull` on a full disk, leaving no partial line)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_clean(record), ensure_ascii=False, sort_keys=True) + "\n"
        try:
            append_line(self.path, line.encode("utf-8"))
        except DiskFull:
            raise
        except OSError as exc:
            raise RecordsWriteError(exc.errno, f"cannot append to {self.path}: "
                                               f"{exc.strerror or exc}") from exc


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
    """Checked, fsynced, atomic JSON write; the temporary file is removed if it fails."""
    core_write_json_atomic(path, _clean(obj), indent=2, sort_keys=True)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest as stored (a raw JSON object, any schema version). Readers of a run's
    settings and results use :func:`resyn_bench.runfiles.read_manifest` (typed, upgraded)."""
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecordsError(f"{path} is damaged: invalid UTF-8 at byte {exc.start}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RecordsError(f"{path} is damaged (not readable JSON: {exc}); the records in "
                           f"{RECORDS} are the source of truth") from None
    if not isinstance(manifest, dict):
        raise RecordsError(f"{path} is damaged: a JSON {type(manifest).__name__}, not an object")
    return manifest


def read_records(run_dir: str | Path, groups: Iterable[str] | None = None) -> list[dict[str, Any]]:
    return list(RecordStore(run_dir).load(groups).values())
