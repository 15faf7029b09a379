"""The metric contract.

A *metric group* (e.g. ``f0``) computes several related numbers from one analysis (GPE, VDE,
FFE all come from the same pair of pitch tracks). Each number is described by a
:class:`MetricSpec`, whose metadata drives report arrows, display scaling and aggregation.

Per utterance a group returns a :class:`Score`: the per-utterance values plus additive
sufficient statistics (``counts``). Corpus-level ("pooled") values are computed from the summed
counts by :meth:`MetricGroup.pool`, so pooled numbers never depend on how utterances were
batched or sharded. The utterance mean is the plain mean of defined per-utterance values.

Reference-side analyses (``analyse_reference``) depend only on the reference audio and the
group's ``settings()``; the runner caches them by content hash + settings. An exception from
``score`` (e.g. :class:`MetricError`) fails that utterance's part with its reason (never scored
as 0 or 1); :class:`NotApplicable` from ``load`` or ``fit_corpus`` marks the whole group skipped
with the reason (a one-speaker corpus for speaker ID), any other exception there fails it.
Reports rebuild groups from their names and stored options to pool counts, so constructors must
stay cheap (no model loading). How to add a group: docs/adding_a_metric.md.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resyn_bench.core.errors import MetricError  # noqa: F401 - the metric groups' error


@dataclass(frozen=True)
class MetricSpec:
    key: str                     # full key, "<group>.<name>", e.g. "f0.gpe"
    label: str                   # table header, e.g. "GPE"
    higher_is_better: bool
    unit: str = ""               # "%", "cents", "" ...
    percent: bool = False        # stored as a fraction, displayed x100
    description: str = ""
    #: the statistic tables show by default: "mean" (of per-utterance values) or "pooled"
    #: (the corpus-level value, e.g. WER = total edits / total reference words)
    table_stat: str = "mean"
    #: context, not a score (trial counts, a chance level): reports show it as a plain value in
    #: a caption/footnote or count column, never with a direction arrow, CI or significance
    bookkeeping: bool = False

    @property
    def arrow(self) -> str:
        if self.bookkeeping:
            return ""
        return "↑" if self.higher_is_better else "↓"

    def to_dict(self) -> dict[str, Any]:
        d = {"key": self.key, "label": self.label, "higher_is_better": self.higher_is_better,
             "unit": self.unit, "percent": self.percent, "description": self.description,
             "table_stat": self.table_stat}
        if self.bookkeeping:
            d["bookkeeping"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricSpec:
        kw = {k: d[k] for k in ("key", "label", "higher_is_better", "unit", "percent",
                                "description", "table_stat", "bookkeeping") if k in d}
        if "bookkeeping" not in kw and (kw.get("key") in LEGACY_BOOKKEEPING
                                        or kw.get("unit") == "count"):
            kw["bookkeeping"] = True      # runs stored before the flag existed
        return cls(**kw)


#: bookkeeping values of runs written before MetricSpec.bookkeeping existed
LEGACY_BOOKKEEPING = frozenset({"spk.chance", "spk.n_target_trials", "spk.n_nontarget_trials"})


@dataclass
class Score:
    """One utterance's result from one metric group."""

    values: dict[str, float | None]           # spec.key -> value; None = undefined here
    # additive statistics for pooling, with group-local names ("n_frames"), stored so in the
    # record's metric part; merged records (store.merge_events) namespace them ("f0.n_frames")
    counts: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)     # JSON-able details (notes, texts)


class NotApplicable(MetricError):
    """The metric does not apply to this data (e.g. speaker ID on a one-speaker corpus):
    recorded as *skipped* with this reason, not as a failure."""


class MetricGroup(ABC):
    """Lifecycle, as the runner drives it (one group at a time, so peak memory does not grow
    with the number of groups selected)::

        group = Group(**options)          # cheap: no model loading (reports build groups too)
        group.load()                      # load models
        refs = {utt_id: group.analyse_reference(audio)}      # cached by content hash + settings
        group.fit_corpus(utterances, refs)                   # optional corpus model (speaker-ID)
        for each utterance: group.score(refs[utt_id], output_audio, utterance) -> Score
          (or, with ``batch_size`` > 1, ``group.score_batch`` on up to that many utterances of
          similar length at once)
        group.release()                   # drop models

    ``aggregate(entries)`` computes corpus-level values from stored per-utterance entries
    (``{"utt_id", "speaker", "values", "counts", "extra"}`` with group-local key names); the
    default sums ``counts`` and calls ``pool``. Bootstrap CIs call it on resampled entries, so it
    must be a pure function of its input and fast.
    """

    #: short name, also the prefix of every spec key
    name: str = ""
    #: the numbers this group produces
    specs: tuple[MetricSpec, ...] = ()
    #: both sides are analysed at this rate (None: native rate). Resampling is logged.
    sample_rate: int | None = None
    #: True if score() needs ``utterance.text`` (utterances without text are then skipped
    #: for this group with a recorded reason, never scored)
    needs_text: bool = False
    #: True if fit_corpus() must see the reference analyses of the whole dataset first
    needs_corpus: bool = False
    #: utterances the runner gives score_batch() at once (1: score() one at a time). A group
    #: whose model gains from batching sets it from an option (e.g. ``-m spk.batch_size=16``)
    batch_size: int = 1

    def samples_at_rate(self, audio, what: str) -> np.ndarray:
        """``audio``'s samples, after checking it is at the group's analysis rate (the runner
        resamples, and logs it, before calling the group)."""
        if self.sample_rate is not None and int(audio.sample_rate) != self.sample_rate:
            raise MetricError(f"{self.name}: {what} is at {audio.sample_rate} Hz, expected "
                              f"{self.sample_rate} Hz (the runner resamples before scoring)")
        return audio.samples

    def load(self) -> None:
        """Load models (called once before the group's scoring pass)."""

    def release(self) -> None:
        """Free models (called after the group's scoring pass)."""

    def fit_corpus(self, utterances: list, references: dict[str, dict[str, np.ndarray]]) -> None:
        """Fit a corpus-level model on the real (reference) side, e.g. a speaker classifier.
        ``references`` maps utt_id -> analyse_reference() output."""

    def aggregate(self, entries: list[dict[str, Any]]) -> dict[str, float | None]:
        totals: dict[str, float] = {}
        for entry in entries:
            for k, v in (entry.get("counts") or {}).items():
                if v is not None:
                    totals[k] = totals.get(k, 0.0) + v
        return self.pool(totals)

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-able settings recorded with every number (and part of the cache key)."""

    @abstractmethod
    def analyse_reference(self, audio) -> dict[str, np.ndarray]:
        """Reference-side analysis (cacheable: only numpy arrays - strings as 0-d unicode
        arrays, no object arrays; depends only on the audio and settings())."""

    @abstractmethod
    def score(self, reference: dict[str, np.ndarray], output, utterance) -> Score:
        """Score one output against the cached reference analysis."""

    def score_batch(self, references: list[dict[str, np.ndarray]], outputs: list,
                    utterances: list) -> list[Score | Exception]:
        """Several utterances at once (the runner groups utterances of similar length): item
        i is ``score(references[i], outputs[i], utterances[i])`` or the exception that raised,
        so one bad utterance costs only itself. The default scores them one at a time; a group
        that batches its model must give score()'s numbers within a tolerance it documents."""
        results: list[Score | Exception] = []
        for reference, output, utterance in zip(references, outputs, utterances, strict=True):
            try:
                results.append(self.score(reference, output, utterance))
            except Exception as exc:  # recorded for this utterance only
                results.append(exc)
        return results

    def pool(self, counts: dict[str, float]) -> dict[str, float | None]:
        """Corpus-level values from counts summed over utterances (default: none)."""
        return {}

    def replicates(self, entries: list[dict[str, Any]], weight_blocks
                   ) -> list[dict[str, float | None]] | None:
        """Optional fast path for bootstrap confidence intervals: ``aggregate`` of every
        bootstrap replicate of ``entries`` at once. ``weight_blocks`` yields ``block x
        len(entries)`` multiplicity matrices (row = one replicate, ``w[i]`` = times entry ``i``
        was drawn; :func:`resyn_bench.reports.stats.bootstrap_weights`); the result is one dict
        per row, in order, equal to ``aggregate`` on the resampled entries.

        The default returns None: the report's statistics then sum counts (groups with the
        default ``aggregate``) or call ``aggregate`` on each resampled list. Groups whose corpus
        values are not count sums (the speaker group's EER from trial scores) override it."""
        return None
