"""Uncertainty and significance for corpus-level numbers: the one statistics module of the
reports (numpy only; metric groups are used through their public methods).

Public API, in three layers:

* resampling: :func:`hierarchical_bootstrap_indices`, :func:`iter_bootstrap_indices`,
  :func:`bootstrap_weights`;
* generic intervals and tests: :func:`bootstrap_ci`, :func:`bootstrap_ci_counts`,
  :func:`bootstrap_ci_mean`, :func:`paired_bootstrap`, :func:`paired_bootstrap_counts`,
  :func:`paired_permutation_test`, :func:`significant`, :func:`holm`, :func:`replicate_ci`;
* metric-group corpus numbers (what collate/tables/disentangle call): :func:`group_cis`,
  :func:`corpus_replicates`, :func:`mean_replicates`, :func:`compare`, :func:`compare_corpus`,
  :func:`uses_count_path`, :func:`count_matrix`, :func:`group_statistic`,
  :func:`group_pool_fn`; a group may speed up its replicates with a ``replicates`` hook
  (:meth:`resyn_bench.metrics.base.MetricGroup.replicates`).

Resampling unit
---------------
Utterances of one speaker are not independent (a speaker's voice makes a system fail or succeed
on all of them), so every bootstrap here is **hierarchical**: a replicate first draws the
*speakers* with replacement (as many draws as there are speakers), then, independently for each
drawn speaker, that speaker's utterances with replacement (as many draws as the speaker has
utterances). A speaker drawn twice contributes two independent utterance resamples. A
replicate therefore has a random number of utterances, and one talkative speaker is one draw out
of ``n_speakers`` instead of dominating the corpus.

Degenerate cases, by construction of the same procedure:

* a single speaker -> a plain utterance bootstrap (that speaker is always drawn);
* every utterance its own speaker (e.g. ``speaker_of=lambda e: e["utt_id"]``) -> a plain
  utterance bootstrap;
* an utterance whose speaker is ``None`` (unknown) is its own singleton speaker.

Confidence intervals
--------------------
Percentile intervals: ``low``/``high`` are the ``(1-level)/2`` and ``1-(1-level)/2`` quantiles
(numpy's default linear interpolation) of the replicate values. The estimate is the statistic on
the full, unresampled data. Replicates on which the statistic is undefined (``None`` or NaN) are
dropped; ``n_valid`` says how many were kept.

Paired comparisons
------------------
:func:`paired_bootstrap` resamples the *same* utterance indices for both systems in every
replicate and reports the delta ``stat(b) - stat(a)``. Its two-sided p-value is::

    p = min(1, 2 * min(#{d* <= 0}, #{d* >= 0}) / n_valid)

over the valid replicate deltas ``d*`` (the share of replicates on the far side of zero, doubled).
Its resolution is ``1 / n_valid``: ``p == 0`` means no replicate reached zero, i.e.
``p < 1 / n_valid``; identical systems give ``p == 1``.

:func:`paired_permutation_test` is the sign-flip test on per-utterance paired differences with
the +1 correction, ``p = (1 + #{|T*| >= |T|}) / (1 + n_perm)``; it treats utterances as
exchangeable units (it ignores speakers).

Reproducibility: every function takes ``seed`` and draws from ``np.random.default_rng(seed)``;
the generic (entry) and fast (count-matrix) paths consume the random stream identically, so with
the same seed and the same utterance order they resample exactly the same indices.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CI", "PairedResult", "PermutationResult",
    "hierarchical_bootstrap_indices", "iter_bootstrap_indices", "bootstrap_weights",
    "bootstrap_ci", "bootstrap_ci_counts", "bootstrap_ci_mean",
    "paired_bootstrap", "paired_bootstrap_counts", "paired_permutation_test",
    "significant", "holm", "count_matrix", "group_statistic", "group_pool_fn",
    "METHOD_HIERARCHICAL", "N_BOOT", "LEVEL", "SEED",
    "uses_count_path", "replicate_ci", "corpus_replicates", "mean_replicates", "group_cis",
    "compare", "compare_corpus",
]

METHOD_HIERARCHICAL = "percentile, speakers then utterances"

#: Replicates are drawn in blocks of this many (fixed, so a seed means the same draws whichever
#: path consumes them). Also bounds the weight matrix to BLOCK x n_utts.
_BLOCK = 64


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass
class CI:
    """A bootstrap confidence interval. ``low``/``high`` are None when no replicate was valid;
    ``estimate`` is None when the statistic is undefined on the full data."""

    estimate: float | None
    low: float | None
    high: float | None
    level: float
    n_boot: int
    n_valid: int
    method: str = METHOD_HIERARCHICAL
    #: the valid replicate values, in replicate order (not part of equality or repr)
    replicates: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "level": self.level, "n_boot": self.n_boot, "n_valid": self.n_valid,
                "method": self.method}


@dataclass
class PairedResult:
    """System b minus system a on their common utterances."""

    delta: float | None              # stat(b) - stat(a) on the common utterances
    low: float | None                # percentile CI of the delta
    high: float | None
    p_value: float | None            # see the module docstring; None if no valid replicate
    n_common: int                    # utterances scored in both systems
    method: str = "paired bootstrap, " + METHOD_HIERARCHICAL
    level: float = 0.95
    n_boot: int = 0
    n_valid: int = 0
    estimate_a: float | None = None
    estimate_b: float | None = None
    n_only_a: int = 0                # utterances scored only in a (excluded)
    n_only_b: int = 0                # utterances scored only in b (excluded)
    replicates: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "low": self.low, "high": self.high, "p_value": self.p_value,
                "n_common": self.n_common, "method": self.method, "level": self.level,
                "n_boot": self.n_boot, "n_valid": self.n_valid, "estimate_a": self.estimate_a,
                "estimate_b": self.estimate_b, "n_only_a": self.n_only_a, "n_only_b": self.n_only_b}


@dataclass
class PermutationResult:
    """Sign-flip permutation test of the mean paired difference (b - a)."""

    delta: float | None              # mean of b - a over the usable pairs
    p_value: float                   # (1 + #{|T*| >= |T|}) / (1 + n_perm)
    n: int                           # pairs with both values defined
    n_perm: int
    method: str = "sign-flip permutation, two-sided, +1 corrected"

    def to_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "p_value": self.p_value, "n": self.n, "n_perm": self.n_perm,
                "method": self.method}


# --------------------------------------------------------------------------------------------
# Resampling indices
# --------------------------------------------------------------------------------------------

def _speaker_codes(speakers: Sequence[Hashable | None]) -> np.ndarray:
    """Integer speaker codes in first-appearance order; ``None`` -> a fresh singleton code."""
    codes = np.empty(len(speakers), dtype=np.int64)
    seen: dict[Hashable, int] = {}
    for i, s in enumerate(speakers):
        if s is None:
            codes[i] = len(seen)
            seen[object()] = codes[i]          # unique key: a speaker of its own
        else:
            code = seen.get(s)
            if code is None:
                code = seen[s] = len(seen)
            codes[i] = code
    return codes


class _Design:
    """Utterances grouped by speaker, ready for block-wise hierarchical draws."""

    def __init__(self, speakers: Sequence[Hashable | None]):
        codes = _speaker_codes(list(speakers))
        self.n_utts = len(codes)
        self.order = np.argsort(codes, kind="stable")            # utterances grouped by speaker
        self.sizes = np.bincount(codes) if self.n_utts else np.zeros(0, dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.sizes)[:-1])).astype(np.int64)
        self.n_speakers = len(self.sizes)

    def blocks(self, n_boot: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(flat_indices, lengths)`` per block of up to ``_BLOCK`` replicates: the
        concatenated utterance indices of the block's replicates and each replicate's length."""
        rng = np.random.default_rng(seed)
        s = self.n_speakers
        done = 0
        while done < n_boot:
            b = min(_BLOCK, n_boot - done)
            drawn = rng.integers(0, s, size=(b, s))               # speakers, with replacement
            sz = self.sizes[drawn]                                # (b, s) utterances per draw
            flat_sz = sz.ravel()
            # within each drawn speaker: its own n_k utterances, with replacement
            offsets = rng.integers(0, np.repeat(flat_sz, flat_sz))
            base = np.repeat(self.starts[drawn].ravel(), flat_sz)
            yield self.order[base + offsets], sz.sum(axis=1)
            done += b


def _check(n_boot: int, level: float | None = None) -> None:
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if level is not None and not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def iter_bootstrap_indices(speakers: Sequence[Hashable | None], n_boot: int,
                           seed: int = 0) -> Iterator[np.ndarray]:
    """Generator form of :func:`hierarchical_bootstrap_indices` (one array at a time)."""
    _check(n_boot)
    design = _Design(speakers)
    if design.n_utts == 0:
        raise ValueError("cannot bootstrap zero utterances")
    for flat, lengths in design.blocks(int(n_boot), seed):
        yield from np.split(flat, np.cumsum(lengths)[:-1])


def hierarchical_bootstrap_indices(speakers: Sequence[Hashable | None], n_boot: int,
                                   seed: int = 0) -> list[np.ndarray]:
    """``n_boot`` replicates of utterance indices (into ``speakers``), speakers then utterances.

    Each replicate draws ``n_speakers`` speakers with replacement and, for each draw
    independently, that speaker's ``n_k`` utterances with replacement; the replicate is the
    concatenation (its length varies). With a single speaker this is a plain utterance bootstrap;
    ``None`` speakers are singletons. Same ``seed`` -> identical arrays."""
    return list(iter_bootstrap_indices(speakers, n_boot, seed))


def bootstrap_weights(speakers: Sequence[Hashable | None], n_boot: int,
                      seed: int = 0) -> Iterator[np.ndarray]:
    """The same replicates as :func:`hierarchical_bootstrap_indices`, as blocks of multiplicity
    matrices ``W`` (``block x n_utts``, float64): ``W[r, i]`` = times utterance ``i`` was drawn
    in replicate ``r``, so ``W @ X`` sums any per-utterance columns ``X`` per replicate."""
    _check(n_boot)
    design = _Design(speakers)
    n = design.n_utts
    if n == 0:
        raise ValueError("cannot bootstrap zero utterances")
    for flat, lengths in design.blocks(int(n_boot), seed):
        b = len(lengths)
        rep = np.repeat(np.arange(b, dtype=np.int64), lengths)
        yield np.bincount(rep * n + flat, minlength=b * n).reshape(b, n).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Confidence intervals
# --------------------------------------------------------------------------------------------

def _as_value(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _percentile(valid: np.ndarray, level: float) -> tuple[float | None, float | None]:
    if valid.size == 0:
        return None, None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(valid, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _valid(reps: Sequence[float | None] | np.ndarray) -> np.ndarray:
    arr = np.array([np.nan if r is None else r for r in reps], dtype=np.float64) \
        if not isinstance(reps, np.ndarray) else reps.astype(np.float64, copy=False)
    return arr[~np.isnan(arr)]


def _make_ci(estimate: Any, reps, level: float, n_boot: int) -> CI:
    valid = _valid(reps)
    low, high = _percentile(valid, level)
    return CI(estimate=_as_value(estimate), low=low, high=high, level=level, n_boot=int(n_boot),
              n_valid=int(valid.size), replicates=valid)


def _default_speaker(entry: Mapping[str, Any]) -> Hashable | None:
    return entry.get("speaker")


def bootstrap_ci(entries: Sequence[Any], statistic: Callable[[list], float | None],
                 speaker_of: Callable[[Any], Hashable | None] = _default_speaker,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> CI:
    """Percentile CI of ``statistic`` (a function of a list of entries, e.g. a metric group's
    pooled value via :func:`group_statistic`) under the hierarchical bootstrap.

    ``estimate = statistic(list(entries))``; each replicate calls ``statistic`` on the resampled
    entries (duplicates included); replicates returning None/NaN are dropped (``n_valid``).
    The default ``speaker_of`` reads ``entry["speaker"]`` (missing/None: singleton speaker)."""
    _check(n_boot, level)
    entries = list(entries)
    estimate = statistic(entries)
    if not entries:
        return _make_ci(estimate, [], level, n_boot)
    reps = [_as_value(statistic([entries[i] for i in idx]))
            for idx in iter_bootstrap_indices([speaker_of(e) for e in entries], n_boot, seed)]
    return _make_ci(estimate, reps, level, n_boot)


def _pool_replicates(sums: np.ndarray, pool_fn: Callable, vectorized: bool) -> np.ndarray:
    if vectorized:
        out = np.asarray(pool_fn(sums), dtype=np.float64).reshape(len(sums))
        return out
    return np.array([np.nan if (v := _as_value(pool_fn(row))) is None else v for row in sums],
                    dtype=np.float64)


def _replicate_sums(matrix: np.ndarray, speakers, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    for w in bootstrap_weights(speakers, n_boot, seed):
        yield w @ matrix


def _as_matrix(count_matrix: Any, n_expected: int | None = None) -> np.ndarray:
    m = np.asarray(count_matrix, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2:
        raise ValueError(f"count matrix must be 2-D (n_utts x n_counts), got shape {m.shape}")
    if n_expected is not None and m.shape[0] != n_expected:
        raise ValueError(f"count matrix has {m.shape[0]} rows for {n_expected} speakers labels")
    return m


def bootstrap_ci_counts(count_matrix: np.ndarray, pool_fn: Callable[[np.ndarray], float | None],
                        speakers: Sequence[Hashable | None], n_boot: int = 1000,
                        level: float = 0.95, seed: int = 0, vectorized: bool = False) -> CI:
    """Fast path for statistics that are a function of summed additive counts.

    ``count_matrix`` is ``n_utts x n_counts`` (row i = utterance i's counts; use 0 for a missing
    count), ``speakers`` the row labels. Each replicate's summed counts are ``W @ count_matrix``
    with the multiplicity matrix of :func:`bootstrap_weights`, i.e. exactly the sums over
    the indices :func:`hierarchical_bootstrap_indices` draws with the same seed.
    ``pool_fn(summed_vector) -> float | None``; with ``vectorized=True`` it instead receives a
    ``block x n_counts`` array and returns one value per row (NaN = undefined)."""
    _check(n_boot, level)
    m = _as_matrix(count_matrix, len(speakers))
    total = m.sum(axis=0)
    estimate = _pool_replicates(total[None, :], pool_fn, vectorized)[0]
    if m.shape[0] == 0:
        return _make_ci(estimate, np.zeros(0), level, n_boot)
    reps = np.concatenate([_pool_replicates(s, pool_fn, vectorized)
                           for s in _replicate_sums(m, speakers, n_boot, seed)])
    return _make_ci(estimate, reps, level, n_boot)


def _mean_columns(values: Sequence[float | None]) -> np.ndarray:
    """``[value or 0, defined]`` per utterance: the additive counts of a mean of defined values."""
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    defined = ~np.isnan(v)
    return np.column_stack([np.where(defined, v, 0.0), defined.astype(np.float64)])


def _mean_pool(sums: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[:, 1] > 0, sums[:, 0] / np.where(sums[:, 1] > 0, sums[:, 1], 1.0),
                        np.nan)


def bootstrap_ci_mean(values: Sequence[float | None], speakers: Sequence[Hashable | None],
                      n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> CI:
    """CI of the utterance mean (mean of the *defined* per-utterance values; None/NaN are
    undefined). Undefined utterances stay in the resampling design (they count toward their
    speaker's size) but not in the mean; a replicate with no defined value is dropped."""
    return bootstrap_ci_counts(_mean_columns(values), _mean_pool, speakers, n_boot=n_boot,
                               level=level, seed=seed, vectorized=True)


# --------------------------------------------------------------------------------------------
# Paired comparisons
# --------------------------------------------------------------------------------------------

def _paired_p(deltas: np.ndarray) -> float | None:
    """``min(1, 2 * min(#{d <= 0}, #{d >= 0}) / n)`` over the valid replicate deltas."""
    if deltas.size == 0:
        return None
    n = deltas.size
    return min(1.0, 2.0 * min(np.count_nonzero(deltas <= 0), np.count_nonzero(deltas >= 0)) / n)


def _paired_result(est_a, est_b, reps, level, n_boot, n_common, n_only_a, n_only_b) -> PairedResult:
    est_a, est_b = _as_value(est_a), _as_value(est_b)
    delta = None if est_a is None or est_b is None else est_b - est_a
    valid = _valid(reps)
    low, high = _percentile(valid, level)
    return PairedResult(delta=delta, low=low, high=high, p_value=_paired_p(valid),
                        n_common=n_common, level=level, n_boot=int(n_boot),
                        n_valid=int(valid.size), estimate_a=est_a, estimate_b=est_b,
                        n_only_a=n_only_a, n_only_b=n_only_b, replicates=valid)


def paired_bootstrap(entries_a: Sequence[Mapping[str, Any]], entries_b: Sequence[Mapping[str, Any]],
                     statistic: Callable[[list], float | None],
                     speaker_of: Callable[[Any], Hashable | None] = _default_speaker,
                     n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> PairedResult:
    """Paired hierarchical bootstrap of ``statistic(b) - statistic(a)``.

    Entries are matched by ``utt_id``; only utterances present in both are used (``n_common``;
    ``n_only_a``/``n_only_b`` count the excluded ones). Common utterances are taken in sorted
    ``utt_id`` order (so the input order does not matter) and their speaker is read from the a
    side. Every replicate applies the *same* resampled indices to both systems;
    replicates where either side is None/NaN are dropped.

    ``delta = stat(b_common) - stat(a_common)``; ``low``/``high`` are the percentile CI of the
    replicate deltas ``d*``; the two-sided p-value is
    ``p = min(1, 2 * min(#{d* <= 0}, #{d* >= 0}) / n_valid)`` (resolution ``1/n_valid``:
    ``p == 0`` means ``p < 1/n_valid``; identical systems give ``p == 1``)."""
    _check(n_boot, level)
    by_a = {e["utt_id"]: e for e in entries_a}
    by_b = {e["utt_id"]: e for e in entries_b}
    common = sorted(set(by_a) & set(by_b))
    ea = [by_a[u] for u in common]
    eb = [by_b[u] for u in common]
    n_only_a, n_only_b = len(by_a) - len(common), len(by_b) - len(common)
    est_a, est_b = statistic(ea), statistic(eb)
    reps: list[float | None] = []
    if common:
        for idx in iter_bootstrap_indices([speaker_of(e) for e in ea], n_boot, seed):
            a = _as_value(statistic([ea[i] for i in idx]))
            b = _as_value(statistic([eb[i] for i in idx]))
            reps.append(None if a is None or b is None else b - a)
    return _paired_result(est_a, est_b, reps, level, n_boot, len(common), n_only_a, n_only_b)


def paired_bootstrap_counts(counts_a: np.ndarray, counts_b: np.ndarray,
                            pool_fn: Callable[[np.ndarray], float | None],
                            speakers: Sequence[Hashable | None], n_boot: int = 1000,
                            level: float = 0.95, seed: int = 0,
                            vectorized: bool = False) -> PairedResult:
    """Count-matrix fast path of :func:`paired_bootstrap`: rows of ``counts_a`` and ``counts_b``
    must already be the same utterances in the same order (labelled by ``speakers``). Same
    p-value and CI definitions; with the same seed and order it draws the same replicates as
    :func:`paired_bootstrap`."""
    _check(n_boot, level)
    ma = _as_matrix(counts_a, len(speakers))
    mb = _as_matrix(counts_b, len(speakers))
    est_a = _pool_replicates(ma.sum(axis=0)[None, :], pool_fn, vectorized)[0]
    est_b = _pool_replicates(mb.sum(axis=0)[None, :], pool_fn, vectorized)[0]
    reps = [np.zeros(0)]
    if len(speakers):
        for w in bootstrap_weights(speakers, n_boot, seed):
            reps.append(_pool_replicates(w @ mb, pool_fn, vectorized)
                        - _pool_replicates(w @ ma, pool_fn, vectorized))
    return _paired_result(est_a, est_b, np.concatenate(reps), level, n_boot, len(speakers), 0, 0)


def paired_permutation_test(values_a: Sequence[float | None], values_b: Sequence[float | None],
                            n_perm: int = 10000, seed: int = 0) -> PermutationResult:
    """Two-sided sign-flip permutation test of the mean paired difference ``d = b - a``.

    Pairs where either value is None/NaN are dropped. ``T = sum(d)`` (equivalently the mean);
    each permutation draws independent signs ``s_i = ±1`` and ``T* = sum(s_i d_i)``;
    ``p = (1 + #{|T*| >= |T|}) / (1 + n_perm)`` (so ``p >= 1/(1+n_perm)``; identical systems
    give ``p == 1``). Ties are judged with a relative tolerance of 1e-12 * sum|d|. Utterances are
    treated as exchangeable units: unlike :func:`paired_bootstrap` this ignores speakers."""
    if int(n_perm) < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    a = np.array([np.nan if x is None else x for x in values_a], dtype=np.float64)
    b = np.array([np.nan if x is None else x for x in values_b], dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.size} vs {b.size}")
    d = (b - a)[~(np.isnan(a) | np.isnan(b))]
    n, n_perm = int(d.size), int(n_perm)
    if n == 0:
        return PermutationResult(delta=None, p_value=1.0, n=0, n_perm=n_perm)
    t_obs = abs(float(d.sum()))
    tol = 1e-12 * float(np.abs(d).sum())
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    block = max(1, min(n_perm, 4_000_000 // max(n, 1)))
    while done < n_perm:
        m = min(block, n_perm - done)
        signs = rng.integers(0, 2, size=(m, n)).astype(np.float64) * 2.0 - 1.0
        hits += int(np.count_nonzero(np.abs(signs @ d) >= t_obs - tol))
        done += m
    return PermutationResult(delta=float(d.mean()), p_value=(1 + hits) / (1 + n_perm), n=n,
                             n_perm=n_perm)


def significant(result: PairedResult | PermutationResult | Any, alpha: float = 0.05) -> bool:
    """``p_value < alpha`` (False when the p-value is undefined)."""
    p = getattr(result, "p_value", None)
    return p is not None and not math.isnan(p) and p < alpha


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m defined p-values sorted ascending ``p_(1) <= ... <= p_(m)``:
    ``adj_(k) = min(1, max_{j <= k} (m - j + 1) * p_(j))``. ``None`` entries stay None and do
    not count toward m. Reject hypothesis k at family-wise level alpha iff ``adj_k < alpha``
    (equivalently ``<=``, up to the boundary)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        p = float(pvalues[i])
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-value out of [0, 1]: {p}")
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


# --------------------------------------------------------------------------------------------
# Metric-group adapters
# --------------------------------------------------------------------------------------------

def count_matrix(entries: Sequence[Mapping[str, Any]],
                 keys: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """``(n_utts x n_keys matrix, keys)`` from entries' ``counts`` (group-local names). Missing or
    None counts are 0 (like :meth:`MetricGroup.aggregate`, except that a key absent from every
    summed entry is passed to ``pool`` as 0 rather than left out). ``keys`` defaults to the
    sorted union of keys present."""
    if keys is None:
        keys = sorted({k for e in entries for k, v in (e.get("counts") or {}).items()
                       if v is not None})
    keys = list(keys)
    m = np.zeros((len(entries), len(keys)), dtype=np.float64)
    for i, e in enumerate(entries):
        c = e.get("counts") or {}
        for j, k in enumerate(keys):
            v = c.get(k)
            if v is not None:
                m[i, j] = v
    return m, keys


def group_statistic(group: Any, key: str) -> Callable[[list], float | None]:
    """``entries -> group.aggregate(entries)[key]``: a pooled metric as a bootstrap statistic."""
    def stat(entries: list) -> float | None:
        return group.aggregate(entries).get(key)
    return stat


def group_pool_fn(group: Any, keys: Sequence[str], key: str) -> Callable[[np.ndarray], float | None]:
    """``summed counts vector -> group.pool(dict(zip(keys, vector)))[key]`` for the fast path
    (only valid for groups that use the default, count-summing ``aggregate``)."""
    keys = list(keys)

    def pool_fn(vector: np.ndarray) -> float | None:
        return group.pool({k: float(v) for k, v in zip(keys, vector, strict=True)}).get(key)
    return pool_fn


# --------------------------------------------------------------------------------------------
# Corpus numbers of a metric group (what the report's tables and CIs use)
# --------------------------------------------------------------------------------------------
#
# For one metric group all its keys are resampled together (one set of replicates, speakers then
# utterances, seeded). Where a replicate's corpus values come from, in order of preference:
#   1. the group's own ``replicates(entries, weight_blocks)`` hook (vectorised; the speaker
#      group's EER / minDCF from trial scores);
#   2. groups with the default, count-summing ``aggregate``: ``W @ counts`` then ``pool``;
#   3. any other group: ``aggregate`` on each replicate's resampled entries.

#: replicates, interval level and seed of every CI and paired test in the reports
N_BOOT = 1000
LEVEL = 0.95
SEED = 0


def uses_count_path(group: Any) -> bool:
    """True when ``group`` keeps the default ``aggregate`` (sum the counts, then ``pool``), so
    its corpus values on a replicate follow from the replicate's summed counts."""
    from resyn_bench.metrics.base import MetricGroup

    return type(group).aggregate is MetricGroup.aggregate


def replicate_ci(estimate: Any, replicates: Sequence[float | None], level: float = LEVEL,
                 n_boot: int = N_BOOT) -> CI:
    """Percentile CI around ``estimate`` (kept as given) from replicate values; None and
    non-finite replicates are dropped (``n_valid``)."""
    valid = np.array([r for r in replicates if r is not None and np.isfinite(r)], dtype=float)
    if valid.size == 0:
        return CI(estimate, None, None, level, n_boot, 0)
    lo, hi = np.quantile(valid, [(1 - level) / 2, 1 - (1 - level) / 2])
    return CI(estimate, float(lo), float(hi), level, n_boot, int(valid.size), replicates=valid)


def _hook_replicates(group: Any, entries: Sequence[Mapping[str, Any]],
                     weight_blocks) -> list[dict[str, float | None]] | None:
    hook = getattr(group, "replicates", None)
    return hook(list(entries), weight_blocks) if callable(hook) and entries else None


def corpus_replicates(group: Any, entries: Sequence[Mapping[str, Any]], n_boot: int = N_BOOT,
                      seed: int = SEED) -> list[dict[str, float | None]]:
    """Corpus-level values of ``group`` (dicts as ``aggregate`` returns) on each of ``n_boot``
    hierarchical bootstrap replicates of ``entries`` (see the section comment for the path)."""
    speakers = [e.get("speaker") for e in entries]
    fast = _hook_replicates(group, entries, bootstrap_weights(speakers, n_boot, seed))
    if fast is not None:
        return fast
    if uses_count_path(group):
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


def mean_replicates(values: Sequence[float | None], speakers: Sequence[Hashable | None],
                    n_boot: int = N_BOOT, seed: int = SEED) -> list[float | None]:
    """Utterance means of ``values`` (None = undefined, excluded) on each replicate (None for a
    replicate without a defined value)."""
    x = np.array([0.0 if v is None else float(v) for v in values])
    defined = np.array([v is not None for v in values], dtype=float)
    out: list[float | None] = []
    for w in bootstrap_weights(speakers, n_boot, seed):
        n = w @ defined
        s = w @ x
        out += [float(a / b) if b > 0 else None for a, b in zip(s, n, strict=True)]
    return out


def group_cis(group: Any, entries: Sequence[Mapping[str, Any]], keys: Sequence[str],
              corpus: Mapping[str, Any], n_boot: int = N_BOOT, level: float = LEVEL,
              seed: int = SEED) -> tuple[dict[str, CI], dict[str, CI]]:
    """``(CIs of the corpus values, CIs of the utterance means)`` of each of ``keys`` for one
    group's entries; ``corpus`` is ``group.aggregate(entries)``. A key gets a corpus CI when
    its corpus value is defined and a mean CI when some utterance has a value."""
    if not entries:
        return {}, {}
    reps = corpus_replicates(group, entries, n_boot, seed)
    speakers = [e.get("speaker") for e in entries]
    corpus_ci, mean_ci = {}, {}
    for key in keys:
        if corpus.get(key) is not None:
            corpus_ci[key] = replicate_ci(corpus[key], [r.get(key) for r in reps], level, n_boot)
        values = [e["values"].get(key) for e in entries]
        if any(v is not None for v in values):
            defined = [v for v in values if v is not None]
            mean_ci[key] = replicate_ci(float(np.mean(defined)),
                                        mean_replicates(values, speakers, n_boot, seed),
                                        level, n_boot)
    return corpus_ci, mean_ci


def _common(entries_a, entries_b):
    by_a = {e["utt_id"]: e for e in entries_a}
    by_b = {e["utt_id"]: e for e in entries_b}
    common = sorted(set(by_a) & set(by_b))
    return ([by_a[u] for u in common], [by_b[u] for u in common],
            len(by_a) - len(common), len(by_b) - len(common))


def compare(group: Any, entries_a: Sequence[Mapping[str, Any]],
            entries_b: Sequence[Mapping[str, Any]], key: str, stat: str = "mean",
            n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> PairedResult:
    """Paired bootstrap of system b minus system a for one key, on the utterances both scored
    (matched by ``utt_id``, speakers from a; the same replicates resample both systems).
    ``stat="mean"``: utterance means; otherwise the corpus value. Means and count-pooled values
    take a vectorised path; other corpus statistics call ``aggregate`` per replicate (for
    several keys of one such group at once, use :func:`compare_corpus`)."""
    if stat != "mean" and not uses_count_path(group):
        return paired_bootstrap(entries_a, entries_b, lambda es: group.aggregate(es).get(key),
                                n_boot=n_boot, seed=seed, level=level)
    ea, eb, only_a, only_b = _common(entries_a, entries_b)
    if not ea:
        return _paired_result(None, None, [], level, n_boot, 0, only_a, only_b)
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
            return np.array([[float((e.get("counts") or {}).get(k) or 0.0) for k in keys]
                             for e in es])

        def reduce(sums):
            return [group.pool(dict(zip(keys, row.tolist(), strict=True))).get(key) for row in sums]

    ca, cb = columns(ea).reshape(len(ea), -1), columns(eb).reshape(len(eb), -1)
    est_a = reduce(ca.sum(axis=0, keepdims=True))[0]
    est_b = reduce(cb.sum(axis=0, keepdims=True))[0]
    reps: list[float | None] = []
    for w in bootstrap_weights(speakers, n_boot, seed):
        for a, b in zip(reduce(w @ ca), reduce(w @ cb), strict=True):
            reps.append(None if a is None or b is None else b - a)
    return _paired_result(est_a, est_b, reps, level, n_boot, len(ea), only_a, only_b)


def compare_corpus(group: Any, entries_a: Sequence[Mapping[str, Any]],
                   entries_b: Sequence[Mapping[str, Any]], keys: Sequence[str],
                   n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL
                   ) -> dict[str, PairedResult]:
    """:func:`paired_bootstrap` of ``group.aggregate()[key]`` for several keys at once: the same
    matching, replicates and p-values as one :func:`paired_bootstrap` per key, with each
    replicate aggregated once (through the group's ``replicates`` hook when it has one)."""
    ea, eb, only_a, only_b = _common(entries_a, entries_b)
    full_a = group.aggregate(ea) if ea else {}
    full_b = group.aggregate(eb) if eb else {}
    reps: dict[str, list[float | None]] = {k: [] for k in keys}

    def add(ra, rb):
        for k in keys:
            va, vb = _as_value(ra.get(k)), _as_value(rb.get(k))
            reps[k].append(None if va is None or vb is None else vb - va)

    speakers = [e.get("speaker") for e in ea]
    # both sides see the same weights: two generators with one seed draw identical blocks
    fast_a = _hook_replicates(group, ea, bootstrap_weights(speakers, n_boot, seed)) if ea else None
    fast_b = _hook_replicates(group, eb, bootstrap_weights(speakers, n_boot, seed)) \
        if fast_a is not None else None
    if fast_a is not None and fast_b is not None:
        for ra, rb in zip(fast_a, fast_b, strict=True):
            add(ra, rb)
    elif ea:
        for idx in iter_bootstrap_indices(speakers, n_boot, seed):
            add(group.aggregate([ea[i] for i in idx]), group.aggregate([eb[i] for i in idx]))
    return {k: _paired_result(full_a.get(k), full_b.get(k), reps[k], level, n_boot, len(ea),
                              only_a, only_b) for k in keys}
