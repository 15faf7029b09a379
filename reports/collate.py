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

import numpy as np
from resyn_bench.metrics.base import MetricSpec
from resyn_bench.reports.stats import CI

from resyn_bench.errors import UsageError
from resyn_bench.store import read_manifest, read_records

RESYNTHESIS = "resynthesis"


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


def _group_cis(group, entries, keys, corpus, n_boot: int = 1000, seed: int = 0):
    """(CIs of the corpus values, CIs of the utterance means), as
    :func:`~resyn_bench.reports.uncertainty.group_cis`; trial-scored groups (speaker EER,
    minDCF) take the vectorised :class:`TrialDesign` path, with the same replicates and the
    same numbers as calling ``aggregate`` on each."""
    from resyn_bench.reports import uncertainty as u

    design = TrialDesign.maybe(group, entries)
    if design is None:
        return u.group_cis(group, entries, keys, corpus, n_boot=n_boot, seed=seed)
    speakers = [e.get("speaker") for e in entries]
    reps = design.replicates(u.bootstrap_weights(speakers, n_boot, seed))
    corpus_ci, mean_ci = {}, {}
    for key in keys:
        if corpus.get(key) is not None:
            corpus_ci[key] = u._ci(corpus[key], [r.get(key) for r in reps], u.LEVEL, n_boot)
        values = [e["values"].get(key) for e in entries]
        if any(v is not None for v in values):
            defined = [v for v in values if v is not None]
            mean_ci[key] = u._ci(float(np.mean(defined)),
                                 u.mean_replicates(values, speakers, n_boot, seed), u.LEVEL, n_boot)
    return corpus_ci, mean_ci


class TrialDesign:
    """Corpus statistics of a trial-scored group (the speaker metrics: EER and minDCF from every
    output-vs-speaker trial score, accuracy from counts) on many bootstrap replicates at once.

    A replicate is a multiplicity vector ``w`` over utterances (``bootstrap_weights``); every
    trial score then counts ``w[utt]`` times. All scores are sorted once; per block of
    replicates, cumulative weights give FAR/FRR at every distinct score, and EER/minDCF follow
    with the exact formulas of :func:`resyn_bench.metrics.speaker.eer` / ``min_dcf`` (extra
    operating points at scores a replicate did not draw repeat a neighbouring point, so they
    change neither). Tests check equality with ``group.aggregate`` on indexed replicates.
    """

    KEYS = ("spk.eer", "spk.min_dcf", "spk.chance", "spk.n_target_trials", "spk.n_nontarget_trials",
            "spk.source_eer")

    def __init__(self, group, entries: list[dict[str, Any]]):
        self.group = group
        n = len(entries)
        utt, score, is_tar, is_src, has_src = [], [], [], [], []
        speakers: dict[str, int] = {}
        enrolled_pairs = []
        for i, e in enumerate(entries):
            extra = e.get("extra") or {}
            trials, target = extra.get("trials"), extra.get("target")
            if not trials or target is None:
                continue
            for spk, value in trials.items():
                enrolled_pairs.append((i, speakers.setdefault(spk, len(speakers))))
                if value is None or not math.isfinite(value):
                    continue
                utt.append(i)
                score.append(float(value))
                is_tar.append(spk == target)
                # voice conversion: the same trials judged against the source speaker
                is_src.append(spk == extra.get("source"))
                has_src.append(extra.get("source") is not None)
        order = np.argsort(np.asarray(score, dtype=np.float64), kind="stable")
        self.score = np.asarray(score, dtype=np.float64)[order]
        self.utt = np.asarray(utt, dtype=np.int64)[order]
        self.is_tar = np.asarray(is_tar, dtype=bool)[order]
        self.is_src = np.asarray(is_src, dtype=bool)[order]
        self.has_src = np.asarray(has_src, dtype=bool)[order]
        # first position of each distinct score: "scores < threshold" = exclusive cumsum there
        self.first = np.flatnonzero(np.r_[True, self.score[1:] != self.score[:-1]]) \
            if self.score.size else np.zeros(0, dtype=np.int64)
        self.enrolled = np.zeros((n, max(1, len(speakers))), dtype=np.float64)
        for i, k in enrolled_pairs:
            self.enrolled[i, k] = 1.0
        self.has_speakers = bool(speakers)
        self.count_keys = sorted({k for e in entries for k in (e.get("counts") or {})})
        self.counts = np.array([[float((e.get("counts") or {}).get(k) or 0.0) for k in self.count_keys]
                                for e in entries]).reshape(n, len(self.count_keys))

    @classmethod
    def maybe(cls, group, entries) -> TrialDesign | None:
        """A design when ``group`` is the trial-scored speaker group, else None."""
        try:
            from resyn_bench.metrics.speaker import SpeakerMetrics
        except ImportError:
            return None
        if type(group).aggregate is not SpeakerMetrics.aggregate or not entries:
            return None
        return cls(group, entries)

    def block_stats(self, w: np.ndarray) -> dict[str, list[float | None]]:
        """Trial statistics for each row of a weight block ``w`` (replicates x utterances)."""
        b = w.shape[0]
        out: dict[str, list[float | None]] = {k: [None] * b for k in self.KEYS}
        ws = w[:, self.utt] if self.utt.size else np.zeros((b, 0))
        n_tar, n_non, ct, cn = self._rates(ws, self.is_tar, np.ones_like(self.is_tar))
        if self.has_src.any():
            s_tar, s_non, st, sn = self._rates(ws, self.is_src, self.has_src)
            for r in range(b):
                if s_tar[r] > 0 and s_non[r] > 0:
                    out["spk.source_eer"][r] = self._eer(st[r], sn[r], s_tar[r], s_non[r])[0]
        enrolled = ((w > 0).astype(np.float64) @ self.enrolled > 0).sum(axis=1) \
            if self.has_speakers else np.zeros(b)
        p = self.group.p_target
        for r in range(b):
            out["spk.n_target_trials"][r] = float(n_tar[r])
            out["spk.n_nontarget_trials"][r] = float(n_non[r])
            out["spk.chance"][r] = 1.0 / enrolled[r] if enrolled[r] else None
            if n_tar[r] == 0 or n_non[r] == 0:
                continue
            out["spk.eer"][r], far, frr = self._eer(ct[r], cn[r], n_tar[r], n_non[r])
            dcf = 1.0 * p * frr + 1.0 * (1.0 - p) * far
            out["spk.min_dcf"][r] = float(np.min(dcf) / min(1.0 * p, 1.0 * (1.0 - p)))
        return out

    def _rates(self, ws: np.ndarray, positive: np.ndarray, used: np.ndarray):
        """Weighted trial totals and weight strictly below each distinct score (exclusive
        cumulative sums) of the positive (claimed identity) and negative trials in use."""
        wt = np.where(positive, ws, 0.0)
        wn = np.where(used & ~positive, ws, 0.0)
        ct = (np.cumsum(wt, axis=1) - wt)[:, self.first]
        cn = (np.cumsum(wn, axis=1) - wn)[:, self.first]
        return wt.sum(axis=1), wn.sum(axis=1), ct, cn

    @staticmethod
    def _eer(ct, cn, n_tar, n_non):
        """EER (as :func:`resyn_bench.metrics.speaker.eer`) with the FAR/FRR curves."""
        far = np.append(1.0 - cn / n_non, 0.0)
        frr = np.append(ct / n_tar, 1.0)
        d = far - frr
        i = int(np.argmax(d <= 0))
        if d[i] == 0:
            return float(far[i]), far, frr
        t = d[i - 1] / (d[i - 1] - d[i])
        return float(far[i - 1] + t * (far[i] - far[i - 1])), far, frr

    def replicates(self, weight_blocks) -> list[dict[str, float | None]]:
        """``group.aggregate`` of every replicate (as dicts), from blocks of weights."""
        reps: list[dict[str, float | None]] = []
        for w in weight_blocks:
            stats = self.block_stats(w)
            sums = w @ self.counts
            for r in range(w.shape[0]):
                d = dict(self.group.pool(dict(zip(self.count_keys, sums[r].tolist()))))
                d.update({k: stats[k][r] for k in self.KEYS})
                reps.append(d)
        return reps


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


def dataset_label(manifest: dict[str, Any], with_split: bool = True) -> str:
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


def experiment_label(manifest: dict[str, Any]) -> str:
    """The run's experiment: ``config.experiment`` (a name, or a table with ``name``/``kind``);
    runs written before experiments existed are resynthesis runs."""
    exp = manifest.get("config", {}).get("experiment")
    if isinstance(exp, dict):
        exp = exp.get("name") or exp.get("kind")
    return str(exp) if exp else RESYNTHESIS


def bitrate_bps(streams: list[dict[str, Any]] | None) -> float | None:
    """Bits per second a system transmits, computed from its stream specs (the manifest's
    ``system.streams``): for every *discrete* stream with a frame rate and a vocabulary,
    ``frame_rate x ceil(log2 vocab_size)``, summed (units and F0 codes alike). Speaker streams
    (an identity sent once per utterance), continuous streams and waveforms are not counted;
    a system without a countable discrete stream has no bitrate (None). This reproduces the
    paper's unit rates (HuBERT K=100 at 50 Hz: 350 bps; F0 codes K=20 at 12.5 Hz: 62.5 bps)."""
    total, counted = 0.0, False
    for s in streams or []:
        if s.get("kind") != "discrete":
            continue
        rate, vocab = s.get("frame_rate"), s.get("vocab_size")
        if not rate or not vocab or vocab < 1:
            continue
        total += float(rate) * math.ceil(math.log2(vocab))  # K=1 carries 0 bits
        counted = True
    return total if counted else None


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


def run_bitrate(manifest: dict[str, Any], records: list[dict[str, Any]]
                ) -> tuple[float | None, str | None]:
    """A run's bitrate and its source: a measured (or declared) per-utterance rate takes
    precedence over the one computed from the stream specs."""
    measured = measured_bitrate(records)
    if measured is not None:
        return measured[0], measured[1]
    spec = bitrate_bps((manifest.get("system") or {}).get("streams"))
    return spec, ("streams" if spec is not None else None)


def system_label(manifest: dict[str, Any]) -> str:
    """Row label of a run: ``config.label`` if set, else the system name with its options
    (``world (f0_method=dio)``) so two settings of one system stay apart."""
    cfg = manifest.get("config", {})
    if cfg.get("label"):
        return str(cfg["label"])
    opts = cfg.get("system_options") or {}
    name = str(cfg.get("system"))
    short = _path_system_label(name)
    if short is not None:
        # outputs:DIR -> the folder's name (other NAME:PATH systems -> NAME:folder); the
        # file-name pattern and the full path stay in the manifest, not in the row name
        name, opts = short, {k: v for k, v in opts.items() if k != "pattern"}
    if not opts:
        return name
    return f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(opts.items()))})"


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


def _path_system_label(system: str) -> str | None:
    """Short name of a ``NAME:PATH`` system spec (``outputs:/x/y/hifigan_gen`` ->
    ``hifigan_gen``, ``ckpt:/x/run7/`` -> ``ckpt:run7``); None for other specs."""
    name, sep, arg = system.partition(":")
    if not sep or not arg or ("/" not in arg and "\\" not in arg and not arg.startswith(".")):
        return None
    folder = Path(arg.rstrip("/\\")).name or arg
    return folder if name == "outputs" else f"{name}:{folder}"


def rename_runs(summaries: list[RunSummary], renames: dict[str, str]) -> None:
    """Set row labels: each ``OLD`` (a row label as the tables show it, or a run folder's
    name) becomes ``NEW``. An ``OLD`` that names no run is an error listing the labels."""
    known = {}
    for s in summaries:
        known.setdefault(s.system_label or s.system, []).append(s)
        known.setdefault(s.run_dir.name, []).append(s)
    missing = [old for old in renames if old not in known]
    if missing:
        labels = sorted({s.system_label or s.system for s in summaries})
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
                         failures=Counter(_failure_key(r) for r in records if r.get("status") == "failed"),
                         losses=utterance_losses(records),
                         experiment=experiment_label(manifest), system_label=system_label(manifest),
                         status=manifest.get("status"),
                         dataset_name=dataset_label(manifest, with_split=False),
                         split=Path(str(dataset_key(manifest)[2])).stem
                         if dataset_key(manifest)[2] else None)
    summary.bitrate, summary.bitrate_source = run_bitrate(manifest, records)
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
            n, unit = len(values), "utterances"
            trials = _trials_used(corpus) if not values and corpus.get(spec.key) is not None \
                else None
            if trials is not None:
                n, unit = trials, "trials"
            summary.metrics[spec.key] = MetricSummary(spec, mean, std, corpus.get(spec.key), n,
                                                      ci_corpus.get(spec.key), ci_mean.get(spec.key),
                                                      n_unit=unit)
    return summary
