"""Declarative table layouts: which runs become rows, which metrics become columns, in what order.

A :class:`Layout` says

* **rows**: the fields that identify a row (any of ``dataset``, ``experiment``, ``system``), which
  experiments' runs make rows (``experiments``, glob patterns), an explicit ``order`` of field
  values (values not listed follow in the order the runs were given), ``group_by`` (a rule
  between groups in LaTeX; the best value of a column is looked for within a group) and
  ``sort_by`` (a column id: rows of a group sorted by its value, ascending); ``require``
  (column ids that must hold a value somewhere, else the layout has no table: ``codec``
  needs a bitrate);
* **columns**: :class:`Column` entries naming a metric key (``asr.wer``) or a run attribute
  (``bitrate``: transmitted bits per second; ``n``: utterances scored / in the dataset), the
  statistic (``auto``/``mean``/``pooled``), the experiment whose run supplies the cell (Table 2
  takes its VC columns from ``vc`` runs and its F0 columns from ``f0_flat`` runs of the same
  system and dataset), an optional header ``label``, a direction override (F0-manipulation VDE
  is better *high*: the units carry less F0) and a spanning ``group`` header. An empty column
  list means every metric the runs have;
* **bold-best**: on by default, among the rows that share the ``best_within`` fields (default:
  the group); the rows of ``reference_systems`` (ground truth: ``copy``, ``gt``) are not
  candidates (``exclude_reference_from_best``), as in papers; counts and chance levels are
  never ranked.

Presets (:data:`PRESETS`): ``paper`` (the paper's Table 1: resynthesis; PER, WER, VDE, FFE, EER,
MOS-proxy), ``vc`` (Table 2: voice conversion and F0 manipulation side by side), ``codec``
(bitrate + quality), ``all`` (every metric, one row per run). A layout can be loaded from a JSON
or TOML file with the same field names (:func:`load_layout`), e.g.::

    {"name": "mine", "title": "WER and FFE", "rows": ["dataset", "system"],
     "columns": [{"key": "asr.wer", "stat": "pooled"}, "f0.ffe", {"key": "n"}],
     "order": {"system": ["copy", "world"]}}

Experiments are the run manifest's ``config.experiment`` (absent: ``resynthesis``); the names
the presets expect are ``resynthesis``, ``vc`` and ``f0_flat`` (F0 flattened to the speaker
mean), and ``codec`` for codec-only runs.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from resyn_bench.errors import UserError

ROW_FIELDS = ("dataset", "experiment", "system")
SPECIAL_COLUMNS = ("bitrate", "n")
STATS = ("auto", "mean", "pooled")
#: systems treated as the ground truth / topline (compared against, never "best")
REFERENCE_SYSTEMS = ("copy", "gt", "ground_truth", "groundtruth", "topline")
RESYNTHESIS = "resynthesis"


class LayoutError(UserError, ValueError):
    """A layout file or preset name is wrong (the message says what is allowed)."""


@dataclass(frozen=True)
class Column:
    key: str                                   # metric key, or "bitrate" / "n"
    stat: str = "auto"                         # auto (the metric's convention) | mean | pooled
    experiment: str | None = None              # glob: the row's run of this experiment fills it
    #: for ground-truth rows without a run of ``experiment``: the experiment to take it from
    #: (Table 2's GT row shows its resynthesis numbers in the VC columns)
    reference_experiment: str | None = None
    label: str | None = None                   # header text (default: the metric's label)
    higher_is_better: bool | None = None       # direction override (default: the metric's)
    group: str | None = None                   # spanning header over adjacent columns
    ci: bool = True                            # show the CI half-width when the table does
    best: bool = True                          # take part in bold-best
    note: str | None = None                    # caption sentence, when the column is shown
    #: an experiment: the cell is this column's value minus the same system's value in that
    #: experiment (paired over the utterances both scored; the CI is the paired bootstrap's)
    delta_from: str | None = None
    #: context for the other columns (a baseline): a row with values only here is dropped
    supporting: bool = False

    @property
    def id(self) -> str:
        """Unique column name (CSV header): ``[experiment:]key[@stat]``."""
        name = self.key if self.stat == "auto" else f"{self.key}@{self.stat}"
        if self.delta_from:
            name = f"{name}-{self.delta_from}"
        return f"{self.experiment}:{name}" if self.experiment else name

    @classmethod
    def from_value(cls, value: Any) -> Column:
        if isinstance(value, Column):
            return value
        if isinstance(value, str):
            return cls(key=value)
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise LayoutError(f"column {dict(value)!r}: unknown field(s) {unknown}; "
                                  f"allowed: {sorted(known)}")
            if "key" not in value:
                raise LayoutError(f"column {dict(value)!r} has no 'key' (a metric key such as "
                                  f"'asr.wer', or one of {SPECIAL_COLUMNS})")
            col = cls(**value)
            if col.stat not in STATS:
                raise LayoutError(f"column {col.key!r}: stat must be one of {STATS}, got {col.stat!r}")
            return col
        raise LayoutError(f"a column is a metric key or a table of fields, got {value!r}")


@dataclass(frozen=True)
class Layout:
    name: str
    title: str = ""
    columns: tuple[Column, ...] = ()           # empty: every metric of the runs
    rows: tuple[str, ...] = ("dataset", "system")
    experiments: tuple[str, ...] | None = None  # globs; runs of other experiments make no rows
    group_by: str | None = "dataset"
    order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sort_by: str | None = None                 # a column id; rows within a group, ascending
    reference_first: bool = True               # ground-truth rows first within a group
    reference_systems: tuple[str, ...] = REFERENCE_SYSTEMS
    bold_best: bool = True
    exclude_reference_from_best: bool = True
    best_within: str | tuple[str, ...] = "group"   # "group" | "table" | row fields
    drop_empty_columns: bool = True
    drop_empty_rows: bool = True
    count_column: bool = True                  # append the "n" column (scored / total)
    require: tuple[str, ...] = ()              # column ids that must have a value, else no table
    drop_reference_only_groups: bool = False   # a group with only ground-truth rows is left out
    notes: tuple[str, ...] = ()                # caption sentences
    label: str | None = None                   # LaTeX \label (default tab:<name>)
    #: rows keyed by the underlying dataset, whatever split each run used (the split is shown
    #: in the N column): Table 2 takes VC and F0 runs on a split next to full-set resynthesis
    group_splits: bool = False

    def __post_init__(self):
        if isinstance(self.notes, str):     # one sentence given as a string
            object.__setattr__(self, "notes", (self.notes,))
        for f in self.rows:
            if f not in ROW_FIELDS:
                raise LayoutError(f"layout {self.name!r}: row field {f!r} is not one of {ROW_FIELDS}")
        if self.group_by is not None and self.group_by not in self.rows:
            raise LayoutError(f"layout {self.name!r}: group_by {self.group_by!r} must be one of "
                              f"its row fields {self.rows}")
        if isinstance(self.best_within, str):
            if self.best_within not in ("group", "table"):
                raise LayoutError(f"layout {self.name!r}: best_within must be 'group', 'table' or "
                                  f"a list of row fields {self.rows}")
        elif not set(self.best_within) <= set(self.rows):
            raise LayoutError(f"layout {self.name!r}: best_within fields {list(self.best_within)} "
                              f"must be row fields {self.rows}")

    def best_fields(self) -> tuple[str, ...]:
        """Row fields whose values must match for two rows to compete for "best"."""
        if self.best_within == "table":
            return ()
        if self.best_within == "group":
            return (self.group_by,) if self.group_by else ()
        return tuple(self.best_within)

    def is_reference(self, system: str) -> bool:
        return system.lower() in {s.lower() for s in self.reference_systems}

    def takes_experiment(self, experiment: str) -> bool:
        return self.experiments is None or any(fnmatchcase(experiment, p) for p in self.experiments)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["order"] = {k: list(v) for k, v in self.order.items()}
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str | None = None) -> Layout:
        data = dict(data)
        base = data.pop("extends", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LayoutError(f"layout: unknown field(s) {unknown}; allowed: {sorted(known)} "
                              "(and 'extends': a preset name)")
        if "columns" in data:
            data["columns"] = tuple(Column.from_value(c) for c in data["columns"])
        for key in ("rows", "reference_systems", "notes", "require"):
            if key in data:
                data[key] = tuple(data[key])
        if isinstance(data.get("best_within"), list):
            data["best_within"] = tuple(data["best_within"])
        if data.get("experiments") is not None:
            data["experiments"] = tuple(data["experiments"])
        if "order" in data:
            data["order"] = {k: tuple(v) for k, v in dict(data["order"]).items()}
        if base is not None:
            new_name = data.pop("name", None) or name or base
            data.setdefault("label", f"tab:{new_name}")
            return replace(get_preset(base), name=new_name, **data)
        data.setdefault("name", name or "custom")
        return cls(**data)


_MOS_NOTE = "MOS-proxy: DNSMOS P.835 OVRL (a model's estimate, not a listening test)."
BITRATE_NOTE = ("Bitrate: frame rate x ceil(log2 vocabulary) summed over the discrete streams "
                 "(units, F0 codes); the speaker identity is not counted; – for systems without "
                 "discrete streams.")

#: the paper's Table 1 (resynthesis). dPER/dWER stand in for PER/WER on data without text.
PAPER = Layout(
    name="paper", title="Resynthesis (Table 1)",
    columns=(Column("asr.per"), Column("asr.dper"), Column("asr.wer"), Column("asr.dwer"),
             Column("f0.vde"), Column("f0.ffe"), Column("spk.eer", label="EER"),
             Column("dnsmos.ovrl", label="MOS-proxy", note=_MOS_NOTE)),
    experiments=(RESYNTHESIS,), label="tab:resynthesis")

_VC = {"experiment": "vc", "reference_experiment": RESYNTHESIS, "group": "Voice conversion"}
_F0 = {"experiment": "f0_flat", "group": "F0 manipulation (flat)", "higher_is_better": True}
#: the same system's resynthesis VDE/FFE: the baseline the flat-F0 figures are read against
_F0_BASE = {"experiment": RESYNTHESIS, "group": "F0 manipulation (flat)", "best": False,
            "supporting": True}
F0_BASELINE_NOTE = ("VDE/FFE (resyn.): the same system's resynthesis figures, the floor a flat-F0 "
                    "figure is read against; Δ = flat - resynthesis on the utterances both "
                    "scored (paired bootstrap CI): near 0 means the output follows the original "
                    "F0 whatever the F0 stream says; * on a Δ: it differs from 0 (p < 0.05).")
#: the paper's Table 2: voice conversion (left) and F0 manipulation (right) per system
VC = Layout(
    name="vc", title="Voice conversion and F0 manipulation (Table 2)",
    columns=(Column("asr.per", **_VC), Column("asr.dper", **_VC), Column("asr.wer", **_VC),
             Column("asr.dwer", **_VC), Column("spk.eer", label="EER", **_VC),
             Column("dnsmos.ovrl", label="MOS-proxy", note=_MOS_NOTE, **_VC),
             Column("f0.vde", label="VDE (resyn.)", note=F0_BASELINE_NOTE, **_F0_BASE),
             Column("f0.vde", **_F0), Column("f0.vde", label="ΔVDE", delta_from=RESYNTHESIS, **_F0),
             Column("f0.ffe", label="FFE (resyn.)", **_F0_BASE),
             Column("f0.ffe", **_F0), Column("f0.ffe", label="ΔFFE", delta_from=RESYNTHESIS, **_F0)),
    notes=("VC: each utterance converted to target speakers; EER against the target speaker. "
           "F0 manipulation: F0 flattened to the speaker mean before synthesis, VDE/FFE against "
           "the original F0: higher means the units carry less F0 (better disentanglement). "
           "Ground-truth rows show resynthesis numbers in the VC columns.",),
    drop_reference_only_groups=True, group_splits=True, label="tab:vc-f0")

#: bitrate of the transmitted discrete streams against quality
CODEC = Layout(
    name="codec", title="Bitrate and quality (codec)",
    columns=(Column("bitrate", best=False, note=BITRATE_NOTE),
             Column("dnsmos.ovrl", label="MOS-proxy", note=_MOS_NOTE),
             Column("intrusive.pesq"), Column("intrusive.estoi"), Column("intrusive.mcd"),
             Column("asr.wer"), Column("asr.dwer"), Column("f0.ffe"), Column("spk.eer", label="EER")),
    experiments=(RESYNTHESIS, "codec"), sort_by="bitrate", require=("bitrate",),
    label="tab:codec")

#: every metric, one row per run
ALL = Layout(name="all", title="All metrics", rows=("dataset", "experiment", "system"),
             best_within=("dataset", "experiment"), label="tab:all")

PRESETS: dict[str, Layout] = {layout.name: layout for layout in (PAPER, VC, CODEC, ALL)}


def get_preset(name: str) -> Layout:
    try:
        return PRESETS[name]
    except KeyError:
        raise LayoutError(f"unknown layout {name!r}: use one of {sorted(PRESETS)} or a .json/.toml "
                          "layout file") from None


def load_layout(source: str | Path | Mapping[str, Any] | Layout) -> Layout:
    """A preset name, a JSON/TOML file path, a dict, or a :class:`Layout` (returned as is)."""
    if isinstance(source, Layout):
        return source
    if isinstance(source, Mapping):
        return Layout.from_dict(source)
    text = str(source)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix.lower() not in (".json", ".toml"):
        raise LayoutError(f"unknown layout {text!r}: use one of {sorted(PRESETS)} or a .json/.toml "
                          "layout file")
    if not path.exists():
        raise FileNotFoundError(f"layout file {path} does not exist")
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(raw)
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise LayoutError(f"{path}: TOML layouts need Python >= 3.11 (or the tomli "
                                  "package); write the layout as JSON instead") from None
        data = tomllib.loads(raw)
    if not isinstance(data, dict):
        raise LayoutError(f"{path}: a layout file holds one table/object of layout fields")
    return Layout.from_dict(data, name=data.get("name") or path.stem)


def resolve_layouts(names: Sequence[str | Path | Layout] | None) -> list[Layout]:
    """Layouts for a report: the ones asked for, or by default ``paper``, ``vc``, ``codec``,
    ``all`` (empty tables are skipped by the report)."""
    return [load_layout(n) for n in (names or ("paper", "vc", "codec", "all"))]
