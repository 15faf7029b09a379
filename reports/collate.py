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

from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.stats import CI
from resyn_bench.store import read_manifest, read_records


@dataclass
class MetricSummary:
    spec: MetricSpec
    mean: float | None          # mean of defined per-utterance values
    std: float | None           # sample std of the same (ddof=1); None for n < 2
    pooled: float | None        # corpus-level value: group.aggregate() (pooled counts, EER, ...)
    n: int                      # utterances with a defined value
    ci_pooled: CI | None = None  # bootstrap CI (speakers, then utterances) of ``pooled``
    ci_mean: CI | None = None    # the same for ``mean``

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
                "pooled": self.pooled, "n": self.n, "higher_is_better": self.spec.higher_is_better,
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
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # metric group -> settings
    records: list[dict[str, Any]] = field(default_factory=list)
    dataset_key: tuple = ()      # (name, root, split, limit): runs comparable utterance by utterance
    groups: dict[str, Any] = field(default_factory=dict)     # group name -> group object
    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per group

    @property
    def complete(self) -> bool:
        return self.n_records >= self.n_total

    def to_dict(self, with_records: bool = False) -> dict[str, Any]:
        d = {"run_dir": str(self.run_dir), "system": self.system, "dataset": self.dataset,
             "n_total": self.n_total, "n_records": self.n_records, "n_ok": self.n_ok,
             "n_partial": self.n_partial, "n_failed": self.n_failed,
             "failures": dict(self.failures), "settings": self.settings,
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


def _group_cis(*args, **kwargs):
    from resyn_bench.reports.uncertainty import group_cis

    return group_cis(*args, **kwargs)


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


def dataset_key(manifest: dict[str, Any]) -> tuple:
    cfg = manifest.get("config", {})
    return (cfg.get("dataset"), manifest.get("dataset", {}).get("root") or cfg.get("data_root"),
            cfg.get("split"), cfg.get("limit"))


def dataset_label(manifest: dict[str, Any]) -> str:
    """A table label for the data: the dataset name, or for a generic manifest the corpus
    folder's name; a split file's name is appended."""
    name, root, split, _ = dataset_key(manifest)
    label = str(name)
    if name == "manifest" and root:
        path = Path(root)
        label = path.parent.name if path.suffix.lower() in (".tsv", ".txt") else path.name
    if split:
        label += f" ({Path(split).stem})"
    return label


def _failure_key(rec: dict[str, Any]) -> str:
    kind = rec.get("error_kind")
    return f"{rec.get('stage', '?')}: {kind}" if kind else f"{rec.get('stage', '?')}"


def summarize_run(run_dir: str | Path, n_boot: int = 1000, seed: int = 0) -> RunSummary:
    """Collate one run. ``n_boot=0`` skips the bootstrap CIs."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    groups = list(manifest.get("metrics", {}))
    records = sorted(read_records(run_dir, groups), key=lambda r: r["utt_id"])
    status = Counter(r.get("status") for r in records)
    summary = RunSummary(run_dir=run_dir, system=manifest["config"]["system"],
                         dataset=dataset_label(manifest), dataset_key=dataset_key(manifest),
                         n_total=manifest.get("dataset", {}).get("n_utterances", len(records)),
                         n_records=len(records), n_ok=status["ok"], n_partial=status["partial"],
                         n_failed=status["failed"], records=records,
                         failures=Counter(_failure_key(r) for r in records if r.get("status") == "failed"))
    for group, info in manifest.get("metrics", {}).items():
        summary.settings[group] = info.get("settings", {})
        specs = [MetricSpec.from_dict(s) for s in info.get("specs", [])]
        entries = group_entries(records, group)
        obj = metric_group(group, info.get("options"))
        corpus = obj.aggregate(entries) if obj is not None and entries else {}
        ci_corpus, ci_mean = ({}, {}) if obj is None or n_boot <= 0 else _group_cis(
            obj, entries, [s.key for s in specs], corpus, n_boot=n_boot, seed=seed)
        summary.groups[group], summary.entries[group] = obj, entries
        for spec in specs:
            values = [e["values"][spec.key] for e in entries if e["values"].get(spec.key) is not None]
            mean, std = _mean_std(values)
            summary.metrics[spec.key] = MetricSummary(spec, mean, std, corpus.get(spec.key), len(values),
                                                      ci_corpus.get(spec.key), ci_mean.get(spec.key))
    return summary
