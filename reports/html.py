"""A self-contained HTML report: one file, no network, readable from disk or as a mail attachment.

What it shows (built in the browser by the inline script, ``assets/report.js``, that
:mod:`.html_assets` loads):

* summary table (sortable; value ± 95 % CI half-width, significance marks, a stat switch) and a
  per-metric comparison plot with CI whiskers;
* per system: histograms of the per-utterance values and the worst-k utterances per metric;
* a drill-down of every (utterance, system) pair, filtered, sorted and paginated (only one page
  of rows is in the DOM, so 3 systems x 1000 utterances stay responsive), and a detail panel
  with the reference and output audio, the recognised words aligned to the reference (errors
  highlighted) and the reference vs output F0 contours;
* failed and partial utterances with their reasons;
* each run's manifest (versions, settings, git revision) and the SHA-256 of the run files the
  report was rendered from.

The data travels as one JSON blob in ``<script type="application/json">`` with ``<``, ``>`` and
``&`` written as ``\\u003c`` etc., so no data can close the element or inject markup; the script
inserts every string with ``textContent``. A Content-Security-Policy allows only the page's own
(hash-pinned) script and local or embedded media, so the page cannot fetch anything.

Audio is either linked (relative paths from the HTML file to the stored files: keep the report
next to the runs, or pass absolute links by writing it elsewhere) or embedded as base64
(:func:`estimate_audio_size` says how big that makes the file; each embedded file sits in its own
inert ``<script type="text/plain">`` element and is only decoded when its player is shown).

Only stored run files are read (``manifest.json``, ``records.jsonl``, the audio for embedding):
no torch, no model code.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import stat as _stat_mode
import urllib.parse
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from resyn_bench.core.atomic import write_text_atomic
from resyn_bench.core.hashing import sha256_file_or_none
from resyn_bench.errors import UsageError
from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.collate import RunSummary
from resyn_bench.reports.html_assets import script, style
from resyn_bench.reports.labels import run_names, run_titles

AUDIO_MODES = ("link", "embed")
_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
         ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".webm": "audio/webm"}


# --------------------------------------------------------------------------------------------
# Word alignment (for highlighting recognition errors)
# --------------------------------------------------------------------------------------------

def align_words(ref: str | Sequence[str], hyp: str | Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """A minimum-edit alignment of ``hyp`` to ``ref`` (whitespace tokens when strings).

    Returns ``(op, ref_word, hyp_word)`` in order, ``op`` one of ``=`` (match), ``s``
    (substitution), ``d`` (deletion: ref word missing from hyp), ``i`` (insertion). The number
    of ``s``+``d``+``i`` is the Levenshtein distance, i.e. the WER numerator. Ties in the
    backtrace prefer match/substitution, then deletion, then insertion."""
    r = ref.split() if isinstance(ref, str) else list(ref)
    h = hyp.split() if isinstance(hyp, str) else list(hyp)
    n, m = len(r), len(h)
    # dist[i][j]: edits between r[:i] and h[:j]
    dist = [list(range(m + 1))]
    for i in range(1, n + 1):
        row = [i] + [0] * m
        prev = dist[i - 1]
        ri = r[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + (ri != h[j - 1]), prev[j] + 1, row[j - 1] + 1)
        dist.append(row)
    ops: list[tuple[str, str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (r[i - 1] != h[j - 1]):
            ops.append(("=" if r[i - 1] == h[j - 1] else "s", r[i - 1], h[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            ops.append(("d", r[i - 1], None))
            i -= 1
        else:
            ops.append(("i", None, h[j - 1]))
            j -= 1
    ops.reverse()
    return ops


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------

class _Files:
    """Sizes of audio files (None: missing), each looked up once. Paths are plain normalised
    absolute strings: pathlib and realpath cost more than everything else in a 3000-record
    report."""

    def __init__(self):
        self._size: dict[str, int | None] = {}

    def size(self, path: str) -> int | None:
        if path not in self._size:
            try:
                st = os.stat(path)
                self._size[path] = st.st_size if _stat_mode.S_ISREG(st.st_mode) else None
            except OSError:
                self._size[path] = None
        return self._size[path]

    def resolve(self, path: str | None, run_dir: str) -> str | None:
        """A stored audio path as an absolute file name: absolute as is; relative to the run
        directory (outputs/NAME.wav), else to the working directory (a dataset root given
        relatively when the run was made)."""
        if not path:
            return None
        if os.path.isabs(path):
            return os.path.normpath(path)
        in_run = os.path.normpath(os.path.join(run_dir, path))
        if self.size(in_run) is None:
            in_cwd = os.path.abspath(path)
            if self.size(in_cwd) is not None:
                return in_cwd
        return in_run

    def record_audio(self, summary: RunSummary, rec: dict[str, Any]) -> tuple[str | None, str | None]:
        run_dir = os.path.abspath(summary.run_dir)
        return (self.resolve(rec.get("reference_path"), run_dir),
                self.resolve(rec.get("output_path"), run_dir))


def _b64_len(n: int) -> int:
    return 4 * math.ceil(n / 3)


def estimate_audio_size(summaries: Sequence[RunSummary]) -> int:
    """Bytes that embedding the audio adds to the HTML file: base64 of every distinct reference
    and output file (a reference shared by several systems counts once)."""
    files = _Files()
    seen: set[str] = set()
    total = 0
    for s in summaries:
        for rec in s.records:
            for path in files.record_audio(s, rec):
                if path is not None and path not in seen:
                    seen.add(path)
                    total += _b64_len(files.size(path) or 0)
    return total


def _format_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n} B"


def _is_audio(path: str) -> bool:
    """The file still reads as audio (a header check; it may have changed since the run)."""
    try:
        import soundfile as sf

        info = sf.info(path)
        return info.frames > 0 and info.samplerate > 0
    except Exception:
        return False


def _decoded(rec: dict[str, Any]) -> tuple[bool, bool]:
    """(reference decoded in the run, output decoded and scored in the run)."""
    ref_ok = bool(rec.get("reference_hash")) and rec.get("stage") != "reference"
    out_ok = rec.get("status") in ("ok", "partial") and bool(rec.get("output_path"))
    return ref_ok, out_ok


class _AudioTable:
    """Audio references for the data blob: relative links, or ids of embedded payloads."""

    def __init__(self, mode: str, out_dir: Path):
        if mode not in AUDIO_MODES:
            raise UsageError(f"audio must be one of {AUDIO_MODES}, got {mode!r}")
        self.mode = mode
        self.out_dir = os.path.abspath(out_dir)
        self.files = _Files()
        self.embedded: dict[str, str] = {}     # file -> payload id
        self.seen: set[str] = set()            # every existing file referenced

    def ref(self, path: str | None, scored: bool = True) -> dict[str, Any] | None:
        """``scored``: the run decoded (and scored) this file; only such files are embedded -
        anything else a record names is linked, never copied into the page."""
        if path is None:
            return None
        if self.files.size(path) is None:
            return {"path": path}
        self.seen.add(path)
        if self.mode == "embed" and scored and _is_audio(path):
            key = self.embedded.setdefault(path, f"a{len(self.embedded)}")
            return {"embed": key, "mime": _MIME.get(os.path.splitext(path)[1].lower(), "audio/wav"),
                    "path": os.path.basename(path)}
        try:
            href = urllib.parse.quote(os.path.relpath(path, self.out_dir).replace(os.sep, "/"))
        except ValueError:  # another drive (Windows): an absolute file URL
            href = Path(path).as_uri()
        return {"href": href, "path": path}

    def base64_size(self) -> int:
        """What embedding every referenced file adds (or added) to the page."""
        return sum(_b64_len(self.files.size(p) or 0) for p in self.seen)

    def payloads(self) -> str:
        """The embedded files as inert script elements (base64 has no '<', so none can close)."""
        parts = []
        for path, key in self.embedded.items():
            with open(path, "rb") as fh:
                data = base64.b64encode(fh.read()).decode("ascii")
            parts.append(f'<script type="text/plain" id="audio-{key}">{data}</script>')
        return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Data blob
# --------------------------------------------------------------------------------------------

def _num(v: Any) -> float | None:
    """A finite number rounded to 6 significant digits (display data, smaller JSON)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return float(f"{f:.6g}") if math.isfinite(f) else None


def _ci(ci) -> list[float | None] | None:
    return None if ci is None or ci.low is None else [_num(ci.low), _num(ci.high)]


def _labels(summaries: Sequence[RunSummary]) -> list[str]:
    """Run names where no column shows data or experiment (the report's one naming rule:
    labels.run_titles, as in the plots)."""
    return run_titles(summaries)


def _manifest_entry(summary: RunSummary) -> dict[str, Any]:
    from resyn_bench.runfiles import Manifest, load_manifest_dict, parse_manifest
    from resyn_bench.store import MANIFEST, RECORDS

    run_dir = Path(summary.run_dir)
    try:   # the stored manifest is shown as written; the facts come from its typed reading
        manifest = load_manifest_dict(run_dir)
        typed = parse_manifest(manifest, run_dir / MANIFEST)
    except (OSError, ValueError) as exc:
        manifest = {"error": f"manifest unreadable: {exc}"}
        typed = Manifest()
    env = typed.environment
    git = env.get("git") or {}
    cfg = typed.config
    packages = env.get("packages") or {}
    facts = [
        ("run directory", str(run_dir)),
        ("system", f"{summary.system} {json.dumps(cfg.system_options, sort_keys=True)}"),
        ("dataset", (f"{summary.dataset} (root {typed.dataset.root}, split "
                     f"{cfg.split}, limit {cfg.limit})")),
        ("utterances", (f"{summary.n_records}/{summary.n_total} recorded: ok {summary.n_ok}, "
                        f"partial {summary.n_partial}, failed {summary.n_failed}")),
        ("metrics", str(cfg.get("metrics"))),
        ("resyn-bench", str(typed.resyn_bench_version)),
        ("git", f"{git.get('commit')}{' (dirty)' if git.get('dirty') else ''}" if git else "not a git checkout"),
        ("python / platform", f"{env.get('python')} / {env.get('platform')}"),
        ("packages", ", ".join(f"{k} {v}" for k, v in packages.items() if v)),
        ("created", str(typed.created)),
        ("status", str(typed.status)),
    ]
    if typed.pooling_version is not None:
        facts.append(("pooling code", f"version {typed.pooling_version}"))
    for group, settings in summary.settings.items():
        facts.append((f"{group} settings", json.dumps(settings, sort_keys=True, ensure_ascii=False)))
    if typed.resampling:
        facts.append(("resampling", json.dumps(typed.resampling, sort_keys=True)))
    for name in (MANIFEST, RECORDS):
        facts.append((f"sha256 {name}", str(sha256_file_or_none(run_dir / name))))
    return {"facts": [[k, v] for k, v in facts], "manifest": manifest}


def _captions(summaries: Sequence[RunSummary]) -> dict[str, str]:
    try:
        from resyn_bench.reports.tables import caption

        return {st: caption(summaries, st) for st in ("auto", "mean", "pooled")}
    except Exception:  # the tables module is optional here: a plain note instead
        return {st: f"Statistic: {st}." for st in ("auto", "mean", "pooled")}


def _significance(summaries, sig, stat) -> dict[tuple[int, str], dict[str, Any]]:
    from resyn_bench.reports.stats import significant

    if sig is None:
        from resyn_bench.reports.tables import significance

        sig = significance(summaries, stat)
    baselines: dict[Any, int] = {}
    for i, s in enumerate(summaries):
        baselines.setdefault(s.dataset_key or s.dataset, i)
    labels = _labels(summaries)
    out = {}
    for (row, key), res in sig.items():
        base = baselines.get(summaries[row].dataset_key or summaries[row].dataset, 0)
        out[(row, key)] = {"p": _num(res.p_value), "delta": _num(res.delta), "low": _num(res.low),
                           "high": _num(res.high), "n": res.n_common,
                           "mark": bool(significant(res, 0.05)), "baseline": labels[base]}
    return out


def build_data(summaries: Sequence[RunSummary], out_dir: Path, audio: str = "link",
               sig: dict | None = None, worst_k: int = 10, page_size: int = 50,
               stat: str = "auto", title: str = "") -> tuple[dict[str, Any], _AudioTable]:
    """The report's data blob (JSON-able) and the audio table (embedded payloads)."""
    audio_table = _AudioTable(audio, Path(out_dir).resolve())
    labels = _labels(summaries)
    row_labels = run_names(summaries)
    # metric columns: every metric of any run, in first-seen order
    specs: dict[str, Any] = {}
    for s in summaries:
        for key, m in s.metrics.items():
            specs.setdefault(key, m.spec)
    keys = list(specs)
    sigs = _significance(summaries, sig, stat) if len(summaries) > 1 else {}

    systems = []
    for i, s in enumerate(summaries):
        summ = {}
        for key, m in s.metrics.items():
            summ[key] = {"mean": _num(m.mean), "std": _num(m.std), "pooled": _num(m.pooled), "n": m.n,
                         "n_unit": getattr(m, "n_unit", "utterances"),
                         "ci_mean": _ci(m.ci_mean), "ci_pooled": _ci(m.ci_pooled),
                         "sig": sigs.get((i, key))}
        systems.append({"system": s.system, "dataset": s.dataset, "label": labels[i],
                        "row_label": row_labels[i],
                        "run_dir": str(s.run_dir), "n_total": s.n_total, "n_records": s.n_records,
                        "n_ok": s.n_ok, "n_partial": s.n_partial, "n_failed": s.n_failed,
                        "failures": dict(s.failures), "summary": summ, "worst": {},
                        "unfinished": s.unfinished,
                        "bitrate": _num(getattr(s, "bitrate", None)),
                        "bitrate_source": getattr(s, "bitrate_source", None)})

    # utterances: the union over runs, in run order then id order
    index: dict[str, int] = {}
    utts: list[dict[str, Any]] = []
    for si, s in enumerate(summaries):
        for rec in s.records:
            uid = str(rec["utt_id"])
            ui = index.get(uid)
            ref_path, out_path = audio_table.files.record_audio(s, rec)
            ref_scored, out_scored = _decoded(rec)
            if ui is None:
                ui = index[uid] = len(utts)
                utts.append({"id": uid, "spk": rec.get("speaker"), "text": rec.get("text"),
                             "ref": audio_table.ref(ref_path, ref_scored), "f0r": [],
                             "s": [None] * len(summaries)})
            u = utts[ui]
            if ref_path is not None and (u["ref"] is None or (ref_scored and "embed" not in u["ref"]
                                                              and audio_table.mode == "embed")):
                u["ref"] = audio_table.ref(ref_path, ref_scored)
            entry: dict[str, Any] = {"st": rec.get("status", "?")}
            if rec.get("status") == "failed":
                entry.update(stage=rec.get("stage"), reason=rec.get("reason"))
            if rec.get("errors"):
                entry["errors"] = {str(g): str(r) for g, r in rec["errors"].items()}
            if rec.get("output_path") or rec.get("status") == "failed":
                entry["out"] = audio_table.ref(out_path, out_scored)
            values = rec.get("metrics") or {}
            if values:
                entry["v"] = [_num(values.get(k)) for k in keys]
            extra = rec.get("extra") or {}
            asr = extra.get("asr") or {}
            if isinstance(asr.get("ref"), str) and isinstance(asr.get("hyp"), str):
                entry["w"] = [list(op) for op in align_words(asr["ref"], asr["hyp"])]
                entry["hyp"] = asr["hyp"]
            if asr.get("outlier"):
                entry["ol"] = str(asr["outlier"])
            loop = (asr.get("recognizer") or {}).get("loop_suspected") \
                if isinstance(asr.get("recognizer"), dict) else None
            if loop:
                entry["loop"] = str(loop)
            if isinstance(asr.get("ref_phones"), str) and isinstance(asr.get("hyp_phones"), str):
                entry["ph"] = [asr["ref_phones"], asr["hyp_phones"]]
                # phone errors highlighted like the words (same alignment, ARPAbet tokens)
                entry["pd"] = [list(op) for op in align_words(asr["ref_phones"], asr["hyp_phones"])]
            contour = (extra.get("f0") or {}).get("contour")
            if contour and contour.get("ref") is not None:
                try:
                    r = u["f0r"].index(contour["ref"])  # the reference track once per utterance
                except ValueError:
                    r = len(u["f0r"])
                    u["f0r"].append(contour["ref"])
                entry["f0"] = {"t0": contour.get("t0", 0.0), "dt": contour.get("dt", 0.02),
                               "o": contour.get("out") or [], "r": r}
            u["s"][si] = entry

    # worst-k utterances per system and metric
    for si in range(len(summaries)):
        for mi, key in enumerate(keys):
            spec = specs[key]
            scored = [(u["s"][si]["v"][mi], ui) for ui, u in enumerate(utts)
                      if u["s"][si] is not None and u["s"][si].get("v") and u["s"][si]["v"][mi] is not None]
            if not scored:
                continue
            # worst first: lowest for higher-is-better metrics, highest otherwise; ties by id
            scored.sort(key=lambda t: (t[0] if spec.higher_is_better else -t[0], utts[t[1]]["id"]))
            systems[si]["worst"][key] = [[ui, v] for v, ui in scored[:worst_k]]

    metrics = [{"key": k, "label": sp.label, "unit": sp.unit, "percent": sp.percent,
                "higher": sp.higher_is_better, "table_stat": sp.table_stat,
                "book": bool(getattr(sp, "bookkeeping", False)),
                "description": sp.description} for k, sp in specs.items()]
    data = {"title": title, "stat": stat, "page_size": int(page_size), "worst_k": int(worst_k),
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "captions": _captions(summaries), "metrics": metrics, "systems": systems, "utts": utts,
            "manifests": [_manifest_entry(s) for s in summaries]}
    return data, audio_table


def _json_for_script(obj: Any) -> str:
    """JSON that is inert inside a ``<script>`` element: '<', '>' and '&' only occur inside JSON
    strings, where their \\u escapes mean the same characters."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    # No network: nothing may be fetched except media the report links locally or embeds.
    return ("default-src 'none'; "
            f"script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
            "media-src 'self' file: data: blob:; base-uri 'none'; form-action 'none'")


def _static_value(m: dict[str, Any], v: float) -> str:
    from resyn_bench.reports.tables import format_value

    return format_value(MetricSpec(m["key"], m["label"], m["higher"], m["unit"] or "",
                                   bool(m["percent"])), v)


def static_summary_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The summary table as text (header, rows) in the report's own statistic, the same cells
    the script draws first: value, CI (``± h`` or ``[low, high]`` where ± would leave the
    metric's range), ``*`` for a significant difference from the baseline; an unfinished run's
    system carries the dagger."""
    from resyn_bench.reports.tables import UNFINISHED_MARK, Cell, interval_text

    metrics = data["metrics"]
    has_bitrate = any(s.get("bitrate") is not None for s in data["systems"])
    head = ["Dataset", "System"]
    for m in metrics:
        unit = "%" if m["percent"] else m["unit"]
        head.append(f"{m['label']}{f' ({unit})' if unit else ''} {'↑' if m['higher'] else '↓'}")
    head += (["Bitrate (bps)"] if has_bitrate else []) + ["N"]
    rows = []
    for s in data["systems"]:
        row = [s["dataset"], s.get("row_label", s["label"])
               + (f" {UNFINISHED_MARK}" if s.get("unfinished") else "")]
        for m in metrics:
            x = s["summary"].get(m["key"])
            st = "pooled" if x is None or m["table_stat"] == "pooled" or x.get("mean") is None \
                else "mean"
            v = None if x is None else x.get(st)
            if v is None:
                row.append("–")
                continue
            text = _static_value(m, v)
            ci = x.get("ci_" + st)
            if ci and ci[0] is not None and ci[1] is not None and m["unit"] != "count":
                spec = MetricSpec(m["key"], m["label"], m["higher"], m["unit"] or "",
                                  bool(m["percent"]))
                text += interval_text(spec, Cell(value=v, low=ci[0], high=ci[1]))
            if x.get("sig") and x["sig"].get("mark"):
                text += "*"
            row.append(text)
        if has_bitrate:
            b = s.get("bitrate")
            row.append("–" if b is None else (f"{b:.0f}" if float(b).is_integer() else f"{b:.1f}"))
        row.append(f"{s['n_ok'] + s['n_partial']}/{s['n_total']}")
        rows.append(row)
    return head, rows


def _static_tables(data: dict[str, Any]) -> dict[str, str]:
    """HTML of the tables as they read without JavaScript; the script replaces them with its
    interactive versions (sorting, statistic switch, drill-down)."""
    e = html.escape
    head, rows = static_summary_rows(data)
    summary = ("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
               + "".join("<tr>" + "".join(
                   ('<td class="num">' if j >= 2 else "<td>") + e(c) + "</td>"
                   for j, c in enumerate(r))
                   + "</tr>" for r in rows) + "</tbody>")
    fails = []
    for s in data["systems"]:
        if s.get("unfinished"):
            fails.append(f"<li><strong>{e(s['label'])}: not finished</strong>: "
                         f"{e(s['unfinished'])}</li>")
        for reason, n in sorted((s.get("failures") or {}).items()):
            fails.append(f"<li>{e(s['label'])}: {e(str(reason))} × {int(n)}</li>")
    failures = ("<ul>" + "".join(fails) + "</ul>") if fails else \
        '<p class="muted">No failed utterances.</p>'
    # the first page of the per-utterance table, in the order the script lists it
    metrics = data["metrics"]
    head = ["Utterance", "Speaker", "System", "Status"] + [
        f"{m['label']}{(' (' + ('%' if m['percent'] else m['unit']) + ')') if (m['percent'] or m['unit']) else ''}"
        for m in metrics] + ["Text"]
    drill_rows, total = [], 0
    for u in data["utts"]:
        for si, entry in enumerate(u["s"]):
            if entry is None:
                continue
            total += 1
            if len(drill_rows) >= data["page_size"]:
                continue
            vals = entry.get("v") or [None] * len(metrics)
            text = u.get("text") or ""
            drill_rows.append([u["id"], u.get("spk") or "", data["systems"][si]["label"],
                               entry.get("st", "?")]
                              + ["–" if v is None else _static_value(m, v)
                                 for m, v in zip(metrics, vals, strict=True)]
                              + [text if len(text) <= 80 else text[:79] + "…"])
    drill = ("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
             + "".join("<tr>" + "".join(
                 ('<td class="num">' if 4 <= j < 4 + len(metrics) else "<td>") + e(str(c)) + "</td>"
                 for j, c in enumerate(r)) + "</tr>" for r in drill_rows) + "</tbody>")
    drill_note = (f"rows 1–{len(drill_rows)} of {total}" if drill_rows else "no rows") + \
        ("; the rest in records.jsonl of each run" if total > len(drill_rows) else "")
    cards = []
    for si, mf in enumerate(data.get("manifests") or []):
        rows = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>"
                       for k, v in mf.get("facts", []))
        cards.append(f'<div class="card"><h3>{e(data["systems"][si]["label"])}</h3>'
                     f'<table class="kv"><tbody>{rows}</tbody></table></div>')
    return {"summary": summary, "failures": failures, "drill": drill, "drill_note": e(drill_note),
            "manifest": "".join(cards), "note": e(data["captions"].get(data["stat"], ""))}


def _unfinished_banner(data: dict[str, Any]) -> str:
    from resyn_bench.reports.tables import UNFINISHED_MARK

    late = [s for s in data["systems"] if s.get("unfinished")]
    if not late:
        return ""
    items = "".join(f"<li>{html.escape(s['label'])} ({html.escape(s['run_dir'])}): "
                    f"{html.escape(s['unfinished'])}</li>" for s in late)
    return (f'<div class="warning" role="alert"><strong>{UNFINISHED_MARK} Not finished:</strong> '
            f"these rows cover only the utterances done so far.<ul>{items}</ul></div>")


def render_html(data: dict[str, Any], audio_table: _AudioTable, audio_note: str) -> str:
    js, css = script(), style()          # the package's asset files
    if "</script" in js.lower():
        raise AssertionError("the inline script must not contain a closing script tag")
    title = data["title"]
    e = html.escape
    runs = ", ".join(s["label"] for s in data["systems"])
    static = _static_tables(data)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{e(_csp(js), quote=False)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="resyn-bench">
<title>{e(title)}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{e(title)}</h1>
<div class="muted">Runs: {e(runs)} · generated {e(data["generated"])} · {e(audio_note)}</div>
<nav><a href="#summary">Summary</a><a href="#systems">Per system</a><a href="#drilldown">Utterances</a><a href="#failures-h">Failures</a><a href="#manifest-h">Manifest</a></nav>
<noscript><p class="muted">The tables below read without JavaScript; sorting, the statistic
switch, the charts and the per-utterance drill-down need it.</p></noscript>
{_unfinished_banner(data)}
</header>
<main>
<h2 id="summary">Summary</h2>
<div class="controls"><label>Statistic <select id="stat-select"></select></label></div>
<div class="scroll"><table id="summary-table">{static["summary"]}</table></div>
<p id="stat-note" class="muted small">{static["note"]}</p>
<h3>Systems compared (95 % CI whiskers)</h3>
<div id="compare-plots" class="plots"></div>
<h2 id="systems">Per system</h2>
<div id="system-plots"></div>
<h2 id="drilldown">Utterances</h2>
<div class="controls">
<input type="search" id="drill-search" placeholder="filter: id, speaker, text, recognised words">
<select id="drill-system"></select><select id="drill-status"></select>
<button type="button" id="drill-prev">&larr; previous</button><span id="drill-pos">{static["drill_note"]}</span><button type="button" id="drill-next">next &rarr;</button>
<span class="muted small">click a row for audio, transcripts and F0 contours</span>
</div>
<section id="detail" hidden></section>
<div class="scroll"><table id="drill">{static["drill"]}</table></div>
<h2 id="failures-h">Failed and partial utterances</h2>
<div id="failures">{static["failures"]}</div>
</main>
<footer>
<h2 id="manifest-h">Run manifests</h2>
<div id="manifest">{static["manifest"]}</div>
</footer>
<script type="application/json" id="report-data">{_json_for_script(data)}</script>
{audio_table.payloads()}
<script>{js}</script>
</body>
</html>
"""


def write_html(summaries: Sequence[RunSummary], out_path: str | Path, *, audio: str = "link",
               sig: dict | None = None, title: str | None = None, worst_k: int = 10,
               page_size: int = 50, stat: str = "auto") -> Path:
    """Write the report for ``summaries`` (from :func:`~.collate.summarize_run`) to one HTML file.

    ``audio``: ``link`` (relative links from the file's folder to the stored audio) or ``embed``
    (base64 inside the file; :func:`estimate_audio_size` says how much that adds). ``sig``: the
    precomputed :func:`~.tables.significance` for ``stat`` (computed here when None; pass ``{}``
    for no marks). ``worst_k``: utterances listed per metric and system. ``page_size``: drill-down
    rows per page."""
    if audio not in AUDIO_MODES:
        raise UsageError(f"audio must be one of {AUDIO_MODES}, got {audio!r}")
    if not summaries:
        raise ValueError("write_html needs at least one run summary")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if title is None:
        datasets = sorted({s.dataset for s in summaries})
        title = "Resynthesis report: " + ", ".join(datasets)
    data, table = build_data(summaries, out.parent, audio=audio, sig=sig, worst_k=worst_k,
                             page_size=page_size, stat=stat, title=title)
    if audio == "embed":
        note = f"audio embedded ({_format_bytes(table.base64_size())})"
    else:
        note = (f"audio linked relative to this file (embedding would add "
                f"{_format_bytes(table.base64_size())})")
    data["audio"] = {"mode": audio, "note": note}
    return write_text_atomic(out, render_html(data, table, note))


__all__ = ["write_html", "estimate_audio_size", "align_words", "build_data", "render_html",
           "AUDIO_MODES"]
