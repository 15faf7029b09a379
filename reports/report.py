"""Write the report files for a set of runs and format run summaries for the terminal."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from resyn_bench.reports.collate import RunSummary, summarize_run
from resyn_bench.reports.tables import format_value, latex_table, markdown_table, significance


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, stat: str = "auto") -> dict[str, Path]:
    """Collate ``run_dirs`` and write to ``out_dir``: ``table.md``/``table.tex`` (the paper's
    Table 1 columns), ``table_all.md``/``table_all.tex`` (every metric) and ``summary.json``."""
    summaries = [summarize_run(r) for r in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "table.md", "latex": out / "table.tex",
             "markdown (all metrics)": out / "table_all.md", "latex (all metrics)": out / "table_all.tex",
             "json": out / "summary.json"}
    sig = significance(summaries, stat)  # paired tests once, shared by every table
    paths["markdown"].write_text(markdown_table(summaries, stat, layout="paper", sig=sig),
                                 encoding="utf-8")
    paths["latex"].write_text(latex_table(summaries, stat, layout="paper", sig=sig), encoding="utf-8")
    paths["markdown (all metrics)"].write_text(markdown_table(summaries, stat, sig=sig),
                                               encoding="utf-8")
    paths["latex (all metrics)"].write_text(
        latex_table(summaries, stat, label="tab:resynthesis-all", sig=sig), encoding="utf-8")
    paths["json"].write_text(json.dumps({"stat": stat, "runs": [s.to_dict() for s in summaries]},
                                        indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths


def format_summary(s: RunSummary, utterances: bool = False) -> str:
    lines = [f"run      {s.run_dir}", f"system   {s.system}", f"dataset  {s.dataset}",
             f"records  {s.n_records}/{s.n_total} (ok {s.n_ok}, partial {s.n_partial}, "
             f"failed {s.n_failed})" + ("" if s.complete else "  [incomplete: resume the run]")]
    for group, settings in s.settings.items():
        if "preset" in settings:
            lines.append(f"{group:8s} preset {settings['preset']}")
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
    for key, m in s.metrics.items():
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
