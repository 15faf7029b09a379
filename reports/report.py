"""Write the report files for a set of runs and format run summaries for the terminal."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from resyn_bench.reports.collate import RunSummary, summarize_run
from resyn_bench.reports.layouts import Layout, resolve_layouts
from resyn_bench.reports.tables import (
    CI_MODES,
    _SigCache,
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
                 summaries: Sequence[RunSummary] | None = None) -> dict[str, Path]:
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
        raise ValueError(f"unknown report format(s) {bad}: choose from {', '.join(FORMATS)}")
    if ci not in CI_MODES:
        raise ValueError(f"ci must be one of {CI_MODES}, got {ci!r}")
    summaries = list(summaries) if summaries is not None else \
        [summarize_run(r, n_boot=n_boot) for r in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    sig = _SigCache(summaries)  # paired tests once per statistic, shared by every table
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
            paths[_KIND[fmt] if first else f"{_KIND[fmt]} ({layout.name})"] = path
        first = False
    paths["json"] = out / "summary.json"
    paths["json"].write_text(json.dumps({"stat": stat, "runs": [s.to_dict() for s in summaries]},
                                        indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if plots:
        from resyn_bench.reports.plots import write_plots

        try:
            written = write_plots(summaries, out / "plots")
        except ImportError as exc:     # matplotlib missing: the tables still count
            log.warning("report: no plots (%s)", exc)
            written = []
        if written:
            paths["plots"] = out / "plots"
    if "html" in formats:
        html = _write_html(summaries, out / "report.html", audio=audio, sig=sig.get(stat))
        if html is not None:
            paths["html"] = html
    return paths


def _render(table, fmt: str, ci: str) -> str:
    if fmt == "md":
        return render_markdown(table, ci)
    if fmt == "tex":
        return render_latex(table, ci)
    return render_csv(table)


def _write_html(summaries, path: Path, *, audio: str, sig) -> Path | None:
    try:
        from resyn_bench.reports.html import write_html
    except ImportError as exc:   # the HTML module is optional until it ships
        log.warning("report: HTML report not written (%s)", exc)
        return None
    return Path(write_html(summaries, path, audio=audio, sig=sig))


def format_summary(s: RunSummary, utterances: bool = False) -> str:
    lines = [f"run      {s.run_dir}", f"system   {s.system}", f"dataset  {s.dataset}",
             f"records  {s.n_records}/{s.n_total} (ok {s.n_ok}, partial {s.n_partial}, "
             f"failed {s.n_failed})" + ("" if s.complete else "  [incomplete: resume the run]")]
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
    lines.append("")
    def interval(spec, ci):
        if ci is None or ci.low is None:
            return ""
        return f"[{format_value(spec, ci.low)}, {format_value(spec, ci.high)}]"

    header = (f"{'metric':<24}{'mean':>9}{'95% CI':>18}{'std':>9}{'pooled':>9}{'95% CI':>18}"
              f"{'n':>6}")
    lines += [header, "-" * len(header)]
    for m in s.metrics.values():
        unit = "%" if m.spec.percent else m.spec.unit
        name = f"{m.spec.label}{f' ({unit})' if unit else ''} {m.spec.arrow}"
        lines.append(f"{name:<24}{format_value(m.spec, m.mean):>9}{interval(m.spec, m.ci_mean):>18}"
                     f"{format_value(m.spec, m.std):>9}{format_value(m.spec, m.pooled):>9}"
                     f"{interval(m.spec, m.ci_pooled):>18}{m.n:>6}")
    lines.append("CIs: bootstrap over speakers, then utterances (1000 replicates, seed 0)")
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
