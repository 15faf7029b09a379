"""Bootstrap confidence intervals and paired significance for every corpus-level number.

For one metric group, all its keys are resampled together (one set of replicates, resampling
speakers then utterances, seeded): groups with the default count-based ``aggregate`` take the
vectorised count path (``W @ counts``); others (EER from trials, ...) call ``aggregate`` on
each replicate's entries.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from resyn_bench.metrics.base import MetricGroup
from resyn_bench.reports.stats import (
    CI,
    PairedResult,
    _paired_result,
    bootstrap_weights,
    iter_bootstrap_indices,
    paired_bootstrap,
)

N_BOOT = 1000
LEVEL = 0.95
SEED = 0


def _ci(estimate, reps: list[float | None], level: float, n_boot: int) -> CI:
    valid = np.array([r for r in reps if r is not None and np.isfinite(r)], dtype=float)
    if valid.size == 0:
        return CI(estimate, None, None, level, n_boot, 0)
    lo, hi = np.quantile(valid, [(1 - level) / 2, 1 - (1 - level) / 2])
    return CI(estimate, float(lo), float(hi), level, n_boot, int(valid.size), replicates=valid)


def _uses_count_path(group) -> bool:
    return type(group).aggregate is MetricGroup.aggregate


def corpus_replicates(group, entries: Sequence[dict[str, Any]], n_boot: int = N_BOOT,
                      seed: int = SEED) -> list[dict[str, float | None]]:
    """Corpus-level values of ``group`` on each bootstrap replicate of ``entries``."""
    speakers = [e.get("speaker") for e in entries]
    if _uses_count_path(group):
        keys = sorted({k for e in entries for k in (e.get("counts") or {})})
        matrix = np.array([[float((e.get("counts") or {}).get(k) or 0.0) for k in keys]
                           for e in entries])
        out = []
        for w in bootstrap_weights(speakers, n_boot, seed):
            for row in w @ matrix:
                out.append(group.pool(dict(zip(keys, row.tolist(), strict=True))))
        return out
    return [group.aggregate([entries[i] for i in idx])
            for idx in iter_bootstrap_indices(speakers, n_boot, seed)]


def mean_replicates(values: Sequence[float | None], speakers: Sequence, n_boot: int = N_BOOT,
                    seed: int = SEED) -> list[float | None]:
    """Utterance means of ``values`` (None = undefined, excluded) on each replicate."""
    x = np.array([0.0 if v is None else float(v) for v in values])
    defined = np.array([v is not None for v in values], dtype=float)
    out: list[float | None] = []
    for w in bootstrap_weights(speakers, n_boot, seed):
        n = w @ defined
        s = w @ x
        out += [float(a / b) if b > 0 else None for a, b in zip(s, n, strict=True)]
    return out


def group_cis(group, entries: Sequence[dict[str, Any]], keys: Sequence[str], corpus: dict[str, Any],
              n_boot: int = N_BOOT, level: float = LEVEL, seed: int = SEED
              ) -> tuple[dict[str, CI], dict[str, CI]]:
    """(CIs of the corpus-level values, CIs of the utterance means) for each key."""
    if not entries:
        return {}, {}
    reps = corpus_replicates(group, entries, n_boot, seed)
    speakers = [e.get("speaker") for e in entries]
    corpus_ci, mean_ci = {}, {}
    for key in keys:
        if corpus.get(key) is not None:
            corpus_ci[key] = _ci(corpus[key], [r.get(key) for r in reps], level, n_boot)
        values = [e["values"].get(key) for e in entries]
        if any(v is not None for v in values):
            defined = [v for v in values if v is not None]
            mean_ci[key] = _ci(float(np.mean(defined)), mean_replicates(values, speakers, n_boot, seed),
                               level, n_boot)
    return corpus_ci, mean_ci


def compare(group, entries_a, entries_b, key: str, stat: str = "mean", n_boot: int = N_BOOT,
            seed: int = SEED, level: float = LEVEL) -> PairedResult:
    """Paired bootstrap of system b minus system a on the utterances both scored (matched by
    utt_id, speakers from a). The same replicates resample both systems. Utterance means and
    count-pooled values take a vectorised path; other corpus statistics call ``aggregate``."""
    if stat != "mean" and not _uses_count_path(group):
        return paired_bootstrap(entries_a, entries_b, lambda es: group.aggregate(es).get(key),
                                n_boot=n_boot, seed=seed, level=level)
    by_a = {e["utt_id"]: e for e in entries_a}
    by_b = {e["utt_id"]: e for e in entries_b}
    common = sorted(set(by_a) & set(by_b))
    ea, eb = [by_a[u] for u in common], [by_b[u] for u in common]
    if not common:
        return _paired_result(None, None, [], level, n_boot, 0, len(by_a), len(by_b))
    speakers = [e.get("speaker") for e in ea]
    if stat == "mean":
        def columns(es):
            vals = [e["values"].get(key) for e in es]
            return np.column_stack([[0.0 if v is None else float(v) for v in vals],
                                    [float(v is not None) for v in vals]])

        def reduce(sums):
            return [float(s / n) if n > 0 else None for s, n in sums]
    else:
        keys = sorted({k for e in ea + eb for k in (e.get("counts") or {})})

        def columns(es):
            return np.array([[float((e.get("counts") or {}).get(k) or 0.0) for k in keys] for e in es])

        def reduce(sums):
            return [group.pool(dict(zip(keys, row.tolist(), strict=True))).get(key) for row in sums]

    ca, cb = columns(ea).reshape(len(ea), -1), columns(eb).reshape(len(eb), -1)
    est_a = reduce(ca.sum(axis=0, keepdims=True))[0]
    est_b = reduce(cb.sum(axis=0, keepdims=True))[0]
    reps: list[float | None] = []
    for w in bootstrap_weights(speakers, n_boot, seed):
        for a, b in zip(reduce(w @ ca), reduce(w @ cb), strict=True):
            reps.append(None if a is None or b is None else b - a)
    return _paired_result(est_a, est_b, reps, level, n_boot, len(common),
                          len(by_a) - len(common), len(by_b) - len(common))
