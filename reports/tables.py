"""Paper-style tables (Markdown, LaTeX booktabs, CSV) from run summaries, laid out by a
:class:`~resyn_bench.reports.layouts.Layout`.

One collation (:func:`build_table`) feeds every format, so the Markdown, LaTeX and CSV of a
layout always hold the same numbers:

* every column header carries the metric's direction arrow (a layout may override it: VDE under
  F0 manipulation is better high);
* the best value of each column is bold, per group of rows (by default per dataset), respecting
  the direction; ties (equal *as displayed*) are all bold; ground-truth rows are not candidates
  and a column needs at least two candidates to have a "best";
* confidence intervals as ``value ± half-width`` (``ci="pm"``), as siunitx ``S`` columns
  (``ci="siunitx"``: ``\\num``-parsed ``value \\pm half-width``, aligned on the decimal point), or
  not at all (``ci="none"``);
* ``*`` marks a paired-bootstrap difference (p < 0.05) from the first run given on the same data;
* the caption states the statistic shown, the CI method, the F0 extractor and the utterance counts.

Everything user-controlled (dataset, system and experiment names, labels) is escaped for the
target format.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from resyn_bench.errors import UsageError
from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.collate import RunSummary
from resyn_bench.reports.labels import run_names, run_titles, summary_label
from resyn_bench.reports.layouts import ALL, BITRATE_NOTE, Column, Layout, load_layout

CI_MODES = ("pm", "siunitx", "none")

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
                  "–": "--", "—": "---", "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
                  "Δ": r"$\Delta$", "†": r"$^\dagger$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def markdown_escape(text: str) -> str:
    """Escape what would break a Markdown table cell or start emphasis/links."""
    out = str(text).replace("\\", "\\\\").replace("\n", " ")
    for c in "|*_`[]<>":
        out = out.replace(c, "\\" + c)
    return out


def format_value(spec: MetricSpec, value: float | None) -> str:
    if value is None:
        return "–"
    if spec.key == "bitrate":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    if spec.percent:
        return f"{100.0 * value:.2f}"
    if spec.unit == "count":
        return f"{value:.0f}"
    if spec.unit == "cents":
        return f"{value:.1f}"
    return f"{value:.3f}"


STATS = ("auto", "mean", "pooled")


#: suffix of the spec key of a difference column (``Column.delta_from``)
DELTA = "#delta"


def value_range(spec: MetricSpec | None) -> tuple[float | None, float | None]:
    """The values a metric can take, as far as the table needs to know: rates (percent
    metrics) lie in [0, 1]; errors and distortions (lower is better: WER, EER, minDCF, MCD,
    F0 errors) are never negative; a difference of two rates lies in [-1, 1]. None: no bound
    known."""
    if spec is None:
        return None, None
    if spec.key.endswith(DELTA):
        return (-1.0, 1.0) if spec.percent else (None, None)
    if spec.percent:
        return 0.0, 1.0
    if not spec.higher_is_better:
        return 0.0, None
    return None, None


def pm_fits(spec: MetricSpec | None, cell: Cell) -> bool:
    """Whether ``value ± half-width`` stays inside the metric's range (the percentile interval
    always does; the symmetric form of an asymmetric interval may not: "EER 1.67 ± 1.68")."""
    half = cell.half
    if half is None or cell.value is None:
        return True
    lo, hi = value_range(spec)
    v = float(cell.value)
    return (lo is None or v - half >= lo - 1e-12) and (hi is None or v + half <= hi + 1e-12)


def interval_text(spec: MetricSpec, cell: Cell) -> str:
    """The CI as text after the value: `` ± h`` where that stays in range, else `` [low, high]``
    (the percentile bounds themselves)."""
    if cell.half is None:
        return ""
    if pm_fits(spec, cell):
        return " ± " + format_value(spec, cell.half)
    return f" [{format_value(spec, cell.low)}, {format_value(spec, cell.high)}]"


def resolve_stat(spec: MetricSpec, stat: str) -> str:
    """``auto``: each metric's own convention (WER pooled over the corpus, F0 errors as
    utterance means as fairseq reports them); otherwise the statistic asked for."""
    return spec.table_stat if stat == "auto" else stat


def significance(summaries: Sequence[RunSummary], stat: str, alpha: float = 0.05
                 ) -> dict[tuple[int, str], object]:
    """Paired bootstrap of each run against the first run on the same data (same dataset, root,
    split and limit: the baseline, usually ``copy``), per metric, on the utterances both scored;
    returns {(run index, key): PairedResult}. Counts (trial numbers) are not tested.

    Corpus statistics without a count form (EER, minDCF) are bootstrapped once per metric group
    (each replicate aggregated once, every key read from it) with the same replicates
    :func:`~resyn_bench.reports.stats.paired_bootstrap` would draw
    (:func:`~resyn_bench.reports.stats.compare_corpus`), so the result equals the per-key test
    at a fraction of the cost."""
    from resyn_bench.reports.stats import compare, compare_corpus, uses_count_path

    results = {}
    baselines: dict[Any, int] = {}
    for i, s in enumerate(summaries):
        base = baselines.setdefault(s.dataset_key or s.dataset, i)
        if base == i:
            continue
        b = summaries[base]
        batched: dict[str, list[str]] = {}
        for key, m in s.metrics.items():
            group = key.split(".", 1)[0]
            obj = s.groups.get(group)
            if obj is None or group not in b.entries or m.value(stat) is None or m.spec.unit == "count":
                continue
            use = "pooled" if (resolve_stat(m.spec, stat) == "pooled" or m.mean is None) else "mean"
            if use == "pooled" and not uses_count_path(obj):
                batched.setdefault(group, []).append(key)
                continue
            res = compare(obj, b.entries[group], s.entries[group], key, stat=use)
            if res.n_common:
                results[(i, key)] = res
        for group, keys in batched.items():
            for key, res in compare_corpus(s.groups[group], b.entries[group], s.entries[group],
                                           keys).items():
                if res.n_common:
                    results[(i, key)] = res
    return results


# ---------------------------------------------------------------------------------------------
# Collation: runs x layout -> Table
# ---------------------------------------------------------------------------------------------

BITRATE_SPEC = MetricSpec("bitrate", "Bitrate", higher_is_better=False, unit="bps",
                          description="bits per second of the transmitted discrete streams")


@dataclass
class Cell:
    value: float | None = None         # stored units (fractions for percentages)
    low: float | None = None           # CI bounds, stored units
    high: float | None = None
    p_value: float | None = None       # paired test against the baseline run
    mark: bool = False                 # significant difference from the baseline
    bold: bool = False                 # best of its column within its group
    text: str = "–"                    # value as displayed
    run: RunSummary | None = None

    @property
    def half(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2


@dataclass
class TableColumn:
    column: Column
    spec: MetricSpec | None            # None for the count column
    label: str
    unit: str
    higher_is_better: bool | None      # None: no direction (counts)

    @property
    def arrow(self) -> str:
        return "" if self.higher_is_better is None else ("↑" if self.higher_is_better else "↓")

    def header(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.label}{unit}{' ' + self.arrow if self.arrow else ''}"


@dataclass
class Row:
    fields: dict[str, str]
    group: str | None
    reference: bool
    runs: list[RunSummary]
    cells: list[Cell] = field(default_factory=list)

    @property
    def unfinished(self) -> list[RunSummary]:
        """The row's runs whose figures may not cover the whole run (see
        :attr:`RunSummary.unfinished`); rendered with :data:`UNFINISHED_MARK`."""
        return [r for r in self.runs if r.unfinished]


#: marks a row built from a run that is still going or stopped early
UNFINISHED_MARK = "†"


def row_label(row: Row, fieldname: str, shown: Sequence[str]) -> str:
    """A row's field as displayed: the last shown field of an unfinished row carries the mark."""
    text = row.fields[fieldname]
    if row.unfinished and shown and fieldname == shown[-1]:
        text += " " + UNFINISHED_MARK
    return text


@dataclass
class Table:
    layout: Layout
    stat: str
    columns: list[TableColumn]
    rows: list[Row]
    shown_fields: list[str]            # row fields displayed as leading columns
    runs: list[RunSummary]             # the runs the rows use (for the caption)
    marks: bool = True

    def caption(self, ci: bool = True) -> str:
        return caption(self.runs, self.stat, ci=ci, marks=self.marks,
                       specs=[c.spec for c in self.columns
                              if c.spec is not None and c.spec.key != "bitrate"],
                       layout=self.layout, table=self)

    @property
    def empty(self) -> bool:
        """No rows, no metric column, or a column the layout requires has no value."""
        if not self.rows or not any(c.spec is not None for c in self.columns):
            return True
        for need in self.layout.require:
            js = [j for j, c in enumerate(self.columns) if c.column.id == need]
            if not any(r.cells[j].value is not None for j in js for r in self.rows):
                return True
        return False


def _unit(spec: MetricSpec) -> str:
    return "%" if spec.percent else spec.unit


def _labels(summaries: Sequence[RunSummary]) -> list[str]:
    """Row labels of the systems (the report's one naming rule: labels.run_names)."""
    return run_names(summaries)


def _specs_seen(summaries: Sequence[RunSummary], defined_only: bool = False) -> dict[str, MetricSpec]:
    """Every metric the runs hold; ``defined_only``: only those with a value in some run (a
    resynthesis run holds the VC-only source-speaker keys without values)."""
    seen: dict[str, MetricSpec] = {}
    for s in summaries:
        for key, m in s.metrics.items():
            if not defined_only or m.mean is not None or m.pooled is not None:
                seen.setdefault(key, m.spec)
    return seen


def _layout_columns(layout: Layout, summaries: Sequence[RunSummary]) -> list[Column]:
    cols = list(layout.columns)
    if not cols:   # every metric, plus bitrate when some run has one
        cols = [Column(k) for k in _specs_seen(summaries)]
        if any(s.bitrate is not None for s in summaries):
            cols.insert(0, Column("bitrate", best=False, note=BITRATE_NOTE))
    if layout.count_column and not any(c.key == "n" for c in cols):
        cols.append(Column("n", best=False, ci=False))
    return cols


def _pick_run(row: Row, col: Column, key: str) -> RunSummary | None:
    """The row's run that fills a column: the column's experiment (for ground-truth rows
    without one, its reference experiment), else the row's runs in order; the first that has
    the metric."""
    runs = row.runs
    if col.experiment:
        cand = [r for r in runs if fnmatchcase(r.experiment, col.experiment)]
        if not cand and row.reference and col.reference_experiment:
            cand = [r for r in runs if fnmatchcase(r.experiment, col.reference_experiment)]
        runs = cand
    if not runs:
        return None
    if key in ("n", "bitrate"):
        return runs[0]
    for r in runs:
        m = r.metrics.get(key)
        if m is not None and (m.mean is not None or m.pooled is not None):
            return r
    return runs[0]


class SignificanceCache:
    """Paired tests per statistic, computed once per report (they dominate the run time)."""

    def __init__(self, summaries: Sequence[RunSummary], given: dict | None = None, stat: str = "auto"):
        self.summaries = list(summaries)
        self.by_stat: dict[str, dict] = {}
        if given is not None:
            self.by_stat[stat] = given

    def get(self, stat: str) -> dict:
        if stat not in self.by_stat:
            self.by_stat[stat] = significance(self.summaries, stat)
        return self.by_stat[stat]


def build_table(summaries: Sequence[RunSummary], layout: Layout | str = "paper", stat: str = "auto",
                sig: dict | SignificanceCache | None = None, marks: bool = True, alpha: float = 0.05) -> Table:
    """Collate runs into the rows and columns a layout asks for. ``sig``: precomputed
    :func:`significance` for ``stat`` (or a cache shared by several tables of one report)."""
    from resyn_bench.reports.stats import significant

    layout = load_layout(layout)
    if stat not in STATS:
        raise UsageError(f"stat must be one of {STATS}, got {stat!r}")
    summaries = list(summaries)
    index = {id(s): i for i, s in enumerate(summaries)}
    cache = sig if isinstance(sig, SignificanceCache) else SignificanceCache(summaries, sig, stat)
    labels = _labels(summaries)

    # rows: runs of the layout's experiments, merged by the row fields
    rows: dict[tuple, Row] = {}
    for s, label in zip(summaries, labels, strict=True):
        if not layout.takes_experiment(s.experiment):
            continue
        dataset = (s.dataset_name or s.dataset) if layout.group_splits else s.dataset
        values = {"dataset": dataset, "experiment": s.experiment, "system": label}
        key = tuple(values[f] for f in layout.rows)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(fields={f: values[f] for f in layout.rows},
                                  group=values[layout.group_by] if layout.group_by else None,
                                  reference=layout.is_reference(s.system), runs=[])
        row.runs.append(s)
    row_list = list(rows.values())

    specs = _specs_seen(summaries)
    columns: list[TableColumn] = []
    for col in _layout_columns(layout, summaries):
        if col.key == "n":
            columns.append(TableColumn(col, None, col.label or "N", "", None))
            continue
        spec = BITRATE_SPEC if col.key == "bitrate" else specs.get(col.key)
        if spec is None:
            if layout.drop_empty_columns:
                continue
            spec = MetricSpec(col.key, col.key, higher_is_better=False)
        hib = spec.higher_is_better if col.higher_is_better is None else col.higher_is_better
        if getattr(spec, "bookkeeping", False):
            hib = None          # context (trial counts, chance level): no direction, no "best"
        label = col.label or spec.label
        if col.delta_from:
            spec = replace(spec, key=spec.key + DELTA, label=label)
        columns.append(TableColumn(col, spec, label, _unit(spec), hib))

    for row in row_list:
        for tc in columns:
            row.cells.append(_cell(row, tc, stat, cache, marks, alpha, index, significant))

    # drop what is empty, then order and mark the best
    if layout.drop_empty_columns:
        keep = [j for j, tc in enumerate(columns)
                if tc.spec is None or any(r.cells[j].value is not None for r in row_list)]
        columns = [columns[j] for j in keep]
        for r in row_list:
            r.cells = [r.cells[j] for j in keep]
    if layout.drop_empty_rows:
        metric_cols = [j for j, tc in enumerate(columns)
                       if tc.spec is not None and not tc.column.supporting]
        row_list = [r for r in row_list if any(r.cells[j].value is not None for j in metric_cols)]
    if layout.drop_reference_only_groups:
        real = {r.group for r in row_list if not r.reference}
        row_list = [r for r in row_list if r.group in real]
    _fill_counts(row_list, columns, show_split=layout.group_splits)
    row_list = _order_rows(row_list, layout, columns)
    if layout.bold_best:
        _mark_best(row_list, columns, layout)

    shown = [f for f in layout.rows
             if not (f == "experiment" and len({r.fields[f] for r in row_list}) <= 1)]
    used = list({id(r): r for row in row_list for r in row.runs}.values())
    return Table(layout, stat, columns, row_list, shown, used or summaries, marks)


def _cell(row: Row, tc: TableColumn, stat: str, cache: SignificanceCache, marks: bool, alpha: float,
          index: dict, significant) -> Cell:
    col = tc.column
    run = _pick_run(row, col, col.key)
    if run is None:
        return Cell()
    if col.delta_from:
        return _delta_cell(row, col, run, stat, alpha, significant)
    if col.key == "n":
        return Cell(value=None, text=f"{run.n_ok + run.n_partial}/{run.n_total}", run=run)
    if col.key == "bitrate":
        return Cell(value=run.bitrate, text=format_value(tc.spec, run.bitrate), run=run)
    m = run.metrics.get(col.key)
    if m is None:
        return Cell(run=run)
    asked = col.stat if col.stat != "auto" else stat
    use = resolve_stat(m.spec, asked)
    value = m.value(use)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Cell(run=run)
    cell = Cell(value=value, text=format_value(m.spec, value), run=run)
    interval = m.ci(use)
    bookkeeping = getattr(m.spec, "bookkeeping", False)
    if col.ci and interval is not None and interval.low is not None and m.spec.unit != "count" \
            and not bookkeeping:
        cell.low, cell.high = interval.low, interval.high
    if marks and not bookkeeping:
        res = cache.get(asked).get((index[id(run)], col.key))
        if res is not None:
            cell.p_value = getattr(res, "p_value", None)
            cell.mark = bool(significant(res, alpha))
    return cell


def _delta_cell(row: Row, col: Column, run: RunSummary, stat: str, alpha: float,
                significant) -> Cell:
    """``col.key`` of ``run`` minus the same metric of the row's ``col.delta_from`` run, paired
    over the utterances both scored (a paired bootstrap gives the CI and p-value)."""
    from resyn_bench.reports.stats import compare

    base = next((r for r in row.runs if fnmatchcase(r.experiment, col.delta_from)
                 and r.metrics.get(col.key) is not None), None)
    m = run.metrics.get(col.key)
    group = col.key.split(".", 1)[0]
    obj = run.groups.get(group)
    if base is None or m is None or obj is None or group not in base.entries \
            or group not in run.entries:
        return Cell(run=run)
    use = resolve_stat(m.spec, col.stat if col.stat != "auto" else stat)
    use = "pooled" if (use == "pooled" or m.mean is None) else "mean"
    res = compare(obj, base.entries[group], run.entries[group], col.key, stat=use)
    if res.delta is None or not res.n_common:
        return Cell(run=run)
    cell = Cell(value=res.delta, text=format_value(m.spec, res.delta), run=run,
                p_value=res.p_value, mark=bool(significant(res, alpha)))
    if col.ci and res.low is not None and res.high is not None:
        cell.low, cell.high = res.low, res.high
    return cell


def _fill_counts(rows: list[Row], columns: list[TableColumn], show_split: bool = False) -> None:
    """The count column of a row: utterances scored / in the dataset of the runs its cells come
    from (several runs with different counts: all, comma-separated); with ``show_split`` each
    count names the split its run used."""
    for j, tc in enumerate(columns):
        if tc.column.key != "n":
            continue
        for r in rows:
            used = [c.run for k, c in enumerate(r.cells) if c.run is not None and c.value is not None
                    and columns[k].spec is not None] or r.runs[:1]
            texts = list(dict.fromkeys(
                f"{u.n_ok + u.n_partial}/{u.n_total}"
                + (f" ({u.split})" if show_split and u.split else "") for u in used))
            r.cells[j].text = ", ".join(texts)


def _order_rows(rows: list[Row], layout: Layout, columns: list[TableColumn]) -> list[Row]:
    """Groups in the order of ``layout.order[group_by]`` then of appearance; within a group,
    ground truth first (if asked), then ``sort_by`` or the explicit order of the other fields,
    then appearance."""
    appearance = {id(r): i for i, r in enumerate(rows)}

    def rank(fieldname: str, value: str) -> tuple:
        order = list(layout.order.get(fieldname, ()))
        return (order.index(value), "") if value in order else (len(order), "")

    first_of_group: dict[Any, int] = {}
    for i, r in enumerate(rows):
        first_of_group.setdefault(r.group, i)
    sort_col = next((j for j, c in enumerate(columns)
                     if layout.sort_by and c.column.id == layout.sort_by), None)

    def key(r: Row):
        g = ((rank(layout.group_by, r.group)[0], first_of_group[r.group]) if layout.group_by
             else (0, 0))
        ref = 0 if (layout.reference_first and r.reference) else 1
        fields = tuple(rank(f, r.fields[f])[0] for f in layout.rows if f != layout.group_by)
        if sort_col is not None:
            v = r.cells[sort_col].value
            by = (0, v) if v is not None else (1, 0.0)
        else:
            by = (0, 0.0)
        return (g, ref, by, fields, appearance[id(r)])

    return sorted(rows, key=key)


def _display_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


#: metrics that describe the test, not the system: never "best"
UNRANKED = ("spk.chance",)


def _mark_best(rows: list[Row], columns: list[TableColumn], layout: Layout) -> None:
    groups: dict[Any, list[Row]] = {}
    by = layout.best_fields()
    for r in rows:
        groups.setdefault(tuple(r.fields[f] for f in by), []).append(r)
    for j, tc in enumerate(columns):
        if tc.spec is None or tc.higher_is_better is None or not tc.column.best \
                or tc.spec.unit == "count" or tc.spec.key in UNRANKED:
            continue
        for members in groups.values():
            cand = [(r, _display_number(r.cells[j].text)) for r in members
                    if r.cells[j].value is not None
                    and not (layout.exclude_reference_from_best and r.reference)]
            cand = [(r, v) for r, v in cand if v is not None]
            if len(cand) < 2:
                continue
            best = (max if tc.higher_is_better else min)(v for _, v in cand)
            for r, v in cand:
                if v == best:
                    r.cells[j].bold = True


# ---------------------------------------------------------------------------------------------
# Caption
# ---------------------------------------------------------------------------------------------

def _settings_note(summaries: Sequence[RunSummary]) -> str:
    presets = sorted({str(s.settings.get("f0", {}).get("preset")) for s in summaries
                      if "f0" in s.settings})
    return f"F0 extractor: {', '.join(presets)}." if presets else ""


def caption(summaries: Sequence[RunSummary], stat: str, ci: bool = True, marks: bool = True,
            specs: Sequence[MetricSpec] | None = None, layout: Layout | None = None,
            table: Table | None = None) -> str:
    if stat == "auto":
        shown = specs if specs is not None else list(_specs_seen(summaries, defined_only=True).values())
        pooled = [s.label for s in shown if s.table_stat == "pooled"]
        what = "utterance means"
        if pooled:
            what += f", except corpus-level values for {', '.join(dict.fromkeys(pooled))} (pooled over the corpus)"
        what += "; corpus-level values for metrics without per-utterance values"
    elif stat == "mean":
        what = "utterance means (corpus-level values where a metric has no per-utterance value)"
    else:
        what = "corpus-level values (frames/edits pooled over utterances)"
    parts = [f"{layout.title}." if layout is not None and layout.title else "",
             f"Values are {what}."]
    if ci:
        parts.append("± is the half-width of a 95% bootstrap CI (speakers, then utterances; 1000 "
                     "replicates, seed 0).")
        if table is not None and any(
                not pm_fits(tc.spec, c) for r in table.rows
                for tc, c in zip(table.columns, r.cells, strict=True) if tc.spec is not None):
            parts.append("[low, high]: the interval's bounds, where ± would leave the metric's "
                         "range (rates in 0-100 %, errors not below 0).")
    if marks:
        parts.append("* marks a difference from the first run given on the same data (the "
                     "baseline, usually the ground truth) with paired bootstrap p < 0.05.")
    if layout is not None and layout.bold_best and table is not None \
            and any(c.bold for r in table.rows for c in r.cells):
        scope = "within each " + layout.group_by if layout.best_within == "group" and layout.group_by \
            else "in the table"
        excl = " (ground-truth rows excluded)" if layout.exclude_reference_from_best else ""
        parts.append(f"Bold: best value of each column {scope}{excl}.")
    if layout is not None:
        parts += list(layout.notes)
    if table is not None:
        parts += list(dict.fromkeys(c.column.note for c in table.columns if c.column.note))
        parts.append(_measured_bitrate_note(table))
    n = "; ".join(f"{title}: {s.n_ok + s.n_partial}/{s.n_total} scored"
                  for s, title in zip(summaries, run_titles(summaries), strict=True))
    from resyn_bench.reports.model_notes import models_note

    if table is not None:
        shown: list = [(c.label, c.spec) for c in table.columns if c.spec is not None]
    else:
        shown = list(specs) if specs is not None else list(_specs_seen(summaries, defined_only=True).values())
    parts += [models_note(summaries, shown), _settings_note(summaries), f"Utterances: {n}."]
    late = [s for s in summaries if s.unfinished]
    if late:
        parts.append(f"{UNFINISHED_MARK} NOT FINISHED: " + "; ".join(
            f"{summary_label(s)} ({s.run_dir.name}): {s.unfinished}" for s in late)
            + " - these rows cover only the utterances done so far.")
    return " ".join(p for p in parts if p)


def _measured_bitrate_note(table: Table) -> str:
    """Which rows' bitrates were counted from the encoder's output (or declared) instead of the
    stream specs (:func:`~resyn_bench.reports.collate.run_bitrate`)."""
    js = [j for j, c in enumerate(table.columns) if c.column.key == "bitrate"]
    by_source: dict[str, list[str]] = {}
    for row in table.rows:
        for j in js:
            run = row.cells[j].run
            source = getattr(run, "bitrate_source", None)
            if row.cells[j].value is not None and source in ("measured", "declared"):
                by_source.setdefault(source, []).append(row.fields.get("system", run.system))
    parts = []
    if by_source.get("measured"):
        parts.append("Bitrate measured from the encoder's actual output (total bits / total "
                     f"seconds over the utterances) for: {', '.join(dict.fromkeys(by_source['measured']))}.")
    if by_source.get("declared"):
        parts.append(f"Bitrate declared (not measured) for: "
                     f"{', '.join(dict.fromkeys(by_source['declared']))}.")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------------------------

_FIELD_HEAD = {"dataset": "Dataset", "experiment": "Experiment", "system": "System"}


def _check_ci(ci: str | bool) -> str:
    if ci is True:
        return "pm"
    if ci is False:
        return "none"
    if ci not in CI_MODES:
        raise UsageError(f"ci must be one of {CI_MODES}, got {ci!r}")
    return ci


def render_markdown(table: Table, ci: str | bool = "pm") -> str:
    ci = _check_ci(ci)
    head = [_FIELD_HEAD[f] for f in table.shown_fields]
    for tc in table.columns:
        text = tc.header()
        head.append(markdown_escape(f"{tc.column.group}: {text}" if tc.column.group else text))
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([":--"] * len(table.shown_fields) + ["--:"] * len(table.columns)) + "|"]
    for row in table.rows:
        out = [markdown_escape(row_label(row, f, table.shown_fields)) for f in table.shown_fields]
        for tc, cell in zip(table.columns, row.cells, strict=True):
            if cell.value is None:
                out.append(markdown_escape(cell.text) if tc.spec is None else "–")
                continue
            text = f"**{cell.text}**" if cell.bold else cell.text
            if ci != "none" and cell.half is not None:
                text += interval_text(tc.spec, cell)
            out.append(text + ("\\*" if cell.mark else ""))
        lines.append("| " + " | ".join(out) + " |")
    lines.append("")
    lines.append(f"_{markdown_escape(table.caption(ci != 'none'))}_")
    return "\n".join(lines) + "\n"


def _siunitx_format(table: Table, j: int, ci: bool) -> str:
    """``table-format`` for column j: integer and decimal digits of the widest value (and of the
    uncertainty), so the column aligns on the decimal point."""
    def digits(text: str) -> tuple[int, int]:
        text = text.lstrip("-")
        whole, _, frac = text.partition(".")
        return len(whole), len(frac)

    tc = table.columns[j]
    ints, decs, uints, udecs, neg = 1, 0, 0, 0, False
    for row in table.rows:
        cell = row.cells[j]
        if cell.value is None:
            continue
        neg |= cell.text.startswith("-")
        i, d = digits(cell.text)
        ints, decs = max(ints, i), max(decs, d)
        if ci and cell.half is not None and pm_fits(tc.spec, cell):
            i, d = digits(format_value(tc.spec, cell.half))
            uints, udecs = max(uints, i), max(udecs, d)
    fmt = f"{'-' if neg else ''}{ints}.{decs}" if decs else f"{'-' if neg else ''}{ints}"
    if uints:
        fmt += rf" \pm {uints}.{udecs}" if udecs else rf" \pm {uints}"
    return fmt


def render_latex(table: Table, ci: str | bool = "pm", label: str | None = None) -> str:
    """A ``table`` float with a booktabs ``tabular``: ``ci="siunitx"`` needs
    ``\\usepackage{siunitx}`` (the options it relies on are set inside the float)."""
    ci = _check_ci(ci)
    label = label or table.layout.label or f"tab:{table.layout.name}"
    sx = ci == "siunitx"
    nf = len(table.shown_fields)
    colspec = "l" * nf
    for j, tc in enumerate(table.columns):
        if sx and tc.spec is not None:
            space = (r", table-space-text-post = \textsuperscript{*}"
                     if any(r.cells[j].mark for r in table.rows) else "")
            colspec += f"S[table-format={_siunitx_format(table, j, ci != 'none')}{space}]"
        else:
            colspec += "r"
    out = [r"% requires \usepackage{booktabs}" + (r" and \usepackage{siunitx}" if sx else ""),
           r"\begin{table}[t]", r"  \centering"]
    if sx:   # local to the float: bold S cells, ± kept as written, marks as trailing text
        # (uncertainties unaligned: siunitx 3.2 otherwise pads "12.34± 0.5" and loses bold)
        out.append(r"  \sisetup{separate-uncertainty, table-align-uncertainty = false, "
                   r"reset-text-series = false, text-series-to-math = true, "
                   r"table-align-text-after = false}")
    out += [r"  \begin{tabular}{" + colspec + "}", r"    \toprule"]

    def head(tc: TableColumn) -> str:   # S columns take text only in braces
        text = latex_escape(tc.header())
        return "{" + text + "}" if sx and tc.spec is not None else text

    if any(tc.column.group for tc in table.columns):
        cells, rules, j = [""] * nf, [], 0
        while j < len(table.columns):
            g = table.columns[j].column.group
            k = j
            while k + 1 < len(table.columns) and table.columns[k + 1].column.group == g:
                k += 1
            if g:
                cells.append(rf"\multicolumn{{{k - j + 1}}}{{c}}{{{latex_escape(g)}}}")
                rules.append(rf"\cmidrule(lr){{{nf + j + 1}-{nf + k + 1}}}")
            else:
                cells += [""] * (k - j + 1)
            j = k + 1
        out.append("    " + " & ".join(cells) + r" \\")
        out.append("    " + " ".join(rules))
    heads = [_FIELD_HEAD[f] for f in table.shown_fields]
    heads += [head(tc) for tc in table.columns]
    out += ["    " + " & ".join(heads) + r" \\", r"    \midrule"]

    previous_group = None
    for i, row in enumerate(table.rows):
        new_group = i == 0 or row.group != previous_group
        if table.layout.group_by and i > 0 and new_group:
            out.append(r"    \midrule")
        previous_group = row.group
        cells = []
        for f in table.shown_fields:
            show = new_group or f != table.layout.group_by
            text = latex_escape(row_label(row, f, table.shown_fields))
            cells.append(text if show else "")
        for tc, cell in zip(table.columns, row.cells, strict=True):
            cells.append(_latex_cell(tc, cell, ci))
        out.append("    " + " & ".join(cells) + r" \\")
    out += [r"    \bottomrule", r"  \end{tabular}",
            f"  \\caption{{{latex_escape(table.caption(ci != 'none'))}}}",
            f"  \\label{{{latex_escape(label)}}}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _latex_cell(tc: TableColumn, cell: Cell, ci: str) -> str:
    sx = ci == "siunitx"
    if cell.value is None:
        text = latex_escape(cell.text) if tc.spec is None else "--"
        return "{" + text + "}" if sx and tc.spec is not None else text
    mark = r"\textsuperscript{*}" if sx else r"$^*$"
    show_ci = ci != "none" and cell.half is not None
    half = format_value(tc.spec, cell.half) if show_ci else ""
    if show_ci and not pm_fits(tc.spec, cell):    # asymmetric bounds: [low, high] as text
        bounds = latex_escape(interval_text(tc.spec, cell))
        text = (rf"	extbf{{{cell.text}}}" if cell.bold else cell.text) + bounds
        text = "{" + text + "}" if sx else text
        return text + (mark if cell.mark else "")
    if sx:
        text = cell.text + (rf" \pm {half}" if show_ci else "")
        text = (r"\bfseries " if cell.bold else "") + text
        return text + (mark if cell.mark else "")
    text = rf"\textbf{{{cell.text}}}" if cell.bold else cell.text
    if show_ci:
        text += rf" $\pm$ {half}"
    return text + (mark if cell.mark else "")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value):
    """A text cell safe to open in a spreadsheet: text starting with = + - @ (or a tab/CR) gets a
    leading ``'`` so it is not run as a formula. Numbers, and text that reads as a number
    (``-3.5``), are left alone: only the numeric columns hold negatives, and they stay numbers."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def render_csv(table: Table) -> str:
    """Machine-readable: one line per row; per column the value in display units (percent for
    percentages), the CI bounds, the paired test's p-value and the bold/mark flags."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = list(table.layout.rows)
    for tc in table.columns:
        if tc.spec is None:
            head.append(tc.column.id)
            continue
        head += [tc.column.id, f"{tc.column.id}.ci_low", f"{tc.column.id}.ci_high",
                 f"{tc.column.id}.p", f"{tc.column.id}.best", f"{tc.column.id}.significant"]
    unfinished = any(r.unfinished for r in table.rows)
    if unfinished:               # only then: finished reports keep their columns
        head.append("unfinished")
    w.writerow([csv_text(h) for h in head])

    def num(spec: MetricSpec, v: float | None) -> str:
        if v is None:
            return ""
        return repr(round(float(100.0 * v if spec.percent else v), 10))

    for row in table.rows:
        line = [csv_text(row.fields[f]) for f in table.layout.rows]
        for tc, cell in zip(table.columns, row.cells, strict=True):
            if tc.spec is None:
                line.append(csv_text(cell.text))
                continue
            line += [num(tc.spec, cell.value), num(tc.spec, cell.low), num(tc.spec, cell.high),
                     "" if cell.p_value is None else repr(round(float(cell.p_value), 10)),
                     str(int(cell.bold)), str(int(cell.mark))]
        if unfinished:
            line.append(csv_text("; ".join(f"{r.run_dir.name}: {r.unfinished}"
                                           for r in row.unfinished)))
        w.writerow(line)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# One-call helpers (and the pre-layout API)
# ---------------------------------------------------------------------------------------------

def markdown_table(summaries: Sequence[RunSummary], stat: str = "auto", ci: bool | str = True,
                   marks: bool = True, layout: str | Layout = ALL, sig: dict | None = None) -> str:
    """``sig``: precomputed :func:`significance` (reused across tables of the same runs)."""
    return render_markdown(build_table(summaries, layout, stat, sig, marks), ci)


def latex_table(summaries: Sequence[RunSummary], stat: str = "auto", label: str | None = None,
                ci: bool | str = True, marks: bool = True, layout: str | Layout = ALL,
                sig: dict | None = None) -> str:
    return render_latex(build_table(summaries, layout, stat, sig, marks), ci, label)


