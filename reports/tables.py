"""Paper-style tables (Markdown, LaTeX booktabs) from run summaries: one row per system.

Every column header carries the metric's direction arrow; the caption states which statistic is
shown (utterance mean or corpus-pooled) and the settings that produced it.
"""
from __future__ import annotations

from typing import Sequence

from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.collate import RunSummary

STATS = ("mean", "pooled")
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def markdown_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def format_value(spec: MetricSpec, value: float | None) -> str:
    if value is None:
        return "–"
    if spec.percent:
        return f"{100.0 * value:.2f}"
    if spec.unit == "cents":
        return f"{value:.1f}"
    return f"{value:.3f}"


def _header(spec: MetricSpec) -> tuple[str, str]:
    """(plain label with unit, unit suffix) for a column."""
    unit = "%" if spec.percent else spec.unit
    return spec.label, unit


def columns(summaries: Sequence[RunSummary]) -> list[MetricSpec]:
    seen: dict[str, MetricSpec] = {}
    for s in summaries:
        for key, m in s.metrics.items():
            seen.setdefault(key, m.spec)
    return list(seen.values())


def _settings_note(summaries: Sequence[RunSummary]) -> str:
    presets = sorted({str(s.settings.get("f0", {}).get("preset")) for s in summaries
                      if "f0" in s.settings})
    return f"F0 extractor: {', '.join(presets)}." if presets else ""


def caption(summaries: Sequence[RunSummary], stat: str) -> str:
    what = ("utterance means" if stat == "mean"
            else "corpus-pooled values (frames/edits summed over utterances)")
    n = "; ".join(f"{s.system}: {s.n_ok + s.n_partial}/{s.n_total} scored" for s in summaries)
    return f"Values are {what}. {_settings_note(summaries)} Utterances: {n}.".replace("  ", " ")


def markdown_table(summaries: Sequence[RunSummary], stat: str = "mean") -> str:
    specs = columns(summaries)
    head = ["Dataset", "System"]
    for spec in specs:
        label, unit = _header(spec)
        head.append(f"{label}{f' ({unit})' if unit else ''} {spec.arrow}")
    head.append("N")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([":--", ":--"] + ["--:"] * (len(specs) + 1)) + "|"]
    for s in summaries:
        row = [markdown_escape(s.dataset), markdown_escape(s.system)]
        row += [format_value(spec, s.metrics[spec.key].value(stat)) if spec.key in s.metrics else "–"
                for spec in specs]
        row.append(f"{s.n_ok + s.n_partial}/{s.n_total}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"_{markdown_escape(caption(summaries, stat))}_")
    return "\n".join(lines) + "\n"


def latex_table(summaries: Sequence[RunSummary], stat: str = "mean", label: str = "tab:resynthesis") -> str:
    specs = columns(summaries)
    head = ["Dataset", "System"]
    for spec in specs:
        name, unit = _header(spec)
        arrow = r"$\uparrow$" if spec.higher_is_better else r"$\downarrow$"
        head.append(f"{latex_escape(name)}{f' ({latex_escape(unit)})' if unit else ''} {arrow}")
    head.append("N")
    out = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"  \centering",
           r"  \begin{tabular}{ll" + "r" * (len(specs) + 1) + "}", r"    \toprule",
           "    " + " & ".join(head) + r" \\", r"    \midrule"]
    for s in summaries:
        row = [latex_escape(s.dataset), latex_escape(s.system)]
        row += [format_value(spec, s.metrics[spec.key].value(stat)) if spec.key in s.metrics else "--"
                for spec in specs]
        row = [c.replace("–", "--") for c in row]
        row.append(f"{s.n_ok + s.n_partial}/{s.n_total}")
        out.append("    " + " & ".join(row) + r" \\")
    out += [r"    \bottomrule", r"  \end{tabular}",
            f"  \\caption{{{latex_escape(caption(summaries, stat))}}}",
            f"  \\label{{{latex_escape(label)}}}", r"\end{table}"]
    return "\n".join(out) + "\n"
