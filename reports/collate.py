"""Collate run directories into per-system summaries (the input of every table and report).

Reads only stored run files (``manifest.json`` + ``records.jsonl``); pooled values are recomputed
from the records' additive counts with each metric group's ``pool`` rule, so a report never
depends on numbers cached at run time. Metric groups must keep their constructors cheap (no
model loading), which lets reports instantiate them for pooling.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resyn_bench.core.bitrate import bitrate_bps  # the one bitrate formula (manifest streams)
from resyn_bench.errors import UsageError
from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.labels import run_label, summary_label
from resyn_bench.reports.stats import CI, group_cis
from resyn_bench.runfiles import Manifest, parse_manifest, read_manifest

RESYNTHESIS = "resynthesis"

#: Version of the pooling code: how :func:`summarize_run` turns stored record parts into the
#: reported numbers (each group's ``aggregate``/``pool`` over its additive counts, the mean/std
#: of per-utterance values, the status rules of :func:`resyn_bench.store.merge_events`). The
#: runner records it in each manifest (``pooling_version``); ``resyn-bench report`` warns when a
#: run was scored under another one. Bump rule: bump it when a change makes the same stored
#: records (or the counts a group stores for the same audio) pool to different numbers; a
#: change that adds metrics or only changes presentation does not bump it.
POOLING_VERSION = 1


@dataclass
class MetricSummary:
    spec: MetricSpec
    mean: float | None          # mean of defined per-utterance values
    std: float | None           # sample std of the same (ddof=1); None for n < 2
    pooled: float | None        # corpus-level value: group.aggregate() (pooled counts, EER, ...)
    n: int                      # utterances with a defined value
    ci_pooled: CI | None = None  # bootstrap CI (speakers, then utterances) of ``pooled``
    ci_mean: CI | None = None    # the same for ``mean``
    #: what ``n`` counts: "utterances" (with a defined value) or, for corpus-only numbers
    #: computed from trials (EER, minDCF), "trials" (target + non-target scores used)
    n_unit: str = "utterances"

    def value(self, stat: str) -> float | None:
        if stat == "pooled" or self.mean is None:  # corpus-only numbers (EER) have no mean
            return self.pooled
        return self.mean

    def ci(self, stat: str) -> CI | None:
        if stat == "pooled" or self.mean is None:
            return self.ci_pooled
        return self.ci_mean

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.spec.label, "mean": self.mean, "std": self.std,
                "pooled": self.pooled, "n": self.n, "n_unit": self.n_unit,
                "higher_is_better": self.spec.higher_is_better,
                "unit": self.spec.unit, "percent": self.spec.percent,
                "ci_mean": self.ci_mean.to_dict() if self.ci_mean else None,
                "ci_pooled": self.ci_pooled.to_dict() if self.ci_pooled else None}


@dataclass
class RunSummary:
    run_dir: Path
    system: str
    dataset: str
    n_total: int                # utterances in the dataset selection
    n_records: int
    n_ok: int
    n_partial: int
    n_failed: int
    failures: Counter = field(default_factory=Counter)   # "stage: kind" -> count
    # utterances each part lost and why: {"system"|group: Counter(crashed|timed_out|error)}
    losses: dict[str, Counter] = field(default_factory=dict)
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # metric group -> settings
    records: list[dict[str, Any]] = field(default_factory=list)
    dataset_key: tuple = ()      # (name, root, split, limit): runs comparable utterance by utterance
    groups: dict[str, Any] = field(default_factory=dict)     # group name -> group object
    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per group
    experiment: str = RESYNTHESIS  # manifest config.experiment (absent: resynthesis)
    bitrate: float | None = None  # bits/s: measured (:func:`measured_bitrate`), else from the
    #                               discrete streams' specs (:func:`bitrate_bps`)
    #: where ``bitrate`` comes from: "measured" / "declared" (per-utterance bitstream records:
    #: total bits / total seconds), "streams" (stream specs), None (no bitrate)
    bitrate_source: str | None = None
    system_label: str = ""        # row label: config.label, else system [options]
    status: str | None = None     # manifest status: running / interrupted / complete (absent: old)
    dataset_name: str = ""        # the dataset label without the split (Table 2 groups by it)
    split: str | None = None      # the split file's name (stem), when the run used --split
    manifest: Manifest | None = field(default=None, repr=False)  # the run's manifest, typed

    @property
    def complete(self) -> bool:
        return self.n_records >= self.n_total

    @property
    def n_done(self) -> int:
        """Utterances with a final status (ok, partial or failed; not 'incomplete')."""
        return self.n_ok + self.n_partial + self.n_failed

    @property
    def unfinished(self) -> str | None:
        """Why the figures may not cover the run, or None for a finished run: the manifest says
        it is running (or was stopped without a word: a killed process leaves 'running') or was
        interrupted, or utterances have no final record."""
        if self.status in ("running", "interrupted"):
            how = ("still running, or stopped without finishing" if self.status == "running"
                   else "interrupted")
            return f"{how} (manifest status {self.status!r}); {self.n_done}/{self.n_total} done"
        if self.n_done < self.n_total:
            return f"{self.n_done}/{self.n_total} utterances done (resume the run to finish it)"
        return None

    def to_dict(self, with_records: bool = False) -> dict[str, Any]:
        d = {"run_dir": str(self.run_dir), "system": self.system, "dataset": self.dataset,
             "experiment": self.experiment, "system_label": self.system_label or self.system,
             "bitrate": self.bitrate, "bitrate_source": self.bitrate_source,
             "n_total": self.n_total, "n_records": self.n_records, "n_ok": self.n_ok,
             "n_partial": self.n_partial, "n_failed": self.n_failed,
             "status": self.status, "unfinished": self.unfinished,
             "failures": dict(self.failures), "settings": self.settings,
             "losses": {k: dict(v) for k, v in self.losses.items()},
             "metrics": {k: m.to_dict() for k, m in self.metrics.items()}}
        if with_records:
            d["utterances"] = [{k: r.get(k) for k in ("utt_id", "speaker", "status", "stage",
                                                     "reason", "metrics")} for r in self.records]
        return d


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def metric_group(name: str, options: dict[str, Any] | None = None):
    """The run's metric group object (cheap to build: no models) for aggregation."""
    from resyn_bench.registry import METRIC_GROUPS

    entry = METRIC_GROUPS.get(name)
    return entry.load()(**(options or {})) if entry is not None else None


def group_entries(records: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """Per-utterance entries of one group (group-local counts), for aggregate() and bootstrap."""
    out = []
    for r in records:
        ev = r.get("scores", {}).get(group)
        if r.get("status") == "failed" or not ev or ev.get("status") != "ok":
            continue
        out.append({"utt_id": r["utt_id"], "speaker": r.get("speaker"), "values": ev.get("values") or {},
                    "counts": ev.get("counts") or {}, "extra": ev.get("extra") or {}})
    return out


def as_manifest(manifest: Manifest | dict[str, Any]) -> Manifest:
    """A typed manifest (a dict, as stored or partial, is upgraded and validated)."""
    return manifest if isinstance(manifest, Manifest) else parse_manifest(manifest)


def dataset_key(manifest: Manifest | dict[str, Any]) -> tuple:
    """(dataset name, root, split, limit): runs comparable utterance by utterance."""
    m = as_manifest(manifest)
    return (m.config.dataset, m.dataset.root or m.config.data_root, m.config.split, m.config.limit)


def dataset_label(manifest: Manifest | dict[str, Any], with_split: bool = True) -> str:
    """A table label for the data: the dataset name, or for a generic manifest the corpus
    folder's name; a split file's name is appended (unless ``with_split=False``)."""
    name, root, split, _ = dataset_key(manifest)
    if not with_split:
        split = None
    label = str(name)
    if name == "manifest" and root:
        path = Path(root)
        label = path.parent.name if path.suffix.lower() in (".tsv", ".txt") else path.name
    if split:
        label += f" ({Path(split).stem})"
    return label


def experiment_label(manifest: Manifest | dict[str, Any]) -> str:
    """The run's experiment: ``config.experiment`` (a name, or a table with ``name``/``kind``);
    runs written before experiments existed are resynthesis runs."""
    exp = as_manifest(manifest).config.experiment
    if isinstance(exp, dict):
        exp = exp.get("name") or exp.get("kind")
    return str(exp) if exp else RESYNTHESIS


def measured_bitrate(records: list[dict[str, Any]]) -> tuple[float, str, dict[str, Any]] | None:
    """Bitrate from the per-utterance bitstream records (``record["bitstream"]``, written by
    systems whose encoder output is counted, e.g. codec2 and opus): total bits / total seconds
    over the utterances that have one, with its source (``measured``, or ``declared`` when every
    record is declared) and the pooled counts; None when no record has one. Malformed entries
    are ignored."""
    bits = seconds = 0.0
    n, sources = 0, set()
    for r in records:
        b = r.get("bitstream")
        if not isinstance(b, dict):
            continue
        nb, sec = b.get("bits"), b.get("seconds")
        if isinstance(nb, bool) or isinstance(sec, bool) or not isinstance(nb, (int, float)) \
                or not isinstance(sec, (int, float)) or not math.isfinite(nb) or nb < 0 \
                or not math.isfinite(sec) or sec <= 0:
            continue
        bits += float(nb)
        seconds += float(sec)
        n += 1
        sources.add(b.get("source") or "measured")
    if not n:
        return None
    source = "declared" if sources == {"declared"} else "measured"
    return bits / seconds, source, {"bits": bits, "seconds": seconds, "n_utterances": n}


def run_bitrate(manifest: Manifest | dict[str, Any], records: list[dict[str, Any]]
                ) -> tuple[float | None, str | None]:
    """A run's bitrate and its source: a measured (or declared) per-utterance rate takes
    precedence over the one computed from the stream specs."""
    measured = measured_bitrate(records)
    if measured is not None:
        return measured[0], measured[1]
    spec = bitrate_bps(as_manifest(manifest).streams)
    return spec, ("streams" if spec is not None else None)


#: the label of a run (one rule for every report: resyn_bench.reports.labels)
system_label = run_label


LOSS_KINDS = ("crashed", "timed_out", "error")


def utterance_losses(records: list[dict[str, Any]]) -> dict[str, Counter]:
    """How many utterances each part of a run lost, and why: synthesis failures under their
    stage (reference, system, output), metric failures under their group; the kind is
    ``crashed`` (the worker process died), ``timed_out`` (killed at the time limit) or
    ``error`` (any other failure, with its reason in the record)."""
    out: dict[str, Counter] = {}

    def kind(kind_field: Any) -> str:
        return kind_field if kind_field in ("crashed", "timed_out") else "error"

    for r in records:
        if r.get("status") == "failed" and r.get("stage") not in (None, "metrics"):
            out.setdefault(str(r["stage"]), Counter())[kind(r.get("error_kind"))] += 1
        for group, ev in (r.get("scores") or {}).items():
            if ev.get("status") == "failed":
                out.setdefault(group, Counter())[kind(ev.get("error_kind"))] += 1
    return out


def format_losses(losses: dict[str, Counter]) -> str:
    """``system: 1 crashed; f0: 2 error; pesq: 1 timed out`` (empty if nothing was lost)."""
    return "; ".join(f"{part}: " + ", ".join(f"{c[k]} {k.replace('_', ' ')}" for k in LOSS_KINDS if c[k])
                     for part, c in losses.items() if sum(c.values()))


def _trials_used(corpus: dict[str, Any]) -> int | None:
    """Trials behind a corpus-only number (speaker EER / minDCF): target + non-target trial
    counts the group reports with it, or None when it reports none."""
    counts = [v for k, v in corpus.items()
              if k.endswith((".n_target_trials", ".n_nontarget_trials")) and v is not None]
    return int(round(sum(counts))) if counts else None


def rename_runs(summaries: list[RunSummary], renames: dict[str, str]) -> None:
    """Set row labels: each ``OLD`` (a row label as the tables show it, or a run folder's
    name) becomes ``NEW``. An ``OLD`` that names no run is an error listing the labels."""
    known = {}
    for s in summaries:
        known.setdefault(summary_label(s), []).append(s)
        known.setdefault(s.run_dir.name, []).append(s)
    missing = [old for old in renames if old not in known]
    if missing:
        labels = sorted({summary_label(s) for s in summaries})
        raise UsageError(f"--rename: no run labelled {', '.join(map(repr, missing))}; labels of "
                         f"these runs: {', '.join(map(repr, labels))} (a run folder's name works too)")
    for old, new in renames.items():
        for s in known[old]:
            s.system_label = new


def _failure_key(rec: dict[str, Any]) -> str:
    kind = rec.get("error_kind")
    return f"{rec.get('stage', '?')}: {kind}" if kind else f"{rec.get('stage', '?')}"


def summarize_run(run_dir: str | Path, n_boot: int = 1000, seed: int = 0) -> RunSummary:
    """Collate one run. ``n_boot=0`` skips the bootstrap CIs."""
    from resyn_bench.runfiles import RunFileError, iter_records

    run_dir = Path(run_dir)
    typed = read_manifest(run_dir)
    if typed.config.system is None:
        raise RunFileError(f"{run_dir / 'manifest.json'}: field 'config.system' is missing; "
                         "not a resyn-bench run")
    typed_records = sorted(iter_records(run_dir, list(typed.metrics)), key=lambda r: r.utt_id)
    records = [r.to_dict() for r in typed_records]
    status = Counter(r.status for r in typed_records)
    summary = RunSummary(run_dir=run_dir, system=typed.config.system,
                         dataset=dataset_label(typed), dataset_key=dataset_key(typed),
                         n_total=typed.dataset.n_utterances if typed.dataset.n_utterances is not None
                         else len(records),
                         n_records=len(records), n_ok=status["ok"], n_partial=status["partial"],
                         n_failed=status["failed"], records=records,
                         failures=Counter(_failure_key(r) for r in records if r.get("status") == "failed"),
                         losses=utterance_losses(records),
                         experiment=experiment_label(typed), system_label=run_label(typed),
                         status=typed.status,
                         dataset_name=dataset_label(typed, with_split=False),
                         split=Path(typed.config.split).stem if typed.config.split else None,
                         manifest=typed)
    summary.bitrate, summary.bitrate_source = run_bitrate(typed, records)
    for group, info in typed.metrics.items():
        summary.settings[group] = info.settings
        specs = [MetricSpec.from_dict(s) for s in info.specs]
        entries = group_entries(records, group)
        obj = metric_group(group, info.options)
        corpus = obj.aggregate(entries) if obj is not None and entries else {}
        ci_corpus, ci_mean = ({}, {}) if obj is None or n_boot <= 0 else group_cis(
            obj, entries, [s.key for s in specs], corpus, n_boot=n_boot, seed=seed)
        summary.groups[group], summary.entries[group] = obj, entries
        for spec in specs:
            values = [e["values"][spec.key] for e in entries if e["values"].get(spec.key) is not None]
            mean, std = _mean_std(values)
            n, unit = len(values), "utterances"
            trials = _trials_used(corpus) if not values and corpus.get(spec.key) is not None \
                else None
            if trials is not None:
                n, unit = trials, "trials"
            summary.metrics[spec.key] = MetricSummary(spec, mean, std, corpus.get(spec.key), n,
                                                      ci_corpus.get(spec.key), ci_mean.get(spec.key),
                                                      n_unit=unit)
    return summary
