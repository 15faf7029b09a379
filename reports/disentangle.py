"""The disentanglement summary: how much content, speaker and pitch each stream of a system
carries, one row per system, every figure with its 95 % bootstrap CI.

Input is nothing but run folders (``manifest.json`` + ``records.jsonl``), grouped by their row
label (``config.label``, else the system name): whatever made a run - ``resyn-bench
disentangle``, ``resyn-bench run`` by hand, or scored outputs of another tool - it counts the
same. A run's role comes from its manifest:

========================  =========================================================
``experiment``            role
========================  =========================================================
``resynthesis``           the system's own resynthesis (content and F0 baseline)
``vc``                    voice conversion: records carry ``target_speaker``
``f0_flat``               F0 flattened (``-o f0_edit=flat``): VDE/FFE vs the original
``f0_shift``              ``-o f0_edit=shift:+N``: achieved vs requested shift
``f0_scale``              ``-o f0_edit=scale:X``: achieved vs requested range factor
========================  =========================================================

The requested edit is read from ``config.system_options.f0_edit`` of the run, or (another tool's
conversions, ``--conversions`` lists with an ``f0_edit`` column) from its records' ``f0_edit``.

Figures (``Figure``; rates as fractions, shown in %):

* content kept: the content metrics (``asr.wer``, ``asr.per``, ``asr.dwer``, ``asr.dper``;
  corpus-pooled) of the converted speech next to the same system's resynthesis, and their
  difference with a paired bootstrap CI (:func:`paired_count_delta`: conversions paired with
  the resynthesis of their source utterance);
* target similarity: ``spk.acc`` (speaker-ID accuracy w.r.t. the target), ``spk.eer``
  (target trials), ``spk.cos_centroid`` of the VC run; the chance level ``spk.chance``;
* source leakage: ``spk.source_acc``, ``spk.source_eer``, ``spk.source_cos`` of the same VC
  outputs judged against their *source* speaker (accuracy at chance / EER at 50 % = no leak);
* prosody (from the F0 group's stored contours of the VC run, 50 Hz, voiced frames; the
  register of a speaker = all voiced frames of that speaker's real recordings among the VC
  run's references, or, for a speaker enrolled from another dataset, of up to 50 of its
  recordings there, analysed with the run's f0 preset): ``|ΔF0| to target`` / ``to source`` = mean over outputs of the absolute
  difference (semitones) of the output's mean log-F0 and the speaker's; ``range / target`` =
  the output's log-F0 standard deviation over the target's; ``intonation r`` = Pearson
  correlation of the output's and the source's log-F0 on frames voiced in both (per output;
  log-F0 is affine in the speaker-normalised log-F0, so this is the correlation of the
  speaker-normalised contours);
* F0 carried by the units: VDE/FFE of the ``f0_flat`` run against the original F0, next to
  the resynthesis VDE/FFE and their paired difference (utterance means, paired bootstrap over
  the utterances both scored; near 0: the output follows the original F0 whatever the F0
  stream says); ``shift`` achieved = per output the median over
  frames voiced in both of 12 log2(edited / resynthesis) (the system's own resynthesis of the
  same utterance, on the same reference frames; the original F0 when there is no resynthesis
  run), averaged; ``scale`` achieved = per output the ratio of log-F0 standard deviations
  (edited / resynthesis) on those frames, averaged.

CIs: metric figures take the run's own bootstrap (speakers, then utterances, seeded:
:func:`~resyn_bench.reports.collate.summarize_run`); per-output prosody and F0-edit figures
are utterance means with :func:`~resyn_bench.reports.stats.bootstrap_ci_mean`, resampling
source speakers then utterances, the same design.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resyn_bench.errors import UsageError
from resyn_bench.reports.collate import RunSummary, summarize_run
from resyn_bench.reports.stats import CI, bootstrap_ci_mean
from resyn_bench.reports.tables import latex_escape, markdown_escape
from resyn_bench.runfiles import Manifest

#: run experiments this summary reads
EXPERIMENTS = ("resynthesis", "vc", "f0_flat", "f0_shift", "f0_scale")
CONTENT_KEYS = ("asr.wer", "asr.per", "asr.dwer", "asr.dper")
#: fewest frames voiced in both for a per-output F0 figure (a correlation of 3 frames says little)
MIN_FRAMES = 5


@dataclass
class Figure:
    """One number of the summary with its CI (``low``/``high``; None without one)."""

    key: str
    label: str
    group: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    n: int = 0
    percent: bool = False
    unit: str = ""
    note: str = ""          # why there is no value, or what it is read against

    @classmethod
    def from_ci(cls, key, label, group, ci: CI | None, value=None, n=0, **kw) -> Figure:
        if ci is None:
            return cls(key, label, group, value, None, None, n, **kw)
        return cls(key, label, group, ci.estimate if value is None else value, ci.low, ci.high,
                   n, **kw)

    def text(self, with_ci: bool = True, with_unit: bool = False) -> str:
        if self.value is None:
            return "–"
        scale = 100.0 if self.percent else 1.0
        digits = 1 if self.percent else 2
        out = f"{scale * self.value:.{digits}f}"
        if with_unit:
            out += " %" if self.percent else (f" {self.unit}" if self.unit else "")
        if with_ci and self.low is not None and self.high is not None:
            out += f" [{scale * self.low:.{digits}f}, {scale * self.high:.{digits}f}]"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("key", "label", "group", "value", "low", "high",
                                              "n", "percent", "unit", "note")}


@dataclass
class DisentangleRow:
    label: str
    runs: dict[str, str] = field(default_factory=dict)    # experiment -> run folder
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "runs": self.runs, "notes": self.notes,
                "figures": [f.to_dict() for f in self.figures]}


# --------------------------------------------------------------------------------------------
# per-output F0 figures from the stored contours
# --------------------------------------------------------------------------------------------

def semitones(f0_hz) -> np.ndarray:
    """12 log2(f / 1 Hz) of voiced values (f > 0); unvoiced frames give NaN."""
    f = np.asarray(f0_hz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, 12.0 * np.log2(np.where(f > 0, f, 1.0)), np.nan)


def _contour(record: dict[str, Any]) -> dict[str, Any] | None:
    ev = (record.get("scores") or {}).get("f0") or {}
    if record.get("status") == "failed" or ev.get("status") != "ok":
        return None
    return (ev.get("extra") or {}).get("contour")


def speaker_registers(records: list[dict[str, Any]]) -> dict[str, tuple[float, float, int]]:
    """``speaker -> (mean, std, frames)`` of the semitone log-F0 of the real recordings: the
    reference contours of the records, each source utterance counted once."""
    frames: dict[str, list[np.ndarray]] = defaultdict(list)
    seen: set[str] = set()
    for r in records:
        c = _contour(r)
        source = str(r.get("reference_path") or r["utt_id"].rpartition("__to_")[0] or r["utt_id"])
        if c is None or source in seen:
            continue
        seen.add(source)
        st = semitones(c["ref"])
        frames[str(r.get("speaker"))].append(st[np.isfinite(st)])
    out = {}
    for spk, parts in frames.items():
        x = np.concatenate(parts) if parts else np.zeros(0)
        if x.size >= MIN_FRAMES:
            out[spk] = (float(x.mean()), float(x.std()), int(x.size))
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < MIN_FRAMES or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


#: recordings per enrolled speaker analysed for its F0 register (cross-dataset targets)
ENROL_REGISTER_MAX = 50


def enrolment_registers(manifest: Manifest) -> dict[str, tuple[float, float, int]]:
    """F0 registers of the speakers a run enrolled from another dataset (its ``spk`` options
    ``enroll_dataset`` / ``enroll_root`` / ``enroll_split``), analysed with the run's own f0
    preset on up to :data:`ENROL_REGISTER_MAX` recordings per speaker; {} when the run
    enrolled none. A recording that cannot be analysed is left out."""
    from resyn_bench.audio import AudioError, ensure_rate, load_audio
    from resyn_bench.core.errors import MetricError
    from resyn_bench.datasets import load_dataset
    from resyn_bench.dsp.pitch import extract_f0

    spk, f0 = manifest.metrics.get("spk"), manifest.metrics.get("f0")
    options = spk.options if spk is not None else {}
    preset = (f0.options.get("preset") or f0.settings.get("preset")) if f0 is not None else None
    if not options.get("enroll_dataset") or not preset:
        return {}
    data = load_dataset(options["enroll_dataset"], options.get("enroll_root"),
                        options.get("enroll_split"), options.get("enroll_limit"))
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for utt in data.utterances:
        if len(parts[str(utt.speaker)]) >= ENROL_REGISTER_MAX:
            continue
        try:
            audio = ensure_rate(load_audio(utt.path), 16000, purpose="F0 register (enrolment)")
            track = extract_f0(audio.samples, 16000, preset)
        except (AudioError, MetricError, OSError):
            continue
        st = semitones(track.f0)
        parts[str(utt.speaker)].append(st[np.isfinite(st)])
    out = {}
    for spk, arrays in parts.items():
        x = np.concatenate(arrays) if arrays else np.zeros(0)
        if x.size >= MIN_FRAMES:
            out[spk] = (float(x.mean()), float(x.std()), int(x.size))
    return out


def prosody_values(vc_records: list[dict[str, Any]],
                   extra_registers: dict[str, tuple[float, float, int]] | None = None
                   ) -> dict[str, list]:
    """Per VC output: |ΔF0| to the target's and the source's register (semitones), the range
    ratio to the target's, the intonation correlation with the source contour. Lists aligned
    with ``speakers`` (the source speaker of each output, for the bootstrap). Registers come
    from the records' reference contours; ``extra_registers`` adds speakers without
    recordings in the dataset (enrolled from another one)."""
    registers = {**(extra_registers or {}), **speaker_registers(vc_records)}
    out: dict[str, list] = {"speakers": [], "to_target": [], "to_source": [], "range": [],
                            "intonation": []}
    for r in vc_records:
        c, target = _contour(r), r.get("target_speaker")
        if c is None or not target:
            continue
        ref, syn = semitones(c["ref"]), semitones(c["out"])
        voiced = syn[np.isfinite(syn)]
        both = np.isfinite(ref) & np.isfinite(syn)
        tgt, src = registers.get(str(target)), registers.get(str(r.get("speaker")))
        ok = voiced.size >= MIN_FRAMES
        out["speakers"].append(r.get("speaker"))
        out["to_target"].append(abs(float(voiced.mean()) - tgt[0]) if ok and tgt else None)
        out["to_source"].append(abs(float(voiced.mean()) - src[0]) if ok and src else None)
        out["range"].append(float(voiced.std()) / tgt[1] if ok and tgt and tgt[1] > 0 else None)
        out["intonation"].append(_corr(ref[both], syn[both]))
    return out


def edit_values(edit_records: list[dict[str, Any]], base_records: list[dict[str, Any]] | None
                ) -> dict[str, list]:
    """Per output of an F0-edit run: the achieved shift (median semitone difference) and range
    factor (ratio of log-F0 std) against the same utterance's resynthesis output when a
    resynthesis run is given, else against the original F0; frames voiced in both."""
    base = {r["utt_id"]: _contour(r) for r in (base_records or [])}
    out: dict[str, list] = {"speakers": [], "shift": [], "scale": []}
    for r in edit_records:
        c = _contour(r)
        if c is None:
            continue
        if base_records is not None:
            # the same id, else the source utterance's (an external edit of UTT__to_SPK
            # against a resynthesis of UTT)
            b = base.get(r["utt_id"], base.get(source_id(r["utt_id"])))
            if b is None or len(b["out"]) != len(c["out"]):
                continue   # no resynthesis of this utterance to compare with
            ref = semitones(b["out"])
        else:
            ref = semitones(c["ref"])
        syn = semitones(c["out"])
        both = np.isfinite(ref) & np.isfinite(syn)
        out["speakers"].append(r.get("speaker"))
        if both.sum() < MIN_FRAMES:
            out["shift"].append(None)
            out["scale"].append(None)
            continue
        a, b2 = ref[both], syn[both]
        out["shift"].append(float(np.median(b2 - a)))
        out["scale"].append(float(np.std(b2) / np.std(a)) if np.std(a) > 1e-9 else None)
    return out


def _mean_figure(key, label, group, values, speakers, n_boot, seed, **kw) -> Figure:
    defined = [v for v in values if v is not None]
    if not defined:
        why = f"no output with >= {MIN_FRAMES} frames voiced in both"
        note = kw.pop("note", "")
        return Figure(key, label, group, note=f"{note}; {why}" if note else why, **kw)
    if n_boot > 0:
        ci = bootstrap_ci_mean(values, speakers, n_boot=n_boot, seed=seed)
        return Figure.from_ci(key, label, group, ci, n=len(defined), **kw)
    return Figure(key, label, group, float(np.mean(defined)), n=len(defined), **kw)


def source_id(utt_id: str) -> str:
    """The source utterance of a conversion id (``UTT__to_TARGET`` -> ``UTT``)."""
    source, sep, _ = utt_id.rpartition("__to_")
    return source if sep else utt_id


def paired_count_delta(group, base_entries, other_entries, key: str, n_boot: int = 1000,
                       seed: int = 0):
    """``pooled(other) - pooled(base)`` of a count-pooled metric (WER, PER) with its paired
    bootstrap CI, paired by *source* utterance: each conversion's counts are summed into its
    source utterance's row (``UTT__to_B`` and ``UTT__to_C`` -> ``UTT``), so a resampled
    utterance brings its resynthesis and all its conversions together. Rows: the source
    utterances scored on both sides (sorted), resampled speakers then utterances.
    Returns a :class:`~resyn_bench.reports.stats.PairedResult` (None without common rows)."""
    from resyn_bench.reports.stats import paired_bootstrap_counts

    base = {e["utt_id"]: e for e in base_entries}
    other: dict[str, dict[str, float]] = {}
    for e in other_entries:
        row = other.setdefault(source_id(e["utt_id"]), {})
        for k, v in (e.get("counts") or {}).items():
            row[k] = row.get(k, 0.0) + float(v or 0.0)
    common = sorted(set(base) & set(other))
    if not common:
        return None
    keys = sorted({k for u in common for k in (base[u].get("counts") or {})} |
                  {k for u in common for k in other[u]})
    ma = np.array([[float((base[u].get("counts") or {}).get(k) or 0.0) for k in keys]
                   for u in common])
    mb = np.array([[other[u].get(k, 0.0) for k in keys] for u in common])

    def pool(vec):
        return group.pool(dict(zip(keys, np.asarray(vec, dtype=float).tolist(), strict=True))).get(key)

    return paired_bootstrap_counts(ma, mb, pool, [base[u].get("speaker") for u in common],
                                   n_boot=max(n_boot, 1), seed=seed)


def _delta_figure(key, label, group, result, percent: bool, n_boot: int) -> Figure:
    if result is None or result.delta is None:
        return Figure(key, label, group, note="no utterance scored in both runs", percent=percent)
    low, high = (result.low, result.high) if n_boot > 0 else (None, None)
    return Figure(key, label, group, result.delta, low, high, result.n_common, percent=percent)


# --------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------

def _metric(summary: RunSummary | None, key: str, label: str, group: str, **kw) -> Figure:
    m = summary.metrics.get(key) if summary is not None else None
    if m is None:
        why = "no run" if summary is None else f"{key} not scored"
        return Figure(key, label, group, note=why, **kw)
    stat = m.spec.table_stat
    value = m.value(stat)
    return Figure.from_ci(key, label, group, m.ci(stat), value=value, n=m.n,
                          percent=m.spec.percent, unit=m.spec.unit, **kw)


def _edit_request(summary: RunSummary) -> str | None:
    from resyn_bench.runfiles import read_manifest

    manifest = summary.manifest or read_manifest(summary.run_dir)
    edit = manifest.config.system_options.get("f0_edit")
    if edit is not None:
        return str(edit)
    # another tool's conversions: each record carries the edit its list row asked for
    asked = sorted({str(r["f0_edit"]) for r in summary.records if r.get("f0_edit")})
    if not asked:
        return None
    return asked[0] if len(asked) == 1 else "mixed (" + ", ".join(asked) + ")"


def build_row(label: str, runs: dict[str, RunSummary], n_boot: int = 1000, seed: int = 0
              ) -> DisentangleRow:
    """One system's summary from its runs (experiment -> summary; any may be missing)."""
    row = DisentangleRow(label, runs={k: str(s.run_dir) for k, s in runs.items()})
    res, vc = runs.get("resynthesis"), runs.get("vc")
    figs = row.figures
    # content kept
    content = [k for k in CONTENT_KEYS
               if any(s is not None and k in s.metrics and s.metrics[k].pooled is not None
                      for s in (res, vc))]
    for key in content:
        name = key.split(".")[1].upper()
        figs.append(_metric(vc, key, f"{name} (VC)", "content"))
        figs.append(_metric(res, key, f"{name} (resyn.)", "content"))
        if res is not None and vc is not None and res.groups.get("asr") is not None:
            result = paired_count_delta(res.groups["asr"], res.entries.get("asr", []),
                                        vc.entries.get("asr", []), key, n_boot, seed)
            figs.append(_delta_figure(f"{key}#delta", f"Δ{name} (VC − resyn.)", "content",
                                      result, True, n_boot))
    if not content:
        row.notes.append("content: no ASR figures (add asr to --metrics)")
    # target similarity and source leakage
    figs += [_metric(vc, "spk.acc", "target acc", "target"),
             _metric(vc, "spk.eer", "target EER", "target"),
             _metric(vc, "spk.cos_centroid", "target cos", "target"),
             _metric(vc, "spk.source_acc", "source acc", "source"),
             _metric(vc, "spk.source_eer", "source EER", "source"),
             _metric(vc, "spk.source_cos", "source cos", "source"),
             _metric(vc, "spk.chance", "chance acc", "source")]
    # prosody of the converted speech
    if vc is not None and "f0" in vc.groups:
        from resyn_bench.runfiles import read_manifest

        p = prosody_values(vc.records, enrolment_registers(vc.manifest or read_manifest(vc.run_dir)))
        sp = p["speakers"]
        figs += [_mean_figure("prosody.to_target_st", "|ΔF0| to target (st)", "prosody",
                              p["to_target"], sp, n_boot, seed, unit="st"),
                 _mean_figure("prosody.to_source_st", "|ΔF0| to source (st)", "prosody",
                              p["to_source"], sp, n_boot, seed, unit="st"),
                 _mean_figure("prosody.range_ratio", "range / target", "prosody",
                              p["range"], sp, n_boot, seed),
                 _mean_figure("prosody.intonation_r", "intonation r", "prosody",
                              p["intonation"], sp, n_boot, seed)]
    else:
        row.notes.append("prosody: no VC run scored with the f0 group")
    # F0 carried by the units
    flat = runs.get("f0_flat")
    figs += [_metric(flat, "f0.vde", "VDE (flat)", "f0"), _metric(flat, "f0.ffe", "FFE (flat)", "f0"),
             _metric(res, "f0.vde", "VDE (resyn.)", "f0"), _metric(res, "f0.ffe", "FFE (resyn.)", "f0")]
    if flat is not None and res is not None and res.groups.get("f0") is not None:
        from resyn_bench.reports.stats import compare

        for key in ("f0.vde", "f0.ffe"):
            a, b = res.entries.get("f0", []), flat.entries.get("f0", [])
            result = compare(res.groups["f0"], a, b, key, stat="mean", n_boot=max(n_boot, 1),
                             seed=seed) if a and b else None
            name = key.split(".")[1].upper()
            figs.append(_delta_figure(f"{key}#delta", f"Δ{name} (flat − resyn.)", "f0", result,
                                      True, n_boot))
    base = res.records if res is not None and "f0" in res.groups else None
    for exp, kind, unit in (("f0_shift", "shift", "st"), ("f0_scale", "scale", "x")):
        s = runs.get(exp)
        if s is None or "f0" not in s.groups:
            continue
        request = _edit_request(s) or "?"
        values = edit_values(s.records, base)
        figs.append(_mean_figure(f"f0.{kind}_achieved", f"{request} achieved ({unit})", "f0",
                                 values[kind], values["speakers"], n_boot, seed, unit=unit,
                                 note=f"requested {request}"))
        if base is None:
            row.notes.append(f"{kind}: measured against the original F0 (no resynthesis run)")
    return row


def collect_runs(run_dirs) -> dict[str, dict[str, Path]]:
    """Run folders grouped by row label, then experiment (a label with two runs of one
    experiment is an error naming both)."""
    from resyn_bench.reports.collate import experiment_label
    from resyn_bench.reports.labels import run_label
    from resyn_bench.runfiles import read_manifest

    out: dict[str, dict[str, Path]] = {}
    for d in run_dirs:
        d = Path(d)
        try:
            manifest = read_manifest(d)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--runs: {exc}") from None
        exp = experiment_label(manifest)
        if exp not in EXPERIMENTS:
            continue
        label = run_label(manifest)
        runs = out.setdefault(label, {})
        if exp in runs:
            raise UsageError(f"two {exp} runs labelled {label!r}: {runs[exp]} and {d}; give "
                             "one of them another label (`resyn-bench run --label`)")
        runs[exp] = d
    return out


def summarize(groups: dict[str, dict[str, Path]], n_boot: int = 1000, seed: int = 0
              ) -> list[DisentangleRow]:
    rows = []
    for label, runs in groups.items():
        summaries = {exp: summarize_run(path, n_boot=n_boot, seed=seed) for exp, path in runs.items()}
        rows.append(build_row(label, summaries, n_boot=n_boot, seed=seed))
    return rows


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------

def _columns(rows: list[DisentangleRow]) -> list[tuple[str, str, str]]:
    """(key, label, group) of every figure any row has, in first-seen order."""
    seen: dict[str, tuple[str, str, str]] = {}
    for r in rows:
        for f in r.figures:
            seen.setdefault(f.key + "|" + f.label, (f.key, f.label, f.group))
    return list(seen.values())


def _cell(row: DisentangleRow, key: str, label: str) -> Figure | None:
    return next((f for f in row.figures if f.key == key and f.label == label), None)


GROUP_TITLES = {"content": "content kept", "target": "target similarity",
                "source": "source leakage", "prosody": "prosody", "f0": "F0 carried by units"}

NOTE = ("Values with 95 % bootstrap CIs [low, high] (speakers, then utterances resampled); "
        "rates in %. Source leakage: the VC outputs judged against their source speaker "
        "(accuracy at the chance level and EER near 50 % = no source identity left). F0: "
        "flat-F0 VDE/FFE against the original F0 (near the resynthesis figures = the output "
        "follows the original F0 whatever the F0 stream says); achieved shift/scale measured "
        "against the system's own resynthesis.")


def render_markdown(rows: list[DisentangleRow]) -> str:
    cols = _columns(rows)
    head = ["system"] + [f"{GROUP_TITLES.get(g, g)}: {label}" for _, label, g in cols]
    lines = ["| " + " | ".join(markdown_escape(h) for h in head) + " |",
             "|" + "---|" * len(head)]
    for r in rows:
        cells = [markdown_escape(r.label)]
        for key, label, _ in cols:
            f = _cell(r, key, label)
            cells.append(markdown_escape(f.text()) if f else "–")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {markdown_escape(r.label)}: {markdown_escape(n)}" for r in rows for n in r.notes]
    return "\n".join(lines + ["", markdown_escape(NOTE)] + ([""] + notes if notes else [])) + "\n"


def render_text(rows: list[DisentangleRow]) -> str:
    """One block per system, one line per figure: readable in a terminal."""
    out = []
    for r in rows:
        out.append(f"== {r.label}")
        group = None
        for f in r.figures:
            if f.group != group:
                group = f.group
                out.append(f"  {GROUP_TITLES.get(group, group)}:")
            n = f"  n={f.n}" if f.value is not None and f.n else ""
            note = f"  ({f.note})" if f.note else ""
            out.append(f"    {f.label:24s}{f.text(with_unit=True)}{n}{note}")
        for n in r.notes:
            out.append(f"  note: {n}")
    return "\n".join(out) + "\n"


def render_latex(rows: list[DisentangleRow]) -> str:
    """A booktabs table, systems as columns (the summary is taller than wide)."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{ll" + "c" * len(rows) + "}", r"\toprule",
             " & ".join(["", ""] + [latex_escape(r.label) for r in rows]) + r" \\", r"\midrule"]
    group = None
    for key, label, g in _columns(rows):
        if group is not None and g != group:
            lines.append(r"\midrule")
        title = latex_escape(GROUP_TITLES.get(g, g)) if g != group else ""
        group = g
        cells = []
        for r in rows:
            f = _cell(r, key, label)
            cells.append(latex_escape(f.text()) if f else "--")
        lines.append(" & ".join([title, latex_escape(label)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{Disentanglement summary. " + latex_escape(NOTE) + "}",
              r"\label{tab:disentangle}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_html(rows: list[DisentangleRow]) -> str:
    """A self-contained page: figures as rows, systems as columns (as the LaTeX table), the
    notes under it; the bar plots beside it are linked when written."""
    from html import escape

    head = "".join(f"<th>{escape(r.label)}</th>" for r in rows)
    body, group = [], None
    for key, label, g in _columns(rows):
        title = escape(GROUP_TITLES.get(g, g)) if g != group else ""
        group = g
        cells = "".join(f"<td>{escape(f.text()) if (f := _cell(r, key, label)) else '–'}</td>"
                        for r in rows)
        body.append(f"<tr><th>{title}</th><td>{escape(label)}</td>{cells}</tr>")
    notes = "".join(f"<li>{escape(r.label)}: {escape(n)}</li>" for r in rows for n in r.notes)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Disentanglement summary</title><style>body{font-family:sans-serif;margin:2em}"
            "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;"
            "text-align:left}</style></head><body><h1>Disentanglement summary</h1>"
            f"<table><thead><tr><th></th><th></th>{head}</tr></thead><tbody>{''.join(body)}"
            f"</tbody></table><p>{escape(NOTE)}</p>"
            + (f"<ul>{notes}</ul>" if notes else "") + "</body></html>\n")


def render_csv(rows: list[DisentangleRow]) -> str:
    """One line per (system, figure), values in display units (% for rates)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["system", "group", "key", "label", "value", "ci_low", "ci_high", "n", "unit", "note"])
    for r in rows:
        for f in r.figures:
            s = 100.0 if f.percent else 1.0
            w.writerow([r.label, f.group, f.key, f.label,
                        *("" if v is None else repr(s * v) for v in (f.value, f.low, f.high)),
                        f.n, "%" if f.percent else f.unit, f.note])
    return buf.getvalue()


def plot_rows(rows: list[DisentangleRow], folder: Path) -> list[Path]:
    """A horizontal bar chart per system: the rate figures (%) with their CIs, the chance
    level as a dashed line on the speaker-ID bars."""
    from resyn_bench.reports.plots import new_figure, save_figure

    written = []
    for r in rows:
        figs = [f for f in r.figures if f.percent and f.value is not None
                and f.key != "spk.chance" and not f.key.endswith("#delta")]
        if not figs:
            continue
        fig = new_figure(7.0, 0.35 * len(figs) + 1.2)
        ax = fig.add_subplot(1, 1, 1)
        y = np.arange(len(figs))[::-1]
        vals = np.array([100 * f.value for f in figs])
        lo = np.array([100 * (f.value - f.low) if f.low is not None else 0.0 for f in figs])
        hi = np.array([100 * (f.high - f.value) if f.high is not None else 0.0 for f in figs])
        colours = {"content": "#4c72b0", "target": "#55a868", "source": "#c44e52", "f0": "#8172b2"}
        ax.barh(y, vals, xerr=np.vstack([np.maximum(lo, 0), np.maximum(hi, 0)]),
                color=[colours.get(f.group, "#937860") for f in figs], capsize=3)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{GROUP_TITLES.get(f.group, f.group)}: {f.label}" for f in figs])
        chance = r.figure("spk.chance")
        if chance is not None and chance.value is not None:
            ax.axvline(100 * chance.value, color="grey", linestyle="--", linewidth=1,
                       label="speaker-ID chance")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlim(0, max(100.0, float(np.max(vals + hi)) * 1.05))
        ax.set_xlabel("% (95 % bootstrap CI)")
        ax.set_title(f"Disentanglement: {r.label}")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in r.label).strip("_") or "system"
        written += save_figure(fig, folder / f"disentangle_{safe}")
    return written


def write_outputs(rows: list[DisentangleRow], folder: str | Path, plots: bool = True
                  ) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / "disentangle.md", "latex": folder / "disentangle.tex",
             "csv": folder / "disentangle.csv", "json": folder / "disentangle.json",
             "html": folder / "disentangle.html"}
    paths["html"].write_text(render_html(rows), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(rows), encoding="utf-8")
    paths["latex"].write_text(render_latex(rows), encoding="utf-8")
    paths["csv"].write_text(render_csv(rows), encoding="utf-8")
    paths["json"].write_text(json.dumps([r.to_dict() for r in rows], indent=2,
                                        ensure_ascii=False,
                                        default=lambda o: None), encoding="utf-8")
    if plots:
        for p in plot_rows(rows, folder / "plots"):
            if p.suffix == ".png":
                paths[f"plot {p.stem}"] = p
    return paths


__all__ = ["Figure", "DisentangleRow", "build_row", "paired_count_delta", "source_id", "collect_runs", "summarize", "prosody_values",
           "edit_values", "speaker_registers", "semitones", "render_markdown", "render_text",
           "render_latex", "render_html", "render_csv", "plot_rows", "write_outputs", "EXPERIMENTS"]
