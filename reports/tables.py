"""Paper-style tables (Markdown, LaTeX booktabs) from run summaries: one row per system.

Every column header carries the metric's direction arrow; the caption states which statistic is
shown (utterance mean or corpus-pooled) and the settings that produced it.
"""
from __future__ import annotations

from typing import Sequence

from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.collate import RunSummary

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
    if spec.unit == "count":
        return f"{value:.0f}"
    if spec.unit == "cents":
        return f"{value:.1f}"
    return f"{value:.3f}"


STATS = ("auto", "mean", "pooled")


def resolve_stat(spec: MetricSpec, stat: str) -> str:
    """``auto``: each metric's own convention (WER pooled over the corpus, F0 errors as
    utterance means as fairseq reports them); otherwise the statistic asked for."""
    return spec.table_stat if stat == "auto" else stat


def format_cell(spec: MetricSpec, summary, stat: str, ci: bool, mark: str = "", pm: str = " ± ") -> str:
    stat = resolve_stat(spec, stat)
    m = summary.metrics.get(spec.key)
    if m is None or m.value(stat) is None:
        return "–"
    text = format_value(spec, m.value(stat))
    interval = m.ci(stat)
    if ci and interval is not None and interval.low is not None and spec.unit != "count":
        text += pm + format_value(spec, (interval.high - interval.low) / 2)
    return text + mark


def significance(summaries: Sequence[RunSummary], stat: str, alpha: float = 0.05
                 ) -> dict[tuple[int, str], object]:
    """Paired bootstrap of each run against the first run on the same data (same dataset, root,
    split and limit: the baseline,
    usually ``copy``), per metric; returns {(row, key): PairedResult}."""
    from resyn_bench.reports.uncertainty import compare

    results = {}
    baselines: dict[str, int] = {}
    for i, s in enumerate(summaries):
        base = baselines.setdefault(s.dataset_key or s.dataset, i)
        if base == i:
            continue
        b = summaries[base]
        for key, m in s.metrics.items():
            group = key.split(".", 1)[0]
            obj = s.groups.get(group)
            if obj is None or group not in b.entries or m.value(stat) is None:
                continue
            use = "pooled" if (resolve_stat(m.spec, stat) == "pooled" or m.mean is None) else "mean"
            res = compare(obj, b.entries[group], s.entries[group], key, stat=use)
            if res.n_common:
                results[(i, key)] = res
    return results


def _mark(results, row: int, key: str, alpha: float = 0.05) -> str:
    from resyn_bench.reports.stats import significant

    res = results.get((row, key))
    return "*" if res is not None and significant(res, alpha) else ""


def _header(spec: MetricSpec) -> tuple[str, str]:
    """(plain label with unit, unit suffix) for a column."""
    unit = "%" if spec.percent else spec.unit
    return spec.label, unit


#: the reference paper's Table 1 columns (content, intonation, speaker, quality), in its order
PAPER_COLUMNS = ("asr.per", "asr.wer", "asr.dper", "asr.dwer", "f0.vde", "f0.ffe", "spk.eer",
                 "spk.acc", "dnsmos.ovrl")
LAYOUTS = ("paper", "all")


def columns(summaries: Sequence[RunSummary], layout: str = "all") -> list[MetricSpec]:
    """Columns present in any run: every metric (``all``), or the paper's Table 1 subset
    (``paper``; falls back to ``all`` when the runs have none of those metrics)."""
    seen: dict[str, MetricSpec] = {}
    for s in summaries:
        for key, m in s.metrics.items():
            seen.setdefault(key, m.spec)
    if layout == "paper":
        chosen = [seen[k] for k in PAPER_COLUMNS if k in seen]
        if chosen:
            return chosen
    return list(seen.values())


def _settings_note(summaries: Sequence[RunSummary]) -> str:
    presets = sorted({str(s.settings.get("f0", {}).get("preset")) for s in summaries
                      if "f0" in s.settings})
    return f"F0 extractor: {', '.join(presets)}." if presets else ""


def caption(summaries: Sequence[RunSummary], stat: str, ci: bool = True, marks: bool = True,
            specs: Sequence[MetricSpec] | None = None) -> str:
    if stat == "auto":
        shown = specs if specs is not None else columns(summaries, "all")
        pooled = [s.label for s in shown if s.table_stat == "pooled"]
        what = "utterance means"
        if pooled:
            what += f", except corpus-level values for {', '.join(pooled)} (pooled over the corpus)"
        what += "; corpus-level values for metrics without per-utterance values"
    elif stat == "mean":
        what = "utterance means (corpus-level values where a metric has no per-utterance value)"
    else:
        what = "corpus-level values (frames/edits pooled over utterances)"
    n = "; ".join(f"{s.system}: {s.n_ok + s.n_partial}/{s.n_total} scored" for s in summaries)
    parts = [f"Values are {what}."]
    if ci:
        parts.append("± is the half-width of a 95% bootstrap CI (speakers, then utterances; 1000 "
                     "replicates, seed 0).")
    if marks:
        parts.append("* marks a difference from the first row of the same dataset with paired "
                     "bootstrap p < 0.05.")
    parts += [_settings_note(summaries), f"Utterances: {n}."]
    return " ".join(p for p in parts if p)


def markdown_table(summaries: Sequence[RunSummary], stat: str = "auto", ci: bool = True,
                   marks: bool = True, layout: str = "all", sig: dict | None = None) -> str:
    """``sig``: precomputed :func:`significance` (reused across tables of the same runs)."""
    specs = columns(summaries, layout)
    sig = (significance(summaries, stat) if sig is None else sig) if marks else {}
    head = ["Dataset", "System"]
    for spec in specs:
        label, unit = _header(spec)
        head.append(f"{label}{f' ({unit})' if unit else ''} {spec.arrow}")
    head.append("N")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([":--", ":--"] + ["--:"] * (len(specs) + 1)) + "|"]
    for i, s in enumerate(summaries):
        row = [markdown_escape(s.dataset), markdown_escape(s.system)]
        row += [format_cell(spec, s, stat, ci, _mark(sig, i, spec.key)) for spec in specs]
        row.append(f"{s.n_ok + s.n_partial}/{s.n_total}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"_{markdown_escape(caption(summaries, stat, ci, marks, specs))}_")
    return "\n".join(lines) + "\n"


def latex_table(summaries: Sequence[RunSummary], stat: str = "auto", label: str = "tab:resynthesis",
                ci: bool = True, marks: bool = True, layout: str = "all", sig: dict | None = None) -> str:
    specs = columns(summaries, layout)
    sig = (significance(summaries, stat) if sig is None else sig) if marks else {}
    head = ["Dataset", "System"]
    for spec in specs:
        name, unit = _header(spec)
        arrow = r"$\uparrow$" if spec.higher_is_better else r"$\downarrow$"
        head.append(f"{latex_escape(name)}{f' ({latex_escape(unit)})' if unit else ''} {arrow}")
    head.append("N")
    out = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"  \centering",
           r"  \begin{tabular}{ll" + "r" * (len(specs) + 1) + "}", r"    \toprule",
           "    " + " & ".join(head) + r" \\", r"    \midrule"]
    for i, s in enumerate(summaries):
        row = [latex_escape(s.dataset), latex_escape(s.system)]
        row += [format_cell(spec, s, stat, ci, "$^*$" if _mark(sig, i, spec.key) else "",
                            pm=r" $\pm$ ") for spec in specs]
        row = [c.replace("–", "--") for c in row]
        row.append(f"{s.n_ok + s.n_partial}/{s.n_total}")
        out.append("    " + " & ".join(row) + r" \\")
    out += [r"    \bottomrule", r"  \end{tabular}",
            f"  \\caption{{{latex_escape(caption(summaries, stat, ci, marks, specs))}}}",
            f"  \\label{{{latex_escape(label)}}}", r"\end{table}"]
    return "\n".join(out) + "\n"
