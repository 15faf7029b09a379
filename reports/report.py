"""Write the report files for a set of runs and format run summaries for the terminal."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from resyn_bench.core.atomic import write_json_atomic
from resyn_bench.errors import UsageError
from resyn_bench.reports.collate import RunSummary, rename_runs, summarize_run
from resyn_bench.reports.labels import summary_label
from resyn_bench.reports.layouts import Layout, resolve_layouts
from resyn_bench.reports.tables import (
    CI_MODES,
    UNFINISHED_MARK,
    SignificanceCache,
    build_table,
    format_value,
    render_csv,
    render_latex,
    render_markdown,
)

log = logging.getLogger("resyn_bench.reports")

FORMATS = ("md", "tex", "csv", "html")
_KIND = {"md": "markdown", "tex": "latex", "csv": "csv"}


def table_stem(layout: Layout) -> str:
    """File stem of a layout's tables: ``table`` for the paper's Table 1, ``table_<name>``
    otherwise (``table_all``, ``table_vc``, ``table_codec``)."""
    return "table" if layout.name == "paper" else f"table_{layout.name}"


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, stat: str = "auto", *,
                 layouts: Sequence[str | Path | Layout] | None = None,
                 formats: Sequence[str] = FORMATS, ci: str = "pm", audio: str = "link",
                 plots: bool = True, n_boot: int = 1000,
                 summaries: Sequence[RunSummary] | None = None,
                 rename: dict[str, str] | None = None) -> dict[str, Path]:
    """Collate ``run_dirs`` (or the given ``summaries``) and write to ``out_dir``:

    * per layout (default ``paper``, ``vc``, ``codec``, ``all``; one whose table would be empty,
      e.g. ``vc`` without VC runs, is skipped): ``<stem>.md``, ``<stem>.tex``, ``<stem>.csv``
      with stem ``table`` for ``paper`` and ``table_<name>`` for the others;
    * ``summary.json`` (every run's summary); ``plots/`` (PNG + PDF, unless ``plots=False``);
    * ``report.html`` (when ``html`` is in ``formats``).

    Returns {what: path}: the first table's files under ``markdown``/``latex``/``csv``, the
    others under ``markdown (<layout>)`` etc., plus ``json``, ``html``, ``plots``."""
    formats = [f.strip().lower() for f in formats if f.strip()]
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise UsageError(f"unknown report format(s) {bad}: choose from {', '.join(FORMATS)}")
    if ci not in CI_MODES:
        raise UsageError(f"ci must be one of {CI_MODES}, got {ci!r}")
    summaries = list(summaries) if summaries is not None else \
        [summarize_run(r, n_boot=n_boot) for r in run_dirs]
    if rename:
        rename_runs(summaries, rename)
    for s in summaries:
        if s.unfinished:
            log.warning("report: WARNING: run %s (%s) is not finished: %s - its rows (marked %s) "
                        "cover only the utterances done so far", s.run_dir,
                        summary_label(s), s.unfinished, UNFINISHED_MARK)
        if s.manifest is not None:
            from resyn_bench.runfiles import pooling_warning

            pooled = pooling_warning(s.manifest, s.run_dir)
            if pooled:
                log.warning("report: WARNING: %s", pooled)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"report --out {out} is a file, not a folder: name a folder")
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_index(out)
    paths: dict[str, Path] = {}
    files: list[Path] = []       # every file this report writes, for the index
    sig = SignificanceCache(summaries)  # paired tests once per statistic, shared by every table
    first = True
    for layout in resolve_layouts(layouts):
        table = build_table(summaries, layout, stat, sig)
        if table.empty:
            # worth a word only when the layout was asked for by name
            (log.info if layouts else log.debug)(
                "report: layout %r has nothing to show for these runs; skipped", layout.name)
            continue
        stem = table_stem(layout)
        for fmt in ("md", "tex", "csv"):
            if fmt not in formats:
                continue
            path = out / f"{stem}.{fmt}"
            path.write_text(_render(table, fmt, ci), encoding="utf-8")
            files.append(path)
            paths[_KIND[fmt] if first else f"{_KIND[fmt]} ({layout.name})"] = path
        first = False
    paths["json"] = out / "summary.json"
    paths["json"].write_text(json.dumps({"stat": stat, "runs": [s.to_dict() for s in summaries]},
                                        indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    files.append(paths["json"])
    if plots:
        from resyn_bench.reports.plots import write_plots

        try:
            written = write_plots(summaries, out / "plots")
        except ImportError as exc:     # matplotlib missing: the tables still count
            log.warning("report: no plots (%s)", exc)
            written = []
        if written:
            paths["plots"] = out / "plots"
            files += [Path(p) for p in written]
    if "html" in formats:
        html = _write_html(summaries, out / "report.html", audio=audio, sig=sig.get(stat))
        paths["html"] = html
        files.append(html)
    _finish_folder(out, files, previous, summaries)
    paths["index"] = out / INDEX
    return paths


#: the file in a report folder that lists what the suite wrote there (and may remove)
INDEX = ".resyn-bench-report.json"
#: names an earlier report of this suite writes (used to warn about untracked leftovers)
_OWN_PATTERNS = ("table.md", "table.tex", "table.csv", "table_*.md", "table_*.tex", "table_*.csv",
                 "summary.json", "report.html", "plots/*.png", "plots/*.pdf")


def _read_index(out: Path) -> list[str] | None:
    path = out / INDEX
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("report: ignoring unreadable %s (%s)", path, exc)
        return None
    files = data.get("files") if isinstance(data, dict) else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else None


def _finish_folder(out: Path, files: list[Path], previous: list[str] | None,
                   summaries: Sequence[RunSummary]) -> list[str]:
    """Write the index of this report's files and remove the files an earlier report of the
    suite wrote there that this one did not (only those the earlier index lists, only inside
    ``out``). Files without an index that look like an earlier report's are named, not removed.
    Returns the relative paths removed."""
    root = out.resolve()
    written = sorted({p.resolve().relative_to(root).as_posix() for p in files})
    removed = []
    if previous is not None:
        for rel in sorted(set(previous) - set(written) - {INDEX}):
            target = (root / rel).resolve()
            if root not in target.parents or not target.is_file():
                continue                   # outside the folder, or gone: leave it alone
            target.unlink()
            removed.append(rel)
        for rel in removed:                # now-empty folders the suite made (plots/)
            parent = (root / rel).parent
            if parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        if removed:
            log.info("report: removed %d file(s) of the previous report in %s that this one "
                     "does not write: %s", len(removed), out, ", ".join(removed))
    else:
        import fnmatch

        leftovers = sorted(
            p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
            and p.relative_to(root).as_posix() not in written
            and any(fnmatch.fnmatch(p.relative_to(root).as_posix(), pat) for pat in _OWN_PATTERNS))
        if leftovers:
            log.warning("report: %s holds files this report did not write and no index says who "
                        "did (an older report?): %s - delete them or use a fresh --out folder",
                        out, ", ".join(leftovers[:10]) + (" ..." if len(leftovers) > 10 else ""))
    write_json_atomic(out / INDEX, {"written_by": "resyn-bench report", "files": written,
                                    "runs": [str(s.run_dir) for s in summaries]})
    return removed


def _render(table, fmt: str, ci: str) -> str:
    if fmt == "md":
        return render_markdown(table, ci)
    if fmt == "tex":
        return render_latex(table, ci)
    return render_csv(table)


def _write_html(summaries, path: Path, *, audio: str, sig) -> Path:
    from resyn_bench.reports.html import write_html

    return Path(write_html(summaries, path, audio=audio, sig=sig))


_BIDI = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069}


def terminal_safe(text: str) -> str:
    """``text`` with control characters (C0 including ESC, DEL, C1 including CSI/OSC) and bidi
    overrides written as escapes (``\\x1b``), so ids and reasons from a run folder cannot move
    the cursor, retitle or recolour the terminal, or reorder what is shown."""
    import unicodedata

    if text.isprintable():
        return text
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(c) == "Cc" or ord(c) in _BIDI else c for c in text)


def terminal_safe_json(text: str) -> str:
    """JSON text with the control characters JSON leaves raw (C1 such as U+009B CSI, DEL, bidi
    overrides) written as ``\\uXXXX`` escapes: the same JSON value, harmless in a terminal."""
    import unicodedata

    if text.isprintable():
        return text
    return "".join(f"\\u{ord(c):04x}" if c != "\n" and (unicodedata.category(c) == "Cc"
                                                       or ord(c) in _BIDI) else c for c in text)


def _overlap_note(run_dir) -> str | None:
    """The run's training-set overlap warning (manifest ``training_overlap.note``), if any."""
    from resyn_bench.runfiles import read_manifest

    try:
        return read_manifest(run_dir).overlap_note
    except (OSError, ValueError):
        return None


def format_summary(s: RunSummary, utterances: bool = False) -> str:
    """The run's summary for a terminal (every line passed through :func:`terminal_safe`)."""
    return "\n".join(terminal_safe(line) for line in _format_summary(s, utterances).split("\n"))


def _format_summary(s: RunSummary, utterances: bool = False) -> str:
    lines = [f"run      {s.run_dir}", f"system   {s.system}", f"dataset  {s.dataset}",
             f"records  {s.n_records}/{s.n_total} (ok {s.n_ok}, partial {s.n_partial}, "
             f"failed {s.n_failed})" + ("" if s.complete else "  [incomplete: resume the run]")]
    if s.unfinished:
        lines.append(f"WARNING  run not finished: {s.unfinished}; the figures below cover only "
                     "the utterances done so far")
    from resyn_bench.reports.model_notes import group_label

    for group, settings in s.settings.items():
        if "preset" in settings:
            lines.append(f"{group:8s} preset {settings['preset']}")
        label = group_label(group, settings)
        if label:
            lines.append(f"{group:8s} model {label}")
    # per-utterance ASR outliers (a looping recogniser): one can decide a system's rank
    outliers = [str(r["utt_id"]) for r in s.records
                if isinstance((r.get("extra") or {}).get("asr"), dict) and r["extra"]["asr"].get("outlier")]
    if outliers:
        shown = ", ".join(outliers[:10]) + (f" (+{len(outliers) - 10} more)" if len(outliers) > 10 else "")
        lines.append(f"asr      {len(outliers)} outlier utterance(s), more inserted words than "
                     f"reference words: {shown}")
    if s.failures:
        lines.append("failures " + ", ".join(f"{k} x{n}" for k, n in sorted(s.failures.items())))
    if any(sum(c.values()) for c in s.losses.values()):
        from resyn_bench.reports.collate import format_losses

        lines.append("lost     " + format_losses(s.losses) + "  (utterances, by part; "
                     "--retry-failed redoes them)")
    note = _overlap_note(s.run_dir)
    if note:
        lines.append(f"warning  {note}")
    lines.append("")
    def interval(spec, ci):
        if ci is None or ci.low is None:
            return ""
        return f"[{format_value(spec, ci.low)}, {format_value(spec, ci.high)}]"

    def count(m):
        return f"{m.n} trials" if m.n_unit == "trials" else str(m.n)

    header = (f"{'metric':<24}{'mean':>9}{'95% CI':>18}{'std':>9}{'pooled':>9}{'95% CI':>18}"
              f"{'n':>12}")
    lines += [header, "-" * len(header)]
    for m in s.metrics.values():
        unit = "%" if m.spec.percent else m.spec.unit
        name = f"{m.spec.label}{f' ({unit})' if unit else ''} {m.spec.arrow}"
        lines.append(f"{name:<24}{format_value(m.spec, m.mean):>9}{interval(m.spec, m.ci_mean):>18}"
                     f"{format_value(m.spec, m.std):>9}{format_value(m.spec, m.pooled):>9}"
                     f"{interval(m.spec, m.ci_pooled):>18}{count(m):>12}")
    lines.append("CIs: bootstrap over speakers, then utterances (1000 replicates, seed 0)")
    if any(m.n_unit == "trials" for m in s.metrics.values()):
        lines.append("n: utterances with a value; for EER/minDCF the output-vs-speaker trials used")
    if utterances:
        keys = list(s.metrics)
        lines += ["", "utt_id".ljust(24) + "status".ljust(9)
                  + "".join(s.metrics[k].spec.label.rjust(10) for k in keys)]
        for r in s.records:
            vals = "".join(format_value(s.metrics[k].spec, r.get("metrics", {}).get(k)).rjust(10)
                           for k in keys)
            tail = f"  {r.get('reason')}" if r.get("status") == "failed" else ""
            lines.append(f"{r['utt_id'][:23]:<24}{r.get('status', '?'):<9}{vals}{tail}")
    return "\n".join(lines)
